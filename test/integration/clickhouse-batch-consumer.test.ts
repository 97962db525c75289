/**
 * The at-least-once batch consumer the ClickHouse sink stands on, against the
 * real broker: bounded batches from several topics in one group, offsets
 * committed only after the batch was handled, the same records retried when
 * handling fails, and everything uncommitted delivered again after a restart.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { committedOffsets as fetchCommittedOffsets, deleteTopics, ensureTopics, openProducer } from '../../connectors/kafka/admin.ts';
import { type BatchConsumer, startBatchConsumer } from '../../connectors/kafka/batch-consumer.ts';
import { openTransactionalProducer } from '../../connectors/kafka/tx.ts';
import { createLogger } from '../../lib/log.ts';
import type { SourceRecord } from '../../processors/runtime/types.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';

const logger = createLogger({ component: 'it-batch-consumer' }, 'error');
const brokers = connections.kafkaBrokers;

async function createTopics(prefix: string, count: number): Promise<string[]> {
  const topics = Array.from({ length: count }, (_, i) => uniqueName(`${prefix}-${i}`));
  await ensureTopics(
    brokers,
    topics.map((topic) => ({ topic, partitions: 3, replicationFactor: 1, config: {} })),
  );
  return topics;
}

async function produce(topic: string, count: number, prefix = 'm'): Promise<void> {
  const producer = await openProducer(brokers, 'it-batch-consumer');
  try {
    await producer.send(
      topic,
      Array.from({ length: count }, (_, i) => ({ key: `k${i % 7}`, value: `${prefix}-${i}` })),
    );
  } finally {
    await producer.close();
  }
}

async function committedOffsets(groupId: string, topics: string[]): Promise<Map<string, string>> {
  const offsets = await fetchCommittedOffsets(brokers, groupId, topics, 'it-batch-consumer');
  return new Map(offsets.map(({ topic, partition, offset }) => [`${topic}/${partition}`, offset] as const));
}

const id = (r: SourceRecord) => `${r.topic}/${r.partition}/${r.offset}`;

describe('batch consumer', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step().catch(() => {});
  });
  const start = async (options: Parameters<typeof startBatchConsumer>[0]): Promise<BatchConsumer> => {
    const consumer = await startBatchConsumer(options);
    cleanup.push(() => consumer.stop());
    return consumer;
  };

  it('hands over every record of several topics in batches bounded by size, and commits the end of each partition', async () => {
    const topics = await createTopics('it-bc-all', 2);
    cleanup.push(() => deleteTopics(brokers, topics));
    await produce(topics[0]!, 250);
    await produce(topics[1]!, 130);
    const groupId = uniqueName('it-bc-group');
    const batches: SourceRecord[][] = [];
    const consumer = await start({
      brokers,
      clientId: 'it-bc',
      groupId,
      topics,
      maxBatchRecords: 100,
      maxBatchWaitMs: 200,
      logger,
      handle: async (records) => {
        batches.push(records);
      },
    });
    await waitFor('all 380 records handed over', () => batches.flat().length >= 380);
    await waitFor('lag 0 on every partition', async () => (await consumer.lag()).every((p) => p.lag === 0));
    const all = batches.flat();
    assert.equal(all.length, 380, 'each record once');
    assert.equal(new Set(all.map(id)).size, 380);
    assert.ok(batches.every((b) => b.length <= 100), `batch sizes ${batches.map((b) => b.length).join(',')}`);
    // Per partition, in offset order.
    for (const topic of topics) {
      for (let partition = 0; partition < 3; partition++) {
        const offsets = all.filter((r) => r.topic === topic && r.partition === partition).map((r) => Number(r.offset));
        assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
      }
    }
    const committed = await committedOffsets(groupId, topics);
    const expected = new Map<string, string>();
    for (const r of all) {
      const key = `${r.topic}/${r.partition}`;
      if (BigInt(r.offset) + 1n > BigInt(expected.get(key) ?? '0')) expected.set(key, (BigInt(r.offset) + 1n).toString());
    }
    for (const [key, offset] of expected) assert.equal(committed.get(key), offset, `committed offset of ${key} is last + 1`);
  });

  it('writes a small batch once it is old enough, without waiting for a full one', async () => {
    const [topic] = await createTopics('it-bc-time', 1);
    cleanup.push(() => deleteTopics(brokers, [topic!]));
    const handled: SourceRecord[] = [];
    await start({
      brokers,
      clientId: 'it-bc',
      groupId: uniqueName('it-bc-group'),
      topics: [topic!],
      maxBatchRecords: 10_000,
      maxBatchWaitMs: 300,
      logger,
      handle: async (records) => {
        handled.push(...records);
      },
    });
    await produce(topic!, 3);
    await waitFor('the 3 records written in a batch far below its size bound', () => handled.length === 3);
  });

  it('retries the same records while handling fails, commits nothing meanwhile, and drops nothing', async () => {
    const [topic] = await createTopics('it-bc-retry', 1);
    cleanup.push(() => deleteTopics(brokers, [topic!]));
    await produce(topic!, 60);
    const groupId = uniqueName('it-bc-group');
    const attempts: string[][] = [];
    let failuresLeft = 3;
    const handled: SourceRecord[] = [];
    const failures: number[] = [];
    let committedWhileFailing: Map<string, string> | undefined;
    const consumer = await start({
      brokers,
      clientId: 'it-bc',
      groupId,
      topics: [topic!],
      maxBatchRecords: 1_000,
      maxBatchWaitMs: 300,
      retryBackoffMs: { initial: 50, max: 200 },
      logger,
      handle: async (records) => {
        attempts.push(records.map(id));
        if (failuresLeft > 0) {
          failuresLeft -= 1;
          if (failuresLeft === 0) committedWhileFailing = await committedOffsets(groupId, [topic!]);
          throw new Error('sink unavailable');
        }
        handled.push(...records);
      },
      onFailure: ({ attempt }) => failures.push(attempt),
    });
    await waitFor('all 60 records handled after the failures', () => handled.length >= 60);
    assert.deepEqual(failures, [1, 2, 3], 'attempts counted up');
    assert.equal(consumer.failing(), 0, 'healthy again');
    // The first batch was offered again, record for record, until it was handled.
    assert.deepEqual(attempts[1], attempts[0]);
    assert.deepEqual(attempts[2], attempts[0]);
    assert.deepEqual(attempts[3]?.slice(0, attempts[0]!.length), attempts[0]);
    assert.ok([...committedWhileFailing!.values()].every((offset) => offset === '-1'), 'nothing committed while failing');
    assert.equal(new Set(handled.map(id)).size, 60);
    await waitFor('offsets committed after the write', async () => (await consumer.lag()).every((p) => p.lag === 0));
  });

  it('delivers everything uncommitted again to the next consumer of the group (at-least-once)', async () => {
    const [topic] = await createTopics('it-bc-restart', 1);
    cleanup.push(() => deleteTopics(brokers, [topic!]));
    await produce(topic!, 40, 'first');
    const groupId = uniqueName('it-bc-group');
    let offered = 0;
    const first = await startBatchConsumer({
      brokers,
      clientId: 'it-bc',
      groupId,
      topics: [topic!],
      maxBatchRecords: 1_000,
      maxBatchWaitMs: 100,
      retryBackoffMs: { initial: 50, max: 100 },
      logger,
      handle: async (records) => {
        offered = records.length;
        throw new Error('never written');
      },
    });
    await waitFor('the first consumer was offered all 40', () => offered === 40);
    await first.stop();

    const second: SourceRecord[] = [];
    await start({
      brokers,
      clientId: 'it-bc',
      groupId,
      topics: [topic!],
      maxBatchRecords: 1_000,
      maxBatchWaitMs: 100,
      logger,
      handle: async (records) => {
        second.push(...records);
      },
    });
    await waitFor('the next consumer of the group gets all 40 again', () => second.length >= 40);
    assert.deepEqual(second.map((r) => r.value?.toString()).sort(), Array.from({ length: 40 }, (_, i) => `first-${i}`).sort());
  });

  it('reaches lag 0 on a topic written in transactions (commits past the transaction markers)', async () => {
    const [topic] = await createTopics('it-bc-tx', 1);
    cleanup.push(() => deleteTopics(brokers, [topic!]));
    const producer = await openTransactionalProducer({ brokers, clientId: 'it-bc-tx', transactionalId: uniqueName('it-bc-tx') });
    try {
      for (let t = 0; t < 3; t++) {
        const transaction = await producer.begin();
        await transaction.send(topic!, Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `t${t}-${i}` })));
        await transaction.commit();
      }
    } finally {
      await producer.close();
    }
    const handled: SourceRecord[] = [];
    const consumer = await start({
      brokers,
      clientId: 'it-bc',
      groupId: uniqueName('it-bc-group'),
      topics: [topic!],
      maxBatchRecords: 1_000,
      maxBatchWaitMs: 100,
      logger,
      handle: async (records) => {
        handled.push(...records);
      },
    });
    await waitFor('30 transactional records handled', () => handled.length >= 30);
    await waitFor('lag 0 although markers follow the records', async () => (await consumer.lag()).every((p) => p.lag === 0));
    assert.equal(handled.length, 30);
  });
});
