import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { readCard } from '../../connectors/onnx/card.ts';
import { FEATURE_NAMES, FEATURE_SPEC, MONITORED_NAMES, ticketTriageModel } from '../../pipelines/ticket-triage/features.ts';
import { type GeneratedTicketEvent, generateTicketEvents } from '../../pipelines/ticket-triage/generator.ts';
import { CATEGORIES } from '../../pipelines/ticket-triage/types.ts';

const MODELS_DIR = fileURLToPath(new URL('../../models/ticket-triage/', import.meta.url));
const version = readFileSync(join(MODELS_DIR, 'ACTIVE'), 'utf8').trim();
const dir = join(MODELS_DIR, version);
const card = JSON.parse(readFileSync(join(dir, 'card.json'), 'utf8'));
const modelBytes = readFileSync(join(dir, card.onnx.file));

interface ParityFixture {
  seed: number;
  start_ms: number;
  spacing_ms: number;
  feature_spec: string;
  classes: string[];
  indices: number[];
  probabilities: number[][];
}
const parity: ParityFixture = JSON.parse(readFileSync(join(dir, 'parity.json'), 'utf8'));

/** Macro-averaged F1 of predicted against actual class indices. */
function macroF1(actual: number[], predicted: number[], classes: number): number {
  let sum = 0;
  for (let c = 0; c < classes; c++) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    actual.forEach((a, i) => {
      if (predicted[i] === c && a === c) tp++;
      else if (predicted[i] === c) fp++;
      else if (a === c) fn++;
    });
    sum += tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  }
  return sum / classes;
}

const argmax = (row: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
};

describe('the shipped ticket-triage model card', () => {
  it('is the ACTIVE version, for this pipeline, trained on the features this code computes', () => {
    assert.equal(card.card_version, 1);
    assert.equal(card.pipeline, 'ticket-triage');
    assert.equal(card.version, version);
    assert.deepEqual(card.features, FEATURE_NAMES);
    assert.equal(card.feature_spec, FEATURE_SPEC, 'the feature recipe changed since training: retrain (training/ticket-triage/README.md)');
    assert.equal(parity.feature_spec, FEATURE_SPEC);
  });

  it('describes its file and the order of its output columns', () => {
    assert.equal(createHash('sha256').update(modelBytes).digest('hex'), card.onnx.sha256);
    assert.ok(modelBytes.length < 2_000_000, `${modelBytes.length} bytes`);
    assert.equal(card.onnx.input, 'features');
    assert.equal(card.onnx.output, 'probabilities');
    assert.equal(card.onnx.positive_class_index, 0);
    assert.deepEqual(card.onnx.classes, [...CATEGORIES]);
    assert.deepEqual(card.onnx.classes, [...ticketTriageModel.output.classes]);
  });

  it('is accepted by the card reader the score stage uses', async () => {
    const read = await readCard(dir, ticketTriageModel.monitoredNames);
    assert.equal(read.version, version);
  });

  it('keeps reference distributions for exactly the monitored names, and for the top-class score', () => {
    assert.deepEqual(Object.keys(card.reference.features).sort(), [...MONITORED_NAMES].sort());
    for (const distribution of [...Object.values(card.reference.features), card.reference.score] as Array<{ edges: number[]; counts: number[]; proportions: number[] }>) {
      assert.equal(distribution.counts.length, distribution.edges.length + 1);
      assert.equal(distribution.proportions.length, distribution.counts.length);
      assert.equal(distribution.counts.reduce((a, b) => a + b, 0), card.data.holdout.rows);
    }
    assert.deepEqual(Object.keys(card.reference.category_mix.actual), [...CATEGORIES]);
  });

  it('records held-out quality well above chance and below perfect, with its confusion matrix', () => {
    const holdout = card.metrics.holdout;
    for (const value of Object.values(holdout)) assert.equal(typeof value, 'number');
    assert.ok(holdout.macro_f1 > 0.85 && holdout.macro_f1 < 0.97, `macro-F1 ${holdout.macro_f1}`);
    assert.ok(holdout.auc > 0.9 && holdout.auc <= 1);
    const matrix = card.metrics.confusion_matrix;
    assert.deepEqual(matrix.labels, [...CATEGORIES]);
    assert.equal(matrix.counts.length, CATEGORIES.length);
    assert.equal(matrix.counts.flat().reduce((a: number, b: number) => a + b, 0), card.data.holdout.rows);
    assert.equal(card.data.holdout.rows + card.data.training.rows, card.data.rows);
  });
});

describe('the shipped ticket-triage model under onnxruntime-node', () => {
  let session: InferenceSession;
  let events: GeneratedTicketEvent[];
  let probabilities: Float32Array[];

  before(async () => {
    session = await InferenceSession.create(modelBytes, { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1 });
    // The held-out events, regenerated from (seed, index) alone.
    events = parity.indices.map((index) => {
      const [event] = generateTicketEvents({ seed: parity.seed, startMs: parity.start_ms, spacingMs: parity.spacing_ms, firstIndex: index, count: 1 });
      return event!;
    });
    probabilities = [];
    const width = FEATURE_NAMES.length;
    const batch = 250;
    for (let start = 0; start < events.length; start += batch) {
      const rows = events.slice(start, start + batch);
      const data = new Float32Array(rows.length * width);
      rows.forEach((event, r) => {
        data.set(ticketTriageModel.features(event.eventType, event.payload), r * width);
      });
      const output = await session.run({ features: new Tensor('float32', data, [rows.length, width]) }, ['probabilities']);
      const tensor = output['probabilities']!;
      assert.deepEqual(tensor.dims, [rows.length, CATEGORIES.length]);
      const values = tensor.data as Float32Array;
      for (let r = 0; r < rows.length; r++) probabilities.push(values.slice(r * CATEGORIES.length, (r + 1) * CATEGORIES.length));
    }
  });
  after(async () => {
    await session?.release();
  });

  it('takes input `features` and gives output `probabilities`', () => {
    assert.ok(session.inputNames.includes('features'));
    assert.ok(session.outputNames.includes('probabilities'));
  });

  it('matches scikit-learn within 1e-5 on at least 1 000 held-out events, from the TypeScript features', () => {
    assert.ok(parity.indices.length >= 1_000, `${parity.indices.length} parity rows`);
    assert.equal(parity.probabilities.length, parity.indices.length);
    assert.equal(probabilities.length, parity.indices.length);
    assert.deepEqual(parity.classes, [...CATEGORIES]);
    let worst = 0;
    parity.probabilities.forEach((expected, r) => {
      assert.equal(expected.length, CATEGORIES.length);
      for (let c = 0; c < CATEGORIES.length; c++) worst = Math.max(worst, Math.abs(probabilities[r]![c]! - expected[c]!));
    });
    assert.ok(worst < 1e-5, `largest difference ${worst}`);
    assert.ok(events.some((e) => e.eventType === 'document_uploaded') && events.some((e) => e.eventType === 'jira_ticket_created'));
  });

  it('classifies the held-out events about as well as its card says', () => {
    const actual = events.map((e) => CATEGORIES.indexOf(e.category));
    const predicted = probabilities.map(argmax);
    const f1 = macroF1(actual, predicted, CATEGORIES.length);
    assert.ok(Math.abs(f1 - card.metrics.holdout.macro_f1) < 0.04, `macro-F1 ${f1} on the parity rows, card ${card.metrics.holdout.macro_f1}`);
    for (const row of probabilities) assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5);
  });
});
