/**
 * The analytics schema in ClickHouse: database `sluice`, its tables (names are
 * part of the analysts' contract) and the versioned migrations that create
 * them. Applied by `sluice clickhouse migrate`; each applied version is
 * recorded in `sluice.schema_migrations` with a checksum of its statements.
 *
 * Every statement runs on ClickHouse 18.16 and on current ClickHouse:
 * - no DateTime64, Map, LowCardinality or TTL: times are UInt64 epoch
 *   milliseconds, with a DateTime MATERIALIZED from them for date functions
 *   (materialized, not DEFAULT: 18.16 fills omitted JSONEachRow fields with
 *   zeros instead of evaluating DEFAULT expressions);
 * - tables are partitioned by day (toYYYYMMDD) so retention drops partitions;
 * - every table is a ReplacingMergeTree whose sorting key identifies the Kafka
 *   record a row came from (or the event and its version), so a row the sink
 *   inserts twice (it is at-least-once) collapses. ReplacingMergeTree only
 *   collapses within a partition: the partition of a row is a function of the
 *   row itself, so a re-inserted row always lands in the same one. Queries
 *   must still deduplicate (uniqExact, argMax, GROUP BY) because merges run
 *   when they run.
 * - 18.16 has no `ADD COLUMN IF NOT EXISTS`: a later migration adds columns
 *   with `addColumn()`, one column per statement, and migrate takes "column
 *   already exists" with the same type as done (a migrate interrupted half way,
 *   or two running at once, then converges instead of failing for ever).
 */
import { createHash } from 'node:crypto';

export const DATABASE = 'sluice';

export const TABLES = {
  migrations: `${DATABASE}.schema_migrations`,
  stageEvents: `${DATABASE}.stage_events`,
  modelOutputs: `${DATABASE}.model_outputs`,
  decisions: `${DATABASE}.decisions`,
  deadLetters: `${DATABASE}.dead_letters`,
  /** What `sluice monitor` measured per window (migration 4); kept apart from DATA_TABLES, so retention of raw data leaves it. */
  monitorWindows: `${DATABASE}.monitor_windows`,
  /** The monitor's alerts, one row per state (firing, then resolved) of each (migration 5); kept apart from DATA_TABLES too. */
  alerts: `${DATABASE}.alerts`,
  /** Reviewers' labels from <p>.feedback, one row per resolved review or audit item (migration 6); kept apart from DATA_TABLES too. */
  labels: `${DATABASE}.labels`,
} as const;

/** The tables the sink writes and retention trims (all partitioned by day). */
export const DATA_TABLES = [TABLES.stageEvents, TABLES.modelOutputs, TABLES.decisions, TABLES.deadLetters] as const;
export type DataTable = (typeof DATA_TABLES)[number];

export interface Migration {
  version: number;
  name: string;
  statements: readonly string[];
}

/** `<column> DateTime MATERIALIZED` from an epoch-ms column: independent of the server's time zone. */
const fromMs = (column: string, ms: string) => `${column} DateTime MATERIALIZED toDateTime(intDiv(${ms}, 1000))`;

/** A column a migration adds to an existing table. */
export interface ColumnAddition {
  table: string;
  column: string;
  /** As system.columns spells it, e.g. `Array(String)`. */
  type: string;
}

/** The one statement that adds a column (rows written before it read the type's default: '', [], 0). */
export const addColumn = ({ table, column, type }: ColumnAddition, after: string): string =>
  `ALTER TABLE ${table} ADD COLUMN ${column} ${type} AFTER ${after}`;

/** The column a statement written by addColumn() adds; undefined for any other statement. */
export function columnAddition(statement: string): ColumnAddition | undefined {
  const match = /^ALTER TABLE (\S+) ADD COLUMN (\w+) (\S+) AFTER \w+$/.exec(statement);
  return match ? { table: match[1]!, column: match[2]!, type: match[3]! } : undefined;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'stage events, model outputs, decisions, dead letters',
    statements: [
      `CREATE TABLE IF NOT EXISTS ${TABLES.stageEvents} (
  pipeline String,
  stage String,
  outcome String,
  detail String,
  event_id String,
  decision_version UInt32,
  occurred_at_ms UInt64,
  stage_at_ms UInt64,
  kafka_topic String,
  kafka_partition UInt32,
  kafka_offset UInt64,
  kafka_timestamp_ms UInt64,
  ${fromMs('occurred_at', 'occurred_at_ms')},
  ${fromMs('stage_at', 'stage_at_ms')},
  inserted_at DateTime MATERIALIZED now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (pipeline, stage, outcome, event_id, kafka_partition, kafka_offset)`,
      `CREATE TABLE IF NOT EXISTS ${TABLES.modelOutputs} (
  pipeline String,
  event_id String,
  model_version String,
  score Float64,
  feature_names Array(String),
  feature_values Array(Float64),
  occurred_at_ms UInt64,
  scored_at_ms UInt64,
  kafka_partition UInt32,
  kafka_offset UInt64,
  ${fromMs('occurred_at', 'occurred_at_ms')},
  ${fromMs('scored_at', 'scored_at_ms')},
  inserted_at DateTime MATERIALIZED now()
) ENGINE = ReplacingMergeTree(scored_at_ms)
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (pipeline, event_id, model_version)`,
      `CREATE TABLE IF NOT EXISTS ${TABLES.decisions} (
  pipeline String,
  event_id String,
  decision String,
  decided_by String,
  reasons Array(String),
  score Nullable(Float64),
  model_version Nullable(String),
  policy_version String,
  decision_version UInt32,
  occurred_at_ms UInt64,
  decided_at_ms UInt64,
  kafka_partition UInt32,
  kafka_offset UInt64,
  ${fromMs('occurred_at', 'occurred_at_ms')},
  ${fromMs('decided_at', 'decided_at_ms')},
  inserted_at DateTime MATERIALIZED now()
) ENGINE = ReplacingMergeTree(decision_version)
PARTITION BY toYYYYMMDD(occurred_at)
ORDER BY (pipeline, event_id)`,
      `CREATE TABLE IF NOT EXISTS ${TABLES.deadLetters} (
  pipeline String,
  stage String,
  reason String,
  message String,
  event_id String,
  source_topic String,
  source_partition UInt32,
  source_offset UInt64,
  failed_at_ms UInt64,
  size_bytes UInt32,
  preview String,
  kafka_partition UInt32,
  kafka_offset UInt64,
  kafka_timestamp_ms UInt64,
  ${fromMs('failed_at', 'failed_at_ms')},
  inserted_at DateTime MATERIALIZED now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(failed_at)
ORDER BY (pipeline, stage, reason, kafka_partition, kafka_offset)`,
    ],
  },
  {
    version: 2,
    name: 'class probabilities in model outputs, pipeline-specific fields in decisions',
    statements: [
      addColumn({ table: TABLES.modelOutputs, column: 'label', type: 'String' }, 'score'),
      addColumn({ table: TABLES.modelOutputs, column: 'class_names', type: 'Array(String)' }, 'label'),
      addColumn({ table: TABLES.modelOutputs, column: 'class_scores', type: 'Array(Float64)' }, 'class_names'),
      addColumn({ table: TABLES.decisions, column: 'extra_names', type: 'Array(String)' }, 'decided_at_ms'),
      addColumn({ table: TABLES.decisions, column: 'extra_values', type: 'Array(String)' }, 'extra_names'),
    ],
  },
  {
    version: 3,
    name: 'replays and shadow scoring in decisions',
    statements: [
      addColumn({ table: TABLES.decisions, column: 'replay_id', type: 'String' }, 'extra_values'),
      addColumn({ table: TABLES.decisions, column: 'shadow_model_version', type: 'String' }, 'replay_id'),
      addColumn({ table: TABLES.decisions, column: 'shadow_score', type: 'Float64' }, 'shadow_model_version'),
      addColumn({ table: TABLES.decisions, column: 'shadow_decision', type: 'String' }, 'shadow_score'),
    ],
  },
  {
    version: 4,
    name: 'monitor windows: every check value per pipeline and window',
    statements: [
      // One row per pipeline, window, check and subject; a re-evaluation replaces it (the latest evaluated_at_ms stands).
      `CREATE TABLE IF NOT EXISTS ${TABLES.monitorWindows} (
  pipeline String,
  window_start_ms UInt64,
  window_ms UInt64,
  check String,
  subject String,
  value Float64,
  threshold Float64,
  status String,
  sample_size UInt64,
  detail String,
  model_version String,
  evaluated_at_ms UInt64,
  ${fromMs('window_start', 'window_start_ms')},
  inserted_at DateTime MATERIALIZED now()
) ENGINE = ReplacingMergeTree(evaluated_at_ms)
PARTITION BY toYYYYMM(window_start)
ORDER BY (pipeline, window_ms, check, subject, window_start_ms)`,
    ],
  },
  {
    version: 5,
    name: 'monitor alerts',
    statements: [
      // One row per alert and state: firing, then resolved; the latest updated_at_ms stands. started_at fixes the partition of both.
      `CREATE TABLE IF NOT EXISTS ${TABLES.alerts} (
  alert_id String,
  pipeline String,
  kind String,
  subject String,
  severity String,
  status String,
  value Float64,
  threshold Float64,
  window_start_ms UInt64,
  started_at_ms UInt64,
  resolved_at_ms UInt64,
  owners_team String,
  owners_oncall String,
  runbook String,
  updated_at_ms UInt64,
  ${fromMs('started_at', 'started_at_ms')},
  inserted_at DateTime MATERIALIZED now()
) ENGINE = ReplacingMergeTree(updated_at_ms)
PARTITION BY toYYYYMM(started_at)
ORDER BY (pipeline, kind, subject, alert_id)`,
    ],
  },
  {
    version: 6,
    name: 'review labels; reviewer, reason and corrected version in decisions',
    statements: [
      // One row per label (review/resolution.ts, <p>.feedback): the key is the label itself, so a row the sink writes twice collapses.
      // Kept apart from DATA_TABLES: retention of raw data leaves the labels that training reads.
      `CREATE TABLE IF NOT EXISTS ${TABLES.labels} (
  pipeline String,
  event_id String,
  item_id String,
  kind String,
  label String,
  label_field_names Array(String),
  label_field_values Array(String),
  reviewer String,
  reason String,
  original_decision String,
  original_decided_by String,
  original_decision_version UInt32,
  decision_version UInt32,
  score Nullable(Float64),
  model_version String,
  policy_version String,
  occurred_at_ms UInt64,
  created_at_ms UInt64,
  labeled_at_ms UInt64,
  kafka_partition UInt32,
  kafka_offset UInt64,
  ${fromMs('occurred_at', 'occurred_at_ms')},
  ${fromMs('created_at', 'created_at_ms')},
  ${fromMs('labeled_at', 'labeled_at_ms')},
  inserted_at DateTime MATERIALIZED now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(labeled_at)
ORDER BY (pipeline, event_id, item_id, reviewer, labeled_at_ms)`,
      addColumn({ table: TABLES.decisions, column: 'reviewed_by', type: 'String' }, 'shadow_decision'),
      addColumn({ table: TABLES.decisions, column: 'review_reason', type: 'String' }, 'reviewed_by'),
      addColumn({ table: TABLES.decisions, column: 'corrects_decision_version', type: 'UInt32' }, 'review_reason'),
    ],
  },
  {
    version: 7,
    name: 'event-time flags of validated events in stage events',
    // late / early (the pipeline's lateness and clock-skew bounds, validated.avsc's timeliness); '' within them and for other rows.
    statements: [addColumn({ table: TABLES.stageEvents, column: 'timeliness', type: 'String' }, 'detail')],
  },
];

/** Created before any migration runs (so they are not versions themselves). */
export const BOOTSTRAP_STATEMENTS = [
  `CREATE DATABASE IF NOT EXISTS ${DATABASE}`,
  `CREATE TABLE IF NOT EXISTS ${TABLES.migrations} (
  version UInt32,
  name String,
  checksum String,
  applied_at DateTime
) ENGINE = ReplacingMergeTree()
ORDER BY version`,
] as const;

/** A migration's fingerprint: editing an applied migration is refused instead of silently diverging. */
export function migrationChecksum(migration: Migration): string {
  return createHash('sha256').update(migration.statements.join('\n;\n')).digest('hex').slice(0, 16);
}

export const LATEST_SCHEMA_VERSION = Math.max(...MIGRATIONS.map((m) => m.version));

/** Row shapes as the sink inserts them (JSONEachRow; MATERIALIZED columns are computed by the server). */
export interface StageEventRow {
  pipeline: string;
  /** validate | score | decide: the stage that produced the record (for a dead letter, its dlq.stage). */
  stage: string;
  /** passed | dead_lettered | duplicate (validate dropped a copy of an event it validated within the window) */
  outcome: 'passed' | 'dead_lettered' | 'duplicate';
  /** decide: the decision; score: `unscored` when no model was consulted; dead letters: the reason. */
  detail: string;
  /** Migration 7; validate's `passed` rows: `late` or `early` when occurred_at was outside the pipeline's bounds; '' otherwise. */
  timeliness?: string;
  /** Empty for a dead letter whose bytes carry no readable event id. */
  event_id: string;
  /** decide: the record's decision_version; 0 elsewhere. */
  decision_version: number;
  /** For a dead letter whose bytes carry no readable occurred_at: its failed_at. */
  occurred_at_ms: number;
  /** validated_at, scored_at, decided_at, or the dead letter's failed_at. */
  stage_at_ms: number;
  kafka_topic: string;
  kafka_partition: number;
  kafka_offset: number;
  kafka_timestamp_ms: number;
}

export interface ModelOutputRow {
  pipeline: string;
  event_id: string;
  model_version: string;
  /** binary: P(positive); multiclass: the top class's probability. */
  score: number;
  /** multiclass: the predicted (top) class; '' for a binary model. */
  label: string;
  /** multiclass: every class, in the model's output order; [] for a binary model. */
  class_names: string[];
  /** Parallel to class_names: each class's probability. */
  class_scores: number[];
  /** The monitored features the scored record carries, by name. */
  feature_names: string[];
  feature_values: number[];
  occurred_at_ms: number;
  scored_at_ms: number;
  kafka_partition: number;
  kafka_offset: number;
}

export interface DecisionRow {
  pipeline: string;
  event_id: string;
  decision: string;
  decided_by: string;
  reasons: string[];
  score: number | null;
  model_version: string | null;
  policy_version: string;
  decision_version: number;
  occurred_at_ms: number;
  decided_at_ms: number;
  /** The decided record's fields beyond the common ones (e.g. ticket-triage's queue, priority), in schema order. */
  extra_names: string[];
  /** Parallel to extra_names, as text (see processors/sink/records.ts). */
  extra_values: string[];
  // Migration 3; an insert that leaves them out gets '' and 0.
  /** The replay that made this re-decision; '' for a decision made as the event flowed. */
  replay_id?: string;
  /** The challenger scored in shadow beside the deciding model; '' when none. */
  shadow_model_version?: string;
  /** The challenger's score; 0 when none (read it only where shadow_model_version != ''). */
  shadow_score?: number;
  /** What the policy would have decided on the challenger's score; '' when none. */
  shadow_decision?: string;
  kafka_partition: number;
  kafka_offset: number;
}

export interface DeadLetterRow {
  pipeline: string;
  stage: string;
  reason: string;
  /** dlq.message, with personal data masked. */
  message: string;
  event_id: string;
  source_topic: string;
  source_partition: number;
  source_offset: number;
  failed_at_ms: number;
  size_bytes: number;
  /** The first characters of the value, personal data masked. */
  preview: string;
  kafka_partition: number;
  kafka_offset: number;
  kafka_timestamp_ms: number;
}

/** One check's value in one window, as `sluice monitor` writes it (migration 4). */
export interface MonitorWindowRow {
  pipeline: string;
  /** The window's start, epoch ms, a multiple of window_ms. */
  window_start_ms: number;
  window_ms: number;
  /** feature_drift | score_drift | data_quality | output_collapse */
  check: string;
  /** The feature, field, `score` or `decision` the check judged. */
  subject: string;
  value: number;
  threshold: number;
  /** ok | breach | insufficient (too few events for a verdict) */
  status: string;
  sample_size: number;
  detail: string;
  /** The champion version whose card was the reference. */
  model_version: string;
  evaluated_at_ms: number;
}

/** Rows for each table, from one batch of records. */
export interface TableRows {
  stageEvents: StageEventRow[];
  modelOutputs: ModelOutputRow[];
  decisions: DecisionRow[];
  deadLetters: DeadLetterRow[];
}

export const TABLE_OF: Record<keyof TableRows, DataTable> = {
  stageEvents: TABLES.stageEvents,
  modelOutputs: TABLES.modelOutputs,
  decisions: TABLES.decisions,
  deadLetters: TABLES.deadLetters,
};
