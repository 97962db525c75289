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
  // Review and labels (the review service's labels table, migration 6).
  {
    name: 'realized-performance',
    title: 'Realized performance per model version, against reviewers\' labels',
    question:
      "How good are the automatic decisions where a human checked them? Per model version and decision: of the events decided so and then audited (`predicted_events`), how many a reviewer confirmed unchanged (precision); of the events reviewers labeled so, audits and review items alike (`labeled_events`), how many the automatic decision had right (recall). A reviewer confirms only by leaving decision and fields as they were (a label at the automatic decision's own version), so a ticket routed to the wrong queue counts as wrong. Audits are a random sample, so precision is unbiased; recall also counts review items, where the model abstained (the review decision's row: precision 0 by construction).",
    sql: `SELECT
    model,
    class,
    countIf(predicted = class) AS predicted_events,
    countIf(predicted = class AND agreed = 1) AS confirmed,
    round(if(predicted_events = 0, 0, confirmed / predicted_events), 4) AS precision,
    countIf(actual = class) AS labeled_events,
    round(if(labeled_events = 0, 0, countIf(actual = class AND agreed = 1) / labeled_events), 4) AS recall
FROM
(
    SELECT
        event_id,
        argMax(if(model_version = '', 'none', model_version), labeled_at_ms) AS model,
        argMax(original_decision, labeled_at_ms) AS predicted,
        argMax(label, labeled_at_ms) AS actual,
        argMax(decision_version = original_decision_version, labeled_at_ms) AS agreed
    FROM sluice.labels
    WHERE pipeline = {pipeline:String} AND labeled_at >= now() - INTERVAL {days:UInt32} DAY
    GROUP BY event_id
)
ARRAY JOIN arrayFilter(c -> notEmpty(c), [predicted, if(actual = predicted, '', actual)]) AS class
GROUP BY model, class
ORDER BY model, class`,
  },
  {
    name: 'review-volume',
    title: 'Review volume per hour and kind of item',
    question:
      'How much do reviewers resolve, and how often do they change what they see? Per hour of resolution and kind (review: the pipeline sent it to review; audit: a sampled automatic decision): labels, reviewers at work, and decisions the reviewer replaced (every review item; for audits, the overrides).',
    sql: `SELECT
    toStartOfHour(labeled_time) AS hour,
    item_kind,
    count() AS labels,
    uniqExact(reviewer) AS reviewers,
    countIf(replaced = 1) AS replaced_decisions,
    round(replaced_decisions / labels, 4) AS replaced_share
FROM
(
    SELECT
        event_id,
        item_id,
        reviewer,
        labeled_at_ms,
        any(kind) AS item_kind,
        any(labeled_at) AS labeled_time,
        any(decision_version != original_decision_version) AS replaced
    FROM sluice.labels
    WHERE pipeline = {pipeline:String} AND labeled_at >= now() - INTERVAL {days:UInt32} DAY
    GROUP BY event_id, item_id, reviewer, labeled_at_ms
)
GROUP BY hour, item_kind
ORDER BY hour, item_kind`,
  },
  {
    name: 'review-time',
    title: 'Time to resolve and SLA breaches per hour',
    question:
      "How long do items wait for a reviewer, and how many ran out of time? Per hour and kind: items resolved and the p50, p90 and max time from the decision under review to its label (seconds, to the tenth below); items that expired to the manifest's fallback decision (decided_by fallback, review_reason review_expired: SLA breaches, hour of expiry). An expired audit writes no decision (its automatic decision stands), so breaches count review items.",
    sql: `SELECT
    hour,
    item_kind,
    countIf(expired = 0) AS resolved_items,
    countIf(expired = 1) AS sla_breaches,
    intDiv(quantileExactIf(0.5)(wait_ms, expired = 0), 100) / 10 AS p50_seconds,
    intDiv(quantileExactIf(0.9)(wait_ms, expired = 0), 100) / 10 AS p90_seconds,
    intDiv(maxIf(wait_ms, expired = 0), 100) / 10 AS max_seconds
FROM
(
    SELECT
        toStartOfHour(any(labeled_at)) AS hour,
        any(kind) AS item_kind,
        toUInt8(0) AS expired,
        toUInt64(any(if(labeled_at_ms > created_at_ms, labeled_at_ms - created_at_ms, 0))) AS wait_ms
    FROM sluice.labels
    WHERE pipeline = {pipeline:String} AND labeled_at >= now() - INTERVAL {days:UInt32} DAY
    GROUP BY event_id, item_id, reviewer, labeled_at_ms
    UNION ALL
    SELECT
        toStartOfHour(any(decided_at)) AS hour,
        'review' AS item_kind,
        toUInt8(1) AS expired,
        toUInt64(0) AS wait_ms
    FROM sluice.decisions
    WHERE pipeline = {pipeline:String} AND occurred_at >= now() - INTERVAL {days:UInt32} DAY AND decided_by = 'fallback' AND review_reason = 'review_expired'
    GROUP BY event_id
)
GROUP BY hour, item_kind
ORDER BY hour, item_kind`,
  },
  {
    name: 'reviewer-agreement',
    title: 'Reviewer agreement on events labeled twice',
    question:
      'Where two reviewers labeled the same event, did they agree? Per kind of item: events labeled by at least two reviewers, how many got one and the same answer (decision and fields) from all of them, and the share. The review service resolves an item once, so an event has two labels only where it was reviewed twice on purpose (a second-opinion round, written to the labels table like any label); without such rounds this query returns no rows.',
    sql: `SELECT
    item_kind,
    count() AS labeled_twice,
    countIf(answers = 1) AS agreeing,
    round(agreeing / labeled_twice, 4) AS agreement
FROM
(
    SELECT
        event_id,
        any(kind) AS item_kind,
        uniqExact(reviewer) AS reviewers_count,
        uniqExact(arrayStringConcat(arrayConcat([label], label_field_values), ',')) AS answers
    FROM sluice.labels
    WHERE pipeline = {pipeline:String} AND labeled_at >= now() - INTERVAL {days:UInt32} DAY
    GROUP BY event_id
    HAVING reviewers_count >= 2
)
GROUP BY item_kind
ORDER BY item_kind`,
  },
];

export function documentedQuery(name: string): DocumentedQuery {
  const query = ALL_QUERIES.find((q) => q.name === name);
  if (!query) {
    throw new SluiceError('QUERY_UNKNOWN', `No documented query "${name}". Known: ${ALL_QUERIES.map((q) => q.name).join(', ')}.`);
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

/** One row per monitor window, check and subject: the latest evaluation stands (a re-judged window is counted once). */
const LATEST_MONITOR_WINDOWS = `    SELECT
        window_start_ms,
        window_ms,
        check AS check_kind,
        subject,
        any(window_start) AS window_time,
        argMax(value, evaluated_at_ms) AS latest_value,
        argMax(threshold, evaluated_at_ms) AS latest_threshold,
        argMax(status, evaluated_at_ms) AS latest_status,
        argMax(detail, evaluated_at_ms) AS latest_detail
    FROM sluice.monitor_windows`;

/**
 * The monitor's queries (docs/analytics.md, "Monitoring: drift, data quality
 * and alerts"), over what `sluice monitor` writes: sluice.monitor_windows and
 * sluice.alerts. `sluice clickhouse query <name>` runs them like the others.
 * They are kept apart from DOCUMENTED_QUERIES because they name the monitor's
 * check kinds and statuses (the same for every pipeline, but not values the
 * sink's tables hold) and read tables only a running monitor fills;
 * test/unit/monitor-analytics.test.ts and
 * test/integration/monitor-analytics.test.ts hold them to the same rules.
 */
export const MONITOR_QUERIES: readonly DocumentedQuery[] = [
  {
    name: 'drift-over-time',
    title: 'Drift per feature and hour',
    question:
      'Which features (and the score) moved away from the champion\'s reference, when, and how far? Per hour, check (feature_drift, score_drift) and subject: windows judged, the worst and mean population stability index, its threshold, windows in breach and windows with too few events for a verdict.',
    sql: `SELECT
    toStartOfHour(window_time) AS hour,
    check_kind,
    subject,
    count() AS windows,
    round(max(latest_value), 4) AS worst_psi,
    round(avg(latest_value), 4) AS mean_psi,
    max(latest_threshold) AS psi_threshold,
    countIf(latest_status = 'breach') AS breached_windows,
    countIf(latest_status = 'insufficient') AS windows_without_verdict
FROM
(
${LATEST_MONITOR_WINDOWS}
    WHERE pipeline = {pipeline:String} AND check IN ('feature_drift', 'score_drift') AND window_start >= now() - INTERVAL {days:UInt32} DAY
    GROUP BY window_start_ms, window_ms, check, subject
)
GROUP BY hour, check_kind, subject
ORDER BY hour, check_kind, worst_psi DESC, subject`,
  },
  {
    name: 'data-quality',
    title: 'Data quality per field and hour',
    question:
      'Which fields went missing, or which features out of their reference range, and how much? Per hour and subject: the measure (null_rate for a payload field, out_of_range for a feature), windows judged, the mean and worst rate, its threshold and windows in breach.',
    sql: `SELECT
    toStartOfHour(window_time) AS hour,
    subject,
    if(position(latest_detail, 'null rate') = 1, 'null_rate', 'out_of_range') AS measure,
    count() AS windows,
    round(avg(latest_value), 4) AS mean_rate,
    round(max(latest_value), 4) AS worst_rate,
    max(latest_threshold) AS rate_threshold,
    countIf(latest_status = 'breach') AS breached_windows
FROM
(
${LATEST_MONITOR_WINDOWS}
    WHERE pipeline = {pipeline:String} AND check = 'data_quality' AND window_start >= now() - INTERVAL {days:UInt32} DAY
    GROUP BY window_start_ms, window_ms, check, subject
)
GROUP BY hour, subject, measure
ORDER BY hour, breached_windows DESC, subject`,
  },
  {
    name: 'alert-history',
    title: 'Alert history',
    question:
      'What fired, for how long, and who was told? Every alert the monitor raised, newest first, in its latest state: kind, subject, severity, firing or resolved, when it started, how many minutes it was open (0 while it fires), the value and threshold of the window that last changed it, the on-call and the runbook.',
    sql: `SELECT
    alert_id,
    argMax(kind, updated_at_ms) AS alert_kind,
    argMax(subject, updated_at_ms) AS alert_subject,
    argMax(severity, updated_at_ms) AS alert_severity,
    argMax(status, updated_at_ms) AS latest_status,
    toDateTime(intDiv(max(started_at_ms), 1000)) AS started,
    max(resolved_at_ms) AS resolved_ms,
    round(if(resolved_ms = 0, 0, resolved_ms - max(started_at_ms)) / 60000, 1) AS minutes_open,
    argMax(value, updated_at_ms) AS latest_value,
    argMax(threshold, updated_at_ms) AS latest_threshold,
    argMax(owners_oncall, updated_at_ms) AS oncall,
    argMax(runbook, updated_at_ms) AS runbook_page
FROM sluice.alerts
WHERE pipeline = {pipeline:String} AND started_at >= now() - INTERVAL {days:UInt32} DAY
GROUP BY alert_id
ORDER BY started DESC, alert_id`,
  },
];

/** Every query `sluice clickhouse query NAME` runs: the analysts' and the monitor's. */
export const ALL_QUERIES: readonly DocumentedQuery[] = [...DOCUMENTED_QUERIES, ...MONITOR_QUERIES];
