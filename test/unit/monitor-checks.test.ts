/**
 * The monitor's verdicts on hand-made windows, against the champion card of
 * signup-risk as it ships: a window shaped like the reference passes, a
 * shifted feature, a field gone missing, a collapsed score and a one-decision
 * mix are each flagged under the subject an operator would look for, and a
 * thin window gets no verdict at all.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { MODELS_ROOT } from '../../connectors/models/store.ts';
import { type ModelCard, readCard } from '../../connectors/onnx/card.ts';
import { type CheckResult, evaluateFlow, evaluateLag, evaluateWindow, type FlowWindow, type Histogram, MONITOR_DEFAULTS, type WindowStats } from '../../monitor/checks.ts';
import { decisionMixSql, floatLiteral, histogramSql } from '../../monitor/queries.ts';
import { pipelineByName } from '../../pipelines/registry.ts';

const pipeline = pipelineByName('signup-risk');
const names = pipeline.plugin.model.monitoredNames;
let card: ModelCard;

before(async () => {
  const version = (await readFile(join(MODELS_ROOT, 'signup-risk', 'ACTIVE'), 'utf8')).trim();
  card = await readCard(join(MODELS_ROOT, 'signup-risk', version), names);
});

/** A histogram with the reference's shape, `n` events, values at the reference mean and spread. */
function referenceLike(name: string | 'score', n: number): Histogram {
  const ref = name === 'score' ? card.reference.score : card.reference.features[name]!;
  const counts = ref.proportions.map((p) => Math.round(p * n));
  const total = counts.reduce((a, b) => a + b, 0);
  return { counts, outOfRange: 0, sum: ref.mean * total, sumSquares: total * (ref.std ** 2 + ref.mean ** 2) };
}

function window(n: number, change: (stats: { features: Map<string, Histogram>; score: Histogram; decisions: Map<string, number> }) => void = () => {}): WindowStats {
  const stats = {
    features: new Map(names.map((name) => [name, referenceLike(name, n)])),
    score: referenceLike('score', n),
    decisions: new Map([['approve', Math.round(n * 0.94)], ['review', Math.round(n * 0.05)], ['block', Math.round(n * 0.01)]]),
  };
  change(stats);
  return { events: n, ...stats };
}

const judge = (stats: WindowStats) => evaluateWindow({ card, monitoredNames: names, stats, settings: pipeline.plugin.monitoring });
const breaches = (results: CheckResult[]) => results.filter((r) => r.status === 'breach').map((r) => `${r.check}:${r.subject}`);

describe('monitor checks', () => {
  it('a window shaped like the reference breaches nothing, and every check reports a value', () => {
    const results = judge(window(2000));
    assert.deepEqual(breaches(results), []);
    assert.ok(results.every((r) => r.status === 'ok'), JSON.stringify(results.filter((r) => r.status !== 'ok')));
    for (const name of names) assert.ok(results.some((r) => r.check === 'feature_drift' && r.subject === name), name);
    assert.ok(results.find((r) => r.check === 'feature_drift')!.value < 0.01);
    assert.deepEqual(
      [...new Set(results.map((r) => r.check))],
      ['feature_drift', 'score_drift', 'data_quality', 'output_collapse'],
    );
  });

  it('a shifted feature is feature_drift on that feature, with the PSI and the KS test beside it', () => {
    const results = judge(
      window(2000, (s) => {
        // Every signup from an IP with many signups: all mass in the top bin of signups_from_ip_24h_log1p.
        const h = s.features.get('signups_from_ip_24h_log1p')!;
        h.counts = h.counts.map((_, i) => (i === h.counts.length - 1 ? 2000 : 0));
      }),
    );
    assert.deepEqual(breaches(results), ['feature_drift:signups_from_ip_24h_log1p']);
    const drift = results.find((r) => r.subject === 'signups_from_ip_24h_log1p' && r.check === 'feature_drift')!;
    assert.ok(drift.value > 1, `psi ${drift.value}`);
    assert.equal(drift.threshold, MONITOR_DEFAULTS.psiThreshold);
    assert.match(drift.detail, /ks_d=0\.92\d+ ks_p=0\.00/);
  });

  it('a shifted indicator is judged by PSI with the chi-squared test beside it (its bins are categories)', () => {
    const results = judge(
      window(2000, (s) => {
        // Every signup's IP country differs from its declared one.
        s.features.get('ip_country_mismatch')!.counts = [0, 2000];
      }),
    );
    const drift = results.find((r) => r.subject === 'ip_country_mismatch' && r.check === 'feature_drift')!;
    assert.equal(drift.status, 'breach');
    assert.match(drift.detail, /chi2=\d+\.\d\d df=1 chi2_p=0/);
    assert.doesNotMatch(drift.detail, /ks_/);
    const stationary = judge(window(2000)).find((r) => r.subject === 'plan_free' && r.check === 'feature_drift')!;
    assert.match(stationary.detail, /df=1 chi2_p=(0\.[1-9]|1)/, `the reference's own shape is no evidence of a shift: ${stationary.detail}`);
  });

  it('a per-feature threshold in the manifest overrides the default', () => {
    const shifted = window(2000, (s) => {
      // Every signup on the free plan.
      s.features.get('plan_free')!.counts = [0, 2000];
    });
    const defaults = evaluateWindow({ card, monitoredNames: names, stats: shifted, settings: {} });
    const lenient = evaluateWindow({ card, monitoredNames: names, stats: shifted, settings: { psiThresholds: { plan_free: 5 } } });
    const of = (results: CheckResult[]) => results.find((r) => r.check === 'feature_drift' && r.subject === 'plan_free')!;
    assert.equal(of(defaults).status, 'breach');
    assert.equal(of(lenient).status, 'ok');
    assert.equal(of(lenient).threshold, 5);
    assert.equal(of(lenient).value, of(defaults).value);
  });

  it('ip_country missing from every event is data_quality on ip_country', () => {
    const results = judge(
      window(2000, (s) => {
        s.features.set('ip_country_missing', { counts: [0, 2000], outOfRange: 0, sum: 2000, sumSquares: 2000 });
      }),
    );
    const quality = results.find((r) => r.check === 'data_quality' && r.subject === 'ip_country')!;
    assert.equal(quality.status, 'breach');
    assert.equal(quality.value, 1);
    assert.ok(quality.threshold < 0.5, `threshold ${quality.threshold} is the reference null rate plus a margin`);
    assert.ok(breaches(results).includes('feature_drift:ip_country_missing'));
  });

  it('values outside the reference range are data_quality on the feature', () => {
    const results = judge(
      window(2000, (s) => {
        s.features.get('email_local_digits')!.outOfRange = 100;
      }),
    );
    assert.deepEqual(breaches(results), ['data_quality:email_local_digits']);
    assert.equal(results.find((r) => r.check === 'data_quality' && r.subject === 'email_local_digits')!.value, 0.05);
  });

  it('a model that scores everything alike is output_collapse on score, and score_drift', () => {
    const results = judge(
      window(2000, (s) => {
        const bin = Math.floor(s.score.counts.length / 2);
        s.score = { counts: s.score.counts.map((_, i) => (i === bin ? 2000 : 0)), outOfRange: 0, sum: 0.3 * 2000, sumSquares: 0.09 * 2000 };
      }),
    );
    assert.deepEqual(breaches(results), ['score_drift:score', 'output_collapse:score']);
    assert.equal(results.find((r) => r.check === 'output_collapse' && r.subject === 'score')!.value, 0);
  });

  it('one decision for (almost) every event is output_collapse on decision', () => {
    const results = judge(window(2000, (s) => void s.decisions.set('approve', 1999).set('review', 1).set('block', 0)));
    assert.deepEqual(breaches(results), ['output_collapse:decision']);
    assert.match(results.find((r) => r.subject === 'decision')!.detail, /approve/);
  });

  it('gives no verdict on a window below the minimum sample size, however shifted', () => {
    const results = judge(
      window(50, (s) => {
        const h = s.features.get('signups_from_ip_24h_log1p')!;
        h.counts = h.counts.map((_, i) => (i === h.counts.length - 1 ? 50 : 0));
      }),
    );
    assert.deepEqual(breaches(results), []);
    assert.ok(results.every((r) => r.status === 'insufficient'));
    assert.ok(results.find((r) => r.subject === 'signups_from_ip_24h_log1p')!.value > 1, 'the value is still recorded');
  });

  it('its SQL inlines floats and stays within what ClickHouse 18.16 runs', () => {
    assert.deepEqual([-1, 0.5, 1e-7, 3].map(floatLiteral), ['-1.0', '0.5', '1e-7', '3.0']);
    const w = { startMs: 1_764_547_200_000, lengthMs: 60_000 };
    const sql = [
      histogramSql({ pipeline: "it's", modelVersion: 'v1', window: w, references: [{ name: 'f', reference: card.reference.score }] }),
      decisionMixSql({ pipeline: 'p', window: w }),
    ].join('\n');
    for (const forbidden of [/DateTime64/, /\bMap\(/, /LowCardinality/, /\bTTL\b/, /\bOVER\s*\(/i, /toStartOfInterval/, /\{\w+:\w+\}/]) assert.doesNotMatch(sql, forbidden);
    assert.match(sql, /pipeline = 'it\\'s'/);
    assert.match(sql, /occurred_at_ms >= 1764547200000 AND occurred_at_ms < 1764547260000/);
  });
});

/** A window in which `inputs` records flowed through every stage, `dead` of them dead-lettered by validate (by reason). */
function flow(startMs: number, inputs: number, dead: Record<string, number> = {}, stopped: string[] = []): FlowWindow {
  const lost = Object.values(dead).reduce((a, b) => a + b, 0);
  const passed: Record<string, number> = {};
  for (const stage of ['validate', 'score', 'decide']) passed[stage] = stopped.includes(stage) || inputs === 0 ? 0 : inputs - lost;
  return { startMs, inputs, passed, deadLetters: dead };
}

const history = (inputs: number[], dead: Record<string, number> = {}) => inputs.map((n, i) => flow(i * 10_000, n, n > 0 ? dead : {}));
const flowBreaches = (results: CheckResult[]) => results.filter((r) => r.status === 'breach').map((r) => `${r.check}:${r.subject}`);
const topic = 'signup-risk.raw';

describe('monitor checks on the pipeline\'s own history', () => {
  it('steady traffic breaches nothing', () => {
    const results = evaluateFlow({ topic, current: flow(100_000, 98, { MALFORMED_PAYLOAD: 1 }), history: history(Array(10).fill(100), { MALFORMED_PAYLOAD: 1 }) });
    assert.deepEqual(flowBreaches(results), []);
    assert.deepEqual(
      results.map((r) => `${r.check}:${r.subject}`),
      [`volume_drop:${topic}`, 'dead_letter_spike:all', 'dead_letter_spike:MALFORMED_PAYLOAD', 'stall:score', 'stall:decide'],
    );
  });

  it('input below half the median of the previous windows is volume_drop on the input topic', () => {
    // previous inputs 100 ×7, 80, 90, 300: median 100; 40 / 100 = 0.4 < 0.5
    const previous = history([100, 100, 80, 100, 100, 90, 100, 100, 300, 100]);
    const low = evaluateFlow({ topic, current: flow(100_000, 40), history: previous });
    assert.deepEqual(flowBreaches(low), [`volume_drop:${topic}`]);
    assert.equal(low[0]!.value, 0.4);
    assert.equal(low[0]!.threshold, 0.5);
    assert.equal(evaluateFlow({ topic, current: flow(100_000, 60), history: previous })[0]!.status, 'ok');
    // Only two windows with traffic before: no baseline yet, no verdict.
    assert.equal(evaluateFlow({ topic, current: flow(100_000, 1), history: history([0, 0, 0, 0, 0, 0, 0, 0, 100, 100]) })[0]!.status, 'insufficient');
  });

  it('30% malformed events is dead_letter_spike on the reason, and on all', () => {
    // baseline 1 per 100 = 0.01: threshold max(0.02, 5 × 0.01) = 0.05; 30 / 100 = 0.3
    const results = evaluateFlow({ topic, current: flow(100_000, 100, { MALFORMED_PAYLOAD: 30 }), history: history(Array(10).fill(100), { MALFORMED_PAYLOAD: 1 }) });
    assert.deepEqual(flowBreaches(results), ['dead_letter_spike:all', 'dead_letter_spike:MALFORMED_PAYLOAD']);
    const spike = results.find((r) => r.subject === 'MALFORMED_PAYLOAD')!;
    assert.equal(spike.value, 0.3);
    assert.equal(spike.threshold, 0.05);
    // A reason never seen before: its baseline is 0, the threshold the 2% floor.
    const fresh = evaluateFlow({ topic, current: flow(100_000, 100, { OVERSIZED: 3 }), history: history(Array(10).fill(100)) });
    assert.deepEqual(flowBreaches(fresh), ['dead_letter_spike:all', 'dead_letter_spike:OVERSIZED']);
    assert.equal(fresh.find((r) => r.subject === 'OVERSIZED')!.threshold, 0.02);
  });

  it('a stage that passed nothing on for two windows while its upstream flowed is a stall of that stage', () => {
    const previous = [...history(Array(9).fill(100)), flow(90_000, 100, {}, ['decide'])];
    const stalled = evaluateFlow({ topic, current: flow(100_000, 100, {}, ['decide']), history: previous });
    assert.deepEqual(flowBreaches(stalled), ['stall:decide']);
    // One window without output is not yet a stall.
    assert.deepEqual(flowBreaches(evaluateFlow({ topic, current: flow(100_000, 100, {}, ['decide']), history: history(Array(10).fill(100)) })), []);
    // No input at all is volume_drop, not a stall.
    const quiet = evaluateFlow({ topic, current: flow(100_000, 0), history: history(Array(10).fill(100)) });
    assert.deepEqual(flowBreaches(quiet), [`volume_drop:${topic}`]);
    assert.ok(quiet.filter((r) => r.check === 'stall').every((r) => r.status === 'insufficient'));
  });
});

describe('lag_growth', () => {
  const lags = (decide: number) => new Map([['validate', 0], ['score', 0], ['decide', decide]]);
  it('a lag that grew at each of the last three windows is lag_growth of that stage', () => {
    const results = evaluateLag(lags(400), [lags(100), lags(200), lags(300)]);
    assert.deepEqual(flowBreaches(results), ['lag_growth:decide']);
    const decide = results.find((r) => r.subject === 'decide')!;
    assert.equal(decide.value, 400);
    assert.equal(decide.threshold, 100);
    assert.match(decide.detail, /100 → 200 → 300 → 400/);
    assert.deepEqual(results.map((r) => r.status), ['ok', 'ok', 'breach'], 'a lag that stays at 0 has not grown');
  });

  it('a few records in flight that happen to rise in a row are no growth', () => {
    const results = evaluateLag(lags(12), [lags(1), lags(4), lags(9)]);
    assert.deepEqual(flowBreaches(results), []);
    assert.equal(results.find((r) => r.subject === 'decide')!.status, 'ok');
    assert.deepEqual(flowBreaches(evaluateLag(lags(1 + MONITOR_DEFAULTS.lagGrowthMinRecords), [lags(1), lags(4), lags(9)])), ['lag_growth:decide']);
  });

  it('a lag that held still once, or a missing measurement, is no growth', () => {
    assert.deepEqual(flowBreaches(evaluateLag(lags(400), [lags(100), lags(300), lags(300)])), []);
    const gap = evaluateLag(lags(40), [undefined, lags(20), lags(30)]);
    assert.ok(gap.every((r) => r.status === 'insufficient'));
  });
});
