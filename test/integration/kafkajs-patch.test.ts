/**
 * The kafkajs patch on the real broker: after the first, a transaction that
 * produces and commits consumer offsets sends five requests (AddPartitionsToTxn,
 * Produce, AddOffsetsToTxn, TxnOffsetCommit, EndTxn) and no FindCoordinator;
 * and a new admin client's first group request is not retried.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { deleteTopics, ensureTopics } from '../../connectors/kafka/admin.ts';
import { createKafka } from '../../connectors/kafka/client.ts';
import { connections, kafkaCollectingTroubles, uniqueName } from '../helpers.ts';

const topic = uniqueName('it-kafkajs-patch');
after(() => deleteTopics(connections.kafkaBrokers, [topic]));

it('sends no FindCoordinator request once a transactional producer knows its coordinators', async () => {
  await ensureTopics(connections.kafkaBrokers, [{ topic, partitions: 1, replicationFactor: 1, config: {} }]);
  const producer = createKafka({ brokers: connections.kafkaBrokers, clientId: 'test-patch' }).producer({ transactionalId: uniqueName('tx'), idempotent: true, maxInFlightRequests: 1 });
  const requests: string[] = [];
  producer.on(producer.events.REQUEST, (event) => requests.push(event.payload.apiName));
  await producer.connect();
  try {
    const run = async (i: number) => {
      const transaction = await producer.transaction();
      await transaction.send({ topic, acks: -1, messages: [{ key: `k${i}`, value: `v${i}` }] });
      await transaction.sendOffsets({ consumerGroupId: `${topic}.group`, topics: [{ topic, partitions: [{ partition: 0, offset: String(i + 1) }] }] });
      await transaction.commit();
    };
    await run(0);
    requests.length = 0;
    for (let i = 1; i <= 5; i++) await run(i);
    const counts: Record<string, number> = {};
    for (const api of requests) counts[api] = (counts[api] ?? 0) + 1;
    assert.equal(counts.GroupCoordinator ?? 0, 0, `no FindCoordinator: ${JSON.stringify(counts)}`);
    for (const api of ['Produce', 'AddOffsetsToTxn', 'TxnOffsetCommit', 'EndTxn']) assert.equal(counts[api], 5, `${api} once per transaction: ${JSON.stringify(counts)}`);
    // AddPartitionsToTxn may be retried after CONCURRENT_TRANSACTIONS while the previous commit's markers are written.
    assert.ok((counts.AddPartitionsToTxn ?? 0) >= 5);
  } finally {
    await producer.disconnect();
  }
});

it("answers a new admin client's first group request without a retry: the coordinator lookup reads the cluster's metadata first", async () => {
  await ensureTopics(connections.kafkaBrokers, [{ topic, partitions: 1, replicationFactor: 1, config: {} }]);
  // Unpatched, the lookup failed once with an empty broker pool, and kafkajs retried it ~300 ms later.
  const { kafka, troubles } = kafkaCollectingTroubles('test-patch-admin');
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [offsets] = await admin.fetchOffsets({ groupId: uniqueName('it-kafkajs-patch-group'), topics: [topic] });
    assert.deepEqual(offsets?.partitions.map((p) => p.offset), ['-1'], 'a group that never committed has no offset');
    assert.deepEqual(troubles, [], 'no error and no retry');
  } finally {
    await admin.disconnect();
  }
});
