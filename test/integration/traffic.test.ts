/**
 * The demo's and the benchmark's traffic producer on a worker thread: it
 * writes the pipeline's own generated events, the malformed ones it promised,
 * and reports progress to the thread that reads the decisions; and that
 * reader, whose counts and latencies the demo and the benchmark report.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { pipelineTopics } from '../../cli/pipeline.ts';
import { Outcomes, produceStreamOffThread } from '../../cli/traffic.ts';
import { deleteTopics, ensureTopics } from '../../connectors/kafka/admin.ts';
import { type FollowedMessage, followTopic } from '../../connectors/kafka/follow.ts';
import { SchemaCatalog } from '../../connectors/registry/registry.ts';
import { topicName } from '../../lib/contracts.ts';
import { createLogger } from '../../lib/log.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import type { DecisionCommon } from '../../processors/decide/transform.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';

const brokers = connections.kafkaBrokers;

/** The event id of a raw record, or undefined for the malformed ones (not JSON, say). */
function eventIdOf(value: Buffer | null): unknown {
  try {
    return (JSON.parse(value?.toString('utf8') ?? '') as { event_id?: unknown }).event_id;
  } catch {
    return undefined;
  }
}

describe('traffic producer off the main thread', () => {
  const name = uniqueName('signup-risk-it-traffic');
  after(async () => {
    await deleteTopics(brokers, pipelineTopics(name).map((t) => t.topic)).catch(() => {});
  });

  it('writes the generated events and the malformed ones, and reports its progress', async () => {
    await ensureTopics(brokers, pipelineTopics(name).filter((t) => t.topic === topicName(name, 'raw')));
    const read: FollowedMessage[] = [];
    const follower = await followTopic({ brokers, topic: topicName(name, 'raw'), clientId: 'it-traffic', logger: createLogger({ component: 'it-traffic' }, 'error'), onMessage: (m) => read.push(m) });
    try {
      const { plugin } = pipelineByName(name);
      const progress: number[] = [];
      const result = await produceStreamOffThread({
        brokers,
        pipeline: name,
        count: 400,
        ratePerSec: 2_000,
        badEvery: 40,
        idPrefix: 'traffic',
        seed: 9,
        maxMessageBytes: plugin.maxMessageBytes,
        onProgress: (produced) => progress.push(produced),
      });
      assert.equal(result.valid, 400);
      assert.equal(result.bad, 10);
      assert.equal(Object.values(result.expectedReasons).reduce((a, b) => a + b, 0), 10);
      assert.ok(progress.length > 1, `paced at 2,000/s, 400 events take several sends; progress was reported ${progress.length} time(s)`);
      assert.deepEqual(progress, [...progress].sort((a, b) => a - b));
      assert.equal(progress.at(-1), 400);

      await waitFor('the 410 records on raw', () => read.length >= 410);
      const expected = [...plugin.generator.events({ seed: 9, count: 400, startMs: 0, spacingMs: 0, idPrefix: 'traffic' })];
      const eventIds = new Set(read.map((m) => eventIdOf(m.value)));
      for (const event of expected) assert.ok(eventIds.has(event.eventId), `event ${event.eventId} is on raw`);
      // The malformed ones: the generator's samples in turn, each keyed apart (`<sample key>-<n>`).
      const samples = plugin.generator.malformed({ maxMessageBytes: plugin.maxMessageBytes, idPrefix: 'traffic', occurredAtMs: 0 });
      const validIds = new Set(expected.map((event) => event.eventId));
      const malformedKeys = read.filter((m) => !validIds.has(eventIdOf(m.value) as string)).map((m) => m.key);
      assert.deepEqual(malformedKeys.sort(), Array.from({ length: 10 }, (_, n) => `${samples[n % samples.length]!.key}-${n}`).sort());
      assert.equal(read.length, 410, 'nothing more than the valid and malformed events');
    } finally {
      await follower.stop();
    }
  });
});

describe("the demo's and the benchmark's reader of decisions", () => {
  let instance: PipelineInstance;
  let decided: Collector<DecisionCommon>;
  let outcomes: Outcomes | undefined;
  after(async () => {
    await outcomes?.stop();
    await instance?.stop();
  });

  it('reports what the decided topic holds for its events: each decision once, their mix, versions, occurred_at and dead letters', async () => {
    instance = await PipelineInstance.create('it-outcomes');
    decided = await instance.collect<DecisionCommon>('decided');
    await instance.start();
    outcomes = await Outcomes.follow({ brokers, pipeline: instance.name, catalog: new SchemaCatalog(connections.schemaRegistryUrl), idPrefix: 'outc', logger: createLogger({ component: 'it-outcomes' }, 'error') });
    const tracked = outcomes;
    const { plugin } = pipelineByName(instance.name);
    const stream = await produceStreamOffThread({ brokers, pipeline: instance.name, count: 300, ratePerSec: 0, badEvery: 50, idPrefix: 'outc', seed: 4, maxMessageBytes: plugin.maxMessageBytes });
    await waitFor('every decision and dead letter read', () => tracked.decided.size >= stream.valid && tracked.deadLetterCount() >= stream.bad);
    const truth = (await decided.until('the 300 decisions collected', (m) => m.length >= stream.valid)).map((m) => m.value);

    assert.deepEqual([...tracked.decided].sort(), truth.map((d) => d.event_id).sort());
    assert.equal(tracked.duplicates, 0);
    const countOf = (key: (d: DecisionCommon) => string) => {
      const counts = new Map<string, number>();
      for (const d of truth) counts.set(key(d), (counts.get(key(d)) ?? 0) + 1);
      return counts;
    };
    assert.deepEqual(tracked.byDecision, countOf((d) => d.decision));
    assert.deepEqual(tracked.byDecidedBy, countOf((d) => d.decided_by));
    assert.ok(tracked.modelVersion, 'the model scored these events');
    assert.equal(tracked.modelVersion, truth.find((d) => d.model_version)?.model_version);
    assert.equal(tracked.policyVersion, truth[0]!.policy_version);
    // occurred_at and the latency of each decision line up with `decided`'s order.
    const occurredAt = new Map(truth.map((d) => [d.event_id, d.occurred_at]));
    assert.deepEqual(tracked.occurredAtMs, [...tracked.decided].map((id) => occurredAt.get(id)));
    assert.equal(tracked.latenciesMs.length, stream.valid);
    assert.ok(tracked.latenciesMs.every((ms) => ms >= 0), 'read after it was produced');
    assert.deepEqual(Object.fromEntries(tracked.deadLetters), stream.expectedReasons);
  });
});
