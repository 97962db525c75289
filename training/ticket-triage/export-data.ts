/**
 * Writes the ticket-triage training data: generated events, their features as
 * computed by the serving code itself (`ticketTriage.model.features`, on the
 * validated payload, the form the score stage sees), the monitored values, and
 * the ground-truth category. Python reads it as it is and never recomputes a
 * feature, so training and serving cannot drift apart.
 *
 * The hashed vectors are sparse, so the format is CSR, little-endian, in
 * `<out>/`:
 *   indptr.u32   rows + 1 offsets into the two arrays below
 *   indices.u16  bucket of each non-zero value (dims ≤ 65 536)
 *   values.f32   the non-zero values, the very float32s the ONNX model is fed
 *   rows.csv     index, event_type, category, drawn_from, occurred_at_ms, then
 *                the monitored values (MONITORED_NAMES) of each row
 *   meta.json    how it was generated (seed, spacing, feature spec, classes…)
 *
 *   node training/ticket-triage/export-data.ts --seed 1 --count 60000 --out training/ticket-triage/data
 *
 * `--dims` and `--char-weight` only serve to measure other recipes (see
 * README.md); a model trained on anything but the serving recipe
 * (FEATURE_SPEC, recorded in meta.json and the card) is refused by the tests.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  FEATURE_CONFIG,
  FEATURE_DIMS,
  featureNames,
  featureSpec,
  hashText,
  featureText,
  MONITORED_NAMES,
  monitoredOf,
  ticketTriageModel,
} from '../../pipelines/ticket-triage/features.ts';
import { generateTicketEvents } from '../../pipelines/ticket-triage/generator.ts';
import { CATEGORIES } from '../../pipelines/ticket-triage/types.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    count: { type: 'string', default: '60000' },
    start: { type: 'string', default: '2026-08-01T00:00:00Z' },
    'spacing-ms': { type: 'string', default: '60000' },
    dims: { type: 'string', default: String(FEATURE_DIMS) },
    'char-weight': { type: 'string', default: String(FEATURE_CONFIG.charWeight) },
    out: { type: 'string', default: 'training/ticket-triage/data' },
  },
  strict: true,
});

function integer(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`--${name} must be an integer, got '${text}'`);
  return value;
}

/** Buffers typed-array chunks into a stream, honouring backpressure. */
async function write(out: WriteStream, chunk: ArrayBufferView | string): Promise<void> {
  const data = typeof chunk === 'string' ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (!out.write(data)) await once(out, 'drain');
}

async function close(out: WriteStream): Promise<void> {
  out.end();
  await once(out, 'finish');
}

async function main(): Promise<void> {
  const seed = integer('seed', values.seed);
  const count = integer('count', values.count);
  const spacingMs = integer('spacing-ms', values['spacing-ms']);
  const dims = integer('dims', values.dims);
  const startMs = Date.parse(values.start);
  if (Number.isNaN(startMs)) throw new Error(`--start must be an RFC 3339 timestamp, got '${values.start}'`);
  if (dims > 65_536 || !Number.isInteger(Math.log2(dims))) throw new Error(`--dims must be a power of two up to 65536, got ${dims}`);
  const charWeight = Number(values['char-weight']);
  if (!(Number.isFinite(charWeight) && charWeight >= 0)) throw new Error(`--char-weight must be a number >= 0, got '${values['char-weight']}'`);
  const config = { ...FEATURE_CONFIG, dims, charWeight };
  const serving = featureSpec(config) === featureSpec();

  await mkdir(values.out, { recursive: true });
  const indptr = createWriteStream(join(values.out, 'indptr.u32'));
  const indices = createWriteStream(join(values.out, 'indices.u16'));
  const weights = createWriteStream(join(values.out, 'values.f32'));
  const rows = createWriteStream(join(values.out, 'rows.csv'));
  await write(rows, `${['index', 'event_type', 'category', 'drawn_from', 'occurred_at_ms', ...MONITORED_NAMES].join(',')}\n`);

  let offset = 0;
  await write(indptr, Uint32Array.of(0));
  const categories: Record<string, number> = {};
  let featureMicros = 0;
  for (const event of generateTicketEvents({ seed, count, startMs, spacingMs })) {
    const started = performance.now();
    let vector: ArrayLike<number>;
    let monitored: number[];
    if (serving) {
      // Exactly the calls the score stage makes.
      vector = ticketTriageModel.features(event.eventType, event.payload);
      monitored = ticketTriageModel.monitored(event.eventType, event.payload, vector);
    } else {
      const hashed = hashText(featureText(event.payload), config);
      vector = hashed.vector;
      monitored = monitoredOf(event.payload, hashed.tokens);
    }
    featureMicros += (performance.now() - started) * 1_000;
    const nonZero: number[] = [];
    for (let i = 0; i < vector.length; i++) if (vector[i] !== 0) nonZero.push(i);
    await write(indices, Uint16Array.from(nonZero));
    await write(weights, Float32Array.from(nonZero, (i) => vector[i]!));
    offset += nonZero.length;
    await write(indptr, Uint32Array.of(offset));
    await write(rows, `${[event.index, event.eventType, event.category, event.drawnFrom, event.occurredAtMs, ...monitored].join(',')}\n`);
    categories[event.category] = (categories[event.category] ?? 0) + 1;
  }
  await Promise.all([indptr, indices, weights, rows].map(close));

  const meta = {
    generator: 'pipelines/ticket-triage/generator.ts',
    exporter: 'training/ticket-triage/export-data.ts',
    seed,
    count,
    startMs,
    spacingMs,
    dims,
    nonZeros: offset,
    featureSpec: featureSpec(config),
    features: featureNames(dims),
    monitored: MONITORED_NAMES,
    classes: CATEGORIES,
    categories,
    featureMicrosPerRow: featureMicros / Math.max(1, count),
  };
  await writeFile(join(values.out, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  process.stderr.write(
    `wrote ${count} rows, ${offset} non-zeros (${(offset / Math.max(1, count)).toFixed(1)} a row), ${(featureMicros / Math.max(1, count)).toFixed(1)} µs of features a row, to ${values.out}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`export-data failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
