/**
 * Reviewers' labels, from `<p>.feedback` (written by the review service with
 * each resolution, review/resolution.ts) to the `labels` table (migration 6).
 * Pure: a decoded label in, a row out. The row's sorting key is the label
 * itself (pipeline, event, item, reviewer, time), so the at-least-once sink
 * writing it twice leaves one row once ReplacingMergeTree merges, and the
 * documented queries deduplicate before that.
 */
import { type ClickHouseClient, clickHouseError } from '../../connectors/clickhouse/client.ts';
import type { InsertReport } from '../../connectors/clickhouse/writer.ts';
import { TABLES } from '../../connectors/clickhouse/schema.ts';
import type { SourceRecord } from '../runtime/types.ts';

/** A row of `sluice.labels` as the sink inserts it (MATERIALIZED columns are computed by the server). */
export interface LabelRow {
  pipeline: string;
  event_id: string;
  /** The review item (one per event and pipeline). */
  item_id: string;
  /** review: a decision of `review` a reviewer resolved; audit: a sampled automatic decision a reviewer checked. */
  kind: string;
  /** The decision the reviewer gave. */
  label: string;
  /** The pipeline's own decided fields the reviewer gave (ticket-triage: queue, priority), parallel arrays. */
  label_field_names: string[];
  label_field_values: string[];
  reviewer: string;
  reason: string;
  /** The decision under review: `review` for a review item, the automatic decision for an audit. */
  original_decision: string;
  original_decided_by: string;
  original_decision_version: number;
  /** The decision that stands after the review: one above the original, or the original's when an audit confirmed it. */
  decision_version: number;
  score: number | null;
  /** '' when no model was consulted. */
  model_version: string;
  policy_version: string;
  occurred_at_ms: number;
  /** When the item entered the queue (the decision under review was made). */
  created_at_ms: number;
  /** When the reviewer resolved it. */
  labeled_at_ms: number;
  kafka_partition: number;
  kafka_offset: number;
}

/** A label as decoded from `<p>.feedback` (schemas/<kind>/feedback.avsc). */
export interface FeedbackValue {
  event_id: string;
  item_id?: unknown;
  kind?: unknown;
  label?: unknown;
  label_fields?: unknown;
  reviewer?: unknown;
  reason?: unknown;
  original_decision?: unknown;
  original_decided_by?: unknown;
  original_decision_version?: unknown;
  decision_version?: unknown;
  score?: unknown;
  model_version?: unknown;
  policy_version?: unknown;
  occurred_at?: unknown;
  created_at?: unknown;
  resolved_at?: unknown;
}

const text = (value: unknown): string => (typeof value === 'string' ? value : '');
const whole = (value: unknown): number => {
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) && n > 0 ? Math.trunc(n) : 0;
};

/** The label's row, or a reason it yields none (a label without a label or a reviewer is no label). */
export function labelRow(pipeline: string, value: FeedbackValue, source: SourceRecord): LabelRow | { missing: string } {
  const label = text(value.label);
  const reviewer = text(value.reviewer);
  if (label === '' || reviewer === '') return { missing: `label of event ${value.event_id} has no ${label === '' ? 'label' : 'reviewer'}` };
  const fields = value.label_fields !== null && typeof value.label_fields === 'object' ? Object.entries(value.label_fields as Record<string, unknown>) : [];
  const named = fields.filter(([, v]) => typeof v === 'string').sort(([a], [b]) => a.localeCompare(b)) as Array<[string, string]>;
  const score = typeof value.score === 'number' && Number.isFinite(value.score) ? value.score : null;
  return {
    pipeline,
    event_id: value.event_id,
    item_id: text(value.item_id),
    kind: text(value.kind) || 'review',
    label,
    label_field_names: named.map(([name]) => name),
    label_field_values: named.map(([, v]) => v),
    reviewer,
    reason: text(value.reason),
    original_decision: text(value.original_decision),
    original_decided_by: text(value.original_decided_by),
    original_decision_version: whole(value.original_decision_version),
    decision_version: whole(value.decision_version),
    score,
    model_version: text(value.model_version),
    policy_version: text(value.policy_version),
    occurred_at_ms: whole(value.occurred_at),
    created_at_ms: whole(value.created_at),
    labeled_at_ms: whole(value.resolved_at) || whole(source.timestampMs),
    kafka_partition: source.partition,
    kafka_offset: Number(source.offset),
  };
}

/** Inserts a batch's labels (one JSONEachRow insert); throws a classified error so the batch is retried. */
export async function insertLabels(client: ClickHouseClient, rows: LabelRow[]): Promise<InsertReport | null> {
  if (rows.length === 0) return null;
  const started = performance.now();
  try {
    await client.insert({ table: TABLES.labels, format: 'JSONEachRow', values: rows as unknown as Array<Record<string, unknown>> });
  } catch (error) {
    throw clickHouseError(error, `inserting ${rows.length} rows into ${TABLES.labels}`);
  }
  return { table: TABLES.labels, rows: rows.length, durationMs: performance.now() - started };
}
