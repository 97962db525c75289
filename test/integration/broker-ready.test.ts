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
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { kafkaCollectingTroubles, uniqueName } from '../helpers.ts';

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
