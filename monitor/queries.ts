/**
 * What the monitor asks ClickHouse: per window, histograms over the champion
 * card's reference bins (one GROUP BY of a few hundred rows at most, whatever
 * the traffic) and the decision mix. The statistics are computed in
 * TypeScript over these counts (monitor/stats.ts); no raw row leaves
 * ClickHouse.
 *
 * SQL for ClickHouse 18.16 and current alike: no query parameters (values are
 * inlined: quote() for strings, float literals for numbers), no window
 * functions; each query deduplicates the at-least-once sink's rows (argMax per
 * event) before counting.
 */
import { type ClickHouseClient, clickHouseError, queryRows, quote } from '../connectors/clickhouse/client.ts';
import { TABLES, type MonitorWindowRow } from '../connectors/clickhouse/schema.ts';
import type { ModelCard, ReferenceDistribution } from '../connectors/onnx/card.ts';
import type { FlowWindow, Histogram, WindowStats } from './checks.ts';
import type { Window } from './windows.ts';

/** The name the score takes beside the features in the histogram query; never a feature name (features are identifiers). */
const SCORE_SUBJECT = '@score';

/** A Float64 literal (an integral edge such as -1 would otherwise make an integer array). */
export function floatLiteral(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError(`not a finite number: ${x}`);
  const text = String(x);
  return /[.eE]/.test(text) ? text : `${text}.0`;
}

const floats = (xs: readonly number[]) => `[${xs.map(floatLiteral).join(', ')}]`;

/** The time condition of a window on a table's occurred_at (its partition key, so old days are never read) and its ms column. */
function inWindow(window: Window): string {
  const end = window.startMs + window.lengthMs;
  return `occurred_at >= toDateTime(${Math.floor(window.startMs / 1000)}) AND occurred_at <= toDateTime(${Math.ceil(end / 1000)}) AND occurred_at_ms >= ${window.startMs} AND occurred_at_ms < ${end}`;
}

/**
 * Per subject and bin: how many events, how many outside the reference range,
 * and the sum and sum of squares of the values (for mean and spread).
 */
export function histogramSql(args: { pipeline: string; modelVersion: string; window: Window; references: ReadonlyArray<{ name: string; reference: ReferenceDistribution }> }): string {
  const names = `[${args.references.map((r) => quote(r.name)).join(', ')}]`;
  const at = (column: string) => `arrayElement(${column}, indexOf(${names}, name))`;
  const edges = `[${args.references.map((r) => floats(r.reference.edges)).join(', ')}]`;
  return `SELECT
    name,
    arrayCount(e -> e < value, ${at(edges)}) AS bin,
    count() AS n,
    sum(value < ${at(floats(args.references.map((r) => r.reference.min)))} OR value > ${at(floats(args.references.map((r) => r.reference.max)))}) AS out_of_range,
    sum(value) AS total,
    sum(value * value) AS total_squares
FROM
(
    SELECT
        event_id,
        argMax(feature_names, scored_at_ms) AS names,
        argMax(feature_values, scored_at_ms) AS vals,
        argMax(score, scored_at_ms) AS scored
    FROM ${TABLES.modelOutputs}
    WHERE pipeline = ${quote(args.pipeline)} AND model_version = ${quote(args.modelVersion)} AND ${inWindow(args.window)}
    GROUP BY event_id
)
ARRAY JOIN arrayPushBack(names, ${quote(SCORE_SUBJECT)}) AS name, arrayPushBack(vals, scored) AS value
WHERE indexOf(${names}, name) > 0
GROUP BY name, bin`;
}

export function decisionMixSql(args: { pipeline: string; window: Window }): string {
  return `SELECT
    latest_decision,
    count() AS n
FROM
(
    SELECT event_id, argMax(decision, decision_version) AS latest_decision
    FROM ${TABLES.decisions}
    WHERE pipeline = ${quote(args.pipeline)} AND ${inWindow(args.window)}
    GROUP BY event_id
)
GROUP BY latest_decision`;
}

/**
 * Per window (of `count` ending with `window`), stage, outcome and
 * dead-letter reason: how many Kafka records, each counted once.
 */
export function flowSql(args: { pipeline: string; window: Window; count: number }): string {
  const span: Window = { startMs: args.window.startMs - (args.count - 1) * args.window.lengthMs, lengthMs: args.count * args.window.lengthMs };
  return `SELECT
    intDiv(occurred_at_ms, ${args.window.lengthMs}) * ${args.window.lengthMs} AS window_start_ms,
    stage,
    outcome,
    if(outcome = 'dead_lettered', detail, '') AS reason,
    uniqExact(kafka_topic, kafka_partition, kafka_offset) AS records
FROM ${TABLES.stageEvents}
WHERE pipeline = ${quote(args.pipeline)} AND ${inWindow(span)}
GROUP BY window_start_ms, stage, outcome, reason`;
}

/** The flow of `window` and of the `historyWindows` before it (oldest first; windows without records hold zeros). */
export async function readFlow(client: ClickHouseClient, args: { pipeline: string; window: Window; historyWindows: number }): Promise<{ current: FlowWindow; history: FlowWindow[] }> {
  let rows: Array<{ window_start_ms: number | string; stage: string; outcome: string; reason: string; records: number | string }>;
  try {
    rows = await queryRows(client, flowSql({ pipeline: args.pipeline, window: args.window, count: args.historyWindows + 1 }));
  } catch (error) {
    throw clickHouseError(error, `reading the record flow of ${args.pipeline} up to ${new Date(args.window.startMs).toISOString()}`);
  }
  const windows: Array<FlowWindow & { passed: Record<string, number>; deadLetters: Record<string, number> }> = [];
  for (let i = args.historyWindows; i >= 0; i--) windows.push({ startMs: args.window.startMs - i * args.window.lengthMs, inputs: 0, passed: {}, deadLetters: {} });
  const byStart = new Map(windows.map((w) => [w.startMs, w]));
  for (const row of rows) {
    const w = byStart.get(Number(row.window_start_ms));
    if (!w) continue;
    const n = Number(row.records);
    if (row.outcome === 'passed') w.passed[row.stage] = (w.passed[row.stage] ?? 0) + n;
    else w.deadLetters[row.reason] = (w.deadLetters[row.reason] ?? 0) + n;
    if (row.stage === 'validate') w.inputs += n;
  }
  return { current: windows.at(-1)!, history: windows.slice(0, -1) };
}

interface HistogramRow {
  name: string;
  bin: number | string;
  n: number | string;
  out_of_range: number | string;
  total: number;
  total_squares: number;
}

/** Reads one window's histograms and decision mix for the card's monitored features and score. */
export async function readWindowStats(
  client: ClickHouseClient,
  args: { pipeline: string; modelVersion: string; card: ModelCard; monitoredNames: readonly string[]; window: Window },
): Promise<WindowStats> {
  const references = [
    ...args.monitoredNames.flatMap((name) => (args.card.reference.features[name] ? [{ name, reference: args.card.reference.features[name]! }] : [])),
    { name: SCORE_SUBJECT, reference: args.card.reference.score },
  ];
  const byName = new Map(references.map((r) => [r.name, r.reference]));
  let rows: HistogramRow[];
  let mix: Array<{ latest_decision: string; n: number | string }>;
  try {
    [rows, mix] = await Promise.all([
      queryRows<HistogramRow>(client, histogramSql({ ...args, references })),
      queryRows<{ latest_decision: string; n: number | string }>(client, decisionMixSql(args)),
    ]);
  } catch (error) {
    throw clickHouseError(error, `reading the monitor window ${new Date(args.window.startMs).toISOString()} of ${args.pipeline}`);
  }
  const histograms = new Map<string, Histogram>();
  for (const row of rows) {
    const reference = byName.get(row.name)!;
    let h = histograms.get(row.name);
    if (!h) {
      h = { counts: reference.counts.map(() => 0), outOfRange: 0, sum: 0, sumSquares: 0 };
      histograms.set(row.name, h);
    }
    h.counts[Number(row.bin)]! += Number(row.n);
    h.outOfRange += Number(row.out_of_range);
    h.sum += Number(row.total);
    h.sumSquares += Number(row.total_squares);
  }
  const score = histograms.get(SCORE_SUBJECT);
  histograms.delete(SCORE_SUBJECT);
  return {
    events: score ? score.counts.reduce((a, b) => a + b, 0) : 0,
    features: histograms,
    score,
    decisions: new Map(mix.map((m) => [m.latest_decision, Number(m.n)])),
  };
}

export async function writeMonitorRows(client: ClickHouseClient, rows: readonly MonitorWindowRow[]): Promise<void> {
  if (rows.length === 0) return;
  try {
    await client.insert({ table: TABLES.monitorWindows, format: 'JSONEachRow', values: rows as unknown as Array<Record<string, unknown>> });
  } catch (error) {
    throw clickHouseError(error, `writing ${rows.length} rows to ${TABLES.monitorWindows}`);
  }
}

/** The values one check recorded in each of the `count` windows before `window` (oldest first), by subject; undefined for a window without any. */
export async function previousValues(client: ClickHouseClient, args: { pipeline: string; window: Window; check: string; count: number }): Promise<Array<Map<string, number> | undefined>> {
  const from = args.window.startMs - args.count * args.window.lengthMs;
  const sql = `SELECT window_start_ms, subject, argMax(value, evaluated_at_ms) AS latest_value
FROM ${TABLES.monitorWindows}
WHERE pipeline = ${quote(args.pipeline)} AND window_ms = ${args.window.lengthMs} AND check = ${quote(args.check)}
  AND window_start_ms >= ${from} AND window_start_ms < ${args.window.startMs}
GROUP BY window_start_ms, subject`;
  let rows: Array<{ window_start_ms: number | string; subject: string; latest_value: number }>;
  try {
    rows = await queryRows(client, sql);
  } catch (error) {
    throw clickHouseError(error, `reading earlier ${args.check} values of ${args.pipeline}`);
  }
  const windows: Array<Map<string, number> | undefined> = Array.from({ length: args.count }, () => undefined);
  for (const row of rows) {
    const i = (Number(row.window_start_ms) - from) / args.window.lengthMs;
    if (!Number.isInteger(i) || i < 0 || i >= args.count) continue;
    windows[i] ??= new Map();
    windows[i]!.set(row.subject, row.latest_value);
  }
  return windows;
}
