/**
 * The replay benchmark: how fast `sluice replay` re-decides a window, against
 * the sustained rate of the live pipeline on the same events, same broker,
 * same run. A pipeline instance of its own: a backlog of N events is decided
 * by the three live stages (their rate: decisions over the time from the first
 * decision's commit to the last one's, as bench/pipeline.ts counts it); then,
 * with the live stages still running, the whole window is replayed from the
 * score stage (its rate: re-decisions over the time from the first chunk's
 * commit to the last one's; start-up, reading the window's decisions and
 * joining the group reported apart).
 *
 *   npm run bench:replay -- [--pipeline P] [--events N] [--json FILE]
 *
 * --json FILE adds `replay` to FILE (the JSON `npm run bench` writes), or
 * writes it alone when FILE does not exist yet. A script that prints figures:
 * nothing here asserts a rate.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pipelineTopics, registerPipelineSchemas } from '../cli/pipeline.ts';
import { STAGES, spawnStage, type StageProcess } from '../cli/processes.ts';
import { deleteGroups, deleteTopics, ensureTopics, groupLag, openAdmin, openProducer, readWindow, seedGroupOffsets } from '../connectors/kafka/admin.ts';
import { stackPaths } from '../deploy/local/stack.ts';
import { pipelineTopicNames, topicName } from '../lib/contracts.ts';
import { createLogger } from '../lib/log.ts';
import { connectionsFromEnv } from '../lib/settings.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { executeReplay } from '../processors/replay/engine.ts';

const { values: args } = parseArgs({
  options: {
    pipeline: { type: 'string', default: 'signup-risk' },
    events: { type: 'string', default: '30000' },
    json: { type: 'string' },
  },
});
const EVENTS = Number(args.events);
const kind = pipelineByName(args.pipeline).plugin.kind;
const connections = connectionsFromEnv();
const brokers = connections.kafkaBrokers;
const logger = createLogger({ component: 'bench-replay' }, process.env.LOG_LEVEL ?? 'warn');
const startedAt = Date.now();
const say = (line: string) => process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(1)} s] ${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Kafka timestamps of the first and last record of a topic (read committed). */
async function timeSpan(topic: string): Promise<{ records: number; firstMs: number; lastMs: number }> {
  const admin = await openAdmin(brokers, 'bench-replay');
  const marks = await admin.partitionWatermarks(topic).finally(() => admin.close());
  const groupId = `bench-replay-span-${randomBytes(4).toString('hex')}`;
  await seedGroupOffsets(brokers, groupId, topic, marks.map((m) => ({ partition: m.partition, offset: m.low })));
  let records = 0;
  let firstMs = Number.POSITIVE_INFINITY;
  let lastMs = 0;
  const reader = await readWindow({
    brokers,
    clientId: groupId,
    groupId,
    topic,
    ends: new Map(marks.map((m) => [m.partition, BigInt(m.high)])),
    finished: new Set(marks.filter((m) => m.high === m.low).map((m) => m.partition)),
    handle: async ({ records: batch }) => {
      for (const record of batch) {
        records++;
        firstMs = Math.min(firstMs, record.timestampMs);
        lastMs = Math.max(lastMs, record.timestampMs);
      }
    },
  });
  await reader.done.finally(() => reader.stop());
  await deleteGroups(brokers, [groupId]);
  return { records, firstMs, lastMs };
}

const pipeline = pipelineByName(`${kind}-benchreplay-${randomBytes(3).toString('hex')}`);
const stages: StageProcess[] = [];
try {
  await ensureTopics(brokers, pipelineTopics(pipeline.name));
  await registerPipelineSchemas(pipeline.name, connections.schemaRegistryUrl);
  const windowStartMs = Date.now() - 1_000;

  say(`producing ${EVENTS} ${kind} events to ${topicName(pipeline.name, 'raw')}`);
  const producer = await openProducer(brokers, 'bench-replay');
  try {
    const events = pipeline.plugin.generator.events({ seed: 77, count: EVENTS, startMs: Date.now() - 3_600_000, spacingMs: 10, idPrefix: `bench-${randomBytes(3).toString('hex')}` });
    let batch: Array<{ key: string; value: Buffer }> = [];
    for (const event of events) {
      batch.push({ key: event.key, value: event.value });
      if (batch.length === 2_000) {
        await producer.send(topicName(pipeline.name, 'raw'), batch);
        batch = [];
      }
    }
    if (batch.length > 0) await producer.send(topicName(pipeline.name, 'raw'), batch);
  } finally {
    await producer.close();
  }

  say('live: validate, score and decide from the backlog');
  for (const stage of STAGES) {
    stages.push(spawnStage({ pipeline: pipeline.name, stage, logFile: join(stackPaths().logs, 'bench', `${pipeline.name}.${stage}.log`) }));
  }
  await Promise.all(stages.map((s) => s.running));
  const decidedTopic = topicName(pipeline.name, 'decided');
  for (;;) {
    const lag = await groupLag(brokers, `sluice.${pipeline.name}.decide`, topicName(pipeline.name, 'scored'));
    const validated = await groupLag(brokers, `sluice.${pipeline.name}.validate`, topicName(pipeline.name, 'raw'));
    const caughtUp = (l: typeof lag) => l.every((p) => p.committed >= p.end - 1n && p.committed >= 0n);
    if (caughtUp(validated) && caughtUp(lag)) {
      const span = await timeSpan(decidedTopic);
      if (span.records >= EVENTS) break;
    }
    await sleep(250);
  }
  const live = await timeSpan(decidedTopic);
  const liveRate = Math.round(live.records / ((live.lastMs - live.firstMs) / 1000));
  say(`live: ${live.records} decisions in ${((live.lastMs - live.firstMs) / 1000).toFixed(2)} s = ${liveRate}/s`);

  say('replay of the whole window from the score stage (live stages still running)');
  const replayStarted = Date.now();
  let firstCommitAt = 0;
  let firstReplayed = 0;
  let lastCommitAt = 0;
  let lastReplayed = 0;
  const result = await executeReplay(
    { pipeline, connections, env: process.env, logger, by: 'bench-replay', now: Date.now },
    { pipeline: pipeline.name, fromStage: 'score', fromMs: windowStartMs, toMs: Date.now() },
    {
      force: true,
      onProgress: ({ replayed }) => {
        if (replayed === 0 || replayed === lastReplayed) return;
        if (firstCommitAt === 0) {
          firstCommitAt = Date.now();
          firstReplayed = replayed;
        }
        lastCommitAt = Date.now();
        lastReplayed = replayed;
      },
    },
  );
  const wallS = (Date.now() - replayStarted) / 1000;
  const summary = result.summary!;
  const processingS = (lastCommitAt - firstCommitAt) / 1000;
  const replayRate = processingS > 0 ? Math.round((lastReplayed - firstReplayed) / processingS) : 0;
  const figures = {
    pipeline: kind,
    events: summary.replayed,
    events_per_s: replayRate,
    /** Including start-up: control topic, model load, reading the window's decisions, joining the group. */
    wall_s: Math.round(wallS * 100) / 100,
    wall_events_per_s: Math.round(summary.replayed / wallS),
    setup_s: Math.round(((firstCommitAt - replayStarted) / 1000) * 100) / 100,
    chunk_records: Number(process.env.SLUICE_REPLAY_CHUNK_RECORDS ?? 1_000),
    live_events_per_s: liveRate,
    over_live: Math.round((replayRate / liveRate) * 100) / 100,
  };
  process.stdout.write(
    `\nsluice replay benchmark: ${kind}, ${summary.replayed} events re-decided\n` +
      `  live pipeline sustained       ${liveRate} events/s\n` +
      `  replay (from score)           ${replayRate} events/s  (× live ${figures.over_live})\n` +
      `  replay with start-up          ${figures.wall_events_per_s} events/s  (${figures.wall_s} s, of which ${figures.setup_s} s before the first commit)\n`,
  );
  if (args.json) {
    const existing = existsSync(args.json) ? (JSON.parse(readFileSync(args.json, 'utf8')) as Record<string, unknown>) : {};
    writeFileSync(args.json, `${JSON.stringify({ ...existing, replay: figures }, null, 2)}\n`);
    say(`wrote replay to ${args.json}`);
  }
} finally {
  for (const stage of stages) stage.kill('SIGKILL');
  await Promise.all(stages.map((s) => s.exited));
  await deleteTopics(brokers, pipelineTopicNames(pipeline.name)).catch(() => {});
}
process.exit(0);
