/**
 * The decide stage's pure logic, generic over pipelines: a scored record in,
 * the decision out (to `decided`, and to `review` as well when the decision is
 * the pipeline's review decision). The policy itself lives with its pipeline;
 * this builds the common decision contract (PRODUCT.md) around its verdict,
 * followed by the pipeline's own fields.
 */
import type { Clock, DecisionRecord, Emit, Outcome, ScoredRecord } from '../../lib/contracts.ts';
import type { Policy } from '../../lib/pipeline.ts';

/** The common fields of every pipeline's decided record; pipeline-specific fields follow them. */
export interface DecisionCommon extends DecisionRecord {
  [field: string]: unknown;
}

export interface DecideContext<P> extends Clock {
  pipeline: string;
  policy: Policy<P>;
  /** Decisions of this value also go to `<p>.review`. */
  reviewDecision: string;
  /** This stage's own current view of the control topic's model kill switch. */
  killSwitchOn: boolean;
}

/** The first decision of an event; replays and human corrections carry higher versions. */
export const FIRST_DECISION_VERSION = 1;

export function decide<P>(scored: ScoredRecord<P>, ctx: DecideContext<P>): Outcome<DecisionCommon> {
  const classScores: Record<string, number> = {};
  scored.class_names.forEach((name, i) => {
    classScores[name] = scored.class_scores[i] ?? 0;
  });
  const verdict = ctx.policy.decide(
    { eventType: scored.event_type, payload: scored.payload, score: scored.score, label: scored.label, classScores },
    { killSwitchOn: ctx.killSwitchOn },
  );
  // score and model_version are copied as received even when the policy did not
  // use them (decided_by says whether it did): analysts can still see them.
  const decision: DecisionCommon = {
    event_id: scored.event_id,
    pipeline: ctx.pipeline,
    decision: verdict.decision,
    decided_by: verdict.decidedBy,
    reasons: verdict.reasons,
    score: scored.score,
    model_version: scored.model_version,
    policy_version: ctx.policy.version,
    decision_version: FIRST_DECISION_VERSION,
    occurred_at: scored.occurred_at,
    decided_at: ctx.now(),
    ...verdict.fields,
  };
  const outputs: Emit<DecisionCommon>['outputs'] = [{ to: 'decided', value: decision }];
  if (decision.decision === ctx.reviewDecision) {
    outputs.push({ to: 'review', value: { ...decision, reasons: [...decision.reasons], payload: scored.payload } });
  }
  return { kind: 'emit', eventId: scored.event_id, outputs };
}
