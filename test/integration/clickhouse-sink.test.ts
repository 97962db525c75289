/**
 * The ClickHouse sink end to end, on the real stack: a pipeline instance of
 * its own (unique topics, subjects and groups) with its three stages as
 * processes, the sink as a process (`sluice sink clickhouse`), and the
 * documented queries as the judge. What ClickHouse says must equal what the
 * pipeline wrote to Kafka, through a SIGKILLed sink, a sink that writes
 * everything twice, and ClickHouse stopped in the middle of a run.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE_FLAGS, SLUICE_BIN } from '../../cli/processes.ts';
import { DOCUMENTED_QUERIES, type QueryRow, runDocumentedQuery } from '../../connectors/clickhouse/analytics.ts';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../../connectors/clickhouse/retention.ts';
import { DATA_TABLES } from '../../connectors/clickhouse/schema.ts';
import { groupLag, resetOffsetsToEarliest } from '../../connectors/kafka/admin.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { envelopeBytes, generateSignups, malformedSamples } from '../../pipelines/signup-risk/generator.ts';
import type { CommonDecision } from '../../processors/sink/records.ts';
import { sinkGroupId, sinkTopics } from '../../processors/sink/runner.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';

const MAX_MESSAGE_BYTES = 65_536;

interface SinkProcess {
  child: ChildProcess;
  running: Promise<void>;
  exited: Promise<number | string>;
}

/** `sluice sink clickhouse --pipeline <name>` as its own process, the way an operator runs it. */
function spawnSink(pipeline: string, env: Record<string, string> = {}): SinkProcess {
  const child = spawn(process.execPath, [...NODE_FLAGS, SLUICE_BIN, 'sink', 'clickhouse', '--pipeline', pipeline], {
    env: { ...process.env, SLUICE_METRICS_PORT: '0', SLUICE_SINK_MAX_BATCH_WAIT_MS: '200', SLUICE_SINK_SESSION_TIMEOUT_MS: '6000', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  let tail = '';
  const running = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4_000);
      if (chunk.includes('"msg":"sink running"')) resolve();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4_000);
    });
    void exited.then((code) => reject(new Error(`sink exited (${code}) before it was running: ${tail.trim()}`)));
  });
  running.catch(() => {});
  return { child, running, exited };
}

async function kill(sink: SinkProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!sink || sink.child.exitCode !== null || sink.child.signalCode !== null) return;
  sink.child.kill(signal);
  await sink.exited;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const roundFloats = (rows: QueryRow[] | undefined) =>
  rows?.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(12)) : v])));

const num = (value: unknown) => Number(value ?? 0);
const sum = (rows: QueryRow[], column: string) => rows.reduce((n, row) => n + num(row[column]), 0);

describe('ClickHouse sink', () => {
  const client = createClickHouse({ url: connections.clickhouseUrl });
  let instance: PipelineInstance;
  let decided: Collector<CommonDecision>;
  let dlq: Collector<Buffer>;
  let sink: SinkProcess | undefined;
  const prefix = uniqueName('evt');
  let seed = 0;
  /** Every event id and dead letter key produced so far. */
  let validCount = 0;
  let badCount = 0;

  // The instance is this test's alone; ten years back includes the generator's malformed samples, dated 2026-11-01.
  const query = (name: string) => runDocumentedQuery(client, name, { pipeline: instance.name, days: 3_650 });

  async function produceRun(count: number, withBad: boolean): Promise<void> {
    seed += 1;
    const valid = [...generateSignups({ seed, count, startMs: Date.now(), spacingMs: 5, idPrefix: prefix })];
    const bad = withBad ? malformedSamples({ maxMessageBytes: MAX_MESSAGE_BYTES, idPrefix: `${prefix}-${seed}`, seed }) : [];
    validCount += valid.length;
    badCount += bad.length;
    await instance.produce([
      ...valid.map((s) => ({ key: s.key, value: envelopeBytes(s.envelope) })),
      ...bad.map((s) => ({ key: s.key, value: s.value })),
    ]);
  }

  /** What the pipeline wrote to Kafka, from the collectors. */
  function kafkaTruth() {
    const latest = new Map<string, CommonDecision>();
    for (const { value } of decided.messages) {
      const current = latest.get(value.event_id);
      if (!current || value.decision_version > current.decision_version) latest.set(value.event_id, value);
    }
    const decisions = new Map<string, number>();
    for (const d of latest.values()) decisions.set(d.decision, (decisions.get(d.decision) ?? 0) + 1);
    const reasons = new Map<string, number>();
    for (const { headers } of dlq.messages) reasons.set(headers['dlq.reason']!, (reasons.get(headers['dlq.reason']!) ?? 0) + 1);
    return { events: latest.size, decisions, reasons, deadLetters: dlq.messages.length };
  }

  async function pipelineDone(): Promise<void> {
    await decided.until(`${validCount} decisions on Kafka`, (m) => new Set(m.map((x) => x.value.event_id)).size >= validCount, 120_000);
    await dlq.until(`${badCount} dead letters on Kafka`, (m) => m.length >= badCount, 120_000);
  }

  /** The loss check's totals, summed over hours. */
  async function lossCheck() {
    const rows = await query('loss-check');
    return {
      validated: sum(rows, 'validated'),
      rejected: sum(rows, 'rejected'),
      decided: sum(rows, 'decided'),
      deadLetteredLater: sum(rows, 'dead_lettered_later'),
      unaccounted: sum(rows, 'unaccounted'),
    };
  }

  async function clickHouseCaughtUp(): Promise<void> {
    await waitFor(
      `ClickHouse to show ${validCount} decided events and ${badCount} dead letters`,
      async () => {
        const loss = await lossCheck();
        if (loss.decided === validCount && loss.rejected === badCount && loss.unaccounted === 0) return loss;
        throw new Error(`not yet: ${JSON.stringify(loss)}`); // waitFor reports the last observation

      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
  }

  /** Every documented query's rows, for before/after comparisons. */
  async function snapshot(): Promise<Record<string, QueryRow[]>> {
    const out: Record<string, QueryRow[]> = {};
    for (const q of DOCUMENTED_QUERIES) out[q.name] = await query(q.name);
    return out;
  }

  /** Stage event rows on disk, duplicates included, and the distinct Kafka records they stand for. */
  async function stageEventRows(): Promise<{ raw: number; distinct: number }> {
    const [row] = await queryRows<{ raw: string; distinct: string }>(
      client,
      `SELECT count() AS raw, uniqExact(stage, outcome, kafka_partition, kafka_offset) AS distinct FROM sluice.stage_events WHERE pipeline = ${quote(instance.name)}`,
    );
    return { raw: num(row?.raw), distinct: num(row?.distinct) };
  }

  before(async () => {
    await migrate(client, { url: connections.clickhouseUrl });
    instance = await PipelineInstance.create('it-sink', { SLUICE_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) });
    [decided, dlq] = await Promise.all([instance.collect<CommonDecision>('decided'), instance.collect<Buffer>('dlq', 'bytes')]);
    await instance.start();
  });

  after(async () => {
    await kill(sink);
    for (const table of DATA_TABLES) await client.command({ query: `SYSTEM START MERGES ${table}` }).catch(() => {});
    await instance?.stop();
    if (instance) await deletePipelineRows(client, instance.name).catch(() => {});
    await client.close();
  });

  it('after a run with bad events, ClickHouse counts per stage, decisions and dead letters equal what the pipeline produced', async () => {
    sink = spawnSink(instance.name);
    await sink.running;
    await produceRun(300, true);
    await pipelineDone();
    await clickHouseCaughtUp();
    const truth = kafkaTruth();

    const loss = await lossCheck();
    assert.deepEqual(loss, { validated: validCount, rejected: badCount, decided: validCount, deadLetteredLater: 0, unaccounted: 0 });

    const mix = await query('decision-mix');
    const mixByDecision = new Map<string, number>();
    for (const row of mix) mixByDecision.set(String(row['decision']), (mixByDecision.get(String(row['decision'])) ?? 0) + num(row['events']));
    assert.deepEqual(mixByDecision, truth.decisions, 'decision mix equals the decisions on Kafka');

    const reasons = new Map<string, number>();
    for (const row of await query('dead-letter-reasons')) reasons.set(String(row['reason']), (reasons.get(String(row['reason'])) ?? 0) + num(row['dead_letters']));
    assert.deepEqual(reasons, truth.reasons, 'dead letters per reason equal the dead-letter topic');

    const review = await query('review-rate');
    assert.equal(sum(review, 'events'), validCount);
    assert.equal(sum(review, 'sent_to_review'), truth.decisions.get('review') ?? 0);

    // Every decided event was scored by the model (kill switch off): one model output each.
    const features = await query('feature-stats');
    assert.ok(features.length > 0, 'feature statistics exist');
    for (const row of features) assert.equal(num(row['events']), validCount, `feature ${row['feature']} seen once per event`);

    const latency = await query('stage-latency');
    assert.deepEqual(
      latency.map((row) => [row['hop'], num(row['events'])]),
      ['validate', 'score', 'decide', 'end_to_end'].map((hop) => [hop, validCount]),
    );
    for (const row of latency) assert.ok(num(row['p50_ms']) <= num(row['p99_ms']) && num(row['p99_ms']) <= num(row['max_ms']));

    const recent = await query('recent-dead-letters');
    assert.equal(recent.length, Math.min(20, badCount));
    for (const row of recent) assert.doesNotMatch(`${row['preview']} ${row['message']}`, /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z]{2,}/, 'no email address in a preview');
  });

  it('a sink SIGKILLed in the middle of catching up and restarted changes no count', async () => {
    await kill(sink);
    await produceRun(500, true);
    await pipelineDone();
    const before = await lossCheck();
    assert.ok(before.decided < validCount, 'the new events are not in ClickHouse yet');

    // Small batches, so the catch-up takes many inserts and commits; kill it half way.
    sink = spawnSink(instance.name, { SLUICE_SINK_MAX_BATCH_RECORDS: '40' });
    await sink.running;
    const partial = await waitFor(
      'the sink to have written part of the backlog',
      async () => {
        const loss = await lossCheck();
        return loss.decided > before.decided || loss.validated > before.validated ? loss : false;
      },
      { timeoutMs: 60_000, intervalMs: 10 },
    );
    await kill(sink, 'SIGKILL');
    const atKill = await lossCheck();
    assert.ok(atKill.decided < validCount || atKill.validated < validCount, `killed before the end of the backlog (seen ${JSON.stringify(partial)})`);

    sink = spawnSink(instance.name);
    await sink.running;
    await clickHouseCaughtUp();
    assert.deepEqual(await lossCheck(), { validated: validCount, rejected: badCount, decided: validCount, deadLetteredLater: 0, unaccounted: 0 });
    const truth = kafkaTruth();
    const mix = await query('decision-mix');
    assert.equal(sum(mix, 'events'), truth.events);
    assert.equal(sum(await query('dead-letter-reasons'), 'dead_letters'), truth.deadLetters);
  });

  it('a sink that writes every record a second time (rewound to the beginning) changes no documented query', async () => {
    // No merges while this runs: the duplicates stay on disk, so the queries themselves must not count them.
    for (const table of DATA_TABLES) await client.command({ query: `SYSTEM STOP MERGES ${table}` });
    await kill(sink, 'SIGTERM');
    const expected = await snapshot();
    const before = await stageEventRows();

    await resetOffsetsToEarliest(connections.kafkaBrokers, sinkGroupId(instance.name), sinkTopics(instance.name), 'it-sink');
    sink = spawnSink(instance.name);
    await sink.running;
    const twice = before.raw + before.distinct;
    await waitFor('every stage event written a second time', async () => ((await stageEventRows()).raw >= twice ? true : undefined), {
      timeoutMs: 120_000,
      intervalMs: 250,
    });
    assert.deepEqual(await stageEventRows(), { raw: twice, distinct: before.distinct }, 'the duplicates are on disk');
    const actual = await snapshot();
    // Sums of floats may differ in their last bits with the order parts are read in; everything else must be equal.
    for (const q of DOCUMENTED_QUERIES) assert.deepEqual(roundFloats(actual[q.name]), roundFloats(expected[q.name]), `${q.name} unchanged by duplicates`);
    for (const table of DATA_TABLES) await client.command({ query: `SYSTEM START MERGES ${table}` });
  });

  it('with ClickHouse stopped, decisions keep flowing on Kafka and the sink commits nothing; once it is back, the counts match', async () => {
    const pidFile = join(stackPaths().run, 'clickhouse.pid');
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    assert.ok(Number.isInteger(pid) && pid > 0, `a ClickHouse pid in ${pidFile}`);
    const ping = () =>
      fetch(`${connections.clickhouseUrl}/ping`, { signal: AbortSignal.timeout(1_000) }).then(
        (r) => r.ok,
        () => false,
      );
    let terminated = false;
    try {
      await clickHouseCaughtUp();
      const decidedBefore = validCount;
      // Stop the ClickHouse process (SIGTERM; SIGKILL if it lingers), as an outage would.
      terminated = true;
      process.kill(pid, 'SIGTERM');
      await waitFor('ClickHouse to exit', () => !alive(pid), { timeoutMs: 15_000 }).catch(async () => {
        process.kill(pid, 'SIGKILL');
        await waitFor('ClickHouse to exit after SIGKILL', () => !alive(pid), { timeoutMs: 10_000 });
      });
      assert.equal(await ping(), false, 'ClickHouse is down');

      await produceRun(200, false);
      await decided.until('the new decisions on Kafka while ClickHouse is down', (m) => new Set(m.map((x) => x.value.event_id)).size >= validCount, 30_000);
      const lag = await groupLag(connections.kafkaBrokers, sinkGroupId(instance.name), instance.topic('decided'));
      const behind = lag.reduce((n, p) => n + Number(p.end - p.committed), 0);
      assert.ok(behind >= validCount - decidedBefore, `the sink committed nothing it could not write (${behind} decided records behind)`);
    } finally {
      // Others share this stack: start ClickHouse again whatever happened above (`stack up` starts only what is down).
      if (terminated && alive(pid)) process.kill(pid, 'SIGKILL');
      if (terminated) await waitFor('the old ClickHouse process to be gone', () => !alive(pid), { timeoutMs: 10_000 });
      const up = spawnSync(process.execPath, [...NODE_FLAGS, SLUICE_BIN, 'stack', 'up'], { encoding: 'utf8' });
      assert.equal(up.status, 0, `stack up: ${up.stderr}`);
    }
    await clickHouseCaughtUp();
    assert.deepEqual(await lossCheck(), { validated: validCount, rejected: badCount, decided: validCount, deadLetteredLater: 0, unaccounted: 0 });
    assert.equal(sum(await query('decision-mix'), 'events'), kafkaTruth().events);
  });
});
