/**
 * What one monitor evaluation costs ClickHouse as a day of data accumulates at
 * 1,000 events/s. A day is 86.4 M events (model outputs, decisions and three
 * stage events each: 432 M rows), too many to write on a small machine in
 * reasonable time, so the benchmark fills the day step by step (15 min, 1 h,
 * 3 h by default) and judges the newest 60 s window after each step, showing
 * the trend; then it merges the day's parts (OPTIMIZE … FINAL: what background
 * merges converge to) and judges the window again. The figures at a full day
 * are extrapolated from that merged step, and said to be.
 *
 * The rows are made by ClickHouse itself (`INSERT … SELECT … FROM numbers(N)`)
 * for a pipeline instance of the benchmark's own, on a day long past
 * (2003-03-03 UTC) whose partitions hold nothing else, so that they can be
 * dropped afterwards. One evaluation is `evaluateWindows` of monitor/monitor.ts,
 * the code `sluice monitor` runs, with every query it sends logged
 * (`log_queries=1`): rows and bytes read and server time come from
 * system.query_log, wall time from the client.
 *
 *   node bench/monitor.ts [--minutes 15,60,180] [--rate 1000] [--json FILE]
 *
 * Prints figures; asserts nothing.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type ClickHouseClient, createClickHouse, queryRows, quote } from '../connectors/clickhouse/client.ts';
import { migrate } from '../connectors/clickhouse/migrate.ts';
import { TABLES } from '../connectors/clickhouse/schema.ts';
import { modelStoreFromEnv } from '../connectors/models/config.ts';
import { createLogger } from '../lib/log.ts';
import { connectionsFromEnv } from '../lib/settings.ts';
import { evaluateWindows } from '../monitor/monitor.ts';
import { FEATURE_NAMES } from '../pipelines/signup-risk/features.ts';
import { pipelineByName } from '../pipelines/registry.ts';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '15,60,180' },
    rate: { type: 'string', default: '1000' },
    json: { type: 'string' },
  },
});
const STEPS = args.minutes.split(',').map(Number);
const RATE = Number(args.rate);
if (!STEPS.every((m, i) => Number.isSafeInteger(m) && m >= 12 && (i === 0 || m > STEPS[i - 1]!)) || STEPS.at(-1)! > 1_440) {
  throw new Error('--minutes must be increasing whole numbers of minutes from 12 (the window and its 10-window history) up to 1440, e.g. 15,60,180');
}
if (!Number.isSafeInteger(RATE) || RATE < 1 || RATE > 10_000) throw new Error('--rate must be a whole number of events per second from 1 to 10000');

const DAY_MS = Date.UTC(2003, 2, 3);
const DAY_PARTITION = '20030303';
const MONTH_PARTITION = '200303';
const WINDOW_MS = 60_000;
const say = (line: string) => process.stderr.write(`${line}\n`);
const connections = connectionsFromEnv();
const clickhouse = createClickHouse({ url: connections.clickhouseUrl, requestTimeoutMs: 600_000 });
const name = `signup-risk-benchmon-${randomBytes(3).toString('hex')}`;
const pipeline = pipelineByName(name);
const store = modelStoreFromEnv();

/** Event i of the day: occurred at DAY_MS + i / RATE seconds; its rows as the sink writes them. */
function fillSql(from: number, to: number, champion: string): string[] {
  const count = to - from;
  const occurred = `toUInt64(${DAY_MS} + intDiv((number + ${from}) * 1000, ${RATE}))`;
  const eventId = `concat(${quote(name)}, '-', toString(number + ${from}))`;
  const score = `(intHash64(number + ${from}) % 1000) / 1000`;
  // Feature values with the spread of real ones (mostly small integers and indicators); the cost does not depend on them.
  const features = `arrayMap(k -> toFloat64(intHash64((number + ${from}) * 16 + k) % 7), range(${FEATURE_NAMES.length}))`;
  const names = `[${FEATURE_NAMES.map(quote).join(', ')}]`;
  return [
    `INSERT INTO ${TABLES.modelOutputs} (pipeline, event_id, model_version, score, feature_names, feature_values, occurred_at_ms, scored_at_ms, kafka_partition, kafka_offset)
SELECT ${quote(name)}, ${eventId}, ${quote(champion)}, ${score}, ${names}, ${features}, ${occurred}, ${occurred} + 5, toUInt32((number + ${from}) % 3), toUInt64(number + ${from})
FROM numbers(${count})`,
    `INSERT INTO ${TABLES.decisions} (pipeline, event_id, decision, decided_by, reasons, score, model_version, policy_version, decision_version, occurred_at_ms, decided_at_ms, kafka_partition, kafka_offset)
SELECT ${quote(name)}, ${eventId}, multiIf(${score} >= 0.9, 'block', ${score} >= 0.5, 'review', 'approve'), 'model', emptyArrayString(), ${score}, ${quote(champion)}, 'bench', toUInt32(1), ${occurred}, ${occurred} + 9, toUInt32((number + ${from}) % 3), toUInt64(number + ${from})
FROM numbers(${count})`,
    `INSERT INTO ${TABLES.stageEvents} (pipeline, stage, outcome, detail, event_id, decision_version, occurred_at_ms, stage_at_ms, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp_ms)
SELECT ${quote(name)}, stage_name, 'passed', '', ${eventId}, toUInt32(stage_name = 'decide'), ${occurred}, ${occurred} + 3, concat(${quote(name)}, '.', stage_name), toUInt32((number + ${from}) % 3), toUInt64(number + ${from}), ${occurred} + 3
FROM numbers(${count})
ARRAY JOIN ['validate', 'score', 'decide'] AS stage_name`,
  ];
}

/** The client, with every query it sends logged in system.query_log under a query id of the run. */
function logging(client: ClickHouseClient, prefix: string): ClickHouseClient {
  let n = 0;
  return new Proxy(client, {
    get(target, property, receiver) {
      if (property !== 'query') return Reflect.get(target, property, receiver);
      return (params: Parameters<ClickHouseClient['query']>[0]) =>
        target.query({ ...params, query_id: `${prefix}-${n++}`, clickhouse_settings: { ...params.clickhouse_settings, log_queries: 1 } });
    },
  });
}

interface Step {
  minutes: number;
  events: number;
  rows_in_clickhouse: number;
  fill_seconds: number;
  evaluation_ms: number[];
  queries: number;
  rows_read: number;
  bytes_read: number;
  server_ms: number;
}

async function measure(champion: string, window: { startMs: number; lengthMs: number }, label: string): Promise<{ ms: number; queries: number; rowsRead: number; bytesRead: number; serverMs: number }> {
  const prefix = `${name}-${label}`;
  const deps = {
    pipeline,
    clickhouse: logging(clickhouse, prefix),
    store,
    champion: () => champion,
    // The benchmark's features are not the card's population: its alerts are expected, and not logged.
    logger: createLogger({ component: 'bench-monitor' }, 'error'),
    now: () => window.startMs + window.lengthMs + 30_000,
    publish: async () => {},
  };
  const started = performance.now();
  await evaluateWindows(deps, [window]);
  const ms = performance.now() - started;
  // A query's log entry is queued when the server finishes it, which may be just after the client has its answer:
  // flush and read until two reads half a second apart agree.
  type LogRow = { queries: string; rows_read: string; bytes_read: string; server_ms: string };
  let row: LogRow | undefined;
  for (let previous = ''; ; ) {
    await clickhouse.command({ query: 'SYSTEM FLUSH LOGS' });
    [row] = await queryRows<LogRow>(
      clickhouse,
      `SELECT count() AS queries, sum(read_rows) AS rows_read, sum(read_bytes) AS bytes_read, sum(query_duration_ms) AS server_ms
FROM system.query_log WHERE toUInt8(type) = 2 AND query_id LIKE ${quote(`${prefix}-%`)}`,
    );
    if (JSON.stringify(row) === previous) break;
    previous = JSON.stringify(row);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return { ms, queries: Number(row?.queries ?? 0), rowsRead: Number(row?.rows_read ?? 0), bytesRead: Number(row?.bytes_read ?? 0), serverMs: Number(row?.server_ms ?? 0) };
}

/** Drops the benchmark day's partitions, refusing if anything but the benchmark wrote to them. */
async function cleanUp(): Promise<void> {
  const tables = [
    [TABLES.modelOutputs, DAY_PARTITION, 'occurred_at'],
    [TABLES.decisions, DAY_PARTITION, 'occurred_at'],
    [TABLES.stageEvents, DAY_PARTITION, 'occurred_at'],
    [TABLES.monitorWindows, MONTH_PARTITION, 'window_start'],
    [TABLES.alerts, MONTH_PARTITION, 'started_at'],
  ] as const;
  for (const [table, partition, column] of tables) {
    const [other] = await queryRows<{ n: string }>(clickhouse, `SELECT count() AS n FROM ${table} WHERE ${column} >= toDateTime(${DAY_MS / 1000 - 40 * 86_400}) AND ${column} < toDateTime(${DAY_MS / 1000 + 40 * 86_400}) AND pipeline != ${quote(name)}`);
    if (Number(other?.n ?? 0) > 0) {
      say(`${table}: partition ${partition} holds rows of other pipelines; deleting only ${name}'s`);
      await clickhouse.command({ query: `ALTER TABLE ${table} DELETE WHERE pipeline = ${quote(name)}` });
    } else {
      await clickhouse.command({ query: `ALTER TABLE ${table} DROP PARTITION ${partition}` });
    }
  }
}

async function main(): Promise<void> {
  await migrate(clickhouse, { url: connections.clickhouseUrl });
  const champion = (await store.defaultVersion(pipeline.plugin.kind))!;
  say(`benchmark instance ${name}, champion ${champion}, ${RATE} events/s, on ${new Date(DAY_MS).toISOString().slice(0, 10)}`);
  const steps: Step[] = [];
  let filled = 0;
  let fillSeconds = 0;
  let merged: Step | undefined;
  try {
    for (const minutes of STEPS) {
      const events = minutes * 60 * RATE;
      const started = performance.now();
      for (let from = filled; from < events; from += 2_000_000) {
        for (const sql of fillSql(from, Math.min(events, from + 2_000_000), champion)) await clickhouse.command({ query: sql });
      }
      fillSeconds += (performance.now() - started) / 1000;
      filled = events;
      const [rows] = await queryRows<{ n: string }>(
        clickhouse,
        `SELECT (SELECT count() FROM ${TABLES.modelOutputs} WHERE pipeline = ${quote(name)}) + (SELECT count() FROM ${TABLES.decisions} WHERE pipeline = ${quote(name)}) + (SELECT count() FROM ${TABLES.stageEvents} WHERE pipeline = ${quote(name)}) AS n`,
      );
      // The newest full window of the data, judged twice: cold (first read of the new parts) and warm.
      const window = { startMs: DAY_MS + minutes * 60_000 - WINDOW_MS, lengthMs: WINDOW_MS };
      const cold = await measure(champion, window, `${minutes}m-cold`);
      const warm = await measure(champion, window, `${minutes}m-warm`);
      const step: Step = {
        minutes,
        events,
        rows_in_clickhouse: Number(rows?.n ?? 0),
        fill_seconds: Math.round(fillSeconds),
        evaluation_ms: [Math.round(cold.ms), Math.round(warm.ms)],
        queries: warm.queries,
        rows_read: warm.rowsRead,
        bytes_read: warm.bytesRead,
        server_ms: warm.serverMs,
      };
      steps.push(step);
      say(
        `${String(minutes).padStart(5)} min  ${String(events).padStart(10)} events  ${String(step.rows_in_clickhouse).padStart(11)} rows   one evaluation: ${step.evaluation_ms[0]} ms cold, ${step.evaluation_ms[1]} ms warm; ${step.queries} queries read ${step.rows_read} rows (${(step.bytes_read / 1e6).toFixed(1)} MB), ${step.server_ms} ms on the server`,
      );
    }
    // What merges converge to: the day's rows of each table in one part, whose time range covers every window,
    // so no part can be skipped. OPTIMIZE … FINAL forces it now; the same evaluation again.
    const started = performance.now();
    for (const table of [TABLES.modelOutputs, TABLES.decisions, TABLES.stageEvents]) await clickhouse.command({ query: `OPTIMIZE TABLE ${table} PARTITION ${DAY_PARTITION} FINAL` });
    const last = steps.at(-1)!;
    const window = { startMs: DAY_MS + last.minutes * 60_000 - WINDOW_MS, lengthMs: WINDOW_MS };
    const cold = await measure(champion, window, 'merged-cold');
    const warm = await measure(champion, window, 'merged-warm');
    merged = { ...last, fill_seconds: Math.round((performance.now() - started) / 1000), evaluation_ms: [Math.round(cold.ms), Math.round(warm.ms)], queries: warm.queries, rows_read: warm.rowsRead, bytes_read: warm.bytesRead, server_ms: warm.serverMs };
    say(`${String(last.minutes).padStart(5)} min, merged: one evaluation: ${merged.evaluation_ms[0]} ms cold, ${merged.evaluation_ms[1]} ms warm; ${merged.queries} queries read ${merged.rows_read} rows (${(merged.bytes_read / 1e6).toFixed(1)} MB), ${merged.server_ms} ms on the server`);
  } finally {
    await cleanUp().catch((error) => say(`could not drop the benchmark's partitions: ${error}`));
  }

  // Fresh parts are small and time-local: their min/max occurred_at lets ClickHouse skip all but the window's,
  // so the steps show what one evaluation reads while a day fills. Once merged, the day's part spans every
  // window and is read whole: rows read and time scale with the day's rows, extrapolated from the merged step.
  const last = steps.at(-1)!;
  const scale = 1_440 / last.minutes;
  const day = merged && {
    minutes: 1_440,
    basis: `the merged ${last.minutes}-minute step × ${scale.toFixed(1)}`,
    rows_read_extrapolated: Math.round(merged.rows_read * scale),
    bytes_read_extrapolated: Math.round(merged.bytes_read * scale),
    evaluation_ms_extrapolated: Math.round(merged.evaluation_ms[1]! * scale),
    server_ms_extrapolated: Math.round(merged.server_ms * scale),
  };
  if (day) {
    say(
      `at a full day (${1_440 * 60 * RATE} events) merged into one part, extrapolated from ${day.basis}: ~${day.rows_read_extrapolated} rows (${(day.bytes_read_extrapolated / 1e9).toFixed(1)} GB) read, ~${day.evaluation_ms_extrapolated} ms per evaluation (${day.server_ms_extrapolated} ms on the server)`,
    );
  }
  const report = { benchmark: 'monitor', rate_events_per_second: RATE, window_ms: WINDOW_MS, clickhouse: 'local stack', steps, merged, full_day_merged: day };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
}

try {
  await main();
} finally {
  await clickhouse.close();
}
