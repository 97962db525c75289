/**
 * Inference time of the active signup-risk model through the onnxruntime
 * adapter (one thread, no spinning), per batch size: median and p99 of many
 * runs after a warm-up, plus the cost of computing the features. Prints
 * figures; asserts nothing.
 *
 *   node bench/onnx.ts [--version <v>] [--runs 500] [--json]
 */
import { parseArgs } from 'node:util';
import { loadModel, resolveModelDir } from '../connectors/onnx/model.ts';
import { generateSignups } from '../pipelines/signup-risk/generator.ts';
import { featuresOf } from '../pipelines/signup-risk/features.ts';
import { signupRisk } from '../pipelines/signup-risk/index.ts';
import { positiveInteger } from './args.ts';

const { values } = parseArgs({
  options: {
    version: { type: 'string' },
    runs: { type: 'string', default: '500' },
    json: { type: 'boolean', default: false },
  },
});
const runs = positiveInteger('runs', values.runs);

const BATCH_SIZES = [1, 32, 64, 256];
const WARMUP_RUNS = 50;

const quantile = (sorted: readonly number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

async function timeMs(run: () => unknown): Promise<{ medianMs: number; p99Ms: number }> {
  for (let i = 0; i < WARMUP_RUNS; i++) await run();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    await run();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return { medianMs: quantile(times, 0.5), p99Ms: quantile(times, 0.99) };
}

const adapter = signupRisk.model;
const model = await loadModel(await resolveModelDir(signupRisk.kind, values.version), {
  featureNames: adapter.featureNames,
  classes: adapter.output.classes,
  monitoredNames: adapter.monitoredNames,
});
try {
  const payloads = [...generateSignups({ seed: 9_001, count: Math.max(...BATCH_SIZES), startMs: 0 })].map((e) => e.payload);
  const results = [];
  for (const size of BATCH_SIZES) {
    const batch = payloads.slice(0, size);
    const rows = batch.map(featuresOf);
    const predict = await timeMs(() => model.predict(rows));
    const features = await timeMs(() => batch.map(featuresOf));
    results.push({
      batch: size,
      predictMedianMs: predict.medianMs,
      predictP99Ms: predict.p99Ms,
      predictMedianUsPerRow: (predict.medianMs * 1000) / size,
      featuresMedianMs: features.medianMs,
    });
  }
  const report = { model: model.version, algorithm: model.card.algorithm, node: process.version, runs, results };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    process.stdout.write(`model ${report.model} (${report.algorithm}), node ${report.node}, ${runs} runs per size, 1 thread\n`);
    process.stdout.write('batch  predict median ms  predict p99 ms  µs/row  featuresOf median ms\n');
    for (const r of results) {
      process.stdout.write(
        `${String(r.batch).padStart(5)}  ${r.predictMedianMs.toFixed(3).padStart(17)}  ${r.predictP99Ms.toFixed(3).padStart(14)}  ${r.predictMedianUsPerRow.toFixed(1).padStart(6)}  ${r.featuresMedianMs.toFixed(4).padStart(20)}\n`,
      );
    }
  }
} finally {
  await model.close();
}
