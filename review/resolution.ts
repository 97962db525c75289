/**
 * What a resolution writes, as pure functions of the item, the reviewer's
 * answer and the time: the human (or expired) decision for `<p>.decided` and
 * the label for `<p>.feedback`. Also the check of a reviewer's answer against
 * what the pipeline allows: its decisions (never the review decision itself)
 * and its own decided fields, read from its decided contract.
 */
import { join } from 'node:path';
import { DECISION_COMMON_FIELDS, type DecisionRecord } from '../lib/contracts.ts';
import type { PipelinePlugin } from '../lib/pipeline.ts';
import { readAvsc } from '../lib/schemas.ts';
import { ReviewError } from './errors.ts';
import type { ReviewSource } from './queue.ts';

/** The longest reason kept; the rest is cut (it travels in every decision and label). */
export const MAX_REASON_CHARS = 1_000;

/** One of the pipeline's own required decided fields (after the common ones, without a default), e.g. ticket-triage's `queue`. */
export interface ExtraField {
  name: string;
  /** The values allowed, when its contract documents them as `a | b | c`; undefined: any non-empty string. */
  values: string[] | undefined;
}

/** What a reviewer may answer for items of a pipeline. */
export interface ResolutionRules {
  decisions: string[];
  fields: ExtraField[];
}

export function resolutionRules(plugin: PipelinePlugin): ResolutionRules {
  const decided = readAvsc(join(plugin.schemasDir, 'decided.avsc')) as { fields: Array<{ name: string; type: unknown; doc?: string; default?: unknown }> };
  const common = new Set<string>(DECISION_COMMON_FIELDS);
  // Fields with a default (replay or shadow annotations) are not the reviewer's to give: they keep their default.
  const fields = decided.fields
    .filter((field) => !common.has(field.name) && !Object.hasOwn(field, 'default'))
    .map((field) => {
      const domain = /^\s*([A-Za-z0-9_-]+(?:\s*\|\s*[A-Za-z0-9_-]+)+)/.exec(field.doc ?? '')?.[1];
      return { name: field.name, values: domain?.split('|').map((value) => value.trim()) };
    });
  return { decisions: plugin.decisions.filter((decision) => decision !== plugin.reviewDecision), fields };
}

export interface ResolveAnswer {
  decision: string;
  reason: string;
  fields: Record<string, string>;
}

/** Checks a resolve request's body; throws ReviewError (400) naming what is wrong. */
export function checkAnswer(body: Record<string, unknown>, rules: ResolutionRules): ResolveAnswer {
  const reason = typeof body['reason'] === 'string' ? body['reason'].trim() : '';
  if (reason === '') throw new ReviewError('REASON_REQUIRED', 'Give a reason for the decision ("reason": a non-empty string); it becomes part of the label.');
  const decision = body['decision'];
  if (typeof decision !== 'string' || !rules.decisions.includes(decision)) {
    throw new ReviewError('DECISION_NOT_ALLOWED', `"decision" must be one of ${rules.decisions.join(', ')}; got ${JSON.stringify(decision ?? null)}.`);
  }
  const fields: Record<string, string> = {};
  for (const field of rules.fields) {
    const value = body[field.name];
    if (value === undefined || value === null || value === '') throw new ReviewError('FIELD_REQUIRED', `"${field.name}" is required for this pipeline${field.values ? `: one of ${field.values.join(', ')}` : ''}.`);
    if (typeof value !== 'string' || (field.values !== undefined && !field.values.includes(value))) {
      throw new ReviewError('FIELD_INVALID', `"${field.name}" must be ${field.values ? `one of ${field.values.join(', ')}` : 'a non-empty string'}; got ${JSON.stringify(value)}.`);
    }
    fields[field.name] = value;
  }
  return { decision, reason: reason.slice(0, MAX_REASON_CHARS), fields };
}

/** True when the answer differs from the decision under review (its decision or one of the pipeline's own fields). */
export function changesDecision(source: ReviewSource, answer: ResolveAnswer): boolean {
  return answer.decision !== source.record.decision || Object.entries(answer.fields).some(([name, value]) => source.record[name] !== value);
}

/**
 * The decided contract's review fields (schemas/<kind>/decided.avsc, optional
 * with null defaults): who decided, why, and the version of the decision this
 * one corrects, so a consumer of `<p>.decided` and the decisions table link a
 * correction to what it corrects without parsing reasons.
 */
export interface ReviewLink {
  reviewed_by: string | null;
  review_reason: string;
  corrects_decision_version: number;
}

const correctsReason = (source: ReviewSource) => `corrects_decision_version:${source.record.decision_version}`;

/**
 * A decision that replaces the one under review, one version above it, with
 * the item's score and versions and the review link; `fields` are the
 * pipeline's own decided fields.
 */
function correction(
  source: ReviewSource,
  change: { decision: string; decidedBy: 'human' | 'fallback'; reasons: string[]; fields: Record<string, unknown>; reviewer: string | null; reason: string; now: number },
): DecisionRecord & ReviewLink & Record<string, unknown> {
  const r = source.record;
  return {
    event_id: r.event_id,
    pipeline: r.pipeline,
    decision: change.decision,
    decided_by: change.decidedBy,
    reasons: change.reasons,
    score: r.score,
    model_version: r.model_version,
    policy_version: r.policy_version,
    decision_version: r.decision_version + 1,
    occurred_at: r.occurred_at,
    decided_at: change.now,
    ...change.fields,
    reviewed_by: change.reviewer,
    review_reason: change.reason,
    corrects_decision_version: r.decision_version,
  };
}

/** The decision that corrects the one under review: decided_by human, one version above it. */
export function humanDecision(source: ReviewSource, answer: ResolveAnswer, reviewer: string, now: number): DecisionRecord & ReviewLink & Record<string, unknown> {
  return correction(source, {
    decision: answer.decision,
    decidedBy: 'human',
    reasons: ['human_review', `reviewed_by:${reviewer}`, correctsReason(source), `review_reason:${answer.reason}`],
    fields: answer.fields,
    reviewer,
    reason: answer.reason,
    now,
  });
}

/** The decision an item gets when nobody resolved it in time: the pipeline's fallback, decided_by fallback. */
export function expiredDecision(source: ReviewSource, fallbackDecision: string, extraFields: ExtraField[], now: number): DecisionRecord & ReviewLink & Record<string, unknown> {
  const own = Object.fromEntries(extraFields.map((field) => [field.name, source.record[field.name]]));
  return correction(source, { decision: fallbackDecision, decidedBy: 'fallback', reasons: ['review_expired', correctsReason(source)], fields: own, reviewer: null, reason: 'review_expired', now });
}

/** The label on `<p>.feedback` (schemas/<kind>/feedback.avsc). */
export interface FeedbackRecord {
  event_id: string;
  pipeline: string;
  item_id: string;
  kind: string;
  label: string;
  label_fields: Record<string, string>;
  reviewer: string;
  reason: string;
  original_decision: string;
  original_decided_by: string;
  original_decision_version: number;
  decision_version: number;
  score: number | null;
  model_version: string | null;
  policy_version: string;
  occurred_at: number;
  created_at: number;
  resolved_at: number;
}

/** `decisionVersion`: the version of the decision that stands after the review (the original one when an audit confirms it). */
export function feedbackRecord(itemId: string, source: ReviewSource, answer: ResolveAnswer, reviewer: string, now: number, decisionVersion = source.record.decision_version + 1): FeedbackRecord {
  const r = source.record;
  return {
    event_id: r.event_id,
    pipeline: r.pipeline,
    item_id: itemId,
    kind: source.kind,
    label: answer.decision,
    label_fields: answer.fields,
    reviewer,
    reason: answer.reason,
    original_decision: r.decision,
    original_decided_by: r.decided_by,
    original_decision_version: r.decision_version,
    decision_version: decisionVersion,
    score: r.score,
    model_version: r.model_version,
    policy_version: r.policy_version,
    occurred_at: r.occurred_at,
    created_at: r.decided_at,
    resolved_at: now,
  };
}
