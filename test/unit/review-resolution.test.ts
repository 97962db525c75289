/** What a resolution writes and what a reviewer may answer (review/resolution.ts), checked against the real contracts. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { avroType } from '../../connectors/registry/registry.ts';
import { readAvsc } from '../../lib/schemas.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import { isReviewError, type ReviewErrorCode } from '../../review/errors.ts';
import { itemIdOf, type ReviewSource } from '../../review/queue.ts';
import { changesDecision, checkAnswer, expiredDecision, feedbackRecord, humanDecision, resolutionRules } from '../../review/resolution.ts';

const T0 = 1_767_225_600_000;
const signup = pipelineByName('signup-risk').plugin;
const triage = pipelineByName('ticket-triage').plugin;
const contract = (plugin: typeof signup, topic: string) => avroType(readAvsc(join(plugin.schemasDir, `${topic}.avsc`)));

function refusal(run: () => unknown): ReviewErrorCode | undefined {
  try {
    run();
  } catch (error) {
    if (isReviewError(error)) return error.code;
    throw error;
  }
  return undefined;
}

const triageSource: ReviewSource = {
  key: 'SUP-1',
  kind: 'review',
  record: {
    event_id: 'e-t1',
    pipeline: 'ticket-triage',
    decision: 'review',
    decided_by: 'model',
    reasons: ['low_confidence'],
    score: 0.41,
    model_version: 'tt-1',
    policy_version: 'pv',
    decision_version: 1,
    occurred_at: T0 - 1_000,
    decided_at: T0,
    queue: 'billing',
    priority: 'P3',
    payload: { ticket: null, document: null },
  },
};

describe('resolution rules', () => {
  it('a reviewer may give any decision of the pipeline but its review decision', () => {
    assert.deepEqual(resolutionRules(signup).decisions, ['approve', 'block']);
    assert.deepEqual(resolutionRules(triage).decisions, ['route']);
  });

  it("ticket-triage's own decided fields come from its contract, with their documented values", () => {
    assert.deepEqual(resolutionRules(triage).fields, [
      { name: 'queue', values: ['billing', 'bug', 'security', 'account', 'feature_request'] },
      { name: 'priority', values: ['P1', 'P2', 'P3', 'P4'] },
    ]);
    assert.deepEqual(resolutionRules(signup).fields, []);
  });

  it('refuses an answer without a reason, with a decision the pipeline does not allow, or without its own fields', () => {
    const rules = resolutionRules(triage);
    assert.equal(refusal(() => checkAnswer({ decision: 'route', queue: 'bug', priority: 'P2' }, rules)), 'REASON_REQUIRED');
    assert.equal(refusal(() => checkAnswer({ decision: 'route', reason: '   ', queue: 'bug', priority: 'P2' }, rules)), 'REASON_REQUIRED');
    assert.equal(refusal(() => checkAnswer({ decision: 'review', reason: 'x', queue: 'bug', priority: 'P2' }, rules)), 'DECISION_NOT_ALLOWED');
    assert.equal(refusal(() => checkAnswer({ decision: 'approve', reason: 'x', queue: 'bug', priority: 'P2' }, rules)), 'DECISION_NOT_ALLOWED');
    assert.equal(refusal(() => checkAnswer({ decision: 'route', reason: 'x', priority: 'P2' }, rules)), 'FIELD_REQUIRED');
    assert.equal(refusal(() => checkAnswer({ decision: 'route', reason: 'x', queue: 'sales', priority: 'P2' }, rules)), 'FIELD_INVALID');
    assert.deepEqual(checkAnswer({ decision: 'route', reason: ' wrong queue ', queue: 'bug', priority: 'P2' }, rules), {
      decision: 'route',
      reason: 'wrong queue',
      fields: { queue: 'bug', priority: 'P2' },
    });
  });

  it('the human decision is one version above the one it corrects, names the reviewer, and fits the decided contract', () => {
    const answer = checkAnswer({ decision: 'route', reason: 'a bug report', queue: 'bug', priority: 'P2' }, resolutionRules(triage));
    const decided = humanDecision(triageSource, answer, 'alice', T0 + 60_000);
    assert.equal(decided.decided_by, 'human');
    assert.equal(decided.decision_version, 2);
    assert.equal(decided.queue, 'bug');
    assert.equal(decided.priority, 'P2');
    assert.equal(decided.decided_at, T0 + 60_000);
    assert.deepEqual(decided.reasons, ['human_review', 'reviewed_by:alice', 'corrects_decision_version:1', 'review_reason:a bug report']);
    // The contract's own review fields: a consumer links the correction without parsing reasons.
    assert.deepEqual([decided.reviewed_by, decided.review_reason, decided.corrects_decision_version], ['alice', 'a bug report', 1]);
    assert.ok(contract(triage, 'decided').isValid(decided), 'valid against ticket-triage decided.avsc');
    const roundTrip = contract(triage, 'decided').fromBuffer(contract(triage, 'decided').toBuffer(decided)) as Record<string, unknown>;
    assert.deepEqual([roundTrip['reviewed_by'], roundTrip['review_reason'], roundTrip['corrects_decision_version']], ['alice', 'a bug report', 1], 'written to the topic');
  });

  it('an expired item gets the fallback decision with the proposed fields, by fallback', () => {
    const decided = expiredDecision(triageSource, triage.reviewDecision, resolutionRules(triage).fields, T0 + 1);
    assert.deepEqual([decided.decision, decided.decided_by, decided.decision_version, decided.queue, decided.priority], ['review', 'fallback', 2, 'billing', 'P3']);
    assert.equal(decided.reasons[0], 'review_expired');
    assert.deepEqual([decided.reviewed_by, decided.review_reason, decided.corrects_decision_version], [null, 'review_expired', 1]);
    // The manifest may name another fallback (ticket-triage: route to the proposed queue).
    const routed = expiredDecision(triageSource, 'route', resolutionRules(triage).fields, T0 + 1);
    assert.deepEqual([routed.decision, routed.queue, routed.priority], ['route', 'billing', 'P3']);
    assert.ok(contract(triage, 'decided').isValid(routed));
    assert.ok(contract(triage, 'decided').isValid(decided));
  });

  it('the label carries the original decision, the reviewer and the reason, and fits its contract', () => {
    const answer = checkAnswer({ decision: 'route', reason: 'a bug report', queue: 'bug', priority: 'P2' }, resolutionRules(triage));
    const label = feedbackRecord(itemIdOf('ticket-triage', 'e-t1'), triageSource, answer, 'alice', T0 + 5);
    assert.equal(label.label, 'route');
    assert.deepEqual(label.label_fields, { queue: 'bug', priority: 'P2' });
    assert.equal(label.original_decision, 'review');
    assert.equal(label.original_decision_version, 1);
    assert.equal(label.decision_version, 2);
    assert.equal(label.reviewer, 'alice');
    assert.ok(contract(triage, 'feedback').isValid(label));
    assert.ok(contract(signup, 'feedback').isValid({ ...label, pipeline: 'signup-risk', label: 'approve', label_fields: {} }));
  });

  it('an answer changes the decision if its decision or one of its own fields differs (an audit that agrees writes no decision)', () => {
    const audited: ReviewSource = { ...triageSource, kind: 'audit', record: { ...triageSource.record, decision: 'route', queue: 'bug', priority: 'P3' } };
    const rules = resolutionRules(triage);
    assert.equal(changesDecision(audited, checkAnswer({ decision: 'route', reason: 'ok', queue: 'bug', priority: 'P3' }, rules)), false);
    assert.equal(changesDecision(audited, checkAnswer({ decision: 'route', reason: 'no', queue: 'bug', priority: 'P1' }, rules)), true);
    assert.equal(changesDecision(audited, checkAnswer({ decision: 'route', reason: 'no', queue: 'security', priority: 'P3' }, rules)), true);
    const label = feedbackRecord('i', audited, checkAnswer({ decision: 'route', reason: 'ok', queue: 'bug', priority: 'P3' }, rules), 'alice', T0, 1);
    assert.deepEqual([label.kind, label.decision_version], ['audit', 1]);
  });
});
