/**
 * Prints what ticket-triage's model costs online, on this machine: feature
 * extraction per event (tickets and documents apart) and onnxruntime-node
 * inference of the ACTIVE model per batch, one thread as the score stage runs
 * it; plus the largest probability difference against scikit-learn on the
 * parity rows. Figures only, no assertions (STYLE.md: benchmarks are scripts).
 *
 *   node training/ticket-triage/bench.ts [--events 5000]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { FEATURE_NAMES, ticketTriageModel } from '../../pipelines/ticket-triage/features.ts';
import { type GeneratedTicketEvent, generateTicketEvents } from '../../pipelines/ticket-triage/generator.ts';

const { values } = parseArgs({ options: { events: { type: 'string', default: '5000' } }, strict: true });
const count = Number(values.events);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

const events = [...generateTicketEvents({ seed: 77, count, startMs: Date.UTC(2026, 10, 1) })];
// Warm up the JIT before measuring.
for (const event of events.slice(0, 500)) ticketTriageModel.features(event.eventType, event.payload);

function featureCost(subset: GeneratedTicketEvent[]): { mean: number; p50: number; p99: number } {
  const micros: number[] = [];
  for (const event of subset) {
    const started = performance.now();
    const vector = ticketTriageModel.features(event.eventType, event.payload);
    ticketTriageModel.monitored(event.eventType, event.payload, vector);
    micros.push((performance.now() - started) * 1_000);
  }
  return { mean: micros.reduce((a, b) => a + b, 0) / micros.length, p50: median(micros), p99: percentile(micros, 0.99) };
}

const format = ({ mean, p50, p99 }: { mean: number; p50: number; p99: number }) => `mean ${mean.toFixed(1)} µs, p50 ${p50.toFixed(1)} µs, p99 ${p99.toFixed(1)} µs`;
const tickets = events.filter((e) => e.eventType === 'jira_ticket_created');
const documents = events.filter((e) => e.eventType === 'document_uploaded');
console.log(`features + monitored, per event (${count} events):`);
console.log(`  tickets   (${tickets.length}): ${format(featureCost(tickets))}`);
console.log(`  documents (${documents.length}): ${format(featureCost(documents))}`);
console.log(`  all: ${format(featureCost(events))}`);

const modelsDir = fileURLToPath(new URL('../../models/ticket-triage/', import.meta.url));
const version = readFileSync(join(modelsDir, 'ACTIVE'), 'utf8').trim();
const session = await InferenceSession.create(readFileSync(join(modelsDir, version, 'model.onnx')), {
  executionProviders: ['cpu'],
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
});
const width = FEATURE_NAMES.length;
console.log(`onnxruntime-node, ${version}, 1 thread, median of 300 runs:`);
for (const batch of [1, 32, 64, 256]) {
  const data = new Float32Array(batch * width);
  events.slice(0, batch).forEach((event, r) => {
    data.set(ticketTriageModel.features(event.eventType, event.payload), r * width);
  });
  const input = { features: new Tensor('float32', data, [batch, width]) };
  for (let i = 0; i < 30; i++) await session.run(input);
  const millis: number[] = [];
  for (let i = 0; i < 300; i++) {
    const started = performance.now();
    await session.run(input);
    millis.push(performance.now() - started);
  }
  console.log(`  batch ${String(batch).padStart(3)}: ${median(millis).toFixed(3)} ms`);
}

const parity = JSON.parse(readFileSync(join(modelsDir, version, 'parity.json'), 'utf8')) as { seed: number; start_ms: number; spacing_ms: number; indices: number[]; probabilities: number[][] };
let worst = 0;
for (let i = 0; i < parity.indices.length; i++) {
  const [event] = generateTicketEvents({ seed: parity.seed, startMs: parity.start_ms, spacingMs: parity.spacing_ms, firstIndex: parity.indices[i]!, count: 1 });
  const output = await session.run({ features: new Tensor('float32', Float32Array.from(ticketTriageModel.features(event!.eventType, event!.payload)), [1, width]) });
  const row = output['probabilities']!.data as Float32Array;
  parity.probabilities[i]!.forEach((p, c) => {
    worst = Math.max(worst, Math.abs(p - row[c]!));
  });
}
console.log(`parity: largest |onnxruntime-node − scikit-learn| over ${parity.indices.length} held-out events: ${worst.toExponential(2)}`);
await session.release();
