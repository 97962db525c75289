/**
 * Replay without a broker: how a replay is named and found again, how it
 * numbers re-decisions, what it skips, what it prints, and the challenger's
 * view carried from the score stage to the decision.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { replayRequestOf } from '../../cli/replay.ts';
import { isSluiceError } from '../../lib/errors.ts';
import type { Policy } from '../../lib/pipeline.ts';
import { generateSignups } from '../../pipelines/signup-risk/generator.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import type { SignupPayload } from '../../pipelines/signup-risk/types.ts';
import { decide, type DecisionCommon } from '../../processors/decide/transform.ts';
import {
  DecisionIndex,
  emptySummary,
  formatPlan,
  humanDecidedIn,
  formatSummary,
  parseDatetime,
  parseReplayState,
  replayGroupId,
  replayId,
  reviewRecordKind,
  runName,
} from '../../processors/replay/plan.ts';
import type { ValidatedRecord } from '../../processors/runtime/types.ts';
import { scoreBatch, type Scorer, type ShadowedScoredRecord } from '../../processors/score/transform.ts';

const NOW_MS = 1_796_000_000_000;
const [event] = [...generateSignups({ seed: 5, count: 1, startMs: NOW_MS - 60_000 })];
const payload = signupRisk.payload('user_signed_up', event!.envelope.payload as object);
assert.ok(payload.ok);
const validated: ValidatedRecord<SignupPayload> = {
  event_id: event!.envelope.event_id,
  event_type: 'user_signed_up',
  occurred_at: NOW_MS - 60_000,
  source: 'test',
  payload: payload.value as SignupPayload,
  dropped_fields: [],
  validated_at: NOW_MS - 59_000,
};
/** A model that answers `p` for every row: binary, [1 − p, p]. */
const fixed = (version: string, p: number): Scorer => ({ version, predict: async (rows) => Float32Array.from(rows.flatMap(() => [1 - p, p])) });
/** Thresholds as the shipped policy: ≥ 0.9 block, ≥ 0.5 review. */
const policy: Policy<SignupPayload> = {
  version: 'policy-test',
  decide: ({ score }, { killSwitchOn }) =>
    killSwitchOn || score === null
      ? { decision: 'review', decidedBy: 'fallback', reasons: ['model_off'] }
      : { decision: score >= 0.9 ? 'block' : score >= 0.5 ? 'review' : 'approve', decidedBy: 'model', reasons: [] },
};
const decisionOf = (outcome: ReturnType<typeof decide>): DecisionCommon => {
  assert.equal(outcome.kind, 'emit');
  return outcome.kind === 'emit' ? outcome.outputs[0]!.value : (undefined as never);
};

describe('replay: identity and window', () => {
  const request = { pipeline: 'signup-risk-staging', fromStage: 'score' as const, fromMs: Date.UTC(2026, 11, 1, 3), toMs: Date.UTC(2026, 11, 1, 4) };

  it('names a replay after what was asked, so the same command finds the same replay', () => {
    assert.equal(replayId(request), replayId({ ...request }));
    assert.match(replayId(request), /^r[0-9a-f]{10}$/);
    for (const other of [{ toMs: null }, { fromStage: 'validate' as const }, { fromMs: request.fromMs + 1 }, { pipeline: 'signup-risk' }]) {
      assert.notEqual(replayId({ ...request, ...other }), replayId(request), JSON.stringify(other));
    }
    const state = { id: replayId(request), run: 2 };
    assert.equal(runName(state), `${state.id}-2`);
    assert.equal(replayGroupId('signup-risk-staging', state), `sluice.signup-risk-staging.replay.${state.id}-2`);
  });

  it('reads date-times as kafka-consumer-groups does: ISO 8601, UTC unless zoned, or epoch ms; anything else is CONFIG_INVALID', () => {
    assert.equal(parseDatetime('2026-12-01T03:00:00Z', '--from-datetime'), Date.UTC(2026, 11, 1, 3));
    assert.equal(parseDatetime('2026-12-01T03:00:00', '--from-datetime'), Date.UTC(2026, 11, 1, 3));
    assert.equal(parseDatetime('2026-12-01T04:00:00+01:00', '--from-datetime'), Date.UTC(2026, 11, 1, 3));
    assert.equal(parseDatetime('2026-12-01T03:00:00.250Z', '--from-datetime'), Date.UTC(2026, 11, 1, 3) + 250);
    assert.equal(parseDatetime('1796086800000', '--from-datetime'), 1_796_086_800_000);
    for (const bad of ['yesterday', '2026-12-01', '2026-13-01T00:00:00Z', '']) {
      assert.throws(() => parseDatetime(bad, '--from-datetime'), (error) => isSluiceError(error, 'CONFIG_INVALID'), bad);
    }
  });

  it('refuses an unknown stage and a window that ends before it starts', () => {
    const ok = replayRequestOf({ pipeline: 'signup-risk', fromDatetime: '2026-12-01T03:00:00Z', fromStage: 'validate' }, 'signup-risk');
    assert.deepEqual(ok, { pipeline: 'signup-risk', fromStage: 'validate', fromMs: Date.UTC(2026, 11, 1, 3), toMs: null });
    assert.throws(() => replayRequestOf({ pipeline: 'p', fromDatetime: '2026-12-01T03:00:00Z', fromStage: 'decide' }, 'p'), (e) => isSluiceError(e, 'CONFIG_INVALID'));
    assert.throws(
      () => replayRequestOf({ pipeline: 'p', fromDatetime: '2026-12-01T03:00:00Z', toDatetime: '2026-12-01T02:00:00Z', fromStage: 'score' }, 'p'),
      (e) => isSluiceError(e, 'CONFIG_INVALID'),
    );
  });

  it('reads back the state it records on the control topic, and ignores what is not one', () => {
    const state = { id: 'rabc', run: 1, status: 'running', from_stage: 'score', from_ms: 1, to_ms: 2, to_given: true, topic: 't', ranges: [{ partition: 0, start: '5', end: '9' }], started_at: 3, finished_at: null, summary: null };
    assert.deepEqual(parseReplayState(JSON.stringify(state)), state);
    assert.equal(parseReplayState('on'), null);
    assert.equal(parseReplayState('{"id":1}'), null);
  });
});

describe('replay: decision versions', () => {
  it('gives every re-decision a version above every earlier decision of its event, never 1', () => {
    const index = new DecisionIndex();
    assert.equal(DecisionIndex.nextVersion(index.get('unseen')), 2, 'an event not decided yet (in flight) still gets 2: the live decision 1 cannot supersede it');
    index.observe({ event_id: 'e', decision_version: 1, decision: 'block', decided_by: 'model' });
    assert.equal(DecisionIndex.nextVersion(index.get('e')), 2);
    index.observe({ event_id: 'e', decision_version: 4, decision: 'approve', decided_by: 'model' });
    index.observe({ event_id: 'e', decision_version: 3, decision: 'review', decided_by: 'model' });
    assert.equal(DecisionIndex.nextVersion(index.get('e')), 5, 'out of order on the topic: the highest counts');
    assert.deepEqual(index.get('e'), { version: 4, decision: 'approve', human: false }, 'the decision that stands is the highest version');
  });

  it('remembers that a human decided an event, whatever came after', () => {
    const index = new DecisionIndex();
    index.observe({ event_id: 'h', decision_version: 2, decision: 'approve', decided_by: 'human' });
    index.observe({ event_id: 'h', decision_version: 1, decision: 'review', decided_by: 'model' });
    index.observe({ event_id: 'h', decision_version: 3, decision: 'block', decided_by: 'model' });
    assert.equal(index.get('h')?.human, true);
  });

  it("counts, for the plan, the window's events a reviewer decided: the ones a run will skip", () => {
    const index = new DecisionIndex();
    index.observe({ event_id: 'h1', decision_version: 1, decision: 'review', decided_by: 'model' });
    index.observe({ event_id: 'h1', decision_version: 2, decision: 'block', decided_by: 'human' });
    index.observe({ event_id: 'h2', decision_version: 2, decision: 'approve', decided_by: 'human' });
    index.observe({ event_id: 'm', decision_version: 1, decision: 'approve', decided_by: 'model' });
    index.observe({ event_id: 'f', decision_version: 2, decision: 'review', decided_by: 'fallback' });
    // h2 is outside the window; 'new' has no decision yet; an expired review (fallback) is not a human's and is replayed.
    assert.equal(humanDecidedIn(index, ['h1', 'm', 'f', 'new']), 1);
    assert.equal(humanDecidedIn(index, ['h1', 'h2']), 2);
    assert.equal(humanDecidedIn(index, []), 0);
  });

  it('writes the re-decision with the version and the name of the replay; a live decision names none', () => {
    const scored = { ...validated, score: 0.2, label: null, class_names: [], class_scores: [], model_version: 'champ', feature_names: [], feature_values: [], scored_at: NOW_MS };
    const live = decisionOf(decide(scored, { pipeline: 'p', policy, reviewDecision: 'review', killSwitchOn: false, now: () => NOW_MS }));
    assert.deepEqual([live.decision_version, live.replay_id], [1, null]);
    const replayed = decisionOf(decide(scored, { pipeline: 'p', policy, reviewDecision: 'review', killSwitchOn: false, now: () => NOW_MS, replay: { id: 'rabc-1', decisionVersion: () => 7 } }));
    assert.deepEqual([replayed.decision, replayed.decision_version, replayed.replay_id], ['approve', 7, 'rabc-1']);
  });
});

describe('replay: what it prints', () => {
  it('a summary with the changes by from→to, the skipped and the failed', () => {
    const summary = { ...emptySummary('rabc-1', true), read: 10, replayed: 8, changed: { 'block→approve': 5, 'review→approve': 1 }, unchanged: 2, skipped_human: 1, failed: 1 };
    const text = formatSummary(summary);
    assert.match(text, /^replay rabc-1 \(resumed\)\n/);
    assert.match(text, /events replayed {2}8\n/);
    assert.match(text, /decisions changed 6: block→approve 5, review→approve 1\n/);
    assert.match(text, /skipped \(human\) {2}1\n/);
    assert.match(text, /failed again {5}1\n/);
  });

  it('a plan with the offsets and events per partition, the versions it would use, and what --execute would do', () => {
    const plan = formatPlan({
      replay: 'rabc-1',
      action: 'start',
      topic: 'p.validated',
      fromMs: Date.UTC(2026, 11, 1, 3),
      toMs: Date.UTC(2026, 11, 1, 4),
      ranges: [
        { partition: 0, start: '10', end: '25', events: 12 },
        { partition: 1, start: '0', end: '0', events: 0 },
      ],
      modelVersion: 'champ',
      challengerVersion: null,
      killSwitchOn: false,
      policyVersion: 'policy-1',
      humanDecided: 3,
    });
    assert.match(plan, /p\.validated from 2026-12-01T03:00:00\.000Z to 2026-12-01T04:00:00\.000Z/);
    assert.match(plan, /model champ, policy policy-1/);
    assert.match(plan, /\n {2}0 +10 +25 +12\n/);
    assert.match(plan, /total events 12\n/);
    assert.match(plan, /human decisions 3 \(kept: a replay never overrides a reviewer; these events are skipped\)\n/);
    assert.match(plan, /run again with --execute/);
  });
});

describe('shadow scoring reaches the records', () => {
  it('the scored record carries the challenger\'s version and score beside the champion\'s, which alone decides', async () => {
    const reports: unknown[] = [];
    const [outcome] = await scoreBatch([validated], {
      adapter: signupRisk.model,
      scorer: fixed('champ', 0.2),
      shadow: { scorer: fixed('drill', 0.8), report: (r) => reports.push(r), failed: () => assert.fail('the challenger failed') },
      now: () => NOW_MS,
    });
    assert.equal(outcome!.kind, 'emit');
    const scored = (outcome as { outputs: Array<{ value: ShadowedScoredRecord<SignupPayload> }> }).outputs[0]!.value;
    assert.deepEqual(
      [scored.model_version, scored.score?.toFixed(6), scored.shadow_model_version, scored.shadow_score?.toFixed(6), scored.shadow_class_scores],
      ['champ', '0.200000', 'drill', '0.800000', []],
    );
    assert.equal(reports.length, 1);
    const decision = decisionOf(decide(scored, { pipeline: 'p', policy, reviewDecision: 'review', killSwitchOn: false, now: () => NOW_MS }));
    assert.deepEqual(
      [decision.decision, decision.model_version, decision.shadow_model_version, decision.shadow_decision],
      ['approve', 'champ', 'drill', 'review'],
      'the champion decides; the challenger\'s decision is recorded beside it',
    );
  });

  it('no challenger, or one that fails on the batch: no shadow fields, the champion decides as usual', async () => {
    const failing: Scorer = { version: 'broken', predict: async () => Promise.reject(new Error('boom')) };
    const failures: unknown[] = [];
    for (const shadow of [null, { scorer: failing, report: () => assert.fail('a failed challenger reports nothing'), failed: (e: unknown) => failures.push(e) }]) {
      const [outcome] = await scoreBatch([validated], { adapter: signupRisk.model, scorer: fixed('champ', 0.95), shadow, now: () => NOW_MS });
      const scored = (outcome as { outputs: Array<{ value: ShadowedScoredRecord<SignupPayload> }> }).outputs[0]!.value;
      assert.deepEqual([scored.shadow_model_version, scored.shadow_score, scored.shadow_class_scores], [null, null, []]);
      const decision = decisionOf(decide(scored, { pipeline: 'p', policy, reviewDecision: 'review', killSwitchOn: false, now: () => NOW_MS }));
      assert.deepEqual([decision.decision, decision.shadow_decision], ['block', null]);
    }
    assert.equal(failures.length, 1);
  });
});

describe('replay: what the review queue is told', () => {
  const known = (decision: string, human = false) => ({ version: 1, decision, human });
  const kind = (k: ReturnType<typeof known> | undefined, decision: string, audited = false) => reviewRecordKind({ known: k, decision, reviewDecision: 'review', audited });

  it('sends a re-decided review to review, refreshing an open item to the new version', () => {
    assert.equal(kind(undefined, 'review'), 'review');
    assert.equal(kind(known('review'), 'review'), 'review');
    assert.equal(kind(known('approve'), 'review'), 'review');
  });

  it('supersedes the item of an event under review or audit that the replay decides automatically', () => {
    assert.equal(kind(known('review'), 'approve'), 'superseded');
    assert.equal(kind(known('approve'), 'block', true), 'superseded');
  });

  it('tells nothing of an event without an item, or one a human decided', () => {
    assert.equal(kind(known('approve'), 'block'), null);
    assert.equal(kind(undefined, 'approve', true), null);
    assert.equal(kind(known('review', true), 'approve'), null);
  });
});
