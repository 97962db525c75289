/**
 * Zombie fencing with one transactional producer per process (KIP-447), on the
 * real broker. Member A takes a chunk and stalls inside its handler (a long GC
 * pause, a frozen VM) past its session; member B takes A's partitions and
 * commits them. When A wakes up and commits, the group coordinator refuses A's
 * offsets (its generation is over), so A's whole transaction aborts: a
 * read-committed reader sees every input exactly once. A and B use different
 * transactional ids, so nothing but the group generation can stop A.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { deleteTopics, ensureTopics, openProducer } from '../../connectors/kafka/admin.ts';
import { type ExactlyOnceHandle, type ExactlyOnceOptions, startExactlyOnce } from '../../connectors/kafka/exactly-once.ts';
import { followTopic } from '../../connectors/kafka/follow.ts';
import type { SourceRecord } from '../../lib/contracts.ts';
import { createLogger } from '../../lib/log.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';

const brokers = connections.kafkaBrokers;
const logger = createLogger({ test: 'exactly-once-zombie' }, 'warn');

describe('exactly-once with one producer per process', () => {
  const topics: string[] = [];
  const running: ExactlyOnceHandle[] = [];
  after(async () => {
    await Promise.all(running.map((handle) => handle.stop()));
    await deleteTopics(brokers, topics).catch(() => {});
  });

  it("a member that stalled past its session cannot commit what the group gave to another: each input is written once", async (t) => {
    const input = uniqueName('eo-zombie-in');
    const output = uniqueName('eo-zombie-out');
    const group = uniqueName('eo-zombie-group');
    topics.push(input, output);
    await ensureTopics(brokers, [
      { topic: input, partitions: 3, replicationFactor: 1, config: {} },
      { topic: output, partitions: 3, replicationFactor: 1, config: {} },
    ]);
    const count = 60;
    const producer = await openProducer(brokers, 'eo-zombie-test');
    t.after(() => producer.close());
    const produce = (from: number) => producer.send(input, Array.from({ length: count }, (_, i) => ({ key: `k${from + i}`, value: `v${from + i}` })));
    await produce(0);

    const seen: string[] = [];
    const follower = await followTopic({ brokers, topic: output, clientId: 'eo-zombie-reader', logger, onMessage: (m) => seen.push(String(m.value)) });
    t.after(() => follower.stop());

    const passthrough = (records: SourceRecord[]) => records.map((r) => ({ messages: [{ topic: output, key: r.key, value: r.value ?? Buffer.alloc(0) }] }));
    const options = (member: string): ExactlyOnceOptions => ({
      brokers,
      clientId: `${group}.${member}`,
      groupId: group,
      topic: input,
      transactionalIdPrefix: `${group}.${member}`,
      maxBatchRecords: 500,
      maxBatchBytes: 900_000,
      outputTopics: [output],
      transactionTimeoutMs: 60_000,
      maxWaitTimeMs: 100,
      sessionTimeoutMs: 6_000,
      logger,
      handle: async (records) => passthrough(records),
      oversized: (_record, out) => out,
    });

    // A stalls on its first chunk until released, sending no heartbeat meanwhile.
    let stalled: (records: number) => void = () => {};
    const aStalled = new Promise<number>((resolve) => {
      stalled = resolve;
    });
    let wake: () => void = () => {};
    const aWakes = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const aFailures: string[] = [];
    let aCommitted = 0;
    const a = await startExactlyOnce({
      ...options('a'),
      handle: async (records) => {
        stalled(records.length);
        await aWakes;
        return passthrough(records);
      },
      onCommitted: ({ records }) => {
        aCommitted += records.length;
      },
      onFailure: ({ code }) => aFailures.push(code),
    });
    running.push(a);
    const heldByA = await aStalled;
    assert.ok(heldByA > 0);

    const b = await startExactlyOnce(options('b'));
    running.push(b);
    await waitFor('B to take every partition and write every input', () => b.assigned().length === 3 && new Set(seen).size === count, { timeoutMs: 90_000 });

    wake();
    const refusal = (code: string) => ['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'FENCED_INSTANCE_ID'].includes(code);
    await waitFor("A's stale commit to end, refused or not", () => aFailures.some(refusal) || aCommitted > 0, { timeoutMs: 60_000 });
    assert.equal(aCommitted, 0, `A committed ${aCommitted} records the group had given to B`);
    assert.ok(aFailures.some(refusal), `A's offsets refused by the coordinator (A's failures: ${aFailures.join(', ')})`);
    // After the refusal A joins again and the group splits the partitions: more inputs, handled by either member, are each written once too.
    await produce(count);
    await waitFor('every later input written', () => new Set(seen).size === 2 * count, { timeoutMs: 90_000 });
    await waitFor('A back in the group with partitions of its own', () => a.assigned().length > 0 && a.assigned().length + b.assigned().length === 3, { timeoutMs: 60_000 });

    t.diagnostic(`A held ${heldByA} records while stalled; A's failures: ${aFailures.join(', ')}; A committed ${aCommitted} later records`);
    assert.equal(seen.length, 2 * count, `each input exactly once on the output (saw ${seen.length} messages for ${2 * count} inputs)`);
  });
});
