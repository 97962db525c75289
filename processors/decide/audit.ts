/**
 * Audit sampling: a share of automatic decisions (decided by the model or by
 * rules) also goes to `<p>.review` as an `audit` item, so reviewers measure
 * the model where nobody would otherwise look. The automatic decision stands;
 * the review service writes a new one only if a reviewer changes it.
 *
 * Whether an event is sampled is a function of its event id alone (a hash),
 * never of a random draw or the clock: a retried chunk, a restarted stage or a
 * re-run samples exactly the same events, so an event never becomes an audit
 * item on one attempt and not on the other.
 */
import { hash } from 'node:crypto';
import { SluiceError } from '../../lib/errors.ts';
import type { PipelinePlugin } from '../../lib/pipeline.ts';

/** The share of automatic decisions audited when the pipeline's manifest does not say (`review.auditRate`). */
export const DEFAULT_AUDIT_RATE = 0.01;

/** The review record's `kind` for a sampled automatic decision (schemas/<kind>/review.avsc). */
export const AUDIT_KIND = 'audit';

/** The pipeline's audit rate (manifest `review.auditRate`, or the default); a rate outside [0, 1] is CONFIG_INVALID. */
export function auditRateOf(plugin: Pick<PipelinePlugin, 'kind' | 'review'>): number {
  const rate = plugin.review?.auditRate ?? DEFAULT_AUDIT_RATE;
  if (typeof rate !== 'number' || !Number.isFinite(rate) || rate < 0 || rate > 1) {
    throw new SluiceError('CONFIG_INVALID', `pipelines/${plugin.kind}/index.ts: review.auditRate must be a share between 0 and 1 (0.01 audits 1% of automatic decisions); got ${String(rate)}.`);
  }
  return rate;
}

/**
 * The event's fixed position in [0, 1): the first 32 bits of SHA-256 over its
 * id. Computed for every automatic decision, so with the one-shot
 * `crypto.hash` (about half the cost of createHash's object and stream), as
 * hex: a Buffer digest allocates a backing store per call and cost 3.3 µs
 * where the hex string costs 1.2 (the 2-core machine, 36-character ids).
 */
export function auditPosition(eventId: string): number {
  return Number.parseInt(hash('sha256', `sluice.audit\u0000${eventId}`, 'hex').slice(0, 8), 16) / 2 ** 32;
}

/**
 * True when this decision is also an audit item: it was made automatically
 * (model or rule: never a human's, a fallback, or the review decision itself)
 * and its event falls within the sampled share. `rate` undefined or 0: none.
 */
export function auditSampled(decision: { event_id: string; decision: string; decided_by: string }, reviewDecision: string, rate: number | undefined): boolean {
  if (rate === undefined || rate <= 0 || decision.decision === reviewDecision) return false;
  if (decision.decided_by !== 'model' && decision.decided_by !== 'rule') return false;
  return auditPosition(decision.event_id) < rate;
}
