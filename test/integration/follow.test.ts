/**
 * followTopic on a topic written in transactions (the pipeline's own topics):
 * each partition ends with a commit marker that a read-committed consumer is
 * never handed, so a follower that counted only the records it delivered
 * would never report itself caught up.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { deleteTopics, ensureTopics } from '../../connectors/kafka/admin.ts';
import { createKafka } from '../../connectors/kafka/client.ts';
import { followTopic } from '../../connectors/kafka/follow.ts';
import { createLogger } from '../../lib/log.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';

const brokers = connections.kafkaBrokers;

describe('followTopic', () => {
  const topic = uniqueName('it-follow-transactional');
  after(async () => {
    await deleteTopics(brokers, [topic]).catch(() => {});
  });

  it('catches up with a topic whose partitions end in transaction markers, having delivered every committed record', async () => {
    await ensureTopics(brokers, [{ topic, partitions: 2, replicationFactor: 1, config: {} }]);
    const producer = createKafka({ brokers, clientId: 'it-follow' }).producer({ transactionalId: uniqueName('it-follow-tx'), idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      for (const round of [1, 2]) {
        const transaction = await producer.transaction();
        await transaction.send({ topic, messages: [0, 1].map((partition) => ({ partition, key: `r${round}`, value: `round ${round} partition ${partition}` })) });
        await transaction.commit();
      }
      // An aborted transaction at the end of one partition: its records are never delivered, and the follower still ends.
      const aborted = await producer.transaction();
      await aborted.send({ topic, messages: [{ partition: 1, key: 'aborted', value: 'never delivered' }] });
      await aborted.abort();
    } finally {
      await producer.disconnect();
    }

    const read: string[] = [];
    let caughtUp = false;
    const follower = await followTopic({ brokers, topic, clientId: 'it-follow', logger: createLogger({ component: 'it-follow' }, 'error'), onMessage: (m) => read.push(String(m.value)) });
    try {
      void follower.caughtUp.then(() => {
        caughtUp = true;
      });
      await waitFor('the follower to report itself caught up', () => caughtUp);
      assert.deepEqual(read.sort(), ['round 1 partition 0', 'round 1 partition 1', 'round 2 partition 0', 'round 2 partition 1']);
    } finally {
      await follower.stop();
    }
  });
});
