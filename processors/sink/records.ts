/**
 * What the sink reads of a pipeline's records: the fields every pipeline's
 * contract carries on its validated, scored and decided topics (PRODUCT.md,
 * Contracts), and nothing pipeline-specific. Payloads are not read; a decided
 * record's own fields (ticket-triage's `queue` and `priority`, say) are kept
 * as names and texts without being interpreted. Records arrive decoded by
 * schema id, so any pipeline whose contracts carry these fields is sunk alike.
 */
import { DECISION_COMMON_FIELDS, type DecisionRecord, type ScoredRecord, type ValidatedRecord } from '../../lib/contracts.ts';
import { fieldText } from './mask.ts';

/** Pipeline-specific; not read. */
type AnyPayload = { payload?: unknown };

export type CommonValidated = Omit<ValidatedRecord, 'payload'> & AnyPayload;

/**
 * `label`, `class_names` and `class_scores` are absent from records written
 * before contracts carried them (signup-risk's first scored schema): read as
 * null and [].
 */
export interface CommonScored extends Omit<ScoredRecord, 'payload' | 'label' | 'class_names' | 'class_scores'>, AnyPayload {
  label?: string | null;
  class_names?: string[];
  class_scores?: number[];
  /** The challenger scored in shadow; absent from records written before the contract had it. */
  shadow_model_version?: string | null;
  shadow_score?: number | null;
  shadow_class_scores?: number[];
}

/** `decided_by` is read as a text, whatever it holds; the pipeline's own fields follow the common ones. */
export interface CommonDecision extends Omit<DecisionRecord, 'decided_by'> {
  decided_by: string;
  readonly [field: string]: unknown;
}

/**
 * Optional fields every pipeline's decided contract carries after its own
 * (replays, shadow scoring, and a human decision's reviewer, reason and the
 * version it corrects); the sink keeps them in columns of their own,
 * not among the pipeline's fields. Absent from records written before them.
 */
export const DECISION_TRAILING_FIELDS = ['replay_id', 'shadow_model_version', 'shadow_score', 'shadow_decision', 'reviewed_by', 'review_reason', 'corrects_decision_version'] as const;

const COMMON_DECISION_FIELDS: ReadonlySet<string> = new Set([...DECISION_COMMON_FIELDS, ...DECISION_TRAILING_FIELDS]);

/** True when a decoded value can be read as a record of the common contract (an object with an event id). */
export const hasEventId = (value: unknown): value is { event_id: string } =>
  value !== null && typeof value === 'object' && typeof (value as { event_id?: unknown }).event_id === 'string';

/**
 * Parallel name/number arrays as ClickHouse's ARRAY JOIN needs them: pairs
 * whose name is a string and whose number is finite, up to the shorter array.
 * A record breaking this must not reach the table: one row with arrays of
 * unequal length makes every documented query over its pipeline fail, and a
 * NaN makes the whole insert fail, for ever.
 */
export function parallelArrays(names: unknown, values: unknown): { names: string[]; values: number[] } {
  const out = { names: [] as string[], values: [] as number[] };
  if (!Array.isArray(names) || !Array.isArray(values)) return out;
  for (let i = 0; i < Math.min(names.length, values.length); i++) {
    const name: unknown = names[i];
    const value: unknown = values[i];
    if (typeof name !== 'string' || typeof value !== 'number' || !Number.isFinite(value)) continue;
    out.names.push(name);
    out.values.push(value);
  }
  return out;
}

/** A decided record's pipeline-specific fields, in schema order, as texts (mask.ts's fieldText). */
export function extraFields(value: CommonDecision): { names: string[]; values: string[] } {
  const names: string[] = [];
  const values: string[] = [];
  for (const [name, field] of Object.entries(value)) {
    if (COMMON_DECISION_FIELDS.has(name)) continue;
    names.push(name);
    values.push(fieldText(name, field));
  }
  return { names, values };
}
