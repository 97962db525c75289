/**
 * The ClickHouse sink's pure logic: Kafka records of a pipeline's validated,
 * scored, decided, dead-letter and feedback (labels) topics in, table rows
 * out. No Kafka or ClickHouse client here; decoding is given through the
 * context. Any pipeline: only the fields common to every contract are read
 * (records.ts, labels.ts).
 *
 * Every row carries the Kafka coordinates of the record it came from (or the
 * event id and version), which is what makes a row written twice collapse in
 * ClickHouse: mapping the same record always yields the same rows.
 */
import type { DeadLetterRow, DecisionRow, StageEventRow, TableRows } from '../../connectors/clickhouse/schema.ts';
import type { FramedDecode } from '../../connectors/registry/registry.ts';
import { type SourceRecord, type TopicSuffix, topicName } from '../runtime/types.ts';
import { type FeedbackValue, type LabelRow, labelRow } from './labels.ts';
import { duplicateStageEvent } from '../validate/changelog.ts';
import { maskMessage, previewOf } from './mask.ts';
import { type CommonDecision, type CommonScored, type CommonValidated, extraFields, hasEventId, parallelArrays } from './records.ts';

/**
 * The topics the sink reads, by suffix. The raw topic is not read: validate's
 * output and dead letters cover every input. `feedback` carries reviewers'
 * labels (the labels table).
 */
export const SINK_TOPIC_SUFFIXES = ['validated', 'scored', 'decided', 'dlq', 'feedback', 'validate-dedup'] as const satisfies readonly TopicSuffix[];
export type SinkTopicSuffix = (typeof SINK_TOPIC_SUFFIXES)[number];

export interface SinkContext {
  pipeline: string;
  /** Decodes a registry-framed value with schemas already fetched. */
  decode(value: Buffer): FramedDecode;
}

/** A record that yields no rows, and why. Counted and logged: never dropped silently. */
export interface SkippedRecord {
  topic: string;
  partition: number;
  offset: string;
  reason: 'empty-value' | 'undecodable' | 'unknown-schema' | 'unexpected-topic' | 'missing-fields';
  detail: string;
}

export interface MappedBatch {
  rows: TableRows;
  /** Reviewers' labels, from `<p>.feedback` (sluice.labels; not a data table, so apart from rows). */
  labels: LabelRow[];
  skipped: SkippedRecord[];
}

export const emptyRows = (): TableRows => ({ stageEvents: [], modelOutputs: [], decisions: [], deadLetters: [] });

/** Epoch ms as a UInt64 column accepts it. */
const ms = (value: unknown): number => {
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) && n > 0 ? Math.trunc(n) : 0;
};

const coordinates = (source: SourceRecord) => ({
  kafka_topic: source.topic,
  kafka_partition: source.partition,
  kafka_offset: Number(source.offset),
  kafka_timestamp_ms: ms(source.timestampMs),
});

export function validatedRows(pipeline: string, value: CommonValidated, source: SourceRecord): StageEventRow {
  // Migration 7: `late` or `early` (validated.avsc's optional timeliness); left out when unset, so the column reads ''.
  const timeliness = text((value as { timeliness?: unknown }).timeliness);
  return {
    pipeline,
    stage: 'validate',
    outcome: 'passed',
    detail: '',
    ...(timeliness !== '' && { timeliness }),
    event_id: value.event_id,
    decision_version: 0,
    occurred_at_ms: ms(value.occurred_at),
    stage_at_ms: ms(value.validated_at),
    ...coordinates(source),
  };
}

export function scoredRows(pipeline: string, value: CommonScored, source: SourceRecord, rows: TableRows): void {
  // A score that is not a finite number is no score: NaN would make ClickHouse refuse the whole batch.
  const score = typeof value.score === 'number' && Number.isFinite(value.score) ? value.score : null;
  rows.stageEvents.push({
    pipeline,
    stage: 'score',
    outcome: 'passed',
    detail: score === null ? 'unscored' : '',
    event_id: value.event_id,
    decision_version: 0,
    occurred_at_ms: ms(value.occurred_at),
    stage_at_ms: ms(value.scored_at),
    ...coordinates(source),
  });
  if (score === null) return;
  const classes = parallelArrays(value.class_names, value.class_scores);
  const features = parallelArrays(value.feature_names, value.feature_values);
  const row = {
    pipeline,
    event_id: value.event_id,
    model_version: value.model_version ?? 'unknown',
    score,
    label: typeof value.label === 'string' ? value.label : '',
    class_names: classes.names,
    class_scores: classes.values,
    feature_names: features.names,
    feature_values: features.values,
    occurred_at_ms: ms(value.occurred_at),
    scored_at_ms: ms(value.scored_at),
    kafka_partition: source.partition,
    kafka_offset: Number(source.offset),
  };
  rows.modelOutputs.push(row);
  // The challenger's view of the same event: a second row, keyed by its own version.
  const shadowScore = value.shadow_score;
  if (!value.shadow_model_version || typeof shadowScore !== 'number' || !Number.isFinite(shadowScore)) return;
  const shadowClasses = parallelArrays(classes.names, value.shadow_class_scores);
  const top = shadowClasses.values.reduce((best, p, i) => (p > (shadowClasses.values[best] ?? -1) ? i : best), 0);
  rows.modelOutputs.push({
    ...row,
    model_version: value.shadow_model_version,
    score: shadowScore,
    label: shadowClasses.names.length > 0 ? shadowClasses.names[top]! : '',
    class_names: shadowClasses.names,
    class_scores: shadowClasses.values,
  });
}

/** A nullable text as ClickHouse keeps it: '' for none. */
const text = (value: unknown): string => (typeof value === 'string' ? value : '');

/** Migration 6's decision columns: who reviewed a human decision, why, and the version it corrects; '' and 0 otherwise. */
export interface ReviewColumns {
  reviewed_by: string;
  review_reason: string;
  corrects_decision_version: number;
}

export function decidedRows(pipeline: string, value: CommonDecision, source: SourceRecord, rows: TableRows): void {
  const extra = extraFields(value);
  rows.stageEvents.push({
    pipeline,
    stage: 'decide',
    outcome: 'passed',
    detail: value.decision,
    event_id: value.event_id,
    decision_version: value.decision_version,
    occurred_at_ms: ms(value.occurred_at),
    stage_at_ms: ms(value.decided_at),
    ...coordinates(source),
  });
  const row: DecisionRow & ReviewColumns = {
    pipeline,
    event_id: value.event_id,
    decision: value.decision,
    decided_by: value.decided_by,
    reasons: [...value.reasons],
    score: value.score,
    model_version: value.model_version,
    policy_version: value.policy_version,
    decision_version: value.decision_version,
    occurred_at_ms: ms(value.occurred_at),
    decided_at_ms: ms(value.decided_at),
    extra_names: extra.names,
    extra_values: extra.values,
    replay_id: text(value.replay_id),
    shadow_model_version: text(value.shadow_model_version),
    shadow_score: typeof value.shadow_score === 'number' && Number.isFinite(value.shadow_score) ? value.shadow_score : 0,
    shadow_decision: text(value.shadow_decision),
    reviewed_by: text(value.reviewed_by),
    review_reason: text(value.review_reason),
    corrects_decision_version: ms(value.corrects_decision_version),
    kafka_partition: source.partition,
    kafka_offset: Number(source.offset),
  };
  rows.decisions.push(row);
}

const EVENT_ID_MAX = 128;

/** The envelope fields a dead letter's value still carries, if it is an object that has them. */
export function envelopeOf(value: unknown): { eventId: string; occurredAtMs: number } {
  const object = value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  const id = object['event_id'];
  const eventId = typeof id === 'string' && id.length > 0 && id.length <= EVENT_ID_MAX ? id : '';
  const at = object['occurred_at'];
  let occurredAtMs = 0;
  if (typeof at === 'number' && Number.isFinite(at)) occurredAtMs = ms(at);
  else if (typeof at === 'string') {
    const parsed = /^\d+$/.test(at) ? Number(at) : Date.parse(at);
    occurredAtMs = Number.isFinite(parsed) ? ms(parsed) : 0;
  }
  return { eventId, occurredAtMs };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A dead letter's value as a JS value: decoded Avro, parsed JSON, or undefined. */
function readDeadLetterValue(bytes: Buffer, ctx: SinkContext): { decoded?: unknown; parsed?: unknown } {
  if (bytes.length >= 5 && bytes[0] === 0) {
    const result = ctx.decode(bytes);
    if (result.kind === 'decoded') return { decoded: result.value };
  }
  try {
    return { parsed: JSON.parse(utf8.decode(bytes)) };
  } catch {
    return {};
  }
}

export function deadLetterRows(pipeline: string, source: SourceRecord, ctx: SinkContext, rows: TableRows): void {
  const header = (name: string) => source.headers[`dlq.${name}`];
  const bytes = source.value ?? Buffer.alloc(0);
  const { decoded, parsed } = readDeadLetterValue(bytes, ctx);
  const envelope = envelopeOf(decoded ?? parsed);
  const failedAtMs = ms(header('failed_at')) || ms(source.timestampMs);
  const stage = header('stage') || 'unknown';
  const reason = header('reason') || 'UNKNOWN';
  const row: DeadLetterRow = {
    pipeline,
    stage,
    reason,
    message: maskMessage(header('message') ?? ''),
    event_id: envelope.eventId,
    source_topic: header('source.topic') ?? '',
    source_partition: Number(header('source.partition') ?? 0) || 0,
    source_offset: Number(header('source.offset') ?? 0) || 0,
    failed_at_ms: failedAtMs,
    size_bytes: bytes.length,
    preview: previewOf(bytes, decoded),
    kafka_partition: source.partition,
    kafka_offset: Number(source.offset),
    kafka_timestamp_ms: ms(source.timestampMs),
  };
  rows.deadLetters.push(row);
  rows.stageEvents.push({
    pipeline,
    stage,
    outcome: 'dead_lettered',
    detail: reason,
    event_id: envelope.eventId,
    decision_version: 0,
    // Without a readable occurred_at the failure time stands in, so the row has a day (partition).
    occurred_at_ms: envelope.occurredAtMs || failedAtMs,
    stage_at_ms: failedAtMs,
    ...coordinates(source),
  });
}

/** Maps a batch of records from any of the sink's topics to rows, in one pass. */
export function mapRecords(records: readonly SourceRecord[], ctx: SinkContext): MappedBatch {
  const rows = emptyRows();
  const labels: LabelRow[] = [];
  const skipped: SkippedRecord[] = [];
  const suffixOf = new Map<string, SinkTopicSuffix>(SINK_TOPIC_SUFFIXES.map((suffix) => [topicName(ctx.pipeline, suffix), suffix]));
  for (const source of records) {
    const suffix = suffixOf.get(source.topic);
    const skip = (reason: SkippedRecord['reason'], detail: string) =>
      skipped.push({ topic: source.topic, partition: source.partition, offset: source.offset, reason, detail });
    if (suffix === undefined) {
      skip('unexpected-topic', `not one of the sink's topics for ${ctx.pipeline}`);
      continue;
    }
    if (suffix === 'dlq') {
      deadLetterRows(ctx.pipeline, source, ctx, rows);
      continue;
    }
    if (suffix === 'validate-dedup') {
      // validate's changelog: a row only for a dropped duplicate (validated events have theirs from <p>.validated).
      const row = duplicateStageEvent(ctx.pipeline, source, ctx.decode);
      if (row !== null) rows.stageEvents.push(row);
      continue;
    }
    if (source.value === null || source.value.length === 0) {
      skip('empty-value', 'empty value on an Avro topic');
      continue;
    }
    const decoded = ctx.decode(source.value);
    if (decoded.kind === 'unknown-schema') {
      skip('unknown-schema', `schema id ${decoded.schemaId} is not in the registry`);
      continue;
    }
    if (decoded.kind === 'undecodable') {
      skip('undecodable', decoded.message);
      continue;
    }
    if (!hasEventId(decoded.value)) {
      skip('missing-fields', `schema id ${decoded.schemaId} decodes to a record without the common fields (no event_id)`);
      continue;
    }
    if (suffix === 'validated') rows.stageEvents.push(validatedRows(ctx.pipeline, decoded.value as CommonValidated, source));
    else if (suffix === 'scored') scoredRows(ctx.pipeline, decoded.value as CommonScored, source, rows);
    else if (suffix === 'decided') decidedRows(ctx.pipeline, decoded.value as CommonDecision, source, rows);
    else {
      const label = labelRow(ctx.pipeline, decoded.value as FeedbackValue, source);
      if ('missing' in label) skip('missing-fields', label.missing);
      else labels.push(label);
    }
  }
  return { rows, labels, skipped };
}

export const rowCount = (rows: TableRows): number =>
  rows.stageEvents.length + rows.modelOutputs.length + rows.decisions.length + rows.deadLetters.length;
