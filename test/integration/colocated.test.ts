/**
 * Co-located mode (`sluice run all`): one process, one transaction per chunk
 * for validate → score → decide. It must write what the independent stages
 * write (every intermediate topic, dead letters, reviews), decide each valid
 * event exactly once, refuse to run beside the independent stages, and hand
 * over to them (and back) without skipping or re-deciding an event.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { DecisionCommon } from '../../processors/decide/transform.ts';
import { listPipelines } from '../../pipelines/registry.ts';
import { sluiceSync as sluice, uniqueName } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';

describe('co-located mode', () => {
  const instances: PipelineInstance[] = [];
  after(async () => {
    await Promise.all(instances.map((instance) => instance.stop()));
  });

  for (const plugin of listPipelines()) {
    it(`${plugin.kind}: writes every topic the independent stages write and decides each valid event once`, async () => {
      const instance = await PipelineInstance.create(`colo-${plugin.kind}`, {}, plugin.kind);
      instances.push(instance);
      const validated = await instance.collect('validated');
      const scored = await instance.collect('scored');
      const decided = await instance.collect<DecisionCommon>('decided');
      const review = await instance.collect<DecisionCommon>('review');
      const dlq = await instance.collect<Buffer>('dlq', 'bytes');
      await instance.setMode('colocated');
      await instance.startStage('all').running;

      const prefix = uniqueName(plugin.kind);
      const events = [...plugin.generator.events({ seed: 5, count: 200, startMs: Date.now(), idPrefix: prefix })];
      const bad = plugin.generator.malformed({ maxMessageBytes: plugin.maxMessageBytes, idPrefix: prefix });
      await instance.produce([...events.slice(0, 100), ...bad, ...events.slice(100)].map(({ key, value }) => ({ key, value })));
      await decided.until('every valid event decided', (ms) => ms.length >= events.length, 120_000);
      await dlq.until('every bad input dead-lettered', (ms) => ms.length >= bad.length, 60_000);
      await instance.waitForIdle();

      assert.equal(validated.messages.length, events.length, 'one validated record per valid event');
      assert.equal(scored.messages.length, events.length, 'one scored record per valid event');
      assert.equal(decided.messages.length, events.length, 'one decision per valid event');
      assert.deepEqual(new Set(decided.messages.map((m) => m.value.event_id)), new Set(events.map((e) => e.eventId)));
      // Beside the review items, audit items (kind `audit`) sample the automatic decisions.
      const items = review.messages.filter((m) => (m.value as { kind?: string }).kind !== 'audit');
      assert.equal(items.length, decided.messages.filter((m) => m.value.decision === plugin.reviewDecision).length);
      assert.equal(dlq.messages.length, bad.length, 'only the bad inputs dead-lettered');
      for (const letter of dlq.messages) {
        assert.equal(letter.headers['dlq.stage'], 'validate');
        assert.equal(letter.headers['dlq.source.topic'], instance.topic('raw'));
      }
    });
  }

  it('runs in one mode at a time and switches without skipping or re-deciding an event', async () => {
    const instance = await PipelineInstance.create('colo-switch');
    instances.push(instance);
    const decided = await instance.collect<DecisionCommon>('decided');
    const plugin = listPipelines().find((p) => p.kind === 'signup-risk')!;
    const batch = (seed: number, label: string) => [...plugin.generator.events({ seed, count: 150, startMs: Date.now(), idPrefix: uniqueName(label) })];
    const produceAndDecide = async (events: ReturnType<typeof batch>, what: string) => {
      await instance.produce(events.map(({ key, value }) => ({ key, value })));
      const ids = new Set(events.map((e) => e.eventId));
      await decided.until(what, (ms) => ms.filter((m) => ids.has(m.value.event_id)).length >= ids.size, 120_000);
      await instance.waitForIdle();
    };
    const setMode = (mode: string) => sluice(['mode', 'set', mode, '--pipeline', instance.name, '--reason', 'test']);

    // Independent stages, the default mode.
    await instance.start();
    const first = batch(1, 'first');
    await produceAndDecide(first, 'first batch decided by the independent stages');

    // Co-located beside them: refused at start, naming the mode and the fix.
    const refused = instance.startStage('all');
    await assert.rejects(refused.running, /MODE_CONFLICT.*sluice mode set colocated/);
    instance.stages.delete('all');
    // Switching while they run: refused.
    const busy = setMode('colocated');
    assert.notEqual(busy.status, 0);
    assert.match(busy.stderr, /MODE_CONFLICT: .*still has running processes \(validate, score, decide\)/);

    for (const stage of ['validate', 'score', 'decide'] as const) await instance.stopStage(stage);
    const toColocated = setMode('colocated');
    assert.equal(toColocated.status, 0, toColocated.stderr);
    assert.match(toColocated.stdout, /independent → colocated/);
    await instance.startStage('all').running;
    const second = batch(2, 'second');
    await produceAndDecide(second, 'second batch decided co-located');

    await instance.stopStage('all');
    const back = setMode('independent');
    assert.equal(back.status, 0, back.stderr);
    await instance.start();
    const third = batch(3, 'third');
    await produceAndDecide(third, 'third batch decided by the independent stages again');

    const counts = new Map<string, number>();
    for (const m of decided.messages) counts.set(m.value.event_id, (counts.get(m.value.event_id) ?? 0) + 1);
    assert.equal(counts.size, first.length + second.length + third.length, 'every event of the three batches decided');
    const twice = (events: ReturnType<typeof batch>) => events.filter((e) => counts.get(e.eventId) !== 1).length;
    assert.deepEqual([twice(first), twice(second), twice(third)], [0, 0, 0], 'no event of any batch decided twice across the switches');
  });
});
