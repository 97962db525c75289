/**
 * KIP-447 in the kafkajs patch, on the real broker: a transaction's offsets
 * carry the consuming member's generation (TxnOffsetCommit v3, or v5 with the
 * same fields where the cluster has transactions v2, as Kafka 4.x does), so the group
 * coordinator refuses them from a member of an older generation; and
 * `fetchOffsets({ requireStable: true })` (OffsetFetch v7) waits for the
 * transactions that hold offsets to end. The steps share one group and run in
 * order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deleteTopics, ensureTopics } from '../../connectors/kafka/admin.ts';
import { type Admin, type Consumer, createKafka, type Producer } from '../../connectors/kafka/client.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';

const input = uniqueName('it-kip447-in');
const output = uniqueName('it-kip447-out');
const groupId = uniqueName('it-kip447-group');
const kafka = createKafka({ brokers: connections.kafkaBrokers, clientId: 'test-kip447' });

interface Joined {
  generationId: number;
  memberId: string;
}

/** A group member that only holds its partitions (no commits of its own) and records each generation it joins. */
async function member(): Promise<{ consumer: Consumer; joins: Joined[] }> {
  const consumer = kafka.consumer({ groupId, heartbeatInterval: 300, sessionTimeout: 10_000, rebalanceTimeout: 10_000, maxWaitTimeInMs: 200, allowAutoTopicCreation: false });
  const joins: Joined[] = [];
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => joins.push({ generationId: payload.generationId, memberId: payload.memberId }));
  await consumer.connect();
  await consumer.subscribe({ topics: [input] });
  await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => {} });
  return { consumer, joins };
}

const offsetsOf = (partition: number, offset: number) => [{ topic: input, partitions: [{ partition, offset: String(offset) }] }];

async function committedOffset(options: { requireStable?: boolean } = {}): Promise<string | undefined> {
  const [topic] = await admin.fetchOffsets({ groupId, topics: [input], ...options });
  return topic?.partitions.find((p) => p.partition === 0)?.offset;
}

let admin: Admin;
let producer: Producer;
const consumers: Consumer[] = [];
/** The version of each TxnOffsetCommit the producer sent, and of each OffsetFetch the admin sent. */
const txnOffsetCommitVersions: number[] = [];
const offsetFetchVersions: number[] = [];

before(async () => {
  await ensureTopics(connections.kafkaBrokers, [
    { topic: input, partitions: 1, replicationFactor: 1, config: {} },
    { topic: output, partitions: 1, replicationFactor: 1, config: {} },
  ]);
  // The offsets committed below must lie inside the input partition: a member whose
  // committed offset is out of range resets it (kafkajs commits its default offset).
  const seed = kafka.producer({ allowAutoTopicCreation: false });
  await seed.connect();
  await seed.send({ topic: input, acks: -1, messages: Array.from({ length: 40 }, (_, i) => ({ value: `in-${i}` })) });
  await seed.disconnect();
  admin = kafka.admin();
  admin.on(admin.events.REQUEST, ({ payload }) => {
    if (payload.apiName === 'OffsetFetch') offsetFetchVersions.push(payload.apiVersion);
  });
  await admin.connect();
  producer = kafka.producer({ transactionalId: uniqueName('it-kip447-tx'), idempotent: true, maxInFlightRequests: 1 });
  producer.on(producer.events.REQUEST, ({ payload }) => {
    if (payload.apiName === 'TxnOffsetCommit') txnOffsetCommitVersions.push(payload.apiVersion);
  });
  await producer.connect();
});

after(async () => {
  await Promise.allSettled([...consumers.map((c) => c.disconnect()), producer?.disconnect(), admin?.disconnect()]);
  await deleteTopics(connections.kafkaBrokers, [input, output]);
});

describe('kafkajs patch: KIP-447 on the real broker', () => {
  let first: { consumer: Consumer; joins: Joined[] };
  let firstGeneration: Joined;

  it('commits offsets with the generation and member id of GROUP_JOIN, in TxnOffsetCommit v5 (transactions v2, the fields of v3)', async () => {
    first = await member();
    consumers.push(first.consumer);
    firstGeneration = await waitFor('the first member to join', () => first.joins[0]);
    assert.ok(Number.isInteger(firstGeneration.generationId) && firstGeneration.generationId >= 0, `a generation: ${JSON.stringify(firstGeneration)}`);
    assert.ok(firstGeneration.memberId.length > 0);

    const transaction = await producer.transaction();
    await transaction.send({ topic: output, acks: -1, messages: [{ value: 'committed' }] });
    await transaction.sendOffsets({ consumerGroupId: groupId, topics: offsetsOf(0, 5), consumerGroupMetadata: firstGeneration });
    await transaction.commit();

    // The local stack's Kafka 4.x finalizes transaction.version 2 (kafkajs-patch.test.ts covers v1's v3).
    assert.deepEqual(txnOffsetCommitVersions, [5]);
    // Stable: the commit's marker reaches the offsets topic just after EndTxn is answered.
    assert.equal(await committedOffset({ requireStable: true }), '5');
  });

  it('refuses offsets from the previous generation (ILLEGAL_GENERATION, or UNKNOWN_MEMBER_ID once the member was replaced); the aborted output is never read', async () => {
    const second = await member();
    consumers.push(second.consumer);
    // Both members are in the next generation once each has joined it.
    const current = await waitFor('both members to join the next generation', () => {
      const a = first.joins.at(-1);
      const b = second.joins.at(-1);
      return a && b && a.generationId > firstGeneration.generationId && a.generationId === b.generationId && a;
    });

    // A member that kept its id through the rebalance is refused for its generation; one the
    // coordinator dropped meanwhile (it did not rejoin in time) rejoined under a new id, and the old id is unknown.
    const refusal = current.memberId === firstGeneration.memberId ? 'ILLEGAL_GENERATION' : 'UNKNOWN_MEMBER_ID';
    const zombie = await producer.transaction();
    try {
      await zombie.send({ topic: output, acks: -1, messages: [{ value: 'zombie' }] });
      await assert.rejects(zombie.sendOffsets({ consumerGroupId: groupId, topics: offsetsOf(0, 9), consumerGroupMetadata: firstGeneration }), { type: refusal });
    } finally {
      await zombie.abort();
    }
    assert.equal(await committedOffset({ requireStable: true }), '5', 'the refused offset was not committed');

    // The member's current generation commits; its output follows the aborted one's in the log.
    const transaction = await producer.transaction();
    await transaction.send({ topic: output, acks: -1, messages: [{ value: 'after' }] });
    await transaction.sendOffsets({ consumerGroupId: groupId, topics: offsetsOf(0, 10), consumerGroupMetadata: current });
    await transaction.commit();
    assert.equal(await committedOffset({ requireStable: true }), '10');

    const reader = kafka.consumer({ groupId: uniqueName('it-kip447-reader'), maxWaitTimeInMs: 200, allowAutoTopicCreation: false });
    consumers.push(reader);
    const values: string[] = [];
    await reader.connect();
    await reader.subscribe({ topics: [output], fromBeginning: true });
    await reader.run({ eachMessage: async ({ message }) => void values.push(String(message.value)) });
    // read_committed delivers in log order, so once 'after' is read, 'zombie' would have been too.
    await waitFor('the read_committed reader to reach the last committed message', () => values.includes('after'));
    assert.deepEqual(values, ['committed', 'after']);
  });

  /**
   * Opens a transaction holding offset `offset` for partition 0, starts a
   * stable fetch, and returns once the broker has answered that fetch
   * UNSTABLE_OFFSET_COMMIT and kafkajs has asked again.
   */
  async function openTransactionAndStableFetch(offset: number) {
    const [current] = first.joins.slice(-1);
    const transaction = await producer.transaction();
    await transaction.send({ topic: output, acks: -1, messages: [{ value: `pending-${offset}` }] });
    await transaction.sendOffsets({ consumerGroupId: groupId, topics: offsetsOf(0, offset), consumerGroupMetadata: current });
    offsetFetchVersions.length = 0;
    let settled = false;
    const stable = committedOffset({ requireStable: true }).finally(() => {
      settled = true;
    });
    await waitFor('a second OffsetFetch v7 after UNSTABLE_OFFSET_COMMIT', () => offsetFetchVersions.filter((v) => v === 7).length >= 2);
    return { transaction, stable, isSettled: () => settled };
  }

  it('fetchOffsets with requireStable waits for the open transaction, then returns its offset if committed', async () => {
    const { transaction, stable, isSettled } = await openTransactionAndStableFetch(20);
    try {
      assert.equal(isSettled(), false, 'still waiting while the transaction is open');

      offsetFetchVersions.length = 0;
      assert.equal(await committedOffset(), '10', 'without requireStable: the last committed offset, at once');
      assert.deepEqual(
        offsetFetchVersions.filter((v) => v !== 7),
        [4],
        'without requireStable: one request, in the version kafkajs always used',
      );
      assert.equal(isSettled(), false);

      await transaction.commit();
    } finally {
      if (transaction.isActive()) await transaction.abort();
    }
    assert.equal(await stable, '20');
  });

  it('fetchOffsets with requireStable returns the previous offset once the transaction is aborted', async () => {
    const { transaction, stable, isSettled } = await openTransactionAndStableFetch(30);
    try {
      assert.equal(isSettled(), false, 'still waiting while the transaction is open');
    } finally {
      await transaction.abort();
    }
    assert.equal(await stable, '20');
  });
});
