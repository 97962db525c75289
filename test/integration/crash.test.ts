/**
 * Exactly-once under crashes: while events flow, processors are killed with
 * SIGKILL at arbitrary moments and restarted. Afterwards the decided topic
 * holds exactly one decision per valid event: nothing lost, nothing duplicated.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { StageName } from '../../processors/runtime/runtime.ts';
import { envelopeBytes, generateSignups, malformedSamples } from '../../pipelines/signup-risk/generator.ts';
import type { DecisionRecord } from '../../pipelines/signup-risk/types.ts';
import { PipelineInstance } from '../pipeline-harness.ts';
import { uniqueName } from '../helpers.ts';

/** Events per produce call and the pause between calls: about 300 events/s while the chaos lasts. */
const CHUNK = 30;
const CHUNK_INTERVAL_MS = 100;
const KILLS: StageName[] = ['decide', 'validate', 'score', 'decide', 'score', 'validate'];

describe('crash safety', () => {
  let instance: PipelineInstance | undefined;
  after(async () => {
    await instance?.stop();
  });

  it('SIGKILLed and restarted stages lose nothing and duplicate nothing on the decided topic', async (t) => {
    // The group moves a killed member's partitions after the session timeout: the broker's minimum.
    instance = await PipelineInstance.create('it-crash', { SLUICE_SESSION_TIMEOUT_MS: '6000' });
    const pipeline = instance;
    const decided = await pipeline.collect<DecisionRecord>('decided');
    const dlq = await pipeline.collect<Buffer>('dlq', 'bytes');
    await pipeline.start();

    const prefix = uniqueName('crash');
    const bad = malformedSamples({ maxMessageBytes: 262_144, idPrefix: prefix }).filter((s) => s.reason !== 'OVERSIZED');
    const events: string[] = [];
    let chaosOver = false;

    // Producer: a steady stream for as long as the chaos lasts, bad samples spread through it.
    const producing = (async () => {
      for (let round = 0; !chaosOver || round < bad.length; round++) {
        const chunk = [
          ...generateSignups({ seed: 5, count: CHUNK, firstIndex: round * CHUNK, startMs: Date.now(), spacingMs: 1, idPrefix: prefix }),
        ];
        events.push(...chunk.map((e) => e.envelope.event_id));
        const messages = chunk.map((e) => ({ key: e.key, value: envelopeBytes(e.envelope) }));
        const sample = bad[round];
        if (sample) messages.push({ key: sample.key, value: sample.value });
        await pipeline.produce(messages);
        await new Promise((resolve) => setTimeout(resolve, CHUNK_INTERVAL_MS));
      }
    })();

    // Chaos: kill a stage mid-stream, restart it, wait until it runs, repeat.
    for (const stage of KILLS) {
      const count = decided.messages.length;
      await decided.until('progress before the next kill', (ms) => ms.length > count, 120_000);
      const victim = pipeline.stages.get(stage)!;
      victim.kill('SIGKILL');
      await victim.exited;
      await pipeline.startStage(stage).running;
    }
    chaosOver = true;
    await producing;

    await decided.until(`${events.length} decisions`, (ms) => new Set(ms.map((m) => m.value.event_id)).size >= events.length, 180_000);
    await pipeline.waitForIdle();

    const ids = decided.messages.map((m) => m.value.event_id);
    const distinct = new Set(ids);
    const duplicates = ids.length - distinct.size;
    assert.equal(duplicates, 0, `${duplicates} duplicate decisions`);
    assert.equal(distinct.size, events.length);
    for (const id of events) assert.ok(distinct.has(id), `${id} decided`);
    assert.equal(new Set(dlq.messages.map((m) => m.key)).size, dlq.messages.length, 'no dead letter twice');
    assert.equal(dlq.messages.length, bad.length, 'every bad sample dead-lettered once');
    t.diagnostic(`${events.length} events, ${bad.length} bad, ${KILLS.length} SIGKILLs: ${ids.length} decisions, 0 duplicates`);
  });
});
