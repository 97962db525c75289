/**
 * bench/hops.ts against the broker: it reads each topic of a pipeline to its
 * end and keeps, per event of the run, the timestamp its producer gave the
 * record (kafkajs stamps a record when it sends it); the first record of an
 * id wins, and other runs' events are left out.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { HOP_TOPICS, readSentAt } from '../../bench/hops.ts';
import { pipelineTopics } from '../../cli/pipeline.ts';
import { deleteTopics, ensureTopics, openProducer } from '../../connectors/kafka/admin.ts';
import { topicName } from '../../lib/contracts.ts';
import { createLogger } from '../../lib/log.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';

const brokers = connections.kafkaBrokers;

describe('bench hops: record timestamps', () => {
  const name = uniqueName('signup-risk-it-hops');
  after(async () => {
    await deleteTopics(brokers, pipelineTopics(name).map((t) => t.topic)).catch(() => {});
  });

  it("keeps each run event's first record timestamp per topic, as its producer stamped it", async () => {
    const hopTopics = new Set(HOP_TOPICS.map((suffix) => topicName(name, suffix)));
    await ensureTopics(brokers, pipelineTopics(name).filter((t) => hopTopics.has(t.topic)));
    const producer = await openProducer(brokers, 'it-hops');
    const sent: Record<string, [number, number]> = {};
    const send = async (label: string, suffix: 'raw' | 'validated' | 'scored', ids: string[]) => {
      const before = Date.now();
      await producer.send(topicName(name, suffix), ids.map((id) => ({ key: id, value: id })));
      sent[label] = [before, Date.now()];
    };
    try {
      await send('raw', 'raw', ['run-a', 'run-b', 'other-c']);
      await send('validated', 'validated', ['run-a']);
      // A later record of the same id (a redelivery): the first one's timestamp stays.
      await waitFor('a later millisecond', () => Date.now() > sent['validated']![1]);
      await send('validated again', 'validated', ['run-a']);
      await send('scored', 'scored', ['run-b']);
    } finally {
      await producer.close();
    }

    const sentAt = await readSentAt({ brokers, pipeline: name, idPrefix: 'run-', logger: createLogger({ component: 'it-hops' }, 'error'), eventIdOf: (_topic, value) => value.toString('utf8') });

    assert.deepEqual([...sentAt.raw.keys()].sort(), ['run-a', 'run-b'], 'only this run’s events');
    const within = (at: number | undefined, label: string) => {
      const [from, to] = sent[label]!;
      assert.ok(at !== undefined && at >= from && at <= to, `${label}: stamped at ${at}, sent between ${from} and ${to}`);
    };
    within(sentAt.raw.get('run-a'), 'raw');
    within(sentAt.raw.get('run-b'), 'raw');
    within(sentAt.validated.get('run-a'), 'validated');
    assert.deepEqual([...sentAt.validated.keys()], ['run-a']);
    within(sentAt.scored.get('run-b'), 'scored');
    assert.equal(sentAt.decided.size, 0, 'an empty topic reads as no stamps, and the read still ends');
  });
});
