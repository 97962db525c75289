/**
 * Every pipeline, driven through validate → score → decide without a broker
 * or a registry (test/driver.ts): the real stage core, model, policy and Avro
 * contracts; an in-memory codec instead of the registry.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { listPipelines } from '../../pipelines/registry.ts';
import { PipelineDriver } from '../driver.ts';

for (const plugin of listPipelines()) {
  describe(`${plugin.kind} without a broker`, () => {
    let driver: PipelineDriver | undefined;
    after(() => driver?.close());

    it('decides every valid event exactly once and dead-letters every class of bad input with its reason and headers', async () => {
      driver = await PipelineDriver.create(plugin.kind);
      const events = [...plugin.generator.events({ seed: 5, count: 300, startMs: Date.UTC(2026, 10, 1), idPrefix: 'drv' })];
      const bad = plugin.generator.malformed({ maxMessageBytes: plugin.maxMessageBytes, idPrefix: 'drv' });
      const out = await driver.pipe([...events.map((e) => ({ key: e.key, value: e.value })), ...bad.map((b) => ({ key: b.key, value: b.value }))]);

      const decided = out.decided.map((m) => m.value as { event_id: string; decision: string; decided_by: string; pipeline: string; policy_version: string; decision_version: number });
      assert.deepEqual(decided.map((d) => d.event_id).sort(), events.map((e) => e.eventId).sort(), 'one decision per valid event');
      for (const decision of decided) {
        assert.ok(plugin.decisions.includes(decision.decision));
        assert.equal(decision.pipeline, plugin.kind);
        assert.equal(decision.decision_version, 1);
        assert.match(decision.policy_version, /^policy-/);
      }
      const reviews = decided.filter((d) => d.decision === plugin.reviewDecision).map((d) => d.event_id);
      // The review topic also carries a sample of the automatic decisions, as audit items.
      const items = out.review.map((m) => m.value as { event_id: string; kind?: string });
      assert.deepEqual(items.filter((i) => i.kind !== 'audit').map((i) => i.event_id).sort(), reviews.sort(), 'every review decision also on the review topic');
      for (const audit of items.filter((i) => i.kind === 'audit')) {
        assert.notEqual(decided.find((d) => d.event_id === audit.event_id)?.decision, plugin.reviewDecision, 'audits sample automatic decisions only');
      }
      assert.ok(decided.some((d) => d.decided_by === 'model'), 'the model decides some');

      assert.equal(out.dlq.length, bad.length, 'every bad input dead-lettered, nothing else');
      for (const sample of bad) {
        const letter = out.dlq.find((m) => m.key === sample.key);
        assert.ok(letter, `dead letter for ${sample.name}`);
        assert.equal(letter.headers['dlq.reason'], sample.reason, sample.name);
        assert.deepEqual(letter.raw, sample.value ?? Buffer.alloc(0), `${sample.name}: original bytes`);
        if (sample.field !== null) assert.ok(letter.headers['dlq.message']!.startsWith(`${sample.field}:`), `${sample.name}: ${letter.headers['dlq.message']}`);
        // A readable, valid event id travels as a header, so a dead letter can be found by event.
        if (sample.eventId !== null && sample.field !== 'event_id' && sample.reason !== 'MALFORMED_PAYLOAD' && sample.reason !== 'OVERSIZED') {
          assert.equal(letter.headers['dlq.event_id'], sample.eventId, sample.name);
        }
        assert.equal(letter.headers['dlq.stage'], 'validate');
      }
    });

    it('falls back with the kill switch on: no decision is the model’s', async () => {
      const local = await PipelineDriver.create(plugin.kind);
      try {
        local.setKillSwitch(true);
        const events = [...plugin.generator.events({ seed: 6, count: 100, startMs: Date.UTC(2026, 10, 1), idPrefix: 'ks' })];
        const out = await local.pipe(events.map((e) => ({ key: e.key, value: e.value })));
        assert.equal(out.decided.length, events.length);
        const by = new Set(out.decided.map((m) => (m.value as { decided_by: string }).decided_by));
        assert.ok(!by.has('model'), [...by].join(','));
        assert.ok(by.has('fallback'));
      } finally {
        await local.close();
      }
    });
  });
}
