/**
 * The decide stage's pure logic, generic over pipelines: a scored record in,
 * the decision out (to `decided`, and to `review` as well when the decision is
 * the pipeline's review decision). The policy itself lives with its pipeline;
 * this builds the common decision contract (PRODUCT.md) around its verdict,
 * followed by the pipeline's own fields.
 */
import type { Clock, DecisionRecord, Emit, Outcome, ScoredRecord } from '../../lib/contracts.ts';
import type { Policy, Verdict } from '../../lib/pipeline.ts';
import { AUDIT_KIND, auditSampled } from './audit.ts';

/** The common fields of every pipeline's decided record; pipeline-specific fields follow them. */
export interface DecisionCommon extends DecisionRecord {
  [field: string]: unknown;
}

export interface DecideContext<P> extends Clock {
  pipeline: string;
  policy: Policy<P>;
  /** Decisions of this value also go to `<p>.review`. */
  reviewDecision: string;
  /** This stage's own current view of the control topic's model kill switch (mode `rules`). */
  killSwitchOn: boolean;
  /**
   * Kill switch in mode `review`: every event goes to human review. The
   * policy's own verdict is kept in the reasons (and its fields, such as a
   * suggested queue), so a reviewer sees what it would have decided.
   */
  reviewEverything?: boolean;
  /** The share of automatic decisions also sent to `<p>.review` as audit items (audit.ts); undefined: none (replays). */
  auditRate?: number;
  /**
   * Set when a replay re-decides (processors/replay): the decision names the
   * replay and carries the version it gives the event, above every earlier one.
   */
  replay?: { id: string; decisionVersion(eventId: string): number };
}

/** What a scored record may carry of the challenger (absent from records written before the contract had it). */
interface ShadowFields {
  shadow_model_version?: string | null;
  shadow_score?: number | null;
  shadow_class_scores?: number[];
}

/** The first decision of an event; replays and human corrections carry higher versions. */
export const FIRST_DECISION_VERSION = 1;

/** Class probabilities by name, and the top class, from parallel arrays. */
function classesOf(names: readonly string[], scores: readonly number[]): { byName: Record<string, number>; top: string | null } {
  const byName: Record<string, number> = {};
  let top: string | null = null;
  names.forEach((name, i) => {
    byName[name] = scores[i] ?? 0;
    if (top === null || byName[name]! > byName[top]!) top = name;
  });
  return { byName, top };
}

/** The scored record's fields no decision reads (the sink, drift monitoring and review read them from the scored topic): the decide stage skips them while decoding. */
export const UNREAD_SCORED_FIELDS = ['feature_names', 'feature_values'] as const satisfies ReadonlyArray<keyof ScoredRecord>;

/** A scored record as the decide stage reads it. */
export type DecideInput<P = unknown> = Omit<ScoredRecord<P>, (typeof UNREAD_SCORED_FIELDS)[number]>;

/**
 * What the policy would decide on the challenger's view of the record: for
 * comparison only (the shadow-comparison query), never acted on. Null when no
 * challenger scored it.
 */
function shadowDecision<P>(scored: DecideInput<P> & ShadowFields, ctx: DecideContext<P>): string | null {
  if (!scored.shadow_model_version || typeof scored.shadow_score !== 'number') return null;
  const shadowClasses = scored.class_names.length > 0 ? classesOf(scored.class_names, scored.shadow_class_scores ?? []) : { byName: {}, top: null };
  const verdict = ctx.policy.decide(
    { eventType: scored.event_type, payload: scored.payload, score: scored.shadow_score, label: shadowClasses.top, classScores: shadowClasses.byName },
    { killSwitchOn: ctx.killSwitchOn },
  );
  return verdict.decision;
}

/** The reason code of a decision the kill switch sent to review (mode `review`). */
export const KILL_SWITCH_REVIEW_REASON = 'kill_switch_review';

/** The policy's verdict, or under the kill switch's `review` mode, review with the policy's verdict as reasons. */
function verdictOf<P>(scored: DecideInput<P>, ctx: DecideContext<P>): Verdict {
  const classScores = classesOf(scored.class_names, scored.class_scores).byName;
  const verdict = ctx.policy.decide(
    { eventType: scored.event_type, payload: scored.payload, score: scored.score, label: scored.label, classScores },
    { killSwitchOn: ctx.killSwitchOn },
  );
  if (!ctx.reviewEverything) return verdict;
  return {
    decision: ctx.reviewDecision,
    decidedBy: 'rule',
    reasons: [KILL_SWITCH_REVIEW_REASON, `policy_${verdict.decision}`, ...verdict.reasons],
    fields: verdict.fields,
  };
}

export function decide<P>(scored: DecideInput<P> & ShadowFields, ctx: DecideContext<P>): Outcome<DecisionCommon> {
  const verdict = verdictOf(scored, ctx);
  const shadowVersion = scored.shadow_model_version || null;
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
    decision_version: ctx.replay ? ctx.replay.decisionVersion(scored.event_id) : FIRST_DECISION_VERSION,
    occurred_at: scored.occurred_at,
    decided_at: ctx.now(),
    ...verdict.fields,
    replay_id: ctx.replay?.id ?? null,
    shadow_model_version: shadowVersion,
    shadow_score: shadowVersion === null ? null : (scored.shadow_score ?? null),
    shadow_decision: shadowDecision(scored, ctx),
  };
  const outputs: Emit<DecisionCommon>['outputs'] = [{ to: 'decided', value: decision }];
  if (decision.decision === ctx.reviewDecision) {
    outputs.push({ to: 'review', value: { ...decision, reasons: [...decision.reasons], payload: scored.payload } });
  } else if (auditSampled(decision, ctx.reviewDecision, ctx.auditRate)) outputs.push({ to: 'review', value: { ...decision, reasons: [...decision.reasons], payload: scored.payload, kind: AUDIT_KIND } });
  return { kind: 'emit', eventId: scored.event_id, outputs };
}
