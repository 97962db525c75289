/**
 * The kafkajs patch on the real broker (Kafka 4.x, which finalizes
 * transaction.version 2): after the first, a transaction that produces and
 * commits consumer offsets sends three requests (Produce v12,
 * TxnOffsetCommit v5, EndTxn v5: KIP-890's transactions v2, which add their
 * partitions themselves) and no FindCoordinator, and what it commits or aborts
 * is what a read-committed consumer and the group see; opted out, the same
 * transaction sends the five of transactions v1 (AddPartitionsToTxn, Produce,
 * AddOffsetsToTxn, TxnOffsetCommit, EndTxn). And a new admin client's first
 * group request is not retried.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { deleteTopics, ensureTopics } from '../../connectors/kafka/admin.ts';
import { createKafka } from '../../connectors/kafka/client.ts';
import { connections, kafkaCollectingTroubles, uniqueName, waitFor } from '../helpers.ts';

const topic = uniqueName('it-kafkajs-patch');
after(() => deleteTopics(connections.kafkaBrokers, [topic]));

/**
 * Runs six transactions of one record and one offset each (the second and
 * the fifth aborted) on a new transactional producer; the requests of the last five,
 * by API and version.
 */
async function transactions(options: { transactionsV2: boolean; group: string }): Promise<Record<string, number>> {
  await ensureTopics(connections.kafkaBrokers, [{ topic, partitions: 1, replicationFactor: 1, config: {} }]);
  const producer = createKafka({ brokers: connections.kafkaBrokers, clientId: 'test-patch' }).producer({
    transactionalId: uniqueName('tx'),
    idempotent: true,
    maxInFlightRequests: 1,
    transactionsV2: options.transactionsV2,
  });
  const requests: string[] = [];
  producer.on(producer.events.REQUEST, (event) => requests.push(`${event.payload.apiName} v${event.payload.apiVersion}`));
  await producer.connect();
  try {
    for (let i = 0; i < 6; i++) {
      if (i === 1) requests.length = 0;
      const transaction = await producer.transaction();
      await transaction.send({ topic, acks: -1, messages: [{ key: options.group, value: `${options.group}:${i}` }] });
      await transaction.sendOffsets({ consumerGroupId: options.group, topics: [{ topic, partitions: [{ partition: 0, offset: String(i + 1) }] }] });
      if (i % 3 === 1) await transaction.abort();
      else await transaction.commit();
    }
  } finally {
    await producer.disconnect();
  }
  const counts: Record<string, number> = {};
  for (const request of requests) counts[request] = (counts[request] ?? 0) + 1;
  return counts;
}

/**
 * The values of `group`'s transactions a read-committed consumer reads up to
 * the last one's (an aborted one before it would have been read before it),
 * and the offset the group committed.
 */
async function committed(group: string): Promise<{ values: string[]; offset: string | undefined }> {
  const kafka = createKafka({ brokers: connections.kafkaBrokers, clientId: 'test-patch-reader' });
  const consumer = kafka.consumer({ groupId: uniqueName('it-kafkajs-patch-reader'), readUncommitted: false });
  const values: string[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (message.key?.toString() === group) values.push(message.value!.toString());
      },
    });
    await waitFor(`the last transaction's record, ${group}:5`, () => values.includes(`${group}:5`), { timeoutMs: 30_000 });
    const admin = kafka.admin();
    await admin.connect();
    try {
      const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
      return { values, offset: offsets?.partitions[0]?.offset };
    } finally {
      await admin.disconnect();
    }
  } finally {
    await consumer.disconnect();
  }
}

it('sends three requests per transaction with transactions v2 (Produce v12, TxnOffsetCommit v5, EndTxn v5), and commits and aborts as before', async () => {
  const group = uniqueName('it-kafkajs-patch-v2');
  const counts = await transactions({ transactionsV2: true, group });
  const sent = JSON.stringify(counts);
  assert.equal(counts['Produce v12'], 5, `one Produce v12 per transaction: ${sent}`);
  assert.equal(counts['EndTxn v5'], 5, `one EndTxn v5 per transaction: ${sent}`);
  // TxnOffsetCommit may be retried after CONCURRENT_TRANSACTIONS while the previous commit's markers are written.
  assert.ok((counts['TxnOffsetCommit v5'] ?? 0) >= 5, `TxnOffsetCommit v5 in every transaction: ${sent}`);
  for (const request of Object.keys(counts)) {
    assert.match(request, /^(Produce v12|TxnOffsetCommit v5|EndTxn v5)$/, `no adds, no FindCoordinator: ${sent}`);
  }
  // Each EndTxn bumped the producer's epoch: had the next transaction kept the old one, the broker would have refused it.
  const { values, offset } = await committed(group);
  assert.deepEqual(values, [`${group}:0`, `${group}:2`, `${group}:3`, `${group}:5`], 'the committed transactions, not the aborted ones');
  assert.equal(offset, '6', 'the offset of the last committed transaction');
});

it('sends the five requests of transactions v1 when the producer opts out of v2', async () => {
  const group = uniqueName('it-kafkajs-patch-v1');
  const counts = await transactions({ transactionsV2: false, group });
  const sent = JSON.stringify(counts);
  assert.equal(Object.keys(counts).filter((request) => request.startsWith('GroupCoordinator')).length, 0, `no FindCoordinator: ${sent}`);
  for (const api of ['Produce', 'AddOffsetsToTxn', 'TxnOffsetCommit', 'EndTxn']) {
    assert.equal(Object.entries(counts).filter(([request]) => request.startsWith(`${api} `)).reduce((sum, [, n]) => sum + n, 0), 5, `${api} once per transaction: ${sent}`);
  }
  // AddPartitionsToTxn may be retried after CONCURRENT_TRANSACTIONS while the previous commit's markers are written.
  assert.ok(Object.entries(counts).filter(([request]) => request.startsWith('AddPartitionsToTxn ')).reduce((sum, [, n]) => sum + n, 0) >= 5, sent);
  assert.ok(!counts['Produce v12'] && !counts['EndTxn v5'], `no v2 request: ${sent}`);
  assert.equal(counts['TxnOffsetCommit v3'], 5, `the offsets in TxnOffsetCommit v3: ${sent}`);
  const { values, offset } = await committed(group);
  assert.deepEqual(values, [`${group}:0`, `${group}:2`, `${group}:3`, `${group}:5`]);
  assert.equal(offset, '6');
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
