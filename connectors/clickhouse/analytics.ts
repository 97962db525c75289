/**
 * The documented analyst queries: the exact SQL that docs/analytics.md shows
 * (a unit test keeps the two identical), that the tests run against the real
 * stack, and that the demo and `sluice clickhouse query` print.
 *
 * Every query works for any pipeline: it reads the columns all pipelines fill
 * (decisions by name, features by name, classes by name) and takes two
 * parameters in ClickHouse's own syntax, `{pipeline:String}` and
 * `{days:UInt32}`. Current ClickHouse binds them itself (clickhouse-client
 * `--param_pipeline=…`, HTTP `param_pipeline=…`); 18.16 has no query
 * parameters (its HTTP interface answers `Unknown setting param_pipeline`), so
 * scopedSql() puts them in as literals, the one place that does, for every
 * server alike.
 *
 * Each runs on ClickHouse 18.16 and on current ClickHouse, and each
 * deduplicates, so that a row the at-least-once sink wrote twice is never
 * counted twice, before or after ReplacingMergeTree merges:
 * - decisions: argMax(…, decision_version) per event: the latest version stands;
 * - stage events and dead letters: one Kafka record counted once
 *   (uniqExact over its partition and offset, or GROUP BY event);
 * - model outputs: one row per (event, model version).
 * Aggregate aliases never reuse a column name (old ClickHouse substitutes
 * aliases into expressions and then rejects `argMax(decision, …) AS decision`),
 * and no aggregate takes a Nullable argument (18.16 skips NULLs in argMax,
 * current ClickHouse keeps them: ifNull makes both agree).
 */
import { SluiceError } from '../../lib/errors.ts';
import { type ClickHouseClient, clickHouseError, queryRows, quote } from './client.ts';

export interface DocumentedQuery {
  name: string;
  title: string;
  /** What an analyst learns from it; shown in the docs above the SQL. */
  question: string;
  sql: string;
}

/** The parameters every documented query takes, as its SQL spells them. */
export const QUERY_PARAMETERS = { pipeline: '{pipeline:String}', days: '{days:UInt32}' } as const;

/** The per-event pivot of stage times that the latency queries share. */
const STAGE_TIMES = `    SELECT
        event_id,
        min(occurred_at_ms) AS occurred_ms,
        minIf(stage_at_ms, stage = 'validate') AS validated_ms,
        minIf(stage_at_ms, stage = 'score') AS scored_ms,
        minIf(stage_at_ms, stage = 'decide') AS decided_ms
    FROM sluice.stage_events
    WHERE pipeline = {pipeline:String} AND outcome = 'passed' AND occurred_at >= now() - INTERVAL {days:UInt32} DAY
    GROUP BY event_id
    HAVING countIf(stage = 'validate') > 0 AND countIf(stage = 'score') > 0 AND countIf(stage = 'decide') > 0`;

const LATEST_DECISIONS = `    SELECT
        event_id,
        any(occurred_at) AS occurred_time,
        argMax(decision, decision_version) AS latest_decision,
        argMax(decided_by, decision_version) AS latest_decided_by,
        argMax(ifNull(model_version, 'none'), decision_version) AS latest_model_version,
        argMax(decided_at, decision_version) AS latest_decided_at,
        argMax(extra_names, decision_version) AS field_names,
        argMax(extra_values, decision_version) AS field_values
    FROM sluice.decisions
    WHERE pipeline = {pipeline:String} AND occurred_at >= now() - INTERVAL {days:UInt32} DAY
    GROUP BY event_id`;

const LATEST_MODEL_OUTPUTS = `    SELECT
        event_id,
        model_version,
        max(scored_at) AS scored_time,
        argMax(score, scored_at_ms) AS latest_score,
        argMax(label, scored_at_ms) AS latest_label,
        argMax(class_names, scored_at_ms) AS classes,
        argMax(class_scores, scored_at_ms) AS probs,
        argMax(feature_names, scored_at_ms) AS names,
        argMax(feature_values, scored_at_ms) AS vals
    FROM sluice.model_outputs
    WHERE pipeline = {pipeline:String} AND occurred_at >= now() - INTERVAL {days:UInt32} DAY
    GROUP BY event_id, model_version`;

export const DOCUMENTED_QUERIES: readonly DocumentedQuery[] = [
  {
    name: 'decision-mix',
    title: 'Decision mix per hour and model version',
    question: 'How many events ended with each decision (approve, review, block; route, review; whatever the pipeline decides), per hour and model version? Only the latest decision_version of each event counts.',
    sql: `SELECT
    toStartOfHour(latest_decided_at) AS hour,
    latest_model_version AS model_version,
    latest_decision AS decision,
    count() AS events
FROM
(
${LATEST_DECISIONS}
)
GROUP BY hour, model_version, decision
ORDER BY hour, model_version, decision`,
  },
  {
    name: 'stage-latency',
    title: 'p50 and p99 latency per stage',
    question:
      'How long does each hop take, in milliseconds? validate: occurred_at to validated_at (includes the producer\'s own delay); score: validated_at to scored_at; decide: scored_at to decided_at; end_to_end: occurred_at to decided_at. Events that completed all three stages, first pass.',
    sql: `SELECT
    hop,
    count() AS events,
    quantileExact(0.5)(latency_ms) AS p50_ms,
    quantileExact(0.99)(latency_ms) AS p99_ms,
    max(latency_ms) AS max_ms
FROM
(
${STAGE_TIMES}
)
ARRAY JOIN
    ['validate', 'score', 'decide', 'end_to_end'] AS hop,
    [toInt64(validated_ms) - toInt64(occurred_ms),
     toInt64(scored_ms) - toInt64(validated_ms),
     toInt64(decided_ms) - toInt64(scored_ms),
     toInt64(decided_ms) - toInt64(occurred_ms)] AS latency_ms
GROUP BY hop
ORDER BY indexOf(['validate', 'score', 'decide', 'end_to_end'], hop)`,
  },
  {
    name: 'dead-letter-reasons',
    title: 'Dead-letter reasons over time',
    question: 'Which stages dead-lettered how many records, for which reasons, per hour?',
    sql: `SELECT
    toStartOfHour(failed_at) AS hour,
    stage,
    reason,
    uniqExact(kafka_partition, kafka_offset) AS dead_letters
FROM sluice.dead_letters
WHERE pipeline = {pipeline:String} AND failed_at >= now() - INTERVAL {days:UInt32} DAY
GROUP BY hour, stage, reason
ORDER BY hour, dead_letters DESC, stage, reason`,
  },
  {
    name: 'score-distribution',
    title: 'Score distribution per hour',
    question:
      'How are model scores spread, in buckets of 0.1, per hour and model version? The score is P(positive) for a binary model and the top class\'s probability for a multiclass one. A shifting shape is the first sign of drift.',
    sql: `SELECT
    toStartOfHour(scored_time) AS hour,
    model_version,
    least(floor(latest_score * 10), 9) / 10 AS bucket_from,
    count() AS events
FROM
(
${LATEST_MODEL_OUTPUTS}
)
GROUP BY hour, model_version, bucket_from
ORDER BY hour, model_version, bucket_from`,
  },
  {
    name: 'feature-stats',
    title: 'Feature means and quantiles per hour',
    question: 'What did the model see? Mean, p05, p50 and p95 of every monitored feature the pipeline records, per hour and model version.',
    sql: `SELECT
    toStartOfHour(scored_time) AS hour,
    model_version,
    feature,
    count() AS events,
    round(avg(value), 6) AS mean,
    quantileExact(0.05)(value) AS p05,
    quantileExact(0.5)(value) AS p50,
    quantileExact(0.95)(value) AS p95
FROM
(
${LATEST_MODEL_OUTPUTS}
)
ARRAY JOIN names AS feature, vals AS value
GROUP BY hour, model_version, feature
ORDER BY hour, model_version, feature`,
  },
  {
    name: 'loss-check',
    title: 'Events in vs events decided (loss check)',
    question:
      'Did every event that came in leave with a decision or a dead letter? events_in = validated + rejected at validation; unaccounted = validated − decided − dead-lettered later. Non-zero while events are in flight; must return to 0.',
    sql: `SELECT
    toStartOfHour(occurred_at) AS hour,
    uniqExactIf(event_id, stage = 'validate' AND outcome = 'passed') AS validated,
    uniqExactIf(kafka_partition, kafka_offset, stage = 'validate' AND outcome = 'dead_lettered') AS rejected,
    validated + rejected AS events_in,
    uniqExactIf(event_id, stage = 'score' AND outcome = 'passed') AS scored,
    uniqExactIf(event_id, stage = 'decide' AND outcome = 'passed') AS decided,
    uniqExactIf(kafka_partition, kafka_offset, stage IN ('score', 'decide') AND outcome = 'dead_lettered') AS dead_lettered_later,
    toInt64(validated) - toInt64(decided) - toInt64(dead_lettered_later) AS unaccounted
FROM sluice.stage_events
WHERE pipeline = {pipeline:String} AND occurred_at >= now() - INTERVAL {days:UInt32} DAY
GROUP BY hour
ORDER BY hour`,
  },
  {
    name: 'review-rate',
    title: 'Review rate',
    question:
      'What share of events went to human review (the decision `review`), how many have reviewers resolved, and how many still wait? Per hour of occurrence, from the standing decision of each event.',
    sql: `SELECT
    toStartOfHour(occurred_time) AS hour,
    count() AS events,
    countIf(latest_decision = 'review' OR latest_decided_by = 'human') AS sent_to_review,
    round(sent_to_review / events, 4) AS review_rate,
    countIf(latest_decided_by = 'human') AS resolved_by_reviewers,
    countIf(latest_decision = 'review' AND latest_decided_by != 'human') AS awaiting_review
FROM
(
${LATEST_DECISIONS}
)
GROUP BY hour
ORDER BY hour`,
  },
  {
    name: 'slowest-events',
    title: 'The slowest events',
    question: 'Which 20 events took longest from occurrence to decision, and in which hop did they spend it?',
    sql: `SELECT
    event_id,
    toDateTime(intDiv(occurred_ms, 1000)) AS occurred,
    toInt64(validated_ms) - toInt64(occurred_ms) AS validate_ms,
    toInt64(scored_ms) - toInt64(validated_ms) AS score_ms,
    toInt64(decided_ms) - toInt64(scored_ms) AS decide_ms,
    toInt64(decided_ms) - toInt64(occurred_ms) AS end_to_end_ms
FROM
(
${STAGE_TIMES}
)
ORDER BY end_to_end_ms DESC, event_id
LIMIT 20`,
  },
  {
    name: 'decided-by',
    title: 'Who decided: model, rule, fallback or human',
    question: 'Per hour, how many standing decisions came from the model, a rule, the kill-switch fallback or a reviewer? A jump in fallback means the model was switched off.',
    sql: `SELECT
    toStartOfHour(latest_decided_at) AS hour,
    latest_decided_by AS decided_by,
    count() AS events
FROM
(
${LATEST_DECISIONS}
)
GROUP BY hour, decided_by
ORDER BY hour, decided_by`,
  },
  {
    name: 'recent-dead-letters',
    title: 'The latest dead letters, with masked previews',
    question: 'What do the most recent dead letters look like? Personal data in the preview and message is masked.',
    sql: `SELECT
    failed_at,
    stage,
    reason,
    message,
    event_id,
    source_topic,
    source_partition,
    source_offset,
    size_bytes,
    preview
FROM sluice.dead_letters
WHERE pipeline = {pipeline:String} AND failed_at >= now() - INTERVAL {days:UInt32} DAY
ORDER BY failed_at DESC, kafka_partition, kafka_offset
LIMIT 1 BY kafka_partition, kafka_offset
LIMIT 20`,
  },
  {
    name: 'class-distribution',
    title: 'Class probabilities and predicted labels per hour',
    question:
      'For a multiclass model: per hour, model version and class, the mean probability the model gave the class, and how many events it predicted as that class (their share is the label mix). No rows for a binary model, which records no classes.',
    sql: `SELECT
    toStartOfHour(scored_time) AS hour,
    model_version,
    class_name,
    count() AS events,
    round(avg(class_score), 6) AS mean_score,
    countIf(latest_label = class_name) AS predicted,
    round(predicted / events, 4) AS predicted_share
FROM
(
${LATEST_MODEL_OUTPUTS}
)
ARRAY JOIN classes AS class_name, probs AS class_score
GROUP BY hour, model_version, class_name
ORDER BY hour, model_version, class_name`,
  },
  {
    name: 'decision-fields',
    title: 'Pipeline-specific decision fields per hour',
    question:
      'How do the standing decisions spread over the fields a pipeline adds to its decision record (a queue and a priority, say), per hour and decision? No rows for a pipeline whose decisions carry no fields of their own.',
    sql: `SELECT
    toStartOfHour(latest_decided_at) AS hour,
    latest_decision AS decision,
    field,
    value,
    count() AS events
FROM
(
${LATEST_DECISIONS}
)
ARRAY JOIN field_names AS field, field_values AS value
GROUP BY hour, decision, field, value
ORDER BY hour, decision, field, value`,
  },
  {
    name: 'shadow-comparison',
    title: 'Champion vs challenger (shadow scoring) per hour',
    question:
      'While a challenger is scored in shadow, how often would its decision (the same policy applied to its score) agree with the champion\'s, and how far apart are their scores? Per hour of decision and pair of versions: the share of events decided alike, and quantiles of |challenger score − champion score|. Events decided while no challenger was set do not appear.',
    sql: `SELECT
    toStartOfHour(decided_time) AS hour,
    champion_version,
    challenger_version,
    count() AS events,
    countIf(champion_decision = challenger_decision) AS agreeing,
    round(agreeing / events, 4) AS agreement,
    round(quantileExact(0.5)(score_difference), 6) AS p50_difference,
    round(quantileExact(0.9)(score_difference), 6) AS p90_difference,
    round(quantileExact(0.99)(score_difference), 6) AS p99_difference,
    round(max(score_difference), 6) AS max_difference
FROM
(
    SELECT
        event_id,
        argMax(decided_at, decision_version) AS decided_time,
        argMax(ifNull(model_version, 'none'), decision_version) AS champion_version,
        argMax(shadow_model_version, decision_version) AS challenger_version,
        argMax(decision, decision_version) AS champion_decision,
        argMax(shadow_decision, decision_version) AS challenger_decision,
        abs(argMax(shadow_score, decision_version) - argMax(ifNull(score, 0), decision_version)) AS score_difference
    FROM sluice.decisions
    WHERE pipeline = {pipeline:String} AND occurred_at >= now() - INTERVAL {days:UInt32} DAY AND notEmpty(shadow_model_version)
    GROUP BY event_id
)
GROUP BY hour, champion_version, challenger_version
ORDER BY hour, champion_version, challenger_version`,
  },
];

export function documentedQuery(name: string): DocumentedQuery {
  const query = DOCUMENTED_QUERIES.find((q) => q.name === name);
  if (!query) {
    throw new SluiceError('QUERY_UNKNOWN', `No documented query "${name}". Known: ${DOCUMENTED_QUERIES.map((q) => q.name).join(', ')}.`);
  }
  return query;
}

export interface QueryScope {
  /** The pipeline (instance) name, e.g. `signup-risk-staging`. */
  pipeline: string;
  /** How far back, in days; default 1. */
  days?: number;
}

const PARAMETER = /\{(\w+):(\w+)\}/g;

/**
 * A documented query's SQL with its parameters bound as literals: the pipeline
 * name (letters, digits, `.`, `_`, `-` only, and quoted) and the days (a whole
 * number). The one place SQL text gets values; see the file comment for why.
 */
export function scopedSql(query: DocumentedQuery, scope: QueryScope): string {
  const { pipeline } = scope;
  const days = scope.days ?? 1;
  if (typeof pipeline !== 'string' || !/^[a-zA-Z0-9._-]+$/.test(pipeline)) {
    throw new SluiceError('CONFIG_INVALID', `Invalid pipeline name "${pipeline}": use letters, digits, '.', '_' and '-'.`);
  }
  if (!Number.isSafeInteger(days) || days < 1 || days > 0xffff_ffff) {
    throw new SluiceError('CONFIG_INVALID', `days must be a whole number >= 1, got ${days}.`);
  }
  const values: Record<string, string> = { [QUERY_PARAMETERS.pipeline]: quote(pipeline), [QUERY_PARAMETERS.days]: String(days) };
  return query.sql.replace(PARAMETER, (parameter) => {
    const value = values[parameter];
    if (value === undefined) throw new SluiceError('QUERY_UNKNOWN', `The documented query ${query.name} has a parameter ${parameter} that nothing binds.`);
    return value;
  });
}

export type QueryRow = Record<string, unknown>;

/**
 * Runs a documented query by name and returns its rows (JSONEachRow: 64-bit
 * integers arrive as strings, as ClickHouse writes them).
 */
export async function runDocumentedQuery(client: ClickHouseClient, name: string, scope: QueryScope): Promise<QueryRow[]> {
  const sql = scopedSql(documentedQuery(name), scope);
  try {
    return await queryRows<QueryRow>(client, sql);
  } catch (error) {
    throw clickHouseError(error, `the documented query ${name}`);
  }
}

/** Rows as an aligned text table, for terminals. */
export function formatRows(rows: QueryRow[]): string {
  if (rows.length === 0) return '(no rows)\n';
  const columns = Object.keys(rows[0]!);
  const cell = (value: unknown) => {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  };
  const cells = rows.map((row) => columns.map((column) => cell(row[column])));
  const widths = columns.map((column, i) => Math.max(column.length, ...cells.map((r) => r[i]!.length)));
  return `${[columns, ...cells].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')}\n`;
}
