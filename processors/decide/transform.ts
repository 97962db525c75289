/**
 * The decide stage's pure logic: a scored record in, the decision out (to
 * `decided`, and to `review` as well when the decision is `review`). The policy
 * itself lives with its pipeline (pipelines/signup-risk/policy.ts).
 */
import { evaluatePolicy, type Thresholds } from '../../pipelines/signup-risk/policy.ts';
import type { DecisionRecord, ReviewRecord, ScoredRecord } from '../../pipelines/signup-risk/types.ts';
import type { Clock, Emit, Outcome } from '../runtime/types.ts';

export interface DecideContext extends Clock {
  pipeline: string;
  /** This stage's own current view of the control topic's model kill switch. */
  killSwitchOn: boolean;
  /** 0 ≤ reviewAt ≤ blockAt ≤ 1 (checked at start by loadDecidePolicy). */
  thresholds: Thresholds;
  /** lower-case domains; subdomains of an entry match too */
  disposableDomains: ReadonlySet<string>;
  /** policyVersion(thresholds, disposableDomains), stamped on every decision */
  policyVersion: string;
}

/** The first decision of an event; replays and human corrections carry higher versions. */
export const FIRST_DECISION_VERSION = 1;

export function decide(scored: ScoredRecord, ctx: DecideContext): Outcome<DecisionRecord | ReviewRecord> {
  const verdict = evaluatePolicy(
    { emailDomain: scored.payload.email_domain, plan: scored.payload.plan, score: scored.score },
    ctx,
  );
  // score and model_version are copied as received even when the policy did not
  // use them (decided_by says whether it did): analysts can still see them.
  const decision: DecisionRecord = {
    event_id: scored.event_id,
    pipeline: ctx.pipeline,
    decision: verdict.decision,
    decided_by: verdict.decidedBy,
    reasons: verdict.reasons,
    score: scored.score,
    model_version: scored.model_version,
    policy_version: ctx.policyVersion,
    decision_version: FIRST_DECISION_VERSION,
    occurred_at: scored.occurred_at,
    decided_at: ctx.now(),
  };
  const outputs: Emit<DecisionRecord | ReviewRecord>['outputs'] = [{ to: 'decided', value: decision }];
  if (decision.decision === 'review') {
    const request: ReviewRecord = { ...decision, reasons: [...decision.reasons], payload: scored.payload };
    outputs.push({ to: 'review', value: request });
  }
  return { kind: 'emit', eventId: scored.event_id, outputs };
}
