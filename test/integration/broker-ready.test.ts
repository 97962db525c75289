/**
 * `stack up` hands over a broker whose coordinators are ready. A new broker
 * creates `__consumer_offsets` and `__transaction_state` on the first request
 * for a coordinator, and until they are loaded it answers
 * COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS, which kafkajs
 * logs as errors and retries ~300 ms later. `stack up` asks for both
 * coordinators first (readyCoordinators in connectors/kafka/admin.ts).
 *
 * Named to run first in the integration suite: on a freshly started stack, as
 * in CI, its clients are the first to ask the broker for coordinators.
 *
 * And topics that ensureTopics created answer at once: a partition's leader
 * named in the metadata can still refuse a read for a moment
 * (NOT_LEADER_FOR_PARTITION), which kafkajs's admin does not retry; switching
 * a just-created pipeline's mode (the benchmark does) failed on it.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { deleteTopics, ensureTopics, openAdmin } from '../../connectors/kafka/admin.ts';
import { connections, kafkaCollectingTroubles, uniqueName } from '../helpers.ts';

it("answers a new client's first group request and first transactional initialisation at once: no error, no retry", async () => {
  const { kafka, troubles } = kafkaCollectingTroubles('it-broker-ready');
  const admin = kafka.admin();
  const producer = kafka.producer({ transactionalId: uniqueName('it-broker-ready'), idempotent: true, maxInFlightRequests: 1 });
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([uniqueName('it-broker-ready-group')]);
    assert.equal(groups[0]?.state, 'Dead', 'a group nobody joined');
    await producer.connect();
    const transaction = await producer.transaction();
    await transaction.abort();
    assert.deepEqual(troubles, [], 'no coordinator error and no retry');
  } finally {
    await producer.disconnect();
    await admin.disconnect();
  }
});

it('hands over new topics whose every partition answers a read at once', async () => {
  const brokers = connections.kafkaBrokers;
  const admin = await openAdmin(brokers, 'it-topics-ready');
  const created: string[] = [];
  try {
    for (let round = 0; round < 3; round++) {
      const topics = Array.from({ length: 8 }, (_, i) => `${uniqueName('it-topics-ready')}.${i}`);
      created.push(...topics);
      assert.deepEqual(await ensureTopics(brokers, topics.map((topic) => ({ topic, partitions: 3, replicationFactor: 1, config: {} }))), topics);
      const marks = await Promise.all(topics.map((topic) => admin.partitionWatermarks(topic)));
      for (const partitions of marks) assert.deepEqual(partitions.map((p) => [p.partition, p.low, p.high]).sort(), [[0, '0', '0'], [1, '0', '0'], [2, '0', '0']]);
    }
  } finally {
    await admin.close();
    await deleteTopics(brokers, created).catch(() => {});
  }
});
