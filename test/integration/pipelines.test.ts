/**
 * Both reference pipelines at once on one stack, each stage process serving
 * one pipeline: every valid event of each gets exactly one decision, and
 * ticket-triage dead-letters every class of its bad input while good events
 * keep flowing.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { DecisionCommon } from '../../processors/decide/transform.ts';
import { listPipelines } from '../../pipelines/registry.ts';
import { uniqueName } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';

describe('pipelines side by side', () => {
  const instances: PipelineInstance[] = [];
  after(async () => {
    await Promise.all(instances.map((instance) => instance.stop()));
  });

  it('runs every registered pipeline at once; each valid event gets exactly one decision, each bad one its dead letter', async () => {
    const running = await Promise.all(
      listPipelines().map(async (plugin) => {
        const instance = await PipelineInstance.create(`it-${plugin.kind}`, {}, plugin.kind);
        instances.push(instance);
        const decided = await instance.collect<DecisionCommon & Record<string, unknown>>('decided');
        const review = await instance.collect<DecisionCommon>('review');
        const dlq = await instance.collect<Buffer>('dlq', 'bytes');
        return { plugin, instance, decided, review, dlq };
      }),
    );
    await Promise.all(running.map(({ instance }) => instance.start()));

    for (const { plugin, instance, decided, review, dlq } of running) {
      const prefix = uniqueName(plugin.kind);
      const events = [...plugin.generator.events({ seed: 17, count: 300, startMs: Date.now(), idPrefix: prefix })];
      const bad = plugin.generator.malformed({ maxMessageBytes: plugin.maxMessageBytes, idPrefix: prefix });
      // Bad events in the middle of the good ones: they must not hold anything up.
      const half = events.length / 2;
      await instance.produce([
        ...events.slice(0, half).map((e) => ({ key: e.key, value: e.value })),
        ...bad.map((b) => ({ key: b.key, value: b.value })),
        ...events.slice(half).map((e) => ({ key: e.key, value: e.value })),
      ]);
      const ids = new Set(events.map((e) => e.eventId));
      await decided.until(`${plugin.kind}: every valid event decided`, (ms) => ms.filter((m) => ids.has(m.value.event_id)).length >= ids.size, 120_000);
      await dlq.until(`${plugin.kind}: every bad input dead-lettered`, (ms) => ms.length >= bad.length, 60_000);
      await instance.waitForIdle();

      const mine = decided.messages.filter((m) => ids.has(m.value.event_id));
      assert.equal(mine.length, ids.size, `${plugin.kind}: exactly one decision per valid event`);
      assert.equal(new Set(mine.map((m) => m.value.event_id)).size, ids.size);
      for (const { value, key } of mine) {
        assert.ok(plugin.decisions.includes(value.decision), value.decision);
        assert.equal(value.pipeline, instance.name);
        assert.ok(key !== null);
      }
      const items = review.messages.filter((m) => (m.value as { kind?: string }).kind !== 'audit');
      assert.equal(items.length, mine.filter((m) => m.value.decision === plugin.reviewDecision).length, `${plugin.kind}: every review on the review topic`);
      assert.equal(dlq.messages.length, bad.length, `${plugin.kind}: only the bad inputs dead-lettered`);
      for (const sample of bad) {
        const letter = dlq.messages.find((m) => m.key === sample.key);
        assert.ok(letter, `${plugin.kind}: dead letter for ${sample.name}`);
        assert.equal(letter.headers['dlq.reason'], sample.reason, `${plugin.kind}: ${sample.name}`);
        assert.deepEqual(letter.raw ?? Buffer.alloc(0), sample.value ?? Buffer.alloc(0), `${plugin.kind}: ${sample.name} original bytes`);
        for (const header of ['dlq.message', 'dlq.stage', 'dlq.source.topic', 'dlq.source.partition', 'dlq.source.offset', 'dlq.failed_at']) {
          assert.ok(letter.headers[header], `${plugin.kind}: ${sample.name} has ${header}`);
        }
      }
      if (plugin.kind === 'ticket-triage') {
        for (const { value } of mine) {
          assert.ok(['billing', 'bug', 'security', 'account', 'feature_request'].includes(value['queue'] as string), String(value['queue']));
          assert.match(String(value['priority']), /^P[1-4]$/);
        }
      }
    }
  });
});
