/** The score stage's logic, with scorers the test controls (the shipped model has tests of its own). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FEATURE_NAMES, featuresOf } from '../../pipelines/signup-risk/features.ts';
import type { ScoredRecord, ValidatedRecord } from '../../pipelines/signup-risk/types.ts';
import type { Outcome } from '../../processors/runtime/types.ts';
import { type Scorer, scoreBatch } from '../../processors/score/transform.ts';
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
const indexOf = (row: readonly number[]) => Math.round(Math.expm1(row[IP_FEATURE]!));

/** Scores record i as i/100; rows of records listed in `failOn` make predict throw. */
function scorer(options: { failOn?: number[]; score?: (row: readonly number[]) => number } = {}): Scorer & { calls: number[] } {
  assert.ok(IP_FEATURE >= 0);
  const calls: number[] = [];
  return {
    version: 'm-test',
    calls,
    async predict(rows) {
      calls.push(rows.length);
      if (rows.some((row) => options.failOn?.includes(indexOf(row)))) throw new Error('bad row');
      return Float64Array.from(rows.map((row) => options.score?.(row) ?? indexOf(row) / 100));
    },
  };
}

describe('scoreBatch', () => {
  it('scores the whole chunk in one call and carries the record, features and model version', async () => {
    const model = scorer();
    const outcomes = await scoreBatch([1, 2, 3].map(record), { scorer: model, now: () => NOW });
    assert.deepEqual(model.calls, [3], 'one micro-batch');
    const first = scored(outcomes[0]!);
    assert.equal(first.event_id, 'e-1');
    assert.equal(first.score, 0.01);
    assert.equal(first.model_version, 'm-test');
    assert.deepEqual(first.feature_names, [...FEATURE_NAMES]);
    assert.deepEqual(first.feature_values, featuresOf(record(1).payload));
    assert.equal(first.scored_at, NOW);
    assert.equal(first.validated_at, NOW - 500);
  });

  it('consults no model while the kill switch is on: the score and version are null', async () => {
    const outcomes = await scoreBatch([record(1)], { scorer: null, now: () => NOW });
    const value = scored(outcomes[0]!);
    assert.equal(value.score, null);
    assert.equal(value.model_version, null);
  });

  it('dead-letters only the rows inference fails on, as SCORING_FAILED', async () => {
    const model = scorer({ failOn: [2] });
    const outcomes = await scoreBatch([1, 2, 3].map(record), { scorer: model, now: () => NOW });
    assert.deepEqual(
      outcomes.map((o) => (o.kind === 'emit' ? 'scored' : o.reason)),
      ['scored', 'SCORING_FAILED', 'scored'],
    );
    assert.equal((outcomes[1] as { eventId?: string }).eventId, 'e-2');
  });

  it('dead-letters a score that is not a probability', async () => {
    const outcomes = await scoreBatch([record(1)], { scorer: scorer({ score: () => Number.NaN }), now: () => NOW });
    assert.equal(outcomes[0]!.kind, 'dead-letter');
    assert.equal((outcomes[0] as { reason: string }).reason, 'SCORING_FAILED');
  });
});
