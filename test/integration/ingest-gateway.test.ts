/**
 * The ingest gateway against the real local stack, as operators run it
 * (`sluice ingest serve` and `sluice ingest add-key|revoke-key` as processes):
 * keys revoked within seconds on every instance; idempotency across
 * instances and across a SIGKILL and restart, with exactly one copy of each
 * event on `<p>.raw` where the answer said; 503 with Retry-After when Kafka
 * does not acknowledge, and nothing of that request visible afterwards.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { pipelineTopics } from '../../cli/pipeline.ts';
import { NODE_FLAGS, SLUICE_BIN, type StageProcess, spawnProcess } from '../../cli/processes.ts';
import { deleteTopics, ensureTopics, openAdmin } from '../../connectors/kafka/admin.ts';
import { type FollowedMessage, followTopic } from '../../connectors/kafka/follow.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { ingestConfigFromEnv } from '../../ingest/config.ts';
import { serveIngest } from '../../ingest/server.ts';
import { pipelineTopicNames, topicName } from '../../lib/contracts.ts';
import { createLogger } from '../../lib/log.ts';
import { signupEvent } from '../fixtures/ingest/gateway.ts';
import { connections, freePort, uniqueName, waitFor } from '../helpers.ts';

const run = promisify(execFile);

/**
 * Waits until `messages` (read-committed from `topic`) reach the end of every partition: the last
 * record read is the partition's last, or the last before a transaction's commit marker.
 */
async function readToEnd(topic: string, messages: FollowedMessage[]): Promise<void> {
  const admin = await openAdmin(connections.kafkaBrokers);
  try {
    const ends = await admin.partitionWatermarks(topic);
    await waitFor(`${topic} read to its end`, () =>
      ends.every(({ partition, low, high }) => {
        if (BigInt(high) <= BigInt(low)) return true;
        const last = messages.filter((m) => m.partition === partition).reduce((max, m) => (BigInt(m.offset) > max ? BigInt(m.offset) : max), -1n);
        return last + 2n >= BigInt(high);
      }),
    );
  } finally {
    await admin.close();
  }
}

describe('ingest gateway on Kafka', { timeout: 240_000 }, () => {
  const pipeline = `signup-risk-${uniqueName('ingest')}`;
  const env = {
    KAFKA_BROKERS: connections.kafkaBrokers.join(','),
    SLUICE_INGEST_KEYS_TOPIC: `${pipeline}.ingest-keys`,
    SLUICE_INGEST_IDEMPOTENCY_TOPIC: `${pipeline}.ingest-ids`,
    SLUICE_INGEST_DOCUMENT_DIR: join(stackPaths().root, 'tests', pipeline, 'documents'),
  };
  const gateways: StageProcess[] = [];
  const raw: FollowedMessage[] = [];
  let stopRaw: () => Promise<void> = async () => {};

  const sluice = async (...args: string[]) => (await run(process.execPath, [...NODE_FLAGS, SLUICE_BIN, ...args], { env: { ...process.env, ...env } })).stdout;

  const startGateway = async (name: string) => {
    const port = await freePort();
    const gateway = spawnProcess({
      name,
      script: SLUICE_BIN,
      args: ['ingest', 'serve', '--port', String(port)],
      env: { ...env, SLUICE_INGEST_INSTANCE_ID: `${pipeline}-${name}` },
      readyMessage: 'ingest API listening',
      logFile: join(stackPaths().logs, 'tests', `${pipeline}.${name}.log`),
    });
    gateways.push(gateway);
    await gateway.running;
    return { gateway, url: `http://127.0.0.1:${port}` };
  };

  /** The event id a raw record carries (the gateway keys by the manifest's field, not by the id). */
  const eventIdOf = (m: { value: Buffer | null }): string => (m.value === null ? '' : String((JSON.parse(m.value.toString('utf8')) as { event_id?: unknown }).event_id ?? ''));
  const send = async (url: string, key: string, body: unknown, path = 'events') =>
    fetch(`${url}/v1/pipelines/${pipeline}/${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  before(async () => {
    await ensureTopics(connections.kafkaBrokers, pipelineTopics(pipeline));
    // A topic just created may not have its leaders everywhere yet (NOT_LEADER_FOR_PARTITION): wait until
    // its offsets can be listed, on a session closed here (a failed followTopic would leave its admin open).
    const admin = await openAdmin(connections.kafkaBrokers);
    try {
      await waitFor('the raw topic ready', () => admin.partitionWatermarks(topicName(pipeline, 'raw')), { timeoutMs: 30_000, intervalMs: 200 });
    } finally {
      await admin.close();
    }
    const follower = await followTopic({
      brokers: connections.kafkaBrokers,
      topic: topicName(pipeline, 'raw'),
      clientId: 'test-ingest-raw',
      logger: createLogger({ component: 'test' }, 'error'),
      onMessage: (message) => raw.push(message),
    });
    stopRaw = follower.stop;
  });

  after(async () => {
    for (const gateway of gateways) gateway.kill('SIGKILL');
    await Promise.all(gateways.map((g) => g.exited));
    await stopRaw();
    await deleteTopics(connections.kafkaBrokers, [...pipelineTopicNames(pipeline), env.SLUICE_INGEST_KEYS_TOPIC, env.SLUICE_INGEST_IDEMPOTENCY_TOPIC]).catch(() => {});
  });

  it('add-key prints a key every instance accepts; revoke-key takes it back on every instance within seconds', async () => {
    const [a, b] = await Promise.all([startGateway('keys-a'), startGateway('keys-b')]);
    const added = JSON.parse(await sluice('ingest', 'add-key', '--pipeline', pipeline, '--rate', '1000', '--json'));
    assert.match(added.key, /^sk_[0-9a-f]{16}_/);
    for (const { url } of [a, b]) {
      await waitFor('the new key accepted', async () => (await send(url, added.key, signupEvent(uniqueName('k')))).status === 202, { timeoutMs: 10_000 });
    }
    const listed = await sluice('ingest', 'list-keys', '--pipeline', pipeline, '--json');
    assert.ok(listed.includes(added.key_id) && !listed.includes(added.key), 'list-keys shows the id, never the key');

    assert.match(await sluice('ingest', 'revoke-key', added.key_id), /revoked/);
    const revokedAt = Date.now();
    for (const { url } of [a, b]) {
      const refused = await waitFor(
        'the revoked key refused',
        async () => {
          const response = await send(url, added.key, signupEvent(uniqueName('k')));
          return response.status === 401 ? response : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
    }
    const seconds = (Date.now() - revokedAt) / 1_000;
    assert.ok(seconds < 5, `revocation took ${seconds} s on both instances`);
    a.gateway.kill('SIGTERM');
    b.gateway.kill('SIGTERM');
    assert.equal(await a.gateway.exited, 0);
    assert.equal(await b.gateway.exited, 0);
  });

  it('an event id accepted on one instance is a duplicate on another and after a SIGKILL and restart; one copy on <p>.raw, where the answer said', async () => {
    const { key } = JSON.parse(await sluice('ingest', 'add-key', '--pipeline', pipeline, '--rate', '10000', '--json'));
    const a = await startGateway('ids-a');
    const prefix = uniqueName('id');
    const events = Array.from({ length: 20 }, (_, i) => signupEvent(`${prefix}-${i}`));
    const first = await send(a.url, key, { events });
    assert.equal(first.status, 202);
    const accepted = ((await first.json()) as { results: Array<{ event_id: string; status: string; partition: number; offset: string }> }).results;
    assert.deepEqual(new Set(accepted.map((r) => r.status)), new Set(['accepted']));

    const b = await startGateway('ids-b');
    const onB = ((await (await send(b.url, key, { events })).json()) as { results: typeof accepted }).results;
    assert.deepEqual(onB, accepted.map((r) => ({ ...r, status: 'duplicate' })), 'another instance answers duplicate with the same coordinates');

    a.gateway.kill('SIGKILL');
    await a.gateway.exited;
    const c = await startGateway('ids-c');
    const single = await send(c.url, key, events[7]);
    assert.equal(single.status, 202);
    assert.deepEqual(((await single.json()) as { results: typeof accepted }).results, [{ ...accepted[7]!, status: 'duplicate' }], 'a restarted instance restores the window');

    const ids = new Set(events.map((e) => e.event_id));
    const mine = await waitFor('the events on raw', () => {
      const found = raw.filter((m) => ids.has(eventIdOf(m)));
      return found.length >= ids.size ? found : undefined;
    });
    await readToEnd(topicName(pipeline, 'raw'), raw);
    assert.equal(raw.filter((m) => ids.has(eventIdOf(m))).length, ids.size, 'exactly one copy of each event on raw');
    for (const result of accepted) {
      const record = mine.find((m) => eventIdOf(m) === result.event_id)!;
      assert.equal(record.key, `u-${result.event_id}`, 'keyed as the manifest says (payload.user_id)');
      assert.equal(record.partition, result.partition, result.event_id);
      assert.equal(record.offset, result.offset, result.event_id);
      assert.equal(JSON.parse(record.value!.toString('utf8')).event_id, result.event_id);
    }
  });

  it('503 with Retry-After when Kafka does not acknowledge in time; nothing of that request is visible, and the retry is accepted once', async () => {
    const { key } = JSON.parse(await sluice('ingest', 'add-key', '--pipeline', pipeline, '--rate', '10000', '--json'));
    const config = ingestConfigFromEnv({ ...env, SLUICE_INGEST_PRODUCE_TIMEOUT_MS: '1500', SLUICE_INGEST_INSTANCE_ID: `${pipeline}-slow`, LOG_LEVEL: 'silent' }, { port: 0 });
    const gateway = await serveIngest({ config });
    try {
      await waitFor('the key known', async () => (await send(gateway.url, key, signupEvent(uniqueName('warm')))).status === 202, { timeoutMs: 10_000 });
      // The raw topic disappears under the gateway: the broker cannot take the events, the producer retries, the deadline passes.
      await deleteTopics(connections.kafkaBrokers, [topicName(pipeline, 'raw')]);
      const id = uniqueName('late');
      const batch = { events: [signupEvent(`${id}-a`), signupEvent(`${id}-b`)] };
      const started = Date.now();
      const refused = await send(gateway.url, key, batch);
      assert.equal(refused.status, 503);
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'KAFKA_UNAVAILABLE');
      assert.ok(Number(refused.headers.get('retry-after')) >= 1, `Retry-After: ${refused.headers.get('retry-after')}`);
      assert.ok(Date.now() - started < 5_000, `answered within the bound (${Date.now() - started} ms)`);

      await ensureTopics(connections.kafkaBrokers, pipelineTopics(pipeline));
      const retried = await waitFor(
        'the retry accepted',
        async () => {
          const response = await send(gateway.url, key, batch);
          return response.status === 202 ? ((await response.json()) as { results: Array<{ status: string }> }).results : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      assert.deepEqual(retried.map((r) => r.status), ['accepted', 'accepted']);
      const again = (await (await send(gateway.url, key, batch)).json()) as { results: Array<{ status: string }> };
      assert.deepEqual(again.results.map((r) => r.status), ['duplicate', 'duplicate']);

      // A fresh reader of the re-created topic (read-committed, like the validate stage) sees each event once.
      const seen: FollowedMessage[] = [];
      const reader = await followTopic({
        brokers: connections.kafkaBrokers,
        topic: topicName(pipeline, 'raw'),
        clientId: 'test-ingest-raw-again',
        logger: createLogger({ component: 'test' }, 'error'),
        onMessage: (m) => seen.push(m),
      });
      try {
        await readToEnd(topicName(pipeline, 'raw'), seen);
        assert.deepEqual(seen.map(eventIdOf).filter((k) => k.startsWith(id)).sort(), [`${id}-a`, `${id}-b`]);
      } finally {
        await reader.stop();
      }
    } finally {
      await gateway.stop();
    }
  });
});
