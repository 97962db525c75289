/** The score stage's logic, with scorers the test controls (the shipped model has tests of its own). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FEATURE_NAMES, featuresOf } from '../../pipelines/signup-risk/features.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import type { ScoredRecord, SignupPayload, ValidatedRecord } from '../../pipelines/signup-risk/types.ts';
import type { Outcome } from '../../processors/runtime/types.ts';
import { type ScoreContext, type Scorer, type ShadowedScoredRecord, type ShadowReport, scoreBatch } from '../../processors/score/transform.ts';
import { lowRiskPayload } from '../fixtures.ts';

const NOW = 1_764_000_000_000;

const record = (i: number): ValidatedRecord => ({
  event_id: `e-${i}`,
  event_type: 'user_signed_up',
  occurred_at: NOW - 1_000,
  source: 'web-signup',
  payload: lowRiskPayload({ user_id: `u-${i}`, signups_from_ip_24h: i }),
  dropped_fields: [],
  validated_at: NOW - 500,
});

const scored = (outcome: Outcome<ScoredRecord>): ScoredRecord => {
  assert.equal(outcome.kind, 'emit');
  return (outcome as { outputs: Array<{ value: ScoredRecord }> }).outputs[0]!.value;
};

const IP_FEATURE = FEATURE_NAMES.indexOf('signups_from_ip_24h_log1p');
/** The record index a feature row came from (record(i) has i signups from its IP). */
const indexOf = (row: ArrayLike<number>) => Math.round(Math.expm1(row[IP_FEATURE]!));

/**
 * Scores record i as P(risky) = i/100, as a binary model does: one row of
 * class probabilities [P(legit), P(risky)] per input row, row-major. Rows of
 * records listed in `failOn` make predict throw; `probabilities` overrides a row.
 */
function scorer(options: { failOn?: number[]; score?: (row: ArrayLike<number>) => number; probabilities?: (row: ArrayLike<number>) => number[] } = {}): Scorer & { calls: number[] } {
  assert.ok(IP_FEATURE >= 0);
  const calls: number[] = [];
  return {
    version: 'm-test',
    calls,
    async predict(rows) {
      calls.push(rows.length);
      if (rows.some((row) => options.failOn?.includes(indexOf(row)))) throw new Error('bad row');
      return Float32Array.from(
        rows.flatMap((row) => {
          if (options.probabilities) return options.probabilities(row);
          const risky = options.score?.(row) ?? indexOf(row) / 100;
          return [1 - risky, risky];
        }),
      );
    },
  };
}

/** The score stage's context for signup-risk: its model adapter, the scorer given, the test's clock. */
const context = (model: Scorer | null): ScoreContext<SignupPayload> => ({ adapter: signupRisk.model, scorer: model, now: () => NOW });

describe('scoreBatch', () => {
  it('scores the whole chunk in one call and carries the record, features and model version', async () => {
    const model = scorer();
    const outcomes = await scoreBatch([1, 2, 3].map(record), context(model));
    assert.deepEqual(model.calls, [3], 'one micro-batch');
    const first = scored(outcomes[0]!);
    assert.equal(first.event_id, 'e-1');
    // The positive class's column (risky, index 1), as float32: the model's output precision.
    assert.equal(first.score, Math.fround(0.01));
    assert.deepEqual(
      outcomes.map((o) => scored(o).score),
      [0.01, 0.02, 0.03].map(Math.fround),
      'each row its own score, in order',
    );
    // A binary model has no label, and its class scores are not repeated.
    assert.equal(first.label, null);
    assert.deepEqual(first.class_names, []);
    assert.deepEqual(first.class_scores, []);
    assert.equal(first.model_version, 'm-test');
    assert.deepEqual(first.feature_names, [...FEATURE_NAMES]);
    // One frozen array for every record of every chunk: the Avro writer encodes it once (test/unit/codec.test.ts).
    assert.ok(Object.isFrozen(first.feature_names));
    const later = scored((await scoreBatch([record(4)], context(scorer())))[0]!);
    assert.equal(later.feature_names, first.feature_names, 'the same array in the next chunk');
    assert.deepEqual(first.feature_values, featuresOf(record(1).payload));
    assert.equal(first.scored_at, NOW);
    assert.equal(first.validated_at, NOW - 500);
    assert.equal(first.event_type, 'user_signed_up');
    assert.equal(first.occurred_at, NOW - 1_000);
    assert.equal(first.source, 'web-signup');
    assert.deepEqual(first.payload, record(1).payload);
  });

  it('consults no model while the kill switch is on: the score and version are null', async () => {
    const outcomes = await scoreBatch([record(1)], context(null));
    const value = scored(outcomes[0]!);
    assert.equal(value.score, null);
    assert.equal(value.model_version, null);
    assert.equal(value.label, null);
    assert.deepEqual(value.class_scores, []);
    // The features are still kept, for drift monitoring.
    assert.deepEqual(value.feature_values, featuresOf(record(1).payload));
  });

  it('dead-letters only the rows inference fails on, as SCORING_FAILED', async () => {
    const model = scorer({ failOn: [2] });
    const outcomes = await scoreBatch([1, 2, 3].map(record), context(model));
    assert.deepEqual(
      outcomes.map((o) => (o.kind === 'emit' ? 'scored' : o.reason)),
      ['scored', 'SCORING_FAILED', 'scored'],
    );
    assert.equal((outcomes[1] as { eventId?: string }).eventId, 'e-2');
    assert.equal(scored(outcomes[2]!).score, Math.fround(0.03), 'the rows around it keep their own scores');
  });

  it('dead-letters a record whose features cannot be computed; the rest of the chunk keeps its own scores, in one call', async () => {
    const model = scorer();
    const broken: ValidatedRecord = { ...record(2), payload: lowRiskPayload({ user_id: 'u-2', signups_from_ip_24h: 2, email_domain_age_days: Number.NaN }) };
    const outcomes = await scoreBatch([record(1), broken, record(3), record(4)], context(model));
    assert.deepEqual(model.calls, [3], 'the three scorable rows in one micro-batch');
    assert.deepEqual(
      outcomes.map((o) => (o.kind === 'emit' ? scored(o).score : o.reason)),
      [Math.fround(0.01), 'SCORING_FAILED', Math.fround(0.03), Math.fround(0.04)],
    );
    assert.equal((outcomes[1] as { eventId?: string }).eventId, 'e-2');
  });

  it("scores the challenger in shadow on the records the champion scored, each record beside its own champion's score", async () => {
    const champion = scorer({ failOn: [3] });
    const challenger = { ...scorer({ score: (row) => indexOf(row) / 10 }), version: 'm-challenger' };
    const reports: ShadowReport[] = [];
    const outcomes = await scoreBatch([1, 2, 3, 4].map(record), {
      ...context(champion),
      shadow: { scorer: challenger, report: (report) => reports.push(report), failed: (error) => assert.fail(String(error)) },
    });
    assert.deepEqual(
      outcomes.map((o) => (o.kind === 'emit' ? [scored(o).score, (scored(o) as ShadowedScoredRecord).shadow_score] : o.reason)),
      [[Math.fround(0.01), Math.fround(0.1)], [Math.fround(0.02), Math.fround(0.2)], 'SCORING_FAILED', [Math.fround(0.04), Math.fround(0.4)]],
    );
    assert.deepEqual(challenger.calls, [3], 'the champion-scored rows only, in one call');
    assert.deepEqual(reports, [
      {
        version: 'm-challenger',
        scores: [
          { eventId: 'e-1', champion: Math.fround(0.01), challenger: Math.fround(0.1) },
          { eventId: 'e-2', champion: Math.fround(0.02), challenger: Math.fround(0.2) },
          { eventId: 'e-4', champion: Math.fround(0.04), challenger: Math.fround(0.4) },
        ],
      },
    ]);
    assert.equal((scored(outcomes[0]!) as ShadowedScoredRecord).shadow_model_version, 'm-challenger');
  });

  it('dead-letters a score that is not a probability', async () => {
    const outcomes = await scoreBatch([record(1)], context(scorer({ score: () => Number.NaN })));
    assert.equal(outcomes[0]!.kind, 'dead-letter');
    assert.equal((outcomes[0] as { reason: string }).reason, 'SCORING_FAILED');
  });

  it('dead-letters rows whose class probabilities are out of range or of the wrong width', async () => {
    for (const probabilities of [[0.5, 1.5], [-0.2, 1.2], [0.5, Number.POSITIVE_INFINITY]]) {
      const outcomes = await scoreBatch([record(1)], context(scorer({ probabilities: () => probabilities })));
      assert.equal(outcomes[0]!.kind, 'dead-letter', JSON.stringify(probabilities));
      assert.equal((outcomes[0] as { reason: string }).reason, 'SCORING_FAILED');
    }
    // One column instead of two, or none: the row cannot be read.
    for (const probabilities of [[0.01], []]) {
      const outcomes = await scoreBatch([record(1)], context(scorer({ probabilities: () => probabilities })));
      assert.equal((outcomes[0] as { reason?: string }).reason, 'SCORING_FAILED', JSON.stringify(probabilities));
    }
  });
});
