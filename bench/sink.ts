/**
 * The ClickHouse sink benchmark, on the real stack. Two measurements:
 *   (a) sustained throughput: N events' validated, scored and decided records
 *       (plus 1 % dead letters), valid Avro, put on a fresh pipeline instance's
 *       topics first; then the sink (its own process, default settings) is
 *       started and timed from its first row in ClickHouse to its last.
 *   (b) lag behind the pipeline: the three stages and the sink as processes,
 *       raw events produced at a steady rate for a while; every second, the
 *       sink group's lag in records and how old the newest decision visible in
 *       ClickHouse is; then the time to catch up once producing stops.
 * Prints figures; asserts nothing.
 *
 *   node bench/sink.ts [--events 200000] [--rate 1000] [--seconds 60] [--skip-backlog] [--skip-pipeline] [--json FILE]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pipelineTopics, registerPipelineSchemas } from '../cli/pipeline.ts';
import { NODE_FLAGS, SLUICE_BIN, STAGES, type StageProcess, spawnStage } from '../cli/processes.ts';
import { percentile, produceStream } from '../cli/traffic.ts';
import { createClickHouse, queryRows, quote } from '../connectors/clickhouse/client.ts';
import { migrate } from '../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../connectors/clickhouse/retention.ts';
import { deleteTopics, ensureTopics, openAdmin, openProducer, type PlainMessage } from '../connectors/kafka/admin.ts';
import { framedEncoder, SchemaCatalog } from '../connectors/registry/registry.ts';
import { generateSignups, groundTruthRisk } from '../pipelines/signup-risk/generator.ts';
import { connectionsFromEnv } from '../lib/settings.ts';
import { FEATURE_NAMES, featuresOf } from '../pipelines/signup-risk/features.ts';
import { signupRisk } from '../pipelines/signup-risk/index.ts';
import type { DecisionRecord, ScoredRecord, ValidatedRecord } from '../pipelines/signup-risk/types.ts';
import { pipelineTopicNames, type TopicSuffix, topicName } from '../processors/runtime/types.ts';
import { sinkGroupId, sinkTopics } from '../processors/sink/runner.ts';

const { values: args } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '60' },
    'skip-pipeline': { type: 'boolean', default: false },
    'skip-backlog': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const EVENTS = Number(args.events);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
for (const [name, value] of [['--events', EVENTS], ['--rate', RATE], ['--seconds', SECONDS]] as const) {
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
}
/** The validate stage's size limit in this run (the oversized sample is one byte over). */
const MAX_MESSAGE_BYTES = 65_536;
const connections = connectionsFromEnv();
const brokers = connections.kafkaBrokers;
const say = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const clickhouse = createClickHouse({ url: connections.clickhouseUrl });

async function count(sql: string): Promise<number> {
  const [row] = await queryRows<{ n: string }>(clickhouse, sql);
  return Number(row?.n ?? 0);
}

async function createInstance(label: string): Promise<string> {
  const name = `signup-risk-bench-${label}-${randomBytes(3).toString('hex')}`;
  await ensureTopics(brokers, pipelineTopics(name));
  await registerPipelineSchemas(name, connections.schemaRegistryUrl);
  return name;
}

async function dropInstance(name: string): Promise<void> {
  await deleteTopics(brokers, pipelineTopicNames(name)).catch(() => {});
  await deletePipelineRows(clickhouse, name).catch((error) => say(`could not delete the benchmark's rows: ${error}`));
}

interface SinkProcess {
  child: ChildProcess;
  running: Promise<void>;
  exited: Promise<unknown>;
}

function spawnSink(pipeline: string, env: Record<string, string> = {}): SinkProcess {
  const child = spawn(process.execPath, [...NODE_FLAGS, SLUICE_BIN, 'sink', 'clickhouse', '--pipeline', pipeline], {
    env: { ...process.env, SLUICE_METRICS_PORT: '0', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // At LOG_LEVEL=warn the sink prints nothing when healthy: it is running once its group has joined.
  const running = (async () => {
    const admin = await openAdmin(brokers, 'bench-sink');
    try {
      while ((await admin.groupState(sinkGroupId(pipeline))) !== 'Stable') await sleep(100);
    } finally {
      await admin.close();
    }
  })();
  return { child, running, exited };
}

async function stopProcess(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  await exited;
}

// ---------------------------------------------------------------- (a) throughput from a backlog

async function backlogMessages(pipeline: string, events: number): Promise<Map<TopicSuffix, PlainMessage[]>> {
  const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
  const encoders = new Map<TopicSuffix, (value: unknown) => Buffer>();
  for (const suffix of ['validated', 'scored', 'decided'] as const) {
    const { id, type } = await catalog.latest(`${topicName(pipeline, suffix)}-value`);
    encoders.set(suffix, framedEncoder(id, type));
  }
  const out = new Map<TopicSuffix, PlainMessage[]>([
    ['validated', []],
    ['scored', []],
    ['decided', []],
    ['dlq', []],
  ]);
  const start = Date.now() - 60_000;
  for (const event of generateSignups({ seed: 4_242, count: events, startMs: start, spacingMs: 1, idPrefix: `${pipeline}-evt` })) {
    const at = event.occurredAtMs;
    const envelope = { event_id: event.envelope.event_id, event_type: event.envelope.event_type, occurred_at: at, source: event.envelope.source };
    if (event.index % 100 === 99) {
      out.get('dlq')!.push({
        key: event.key,
        value: Buffer.from(JSON.stringify({ ...event.envelope, payload: { ...event.envelope.payload, plan: 'gold' } })),
        headers: {
          'dlq.reason': 'SCHEMA_VIOLATION',
          'dlq.message': "payload.plan: 'gold' is not one of free, pro, enterprise",
          'dlq.stage': 'validate',
          'dlq.source.topic': topicName(pipeline, 'raw'),
          'dlq.source.partition': '0',
          'dlq.source.offset': String(event.index),
          'dlq.failed_at': String(at + 2),
        },
      });
      continue;
    }
    const validated: ValidatedRecord = { ...envelope, payload: event.payload, dropped_fields: event.droppedFields, validated_at: at + 2 };
    const score = groundTruthRisk(event.payload);
    const scored: ScoredRecord = {
      ...envelope,
      payload: event.payload,
      score,
      label: null,
      class_names: [],
      class_scores: [],
      model_version: 'bench',
      feature_names: [...FEATURE_NAMES],
      feature_values: featuresOf(event.payload),
      validated_at: at + 2,
      scored_at: at + 5,
    };
    const decision: DecisionRecord = {
      event_id: envelope.event_id,
      pipeline,
      decision: score >= 0.9 ? 'block' : score >= 0.5 ? 'review' : 'approve',
      decided_by: 'model',
      reasons: ['bench'],
      score,
      model_version: 'bench',
      policy_version: 'bench',
      decision_version: 1,
      occurred_at: at,
      decided_at: at + 8,
    };
    out.get('validated')!.push({ key: event.key, value: encoders.get('validated')!(validated) });
    out.get('scored')!.push({ key: event.key, value: encoders.get('scored')!(scored) });
    out.get('decided')!.push({ key: event.key, value: encoders.get('decided')!(decision) });
  }
  return out;
}

async function throughput() {
  const pipeline = await createInstance('sink');
  try {
    say(`(a) ${EVENTS} events' records onto ${pipeline}'s topics`);
    const messages = await backlogMessages(pipeline, EVENTS);
    const producer = await openProducer(brokers, 'bench-sink');
    try {
      for (const [suffix, list] of messages) {
        for (let i = 0; i < list.length; i += 2_000) await producer.send(topicName(pipeline, suffix), list.slice(i, i + 2_000));
      }
    } finally {
      await producer.close();
    }
    const records = [...messages.values()].reduce((n, l) => n + l.length, 0);
    const valid = messages.get('decided')!.length;
    const dead = messages.get('dlq')!.length;
    // validated + scored + decided + dead-letter stage rows, model outputs, decisions, dead letters
    const expectedStageRows = 3 * valid + dead;
    const expectedRows = expectedStageRows + valid + valid + dead;
    say(`    ${records} records (${dead} dead letters); expecting ${expectedRows} rows; starting the sink`);

    const sink = spawnSink(pipeline);
    await sink.running;
    const joinedAt = performance.now();
    const where = `WHERE pipeline = ${quote(pipeline)}`;
    let firstAt = 0;
    for (;;) {
      const n = await count(`SELECT count() AS n FROM sluice.stage_events ${where}`);
      if (n > 0 && firstAt === 0) firstAt = performance.now();
      if (n >= expectedStageRows) break;
      await sleep(100);
    }
    // The other tables are written in the same flush as the last stage events; wait for all of them.
    const tables = ['stage_events', 'model_outputs', 'decisions', 'dead_letters'];
    let rows = 0;
    for (;;) {
      rows = 0;
      for (const t of tables) rows += await count(`SELECT count() AS n FROM sluice.${t} ${where}`);
      if (rows >= expectedRows) break;
      await sleep(50);
    }
    const lastAt = performance.now();
    await stopProcess(sink.child, sink.exited);
    const decided = await count(`SELECT uniqExact(event_id) AS n FROM sluice.decisions ${where}`);
    const seconds = (lastAt - firstAt) / 1000;
    return {
      events: EVENTS,
      kafka_records: records,
      rows_written: rows,
      distinct_decisions: decided,
      seconds_first_to_last_row: Number(seconds.toFixed(2)),
      seconds_from_group_join: Number(((lastAt - joinedAt) / 1000).toFixed(2)),
      rows_per_s: Math.round(rows / seconds),
      records_per_s: Math.round(records / seconds),
    };
  } finally {
    await dropInstance(pipeline);
  }
}

// ---------------------------------------------------------------- (b) lag behind the pipeline

async function behindPipeline() {
  const pipeline = await createInstance('lag');
  const stages: StageProcess[] = [];
  let sink: SinkProcess | undefined;
  const admin = await openAdmin(brokers, 'bench-sink');
  try {
    for (const stage of STAGES) stages.push(spawnStage({ pipeline, stage, env: { SLUICE_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) } }));
    await Promise.all(stages.map((s) => s.running));
    sink = spawnSink(pipeline);
    await sink.running;
    const where = `WHERE pipeline = ${quote(pipeline)}`;

    const samples: Array<{ lagRecords: number; newestDecisionAgeMs: number }> = [];
    let producing = true;
    const sampler = (async () => {
      while (producing) {
        await sleep(1_000);
        const [committed, ends] = await Promise.all([
          admin.committedOffsets(sinkGroupId(pipeline), sinkTopics(pipeline)),
          Promise.all(sinkTopics(pipeline).map((topic) => admin.partitionWatermarks(topic).then((offsets) => ({ topic, offsets })))),
        ]);
        let lag = 0;
        for (const { topic, offsets } of ends) {
          for (const p of offsets) {
            const done = committed.find((c) => c.topic === topic && c.partition === p.partition)?.offset ?? '-1';
            lag += Number(p.high) - (done === '-1' ? Number(p.low) : Number(done));
          }
        }
        const newest = await count(`SELECT max(stage_at_ms) AS n FROM sluice.stage_events ${where} AND stage = 'decide'`);
        samples.push({ lagRecords: lag, newestDecisionAgeMs: newest > 0 ? Date.now() - newest : Number.NaN });
      }
    })();

    say(`(b) ${RATE} events/s for ${SECONDS} s through ${pipeline}: three stages and the sink`);
    const stream = await produceStream({
      generator: signupRisk.generator,
      brokers,
      pipeline,
      count: RATE * SECONDS,
      ratePerSec: RATE,
      badEvery: 100,
      idPrefix: `${pipeline}-evt`,
      seed: 7,
      maxMessageBytes: MAX_MESSAGE_BYTES,
    });
    producing = false;
    await sampler;
    const producedSeconds = (stream.endedAt - stream.startedAt) / 1000;
    // Catch-up: until ClickHouse has a decision for every valid event and every dead letter.
    for (;;) {
      const decided = await count(`SELECT uniqExact(event_id) AS n FROM sluice.decisions ${where}`);
      const dead = await count(`SELECT uniqExact(kafka_partition, kafka_offset) AS n FROM sluice.dead_letters ${where}`);
      if (decided >= stream.valid && dead >= stream.bad) break;
      await sleep(100);
    }
    const caughtUpS = (Date.now() - stream.endedAt) / 1000;
    // Steady state: ignore the first 5 s (start-up of the flow).
    const steady = samples.slice(5);
    const lags = steady.map((s) => s.lagRecords);
    const ages = steady.map((s) => s.newestDecisionAgeMs).filter((a) => Number.isFinite(a));
    const rows = await count(
      `SELECT (SELECT count() FROM sluice.stage_events ${where}) + (SELECT count() FROM sluice.model_outputs ${where}) + (SELECT count() FROM sluice.decisions ${where}) + (SELECT count() FROM sluice.dead_letters ${where}) AS n`,
    );
    return {
      target_events_per_s: RATE,
      produced_events_per_s: Math.round((stream.valid + stream.bad) / producedSeconds),
      seconds: Number(producedSeconds.toFixed(1)),
      rows_per_s_written_at_this_rate: Math.round(rows / (producedSeconds + caughtUpS)),
      sink_lag_records_p50: percentile(lags, 50),
      sink_lag_records_p95: percentile(lags, 95),
      sink_lag_records_max: Math.max(...lags),
      newest_decision_age_in_clickhouse_ms_p50: percentile(ages, 50),
      newest_decision_age_in_clickhouse_ms_p95: percentile(ages, 95),
      newest_decision_age_in_clickhouse_ms_max: Math.max(...ages),
      seconds_to_catch_up_after_producing_stopped: Number(caughtUpS.toFixed(2)),
    };
  } finally {
    if (sink) await stopProcess(sink.child, sink.exited);
    for (const stage of stages) stage.kill('SIGTERM');
    await Promise.all(stages.map((s) => s.exited));
    await admin.close();
    await dropInstance(pipeline);
  }
}

function table(title: string, record: Record<string, unknown>): string {
  const width = Math.max(...Object.keys(record).map((k) => k.length));
  return `${title}\n${Object.entries(record)
    .map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)
    .join('\n')}\n`;
}

try {
  await migrate(clickhouse, { url: connections.clickhouseUrl });
  const report: Record<string, unknown> = { node: process.version, clickhouse: (await queryRows<{ v: string }>(clickhouse, 'SELECT version() AS v'))[0]?.v };
  if (!args['skip-backlog']) {
    report['throughput'] = await throughput();
    process.stdout.write(table('(a) sink throughput from a backlog', report['throughput'] as Record<string, unknown>));
  }
  if (!args['skip-pipeline']) {
    report['behind_pipeline'] = await behindPipeline();
    process.stdout.write(table(`(b) sink behind the pipeline at ${RATE} events/s`, report['behind_pipeline'] as Record<string, unknown>));
  }
  if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
} finally {
  await clickhouse.close();
}
