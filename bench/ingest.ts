/**
 * The ingest benchmark. In one run, against the same broker, with the gateway
 * (`sluice ingest serve`) as a process of its own:
 *   (a) accepted events/s over HTTP, one event per request (32 clients);
 *   (b) accepted events/s over HTTP, 100 events per request (8 clients);
 *   (c) events/s produced straight to Kafka (idempotent producer, acks=all,
 *       sends of 500) from this process, the same events;
 *   (d) a burst: a key whose sustained rate is R events/s receives 10 × R
 *       for 60 s (batches of 100, open loop) while signup-risk's three stages
 *       run, against a fresh gateway instance: the answers by status (202 /
 *       429 / 503 / anything else, which would be a failure), the gateway's
 *       peak RSS (sampled every 250 ms from /proc), and a check that every
 *       accepted event was decided exactly once and nothing refused was decided.
 * Figures go to stdout, progress to stderr, everything to a JSON file.
 *
 * The gateway runs with NODE_OPTIONS=--max-old-space-size=192, the setting
 * docs/ingest.md recommends (--uncapped: without it).
 *
 *   npm run bench:ingest -- [--seconds 10] [--burst-seconds 60] [--rate 1000] [--json FILE] [--uncapped]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { addIngestKey } from '../cli/ingest.ts';
import { pipelineTopics, registerPipelineSchemas } from '../cli/pipeline.ts';
import { SLUICE_BIN, spawnProcess, spawnStage, STAGES, type StageProcess } from '../cli/processes.ts';
import { deleteTopics, ensureTopics, openAdmin, openProducer, topicPartitions } from '../connectors/kafka/admin.ts';
import { followTopic } from '../connectors/kafka/follow.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { stackPaths } from '../deploy/local/stack.ts';
import { ingestConfigFromEnv } from '../ingest/config.ts';
import { partitionFor } from '../ingest/partitioner.ts';
import { pipelineTopicNames, topicName } from '../lib/contracts.ts';
import { createLogger } from '../lib/log.ts';
import { connectionsFromEnv } from '../lib/settings.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    'burst-seconds': { type: 'string', default: '60' },
    rate: { type: 'string', default: '1000' },
    json: { type: 'string', default: join(stackPaths().root, 'bench', 'ingest.json') },
    /** Run the gateway without the recommended V8 heap cap. */
    uncapped: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(args.seconds);
const BURST_SECONDS = Number(args['burst-seconds']);
const RATE = Number(args.rate);
const connections = connectionsFromEnv();
const brokers = connections.kafkaBrokers;
const startedAt = Date.now();
const say = (line: string) => process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(1)} s] ${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const runId = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
const logDir = join(stackPaths().logs, 'bench');

let counter = 0;
/** A signup-risk envelope with a fresh id, as a producer would send it (about 250 bytes of JSON). */
function event(prefix: string) {
  const n = counter++;
  return {
    event_id: `${prefix}-${n}`,
    event_type: 'user_signed_up',
    occurred_at: new Date().toISOString(),
    source: 'bench',
    payload: { user_id: `u-${n % 5_000}`, email: `user${n}@example.com`, country: 'DE', signup_channel: 'web', plan: 'free', signups_from_ip_24h: n % 4 },
  };
}

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1_024 : 0;
}

/** Samples a process's RSS until stopped; returns the peak. */
function sampleRss(pid: number) {
  let peak = 0;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {}
  }, 250);
  return { peak: () => peak, stop: () => clearInterval(timer) };
}

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);

interface Statuses {
  [status: string]: number;
}

async function post(url: string, key: string, body: unknown): Promise<{ status: number; accepted: string[]; ms: number }> {
  const t0 = performance.now();
  try {
    const response = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await response.text();
    const accepted: string[] = [];
    if (response.status === 202) {
      for (const result of (JSON.parse(text) as { results: Array<{ event_id: string; status: string }> }).results) if (result.status === 'accepted') accepted.push(result.event_id);
    }
    return { status: response.status, accepted, ms: performance.now() - t0 };
  } catch {
    return { status: 0, accepted: [], ms: performance.now() - t0 }; // a connection failure: counted as status 0
  }
}

/** Closed loop: `clients` loops each posting `batch` events per request for `seconds`. */
async function httpThroughput(url: string, key: string, batch: number, clients: number, seconds: number) {
  const deadline = Date.now() + seconds * 1_000;
  let accepted = 0;
  const statuses: Statuses = {};
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < deadline) {
        const body = batch === 1 ? event(`b1-${runId}`) : { events: Array.from({ length: batch }, () => event(`b${batch}-${runId}`)) };
        const result = await post(url, key, body);
        statuses[result.status] = (statuses[result.status] ?? 0) + 1;
        accepted += result.accepted.length;
        latencies.push(result.ms);
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1_000;
  latencies.sort((a, b) => a - b);
  return { batch, clients, eventsPerSecond: Math.round(accepted / elapsed), accepted, statuses, p50Ms: Number(percentile(latencies, 50).toFixed(1)), p99Ms: Number(percentile(latencies, 99).toFixed(1)) };
}

async function kafkaThroughput(topic: string, seconds: number) {
  const producer = await openProducer(brokers, 'sluice-bench-ingest');
  try {
    const deadline = Date.now() + seconds * 1_000;
    let sent = 0;
    const t0 = performance.now();
    while (Date.now() < deadline) {
      const messages = Array.from({ length: 500 }, () => {
        const e = event(`kafka-${runId}`);
        return { key: e.event_id, value: Buffer.from(JSON.stringify(e), 'utf8') };
      });
      await producer.send(topic, messages);
      sent += messages.length;
    }
    return { eventsPerSecond: Math.round(sent / ((performance.now() - t0) / 1_000)), sent };
  } finally {
    await producer.close();
  }
}

/** Open loop: `rate` events/s offered in batches of 100 for `seconds`, whatever the answers; at most `maxOutstanding` requests in flight. */
async function burst(url: string, key: string, rate: number, seconds: number, maxOutstanding: number) {
  const requestsPerSecond = rate / 100;
  const statuses: Statuses = {};
  const accepted = new Set<string>();
  const refusedIds = new Set<string>();
  const latencies: number[] = [];
  let outstanding = 0;
  let notSent = 0;
  let retryAfterMissing = 0;
  const inflight = new Set<Promise<void>>();
  const t0 = Date.now();
  for (let i = 0; ; i++) {
    const due = t0 + (i / requestsPerSecond) * 1_000;
    if (due >= t0 + seconds * 1_000) break;
    if (due > Date.now()) await sleep(due - Date.now());
    if (outstanding >= maxOutstanding) {
      notSent += 100;
      continue;
    }
    const events = Array.from({ length: 100 }, () => event(`burst-${runId}`));
    outstanding++;
    const started = performance.now();
    const request = fetch(url, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ events }) })
      .then(async (response) => {
        const text = await response.text();
        statuses[response.status] = (statuses[response.status] ?? 0) + 1;
        if (response.status === 202) {
          for (const r of (JSON.parse(text) as { results: Array<{ event_id: string; status: string }> }).results) if (r.status === 'accepted') accepted.add(r.event_id);
        } else {
          for (const e of events) refusedIds.add(e.event_id);
          if ((response.status === 429 || response.status === 503) && !response.headers.get('retry-after')) retryAfterMissing++;
        }
      })
      .catch(() => {
        statuses['0'] = (statuses['0'] ?? 0) + 1;
        for (const e of events) refusedIds.add(e.event_id);
      })
      .finally(() => {
        latencies.push(performance.now() - started);
        outstanding--;
        inflight.delete(request);
      });
    inflight.add(request);
  }
  await Promise.all(inflight);
  latencies.sort((a, b) => a - b);
  return {
    offeredEventsPerSecond: rate,
    seconds,
    statuses,
    acceptedEvents: accepted.size,
    acceptedEventsPerSecond: Math.round(accepted.size / seconds),
    notSentEvents: notSent,
    retryAfterMissing,
    p50Ms: Number(percentile(latencies, 50).toFixed(1)),
    p99Ms: Number(percentile(latencies, 99).toFixed(1)),
    accepted,
    refusedIds,
  };
}

async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}

const throughputPipeline = `signup-risk-benchingest-${runId}`;
const burstPipeline = `signup-risk-benchburst-${runId}`;
const env = {
  KAFKA_BROKERS: brokers.join(','),
  SLUICE_INGEST_KEYS_TOPIC: `bench.ingest-keys.${runId}`,
  SLUICE_INGEST_IDEMPOTENCY_TOPIC: `bench.ingest-ids.${runId}`,
  SLUICE_INGEST_DOCUMENT_DIR: join(stackPaths().root, 'bench', 'documents'),
  SLUICE_INGEST_INSTANCE_ID: `bench-${runId}`,
};
const config = ingestConfigFromEnv(env);
const processes: StageProcess[] = [];

async function main() {
  say(`creating topics and schemas for ${throughputPipeline} and ${burstPipeline}`);
  for (const pipeline of [throughputPipeline, burstPipeline]) await ensureTopics(brokers, pipelineTopics(pipeline));
  await registerPipelineSchemas(burstPipeline, connections.schemaRegistryUrl);
  const admin = await openAdmin(brokers);
  await waitUntil('topic leaders', async () => (await admin.partitionWatermarks(topicName(burstPipeline, 'raw')).catch(() => undefined)) !== undefined, 30_000);
  await admin.close();

  const startGateway = async (name: string) => {
    const port = 18_000 + Math.floor(Math.random() * 2_000);
    const gateway = spawnProcess({
      name,
      script: SLUICE_BIN,
      args: ['ingest', 'serve', '--port', String(port)],
      // The heap cap docs/ingest.md recommends for production (the Dockerfile's NODE_OPTIONS pattern); --uncapped to measure without it.
      env: { ...env, SLUICE_INGEST_INSTANCE_ID: `bench-${runId}-${name}`, LOG_LEVEL: 'info', ...(args.uncapped ? {} : { NODE_OPTIONS: '--max-old-space-size=192' }) },
      readyMessage: 'ingest API listening',
      logFile: join(logDir, `ingest-${runId}-${name}.log`),
    });
    processes.push(gateway);
    await gateway.running;
    return { gateway, base: `http://127.0.0.1:${port}` };
  };
  const { gateway, base } = await startGateway('throughput');
  const unlimited = (await addIngestKey(config, throughputPipeline, 1_000_000)).key;
  const limited = (await addIngestKey(config, burstPipeline, RATE)).key;
  await waitUntil('the gateway to know the key', async () => (await post(`${base}/v1/pipelines/${throughputPipeline}/events`, unlimited, {})).status === 400, 10_000);
  const rss = sampleRss(gateway.child.pid!);
  const idleRss = rssBytes(gateway.child.pid!);

  const eventsUrl = `${base}/v1/pipelines/${throughputPipeline}/events`;
  say('warming up');
  await httpThroughput(eventsUrl, unlimited, 100, 4, 2);
  say(`(a) HTTP, 1 event per request, ${SECONDS} s`);
  const http1 = await httpThroughput(eventsUrl, unlimited, 1, 32, SECONDS);
  say(`(b) HTTP, 100 events per request, ${SECONDS} s`);
  const http100 = await httpThroughput(eventsUrl, unlimited, 100, 8, SECONDS);
  say(`(c) straight to Kafka, ${SECONDS} s`);
  const kafka = await kafkaThroughput(topicName(throughputPipeline, 'raw'), SECONDS);
  const throughputPeakRss = rss.peak();
  rss.stop();
  // The burst meets a fresh instance, as a new deploy or a scaled-out instance would: the throughput phases above
  // leave the first one's heap grown (RSS rarely shrinks), which says nothing about how a burst is absorbed.
  gateway.kill('SIGTERM');
  await gateway.exited;
  const { gateway: burstGateway, base: burstBase } = await startGateway('burst');
  await waitUntil('the gateway to know the key', async () => (await post(`${burstBase}/v1/pipelines/${burstPipeline}/events`, limited, {})).status === 400, 10_000);
  const burstIdleRss = rssBytes(burstGateway.child.pid!);

  say(`(d) starting ${burstPipeline}'s stages`);
  const stages = STAGES.map((stage) => spawnStage({ pipeline: burstPipeline, stage, logFile: join(logDir, `ingest-${runId}.${stage}.log`) }));
  processes.push(...stages);
  await Promise.all(stages.map((s) => s.running));
  const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
  const decided = new Map<string, number>();
  let chain = Promise.resolve();
  const follower = await followTopic({
    brokers,
    topic: topicName(burstPipeline, 'decided'),
    clientId: 'bench-ingest-decided',
    logger: createLogger({ component: 'bench' }, 'error'),
    onMessage: (message) => {
      chain = chain.then(async () => {
        if (!message.value) return;
        await catalog.prefetch([message.value]);
        const value = catalog.decodeSync(message.value);
        if (value.kind !== 'decoded') return;
        const id = (value.value as { event_id: string }).event_id;
        decided.set(id, (decided.get(id) ?? 0) + 1);
      });
    },
  });
  say(`(d) burst: ${RATE * 10} events/s offered for ${BURST_SECONDS} s to a key of ${RATE} events/s`);
  const burstRss = sampleRss(burstGateway.child.pid!);
  const burstResult = await burst(`${burstBase}/v1/pipelines/${burstPipeline}/events`, limited, RATE * 10, BURST_SECONDS, 256);
  burstRss.stop();
  say(`(d) waiting for ${burstResult.acceptedEvents} accepted events to be decided`);
  await waitUntil('every accepted event decided', () => [...burstResult.accepted].every((id) => decided.has(id)), 300_000);
  // Then one more event per partition of raw, sent last: once each is decided, every event before it on its
  // partition has been (order holds per partition through the stages), so a duplicate decision would show.
  const partitions = await topicPartitions(brokers, topicName(burstPipeline, 'raw'));
  const drainIds: string[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    let n = 0;
    while (partitionFor(`drain-${runId}-${partition}-${n}`, partitions) !== partition) n++;
    drainIds.push(`drain-${runId}-${partition}-${n}`);
  }
  const drainEvents = drainIds.map((id) => ({ ...event('unused'), event_id: id }));
  await waitUntil('the drain events accepted', async () => (await post(`${burstBase}/v1/pipelines/${burstPipeline}/events`, limited, { events: drainEvents })).status === 202, 30_000);
  await waitUntil('the drain events decided', () => drainIds.every((id) => decided.has(id)), 120_000);
  for (const id of drainIds) decided.delete(id);
  await chain;
  await follower.stop();
  const duplicates = [...decided.values()].filter((n) => n > 1).length;
  const refusedButDecided = [...burstResult.refusedIds].filter((id) => decided.has(id)).length;
  const unexpected = [...decided.keys()].filter((id) => !burstResult.accepted.has(id)).length;

  const { accepted: _a, refusedIds: _r, ...burstFigures } = burstResult;
  const report = {
    runId,
    at: new Date().toISOString(),
    gatewayNodeOptions: args.uncapped ? '' : '--max-old-space-size=192',
    machine: { cpus: (await import('node:os')).cpus().length },
    throughput: {
      seconds: SECONDS,
      httpBatch1: http1,
      httpBatch100: http100,
      kafkaDirect: kafka,
      ratios: {
        httpBatch1ToKafka: Number((http1.eventsPerSecond / kafka.eventsPerSecond).toFixed(3)),
        httpBatch100ToKafka: Number((http100.eventsPerSecond / kafka.eventsPerSecond).toFixed(3)),
      },
      gatewayIdleRssMb: Math.round(idleRss / 1_048_576),
      gatewayPeakRssMb: Math.round(throughputPeakRss / 1_048_576),
    },
    burst: {
      keyRatePerSecond: RATE,
      ...burstFigures,
      gatewayIdleRssMb: Math.round(burstIdleRss / 1_048_576),
      gatewayPeakRssMb: Math.round(burstRss.peak() / 1_048_576),
      rssUnder300Mb: burstRss.peak() < 300 * 1_048_576,
      failures: Object.entries(burstFigures.statuses).filter(([status]) => !['202', '429', '503'].includes(status)).reduce((sum, [, n]) => sum + n, 0),
      decided: { acceptedAndDecidedOnce: [...burstResult.accepted].filter((id) => decided.get(id) === 1).length, duplicates, refusedButDecided, unexpected },
    },
  };
  const mb = (n: number) => `${n} MB`;
  process.stdout.write(
    [
      `ingest benchmark (${report.machine.cpus} cores; every figure from this run)`,
      `  (a) HTTP, 1 event/request, 32 clients:    ${http1.eventsPerSecond.toLocaleString('en')} events/s accepted (p50 ${http1.p50Ms} ms, p99 ${http1.p99Ms} ms) = ${report.throughput.ratios.httpBatch1ToKafka} of direct`,
      `  (b) HTTP, 100 events/request, 8 clients:  ${http100.eventsPerSecond.toLocaleString('en')} events/s accepted (p50 ${http100.p50Ms} ms, p99 ${http100.p99Ms} ms) = ${report.throughput.ratios.httpBatch100ToKafka} of direct`,
      `  (c) straight to Kafka, sends of 500:      ${kafka.eventsPerSecond.toLocaleString('en')} events/s`,
      `      gateway RSS: ${mb(report.throughput.gatewayIdleRssMb)} idle, ${mb(report.throughput.gatewayPeakRssMb)} peak over (a)-(c)`,
      `  (d) burst ${BURST_SECONDS} s at ${(RATE * 10).toLocaleString('en')} events/s offered to a key of ${RATE.toLocaleString('en')}/s:`,
      `      answers by status: ${JSON.stringify(burstFigures.statuses)} (failures: ${report.burst.failures}; 429/503 without Retry-After: ${burstFigures.retryAfterMissing})`,
      `      accepted ${burstFigures.acceptedEvents.toLocaleString('en')} events (${burstFigures.acceptedEventsPerSecond}/s); not sent (generator at ${256} outstanding): ${burstFigures.notSentEvents}`,
      `      response p50 ${burstFigures.p50Ms} ms, p99 ${burstFigures.p99Ms} ms; gateway RSS ${mb(report.burst.gatewayIdleRssMb)} at start, ${mb(report.burst.gatewayPeakRssMb)} peak (${report.burst.rssUnder300Mb ? 'under' : 'OVER'} 300 MB)`,
      `      decided exactly once: ${report.burst.decided.acceptedAndDecidedOnce.toLocaleString('en')} of ${burstFigures.acceptedEvents.toLocaleString('en')} accepted; duplicates ${duplicates}; refused but decided ${refusedButDecided}; decided but never accepted ${unexpected}`,
      `  JSON: ${args.json}`,
      '',
    ].join('\n'),
  );
  (await import('node:fs')).mkdirSync(join(args.json, '..'), { recursive: true });
  writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
}

try {
  await main();
} finally {
  for (const p of processes) p.kill('SIGTERM');
  await Promise.race([Promise.all(processes.map((p) => p.exited)), sleep(20_000)]);
  for (const p of processes) p.kill('SIGKILL');
  await deleteTopics(brokers, [...pipelineTopicNames(throughputPipeline), ...pipelineTopicNames(burstPipeline), config.keysTopic, config.idempotencyTopic]).catch(() => {});
}
process.exit(0);
