/**
 * The shared vocabulary of sluice, below every other layer: topic naming, the
 * record as consumed, dead-letter reasons and outcomes. Nothing here knows
 * about Kafka clients; connectors, processors and pipelines all speak it.
 */

/** Dead-letter reason codes: part of the public contract (PRODUCT.md). */
export const DEAD_LETTER_REASONS = [
  'MALFORMED_PAYLOAD',
  'UNKNOWN_SCHEMA',
  'SCHEMA_VIOLATION',
  'OVERSIZED',
  'UNEXPECTED_EVENT_TYPE',
  'SCORING_FAILED',
  'OUTPUT_INVALID',
  'PROCESSING_FAILED',
  // The webhook sink could not deliver a decision (retry budget spent, or refused): `dlq.stage` webhook, never re-driven.
  'DELIVERY_FAILED',
] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

/** Topics of a pipeline `<p>`: `<p>.<suffix>`. */
/**
 * `validate-dedup` is the validate stage's changelog (compacted, retention = the
 * pipeline's dedup window): the event ids it has validated, restored after a
 * restart or rebalance, as Kafka Streams restores a state store.
 */
export const TOPIC_SUFFIXES = ['raw', 'validated', 'scored', 'decided', 'review', 'feedback', 'dlq', 'validate-dedup'] as const;
export type TopicSuffix = (typeof TOPIC_SUFFIXES)[number];
export const topicName = (pipeline: string, suffix: TopicSuffix): string => `${pipeline}.${suffix}`;
/** Every topic of a pipeline (the shared control topic aside). */
export const pipelineTopicNames = (pipeline: string): string[] => TOPIC_SUFFIXES.map((suffix) => topicName(pipeline, suffix));

/** A record as consumed, before any decoding. */
export interface SourceRecord {
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (offsets exceed 2^53 in theory). */
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string | undefined>;
  timestampMs: number;
}

export interface Emit<Out = unknown> {
  kind: 'emit';
  eventId: string;
  /**
   * Each output goes to `<pipeline>.<to>`, Avro-encoded with that topic's schema, under the input's key
   * unless it names its own; to the partition the producer picks unless it names one (a changelog is
   * written to the partition number of the input it belongs to).
   */
  outputs: Array<{ to: TopicSuffix; value: Out; key?: Buffer; partition?: number }>;
}

export interface DeadLetter {
  kind: 'dead-letter';
  reason: DeadLetterReason;
  /** Human-readable detail naming the field at fault. */
  message: string;
  eventId?: string;
  /** The code of the error behind a stage failure (`dlq.error.code`), when there was one. */
  errorCode?: string;
}

export type Outcome<Out = unknown> = Emit<Out> | DeadLetter;

export const deadLetter = (reason: DeadLetterReason, message: string, eventId?: string): DeadLetter =>
  eventId === undefined ? { kind: 'dead-letter', reason, message } : { kind: 'dead-letter', reason, message, eventId };

/** Time is given to transforms, never read by them, so tests control it. */
export interface Clock {
  now(): number;
}

/**
 * The shared, compacted control topic. The key names the setting
 * (`<pipeline>/<setting>`, e.g. `signup-risk/kill_switch.model`), so compaction
 * keeps the latest value of each; its contract is `schemas/control.avsc`.
 */
export const CONTROL_TOPIC = 'sluice.control';
/** Compacted: each running processor's heartbeat (processors/runtime/heartbeat.ts), read by `sluice status`. */
export const INSTANCES_TOPIC = 'sluice.instances';
export const controlKey = (pipeline: string, setting: string): string => `${pipeline}/${setting}`;

/** The topics after `raw` whose values carry Avro contracts, one `.avsc` file each in `schemas/<kind>/`. */
export const CONTRACT_TOPICS = ['validated', 'scored', 'decided', 'review'] as const satisfies readonly TopicSuffix[];
export type ContractTopic = (typeof CONTRACT_TOPICS)[number];

// The records every pipeline's contracts carry (PRODUCT.md, Contracts): each
// `schemas/<kind>/*.avsc` starts with these fields, in this order; the
// pipeline's own (its payload, its decided record's extra fields) fill the type
// parameters. Times are epoch ms UTC (Avro timestamp-millis).

/** Who made a decision: the model, a rule of the policy, a human reviewer, or the fallback (no model). */
export type DecidedBy = 'model' | 'rule' | 'human' | 'fallback';

/** The envelope of a raw event as validated: the first fields of the validated and scored records. */
export interface RecordEnvelope {
  event_id: string;
  event_type: string;
  /** epoch ms UTC (Avro timestamp-millis; avsc decodes it as a Date unless told otherwise) */
  occurred_at: number;
  source: string;
}

/** `<p>.validated`: a raw event that passed the contract, normalized. */
export interface ValidatedRecord<P = unknown> extends RecordEnvelope {
  payload: P;
  /** unknown payload fields removed, sorted */
  dropped_fields: string[];
  validated_at: number;
}

/** `<p>.scored`: the validated record with the model's view of it. */
export interface ScoredRecord<P = unknown> extends RecordEnvelope {
  payload: P;
  /** binary: P(positive); multiclass: the top class probability; null when no model was consulted. */
  score: number | null;
  /** multiclass: the top class; null for a binary model or when no model was consulted. */
  label: string | null;
  /** multiclass: every class in the model's output order; [] for a binary model. */
  class_names: string[];
  /** Parallel to class_names. */
  class_scores: number[];
  model_version: string | null;
  /** The monitored features (ModelAdapter.monitoredNames), parallel to feature_values; never a hashed vector. Score writes one frozen array for every record. */
  feature_names: readonly string[];
  feature_values: number[];
  validated_at: number;
  scored_at: number;
}

/** `<p>.decided`: the common fields of a decision; a pipeline's own fields follow them. */
export interface DecisionRecord<D extends string = string> {
  event_id: string;
  pipeline: string;
  decision: D;
  decided_by: DecidedBy;
  reasons: string[];
  score: number | null;
  model_version: string | null;
  policy_version: string;
  decision_version: number;
  occurred_at: number;
  decided_at: number;
}

/** The common decision fields in contract order (each pipeline's decided.avsc starts with them); any other field is the pipeline's own. */
export const DECISION_COMMON_FIELDS = [
  'event_id',
  'pipeline',
  'decision',
  'decided_by',
  'reasons',
  'score',
  'model_version',
  'policy_version',
  'decision_version',
  'occurred_at',
  'decided_at',
] as const satisfies ReadonlyArray<keyof DecisionRecord>;

/** `<p>.review`: a decision of the review value, with the payload a reviewer needs. */
export type ReviewRecord<P = unknown, Decision extends DecisionRecord = DecisionRecord> = Decision & { payload: P };
