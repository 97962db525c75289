/**
 * Faults an operator meets, on the real local stack: a backlog of large
 * records, a record whose output the broker cannot take, SIGTERM after a
 * broker outage, start-up configurations that cannot work, and a restart
 * with history on the control topic.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pipelineTopics, registerPipelineSchemas } from '../../cli/pipeline.ts';
import { deleteTopics, ensureTopics, setTopicConfig } from '../../connectors/kafka/admin.ts';
import { openTransactionalProducer } from '../../connectors/kafka/tx.ts';
import { SchemaCatalog } from '../../connectors/registry/registry.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { pipelineTopicNames } from '../../lib/contracts.ts';
import { KILL_SWITCH_MODEL, writeControl } from '../../processors/runtime/control.ts';
import type { DecisionCommon } from '../../processors/decide/transform.ts';
import { generateSignups } from '../../pipelines/signup-risk/generator.ts';
import { connections, sluiceAsync, uniqueName, waitFor } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';

/** A valid signup event whose referral code (unbounded by the contract) makes it about `bytes` long. */
function largeEvents(prefix: string, count: number, bytes: number, seed: number) {
  return [...generateSignups({ seed, count, startMs: Date.now(), idPrefix: prefix })].map((event) => {
    const envelope = structuredClone(event.envelope);
    envelope.payload.referral_code = 'r'.repeat(bytes);
    return { key: event.key, eventId: envelope.event_id, value: Buffer.from(JSON.stringify(envelope)) };
  });
}

const normalEvents = (prefix: string, count: number) =>
  [...generateSignups({ seed: 5, count, startMs: Date.now(), idPrefix: prefix })].map((event) => ({
    key: event.key,
    eventId: event.envelope.event_id,
    value: Buffer.from(JSON.stringify(event.envelope)),
  }));

const kafkaPid = () => Number(readFileSync(join(stackPaths().run, 'kafka.pid'), 'utf8'));

describe('reliability', () => {
  const instances: PipelineInstance[] = [];
  let kafkaFrozen = false;
  after(async () => {
    if (kafkaFrozen) process.kill(kafkaPid(), 'SIGCONT');
    await Promise.all(instances.map((instance) => instance.stop()));
  });

  it('drains a backlog of 2 KB valid events and of 2 KB malformed ones; the good events behind them are decided', async () => {
    // 3,000 malformed records in a row is what the circuit breaker is for (it would hold the partition
    // until an operator resets it: test/integration/circuit.test.ts); here it is off, to show the drain itself.
    const pipeline = await PipelineInstance.create('it-backlog', { SLUICE_CIRCUIT_THRESHOLD: '1' });
    instances.push(pipeline);
    const decided = await pipeline.collect<DecisionCommon>('decided');
    const dlq = await pipeline.collect<Buffer>('dlq', 'bytes');
    const prefix = uniqueName('backlog');
    // A deploy: the stages are down while the backlog builds up.
    const large = largeEvents(`${prefix}-large`, 3_000, 2_000, 21);
    const malformed = large.slice(0, 3_000).map((event, i) => ({ key: `${prefix}-bad-${i}`, value: Buffer.concat([Buffer.from('{"event_id":'), event.value]) }));
    const good = normalEvents(`${prefix}-good`, 250);
    await pipeline.produce([...large, ...malformed, ...good].map(({ key, value }) => ({ key, value })));

    await pipeline.start();
    const wanted = new Set([...large, ...good].map((e) => e.eventId));
    await decided.until('every large and every good event decided', (ms) => ms.filter((m) => wanted.has(m.value.event_id)).length >= wanted.size, 240_000);
    await dlq.until('every malformed event dead-lettered', (ms) => ms.filter((m) => m.key?.startsWith(`${prefix}-bad-`)).length >= malformed.length, 240_000);
    const ids = decided.messages.map((m) => m.value.event_id).filter((id) => wanted.has(id));
    assert.equal(new Set(ids).size, ids.length, 'no event decided twice');
    assert.ok(
      dlq.messages.filter((m) => m.key?.startsWith(`${prefix}-bad-`)).every((m) => m.headers['dlq.reason'] === 'MALFORMED_PAYLOAD'),
      'each malformed event carries its reason',
    );
  });

  it("dead-letters a record whose output alone exceeds its topic's limit, with its original bytes, and the partition goes on", async () => {
    const pipeline = await PipelineInstance.create('it-toolarge');
    instances.push(pipeline);
    // validated takes at most 64 KiB per batch; the dead-letter topic keeps the broker's 1 MiB.
    await setTopicConfig(connections.kafkaBrokers, pipeline.topic('validated'), { 'max.message.bytes': String(65_536) });
    const decided = await pipeline.collect<DecisionCommon>('decided');
    const dlq = await pipeline.collect<Buffer>('dlq', 'bytes');
    await pipeline.start();
    const prefix = uniqueName('toolarge');
    const [huge] = largeEvents(`${prefix}-huge`, 1, 100_000, 22);
    const behind = normalEvents(`${prefix}-after`, 50);
    // Same key: the huge event and the ones behind it share a partition.
    await pipeline.produce([huge!, ...behind].map(({ value }) => ({ key: 'one-key', value })));

    const ids = new Set(behind.map((e) => e.eventId));
    await decided.until('the events behind the huge one decided', (ms) => ms.filter((m) => ids.has(m.value.event_id)).length >= ids.size, 90_000);
    const [letter] = await dlq.until('the huge event dead-lettered', (ms) => ms.some((m) => m.headers['dlq.event_id'] === huge!.eventId), 30_000);
    const found = dlq.messages.find((m) => m.headers['dlq.event_id'] === huge!.eventId) ?? letter!;
    assert.equal(found.headers['dlq.reason'], 'OVERSIZED');
    assert.equal(found.headers['dlq.stage'], 'validate');
    assert.deepEqual(found.raw, huge!.value, 'the original bytes, whole');
    assert.equal(found.headers['dlq.truncated'], undefined);
    assert.equal(decided.messages.some((m) => m.value.event_id === huge!.eventId), false);
  });

  it('never loops on MESSAGE_TOO_LARGE: a limit lowered while a stage runs splits its transactions, and a record that still cannot fit is dead-lettered', async () => {
    const pipeline = await PipelineInstance.create('it-refused');
    instances.push(pipeline);
    const decided = await pipeline.collect<DecisionCommon>('decided');
    const dlq = await pipeline.collect<Buffer>('dlq', 'bytes');
    await pipeline.start();
    // The stages read the limits at start; the broker enforces the new one from now on.
    await setTopicConfig(connections.kafkaBrokers, pipeline.topic('validated'), { 'max.message.bytes': String(65_536) });
    const prefix = uniqueName('refused');
    const [huge] = largeEvents(`${prefix}-huge`, 1, 100_000, 24);
    const around = largeEvents(`${prefix}-around`, 200, 2_000, 25);
    await pipeline.produce([...around.slice(0, 100), huge!, ...around.slice(100)].map(({ value }) => ({ key: 'one-key', value })));
    const ids = new Set(around.map((e) => e.eventId));
    await decided.until('the events around the huge one decided', (ms) => ms.filter((m) => ids.has(m.value.event_id)).length >= ids.size, 120_000);
    await dlq.until('the huge event dead-lettered', (ms) => ms.some((m) => m.headers['dlq.event_id'] === huge!.eventId), 30_000);
    const letter = dlq.messages.find((m) => m.headers['dlq.event_id'] === huge!.eventId)!;
    assert.equal(letter.headers['dlq.reason'], 'OVERSIZED');
    const log = readFileSync(join(stackPaths().logs, 'tests', `${pipeline.name}.validate.log`), 'utf8');
    assert.match(log, /refused a transaction as too large/, 'the broker did refuse, and the stage split instead of looping');
    const ids2 = decided.messages.map((m) => m.value.event_id).filter((id) => ids.has(id));
    assert.equal(new Set(ids2).size, ids2.length, 'no event decided twice');
  });

  it('keeps a truncated preview and the coordinates when even the dead letter cannot hold the original', async () => {
    const pipeline = await PipelineInstance.create('it-truncate');
    instances.push(pipeline);
    for (const suffix of ['validated', 'dlq'] as const) {
      await setTopicConfig(connections.kafkaBrokers, pipeline.topic(suffix), { 'max.message.bytes': String(32_768) });
    }
    const dlq = await pipeline.collect<Buffer>('dlq', 'bytes');
    const decided = await pipeline.collect<DecisionCommon>('decided');
    await pipeline.startStage('validate').running;
    await pipeline.startStage('score').running;
    await pipeline.startStage('decide').running;
    const prefix = uniqueName('truncate');
    const [huge] = largeEvents(`${prefix}-huge`, 1, 100_000, 23);
    const behind = normalEvents(`${prefix}-after`, 20);
    await pipeline.produce([huge!, ...behind].map(({ value }) => ({ key: 'one-key', value })));
    const ids = new Set(behind.map((e) => e.eventId));
    await decided.until('the events behind it decided', (ms) => ms.filter((m) => ids.has(m.value.event_id)).length >= ids.size, 90_000);
    const [letter] = (await dlq.until('the huge event dead-lettered', (ms) => ms.some((m) => m.headers['dlq.event_id'] === huge!.eventId), 30_000)).filter(
      (m) => m.headers['dlq.event_id'] === huge!.eventId,
    );
    assert.equal(letter!.headers['dlq.reason'], 'OVERSIZED');
    assert.equal(letter!.headers['dlq.truncated'], 'true');
    assert.equal(letter!.headers['dlq.original_bytes'], String(huge!.value.length));
    assert.ok(letter!.raw!.length < 32_768 && letter!.raw!.length > 0, 'a preview that fits');
    assert.deepEqual(letter!.raw, huge!.value.subarray(0, letter!.raw!.length), 'the preview is the start of the original');
    // Where the whole record is: the raw topic, at an offset that holds it.
    assert.equal(letter!.headers['dlq.source.topic'], pipeline.topic('raw'));
    assert.match(letter!.headers['dlq.source.offset'] ?? '', /^\d+$/);
    assert.match(letter!.headers['dlq.source.partition'] ?? '', /^\d+$/);
  });

  it('a restarted stage applies the latest control settings quietly and does not replay their history', async () => {
    const pipeline = await PipelineInstance.create('it-control');
    instances.push(pipeline);
    const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
    const write = (value: 'on' | 'off') =>
      writeControl({ brokers: connections.kafkaBrokers, catalog, setting: { pipeline: pipeline.name, setting: KILL_SWITCH_MODEL, value, reason: 'test', updated_by: 'reliability-test' } });
    for (const value of ['on', 'off', 'on', 'off'] as const) await write(value);
    const decide = pipeline.startStage('decide');
    await decide.running;
    const log = () => readFileSync(join(stackPaths().logs, 'tests', `${pipeline.name}.decide.log`), 'utf8');
    assert.match(log(), /"msg":"control state loaded"/);
    assert.doesNotMatch(log(), /control setting applied/, 'history is not replayed');
    await write('on');
    await waitFor('a live change to be applied', () => /"value":"on".*"msg":"control setting applied"/.test(log()), { timeoutMs: 20_000, intervalMs: 200 });
    assert.equal(log().match(/control setting applied/g)?.length, 1);
  });

  it('every stage exits by itself within 15 s of SIGTERM after a broker outage', async (t) => {
    const pipeline = await PipelineInstance.create('it-outage', { SLUICE_SESSION_TIMEOUT_MS: '6000' });
    instances.push(pipeline);
    const decided = await pipeline.collect<DecisionCommon>('decided');
    await pipeline.start();
    const first = normalEvents(uniqueName('outage-a'), 20);
    await pipeline.produce(first);
    await decided.until('the first events decided', (ms) => ms.length >= first.length, 60_000);

    process.kill(kafkaPid(), 'SIGSTOP');
    kafkaFrozen = true;
    await new Promise((resolve) => setTimeout(resolve, 18_000)); // the outage itself
    process.kill(kafkaPid(), 'SIGCONT');
    kafkaFrozen = false;
    const resumed = Date.now();
    const second = normalEvents(uniqueName('outage-b'), 20);
    await pipeline.produce(second);
    const secondIds = new Set(second.map((e) => e.eventId));
    await decided.until('decisions again after the outage', (ms) => ms.filter((m) => secondIds.has(m.value.event_id)).length >= secondIds.size, 120_000);
    t.diagnostic(`every new event decided ${Date.now() - resumed} ms after the broker resumed`);
    // The collector's own group outlived its session too and joined again: it must not hand out the first decisions twice.
    const ids = decided.messages.map((m) => m.value.event_id);
    assert.equal(new Set(ids).size, ids.length, 'each decision read once across the outage');

    const stages = [...pipeline.stages.values()];
    const started = Date.now();
    for (const stage of stages) stage.kill('SIGTERM');
    const exits = await Promise.all(
      stages.map((stage) => Promise.race([stage.exited.then((code) => ({ code, ms: Date.now() - started })), new Promise<{ code: string; ms: number }>((resolve) => setTimeout(() => resolve({ code: 'still running', ms: 15_000 }), 15_000))])),
    );
    t.diagnostic(`exit after SIGTERM: ${exits.map((e) => `${e.code} in ${e.ms} ms`).join(', ')}`);
    for (const exit of exits) assert.notEqual(exit.code, 'still running', 'exited within 15 s');
  });

  it('keeps its group membership through a chunk slower than the session: a restore waiting on an open transaction', async () => {
    const pipeline = await PipelineInstance.create('it-slowchunk', { SLUICE_SESSION_TIMEOUT_MS: '6000' });
    instances.push(pipeline);
    const decided = await pipeline.collect<DecisionCommon>('decided');
    // A transaction left open on validate's changelog (as an outage leaves one until it is aborted): a
    // read-committed restore of that partition cannot reach its end until the transaction ends.
    const holder = await openTransactionalProducer({ brokers: connections.kafkaBrokers, clientId: 'it-slowchunk', transactionalId: `${pipeline.name}.holder` });
    const open = await holder.begin();
    await open.send(pipeline.topic('validate-dedup'), [{ key: 'held', value: Buffer.from('held'), partition: 0 }]);
    try {
      await pipeline.start();
      const events = normalEvents(uniqueName('slowchunk'), 30);
      await pipeline.produce(events);
      const log = () => readFileSync(join(stackPaths().logs, 'tests', `${pipeline.name}.validate.log`), 'utf8');
      await waitFor('validate to join its group', () => /"msg":"joined group"/.test(log()), { timeoutMs: 60_000, intervalMs: 200 });
      // Longer than the 6 s session: without heartbeats during the chunk, the group would drop validate.
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      await open.abort();
      await decided.until('every event decided', (ms) => new Set(ms.map((m) => m.value.event_id)).size >= events.length, 60_000);
      const restores = [...log().matchAll(/"partition":0,[^\n]*"ms":(\d+),"msg":"duplicate check restored from the changelog"/g)].map((m) => Number(m[1]));
      assert.ok(restores.some((ms) => ms >= 9_000), `partition 0's restore waited for the open transaction (restores took ${restores.join(', ')} ms)`);
      assert.equal(log().match(/"msg":"joined group"/g)?.length, 1, 'validate joined its group once: the slow chunk did not cost its membership');
    } finally {
      await holder.close();
    }
  });
});

/** Runs `sluice <args>` (metrics off unless `env` says otherwise) and resolves with its exit code, output and how long it took. */
async function runSluice(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string; stdout: string; ms: number }> {
  const run = sluiceAsync(args, { SLUICE_METRICS_PORT: '0', ...env });
  const timer = setTimeout(() => run.kill(), 90_000);
  const { status, ...result } = await run.exited;
  clearTimeout(timer);
  return { ...result, code: typeof status === 'number' ? status : null };
}

describe('start-up that cannot work', () => {
  const created: string[] = [];
  after(async () => {
    for (const name of created) await deleteTopics(connections.kafkaBrokers, pipelineTopicNames(name)).catch(() => {});
  });

  /** A pipeline with its topics and schemas in place. */
  async function readyPipeline(prefix: string): Promise<string> {
    const name = `signup-risk-${uniqueName(prefix)}`;
    created.push(name);
    await ensureTopics(connections.kafkaBrokers, pipelineTopics(name));
    await registerPipelineSchemas(name, connections.schemaRegistryUrl);
    return name;
  }

  /** How long each refused start-up took to exit, reported with each test. */
  const timings: string[] = [];

  const expectOneLine = (result: { code: number | null; stderr: string; ms: number }, code: string) => {
    timings.push(`${code} ${result.ms} ms`);
    assert.notEqual(result.code, 0, 'non-zero exit');
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line, got:\n${result.stderr}`);
    assert.match(lines[0]!, new RegExp(`^sluice: ${code}: `));
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
    assert.ok(result.ms < 60_000, `within 60 s (took ${result.ms} ms)`);
  };

  it('refuses configuration that cannot work, naming the variable', async (t) => {
    t.after(() => t.diagnostic(`exit after: ${timings.splice(0).join(', ')}`));
    const name = await readyPipeline('it-config');
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ SCHEMA_REGISTRY_URL: 'registry:8081' }, /SCHEMA_REGISTRY_URL/],
      [{ SLUICE_METRICS_PORT: '' }, /SLUICE_METRICS_PORT/],
      [{ KAFKA_BROKERS: 'kafka' }, /KAFKA_BROKERS/],
      [{ SLUICE_MAX_BATCH_RECORDS: '0' }, /SLUICE_MAX_BATCH_RECORDS/],
      [{ SCHEMA_REGISTRY_URL: 'http://127.0.0.1:8081' }, /SCHEMA_REGISTRY_URL=.*ccompat/],
    ];
    for (const [env, names] of cases) {
      const result = await runSluice(['run', 'validate', '--pipeline', name], env);
      expectOneLine(result, 'CONFIG_INVALID');
      assert.match(result.stderr, names);
    }
    const unknownStage = await runSluice(['run', 'scorer', '--pipeline', name], {});
    expectOneLine(unknownStage, 'CONFIG_INVALID');
  });

  it('names the missing topics, the missing schemas, or the unreachable service, with the command that fixes it', async (t) => {
    t.after(() => t.diagnostic(`exit after: ${timings.splice(0).join(', ')}`));
    const noTopics = `signup-risk-${uniqueName('it-notopics')}`;
    await registerPipelineSchemas(noTopics, connections.schemaRegistryUrl);
    const missingTopics = await runSluice(['run', 'validate', '--pipeline', noTopics], {});
    expectOneLine(missingTopics, 'TOPIC_MISSING');
    assert.match(missingTopics.stderr, new RegExp(`npx sluice topics create --pipeline ${noTopics}`));

    const noSchemas = `signup-risk-${uniqueName('it-noschemas')}`;
    created.push(noSchemas);
    await ensureTopics(connections.kafkaBrokers, pipelineTopics(noSchemas));
    const missingSchemas = await runSluice(['run', 'score', '--pipeline', noSchemas], {});
    expectOneLine(missingSchemas, 'SCHEMA_NOT_REGISTERED');
    assert.match(missingSchemas.stderr, new RegExp(`npx sluice schemas register --pipeline ${noSchemas}`));

    const name = await readyPipeline('it-unreachable');
    const noKafka = await runSluice(['run', 'decide', '--pipeline', name], { KAFKA_BROKERS: '127.0.0.1:1' });
    expectOneLine(noKafka, 'KAFKA_UNAVAILABLE');
    assert.match(noKafka.stderr, /KAFKA_BROKERS.*stack up/);
    const noRegistry = await runSluice(['run', 'decide', '--pipeline', name], { SCHEMA_REGISTRY_URL: 'http://127.0.0.1:1/apis/ccompat/v7' });
    expectOneLine(noRegistry, 'REGISTRY_UNAVAILABLE');
  });

  it('a second instance on a taken metrics port fails before it joins the group', async (t) => {
    t.after(() => t.diagnostic(`exit after: ${timings.splice(0).join(', ')}`));
    const name = await readyPipeline('it-port');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', () => resolve()));
    const port = (server.address() as { port: number }).port;
    try {
      const result = await runSluice(['run', 'validate', '--pipeline', name], { SLUICE_METRICS_PORT: String(port) });
      expectOneLine(result, 'CONFIG_INVALID');
      assert.match(result.stderr, new RegExp(`SLUICE_METRICS_PORT=${port}`));
      assert.doesNotMatch(result.stdout, /joined group|stage running/, 'it never joined the group');
    } finally {
      server.close();
    }
  });
});
