import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadModel, MODELS_ROOT, resolveModelDir, type ScoringModel } from '../../connectors/onnx/model.ts';
import { generateSignups } from '../../pipelines/signup-risk/generator.ts';
import { isSluiceError } from '../../lib/errors.ts';
import { FEATURE_NAMES, featuresOf } from '../../pipelines/signup-risk/features.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import { lowRiskPayload } from '../fixtures.ts';
import type { SignupPayload } from '../../pipelines/signup-risk/types.ts';

/** Area under the ROC curve by the rank-sum formula, ties getting their average rank. */
function auc(scores: ArrayLike<number>, labels: ReadonlyArray<0 | 1>): number {
  const order = Array.from(labels.keys()).sort((a, b) => scores[a]! - scores[b]!);
  const ranks = new Float64Array(order.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]!] === scores[order[i]!]) j++;
    for (let k = i; k <= j; k++) ranks[order[k]!] = (i + j) / 2 + 1;
    i = j + 1;
  }
  const positives = labels.filter((l) => l === 1).length;
  const negatives = labels.length - positives;
  let rankSum = 0;
  labels.forEach((label, i) => {
    if (label === 1) rankSum += ranks[i]!;
  });
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** What signup-risk expects of its model, as the score stage asks for it. */
const SIGNATURE = {
  featureNames: signupRisk.model.featureNames,
  classes: signupRisk.model.output.classes,
  monitoredNames: signupRisk.model.monitoredNames,
};
const CLASSES = SIGNATURE.classes.length;
const POSITIVE = signupRisk.model.output.kind === 'binary' ? signupRisk.model.output.positiveIndex : -1;

/** P(risky) of each row of a prediction (class probabilities, row-major), after checking its shape. */
function positives(probabilities: Float32Array, rows: number): number[] {
  assert.equal(probabilities.length, rows * CLASSES, `${rows} rows of ${CLASSES} class probabilities`);
  return Array.from({ length: rows }, (_, r) => probabilities[r * CLASSES + POSITIVE]!);
}

const expectLoadFailure = async (promise: Promise<unknown>) => {
  await assert.rejects(promise, (error: unknown) => isSluiceError(error, 'MODEL_LOAD_FAILED'));
};

describe('auc (test helper)', () => {
  it('is 1 for a perfect ranking, 0 for a reversed one and 0.5 for all ties', () => {
    assert.equal(auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]), 1);
    assert.equal(auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]), 0);
    assert.equal(auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]), 0.5);
  });
});

describe('the shipped signup-risk model', () => {
  let dir: string;
  let model: ScoringModel;
  before(async () => {
    dir = await resolveModelDir('signup-risk');
    model = await loadModel(dir, SIGNATURE);
  });
  after(async () => {
    await model?.close();
  });

  it('is the version named in ACTIVE, trained on the current features', async () => {
    const active = (await readFile(join(MODELS_ROOT, 'signup-risk', 'ACTIVE'), 'utf8')).trim();
    assert.equal(basename(dir), active);
    assert.equal(model.version, active);
    assert.deepEqual(model.featureNames, FEATURE_NAMES);
    assert.deepEqual(model.classes, ['legit', 'risky']);
    assert.equal(POSITIVE, 1);
    assert.equal(model.card.onnx.positive_class_index, POSITIVE, 'the card and the pipeline agree on the positive class');
    assert.equal(model.card.pipeline, 'signup-risk');
  });

  it('ranks fresh events (another seed than training) about as well as on its own held-out data', async () => {
    assert.notEqual(model.card.data.seed, 4242);
    const events = [...generateSignups({ seed: 4242, count: 10_000, startMs: Date.UTC(2026, 11, 1) })];
    const probabilities = await model.predict(events.map((e) => featuresOf(e.payload)));
    const scores = positives(probabilities, events.length);
    assert.ok(probabilities.every((p) => p >= 0 && p <= 1));
    for (let r = 0; r < events.length; r++) {
      const sum = probabilities[r * CLASSES]! + probabilities[r * CLASSES + 1]!;
      assert.ok(Math.abs(sum - 1) < 1e-5, `row ${r}: probabilities sum to ${sum}`);
    }
    const labels = events.map((e) => e.label);
    const modelAuc = auc(scores, labels);
    // ~1000 positives: the AUC's standard error is under 0.01, so 0.04 below the card's figure is a real regression.
    const floor = model.card.metrics.holdout.auc - 0.04;
    assert.ok(modelAuc >= floor, `AUC ${modelAuc.toFixed(4)} < ${floor.toFixed(4)}`);
    assert.ok(modelAuc >= auc(events.map((e) => e.risk), labels) - 0.03, 'far below the ground-truth ceiling');
    const meanScore = scores.reduce((a, b) => a + b, 0) / scores.length;
    const meanRisk = events.reduce((a, e) => a + e.risk, 0) / events.length;
    assert.ok(Math.abs(meanScore - meanRisk) < 0.02, `calibration: mean score ${meanScore}, mean risk ${meanRisk}`);
  });

  it('scores a high-risk profile above a low-risk one', async () => {
    const low = lowRiskPayload({ user_id: 'usr_low', email_domain_age_days: 5000 });
    const high: SignupPayload = {
      ...low,
      user_id: 'usr_high',
      email: 'xk48213977@qzvmx.top',
      email_domain: 'qzvmx.top',
      ip_country: 'VN',
      signup_channel: 'api',
      plan: 'free',
      email_domain_age_days: 2,
      signups_from_ip_24h: 45,
      referral_code: null,
    };
    const [lowScore, highScore] = positives(await model.predict([featuresOf(low), featuresOf(high)]), 2);
    assert.ok(lowScore! < 0.1, `low ${lowScore}`);
    assert.ok(highScore! > 0.9, `high ${highScore}`);
  });

  it('keeps rows in order: a batch scores like its rows one by one', async () => {
    const rows = [...generateSignups({ seed: 77, count: 40, startMs: 0 })].map((e) => featuresOf(e.payload));
    const batch = await model.predict(rows);
    const single = await Promise.all(rows.map(async (row) => Array.from(await model.predict([row]))));
    assert.ok(single.every((probabilities) => probabilities.length === CLASSES));
    assert.deepEqual(Array.from(batch), single.flat());
    assert.ok(new Set(single.map((probabilities) => probabilities[POSITIVE])).size > 10, 'rows should not all score the same');
    assert.deepEqual(Array.from(await model.predict(rows.toReversed())), single.toReversed().flat());
  });

  it('rejects rows of the wrong width or with non-finite values, and scores no rows as none', async () => {
    assert.equal((await model.predict([])).length, 0);
    await assert.rejects(model.predict([[1, 2, 3]]), RangeError);
    const row = featuresOf((generateSignups({ seed: 1, count: 1, startMs: 0 }).next().value as { payload: SignupPayload }).payload);
    row[0] = Number.NaN;
    await assert.rejects(model.predict([row]), RangeError);
  });
});

describe('loadModel refuses what it cannot trust', () => {
  let scratch: string;
  let active: string;
  before(async () => {
    active = await resolveModelDir('signup-risk');
    scratch = await mkdtemp(join(tmpdir(), 'sluice-model-'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  /** A copy of the active version under <scratch>/<case>/signup-risk/<version>. */
  async function copy(name: string): Promise<string> {
    const target = join(scratch, name, 'signup-risk', basename(active));
    await cp(active, target, { recursive: true });
    return target;
  }
  async function editCard(dir: string, edit: (card: Record<string, unknown>) => void): Promise<void> {
    const path = join(dir, 'card.json');
    const card = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    edit(card);
    await writeFile(path, JSON.stringify(card));
  }

  it('loads an untouched copy (the cases below fail for their own reason)', async () => {
    const model = await loadModel(await copy('untouched'), SIGNATURE);
    await model.close();
    await assert.rejects(model.predict([featuresOf({ user_id: 'u', email: 'a@b.co', email_domain: 'b.co', country: 'DE', ip_country: null, signup_channel: 'web', plan: 'free', email_domain_age_days: null, signups_from_ip_24h: null, referral_code: null })]));
  });

  it('refuses a card whose features differ in order from the code', async () => {
    const dir = await copy('swapped');
    await editCard(dir, (card) => {
      const features = card['features'] as string[];
      [features[0], features[1]] = [features[1]!, features[0]!];
    });
    await expectLoadFailure(loadModel(dir, SIGNATURE));
  });

  it('refuses a model when the code computes other features than the card lists', async () => {
    await expectLoadFailure(loadModel(active, { ...SIGNATURE, featureNames: [...FEATURE_NAMES, 'email_local_length'] }));
    await expectLoadFailure(loadModel(active, { ...SIGNATURE, featureNames: FEATURE_NAMES.slice(1) }));
  });

  it('refuses a model whose card lists other output classes than the pipeline reads', async () => {
    const dir = await copy('classes');
    await editCard(dir, (card) => {
      (card['onnx'] as Record<string, unknown>)['classes'] = ['risky', 'legit'];
    });
    await expectLoadFailure(loadModel(dir, SIGNATURE));
    await editCard(dir, (card) => {
      (card['onnx'] as Record<string, unknown>)['classes'] = ['legit', 'risky'];
    });
    await (await loadModel(dir, SIGNATURE)).close();
  });

  it('refuses a card without a reference distribution for a monitored feature', async () => {
    await expectLoadFailure(loadModel(active, { ...SIGNATURE, monitoredNames: [...FEATURE_NAMES, 'email_local_length'] }));
  });

  it('refuses a missing or altered model file, and a missing or malformed card', async () => {
    const noModel = await copy('no-model');
    await rm(join(noModel, 'model.onnx'));
    await expectLoadFailure(loadModel(noModel, SIGNATURE));

    const altered = await copy('altered');
    const bytes = await readFile(join(altered, 'model.onnx'));
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(join(altered, 'model.onnx'), bytes);
    await expectLoadFailure(loadModel(altered, SIGNATURE));

    const noCard = await copy('no-card');
    await rm(join(noCard, 'card.json'));
    await expectLoadFailure(loadModel(noCard, SIGNATURE));

    const badCard = await copy('bad-card');
    await editCard(badCard, (card) => {
      delete card['reference'];
    });
    await expectLoadFailure(loadModel(badCard, SIGNATURE));

    const renamed = join(scratch, 'renamed', 'signup-risk-1999-01-01.1');
    await cp(active, renamed, { recursive: true });
    await expectLoadFailure(loadModel(renamed, SIGNATURE));
  });

  it('resolves ACTIVE, refusing unknown versions, path tricks and a missing ACTIVE file', async () => {
    const root = join(scratch, 'resolve');
    await cp(active, join(root, 'signup-risk', basename(active)), { recursive: true });
    await expectLoadFailure(resolveModelDir('signup-risk', undefined, root));
    await writeFile(join(root, 'signup-risk', 'ACTIVE'), `${basename(active)}\n`);
    assert.equal(await resolveModelDir('signup-risk', undefined, root), join(root, 'signup-risk', basename(active)));
    assert.equal(await resolveModelDir('signup-risk', basename(active), root), join(root, 'signup-risk', basename(active)));
    await expectLoadFailure(resolveModelDir('signup-risk', 'signup-risk-1999-01-01.1', root));
    await expectLoadFailure(resolveModelDir('signup-risk', '../signup-risk', root));
    await expectLoadFailure(resolveModelDir('../etc', undefined, root));
  });
});
