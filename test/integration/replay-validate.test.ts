/**
 * `sluice replay --from-stage validate` on the real stack, while live traffic
 * keeps flowing: the raw window is validated, scored and decided again; bad
 * records fail again without new dead letters; events that arrive during the
 * replay are decided live, once, and not by the replay.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { envelopeBytes, generateSignups } from '../../pipelines/signup-risk/generator.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import type { DecisionRecord } from '../../pipelines/signup-risk/types.ts';
import { sluiceAsync, uniqueName } from '../helpers.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';

type Decision = DecisionRecord & { replay_id: string | null };

const sluice = (args: string[]) => sluiceAsync(args).exited;

describe('replay from the validate stage while live traffic flows', () => {
  let instance: PipelineInstance;
  let decided: Collector<Decision>;
  let dlq: Collector<unknown>;
  const prefix = uniqueName('evt-replay-raw');
  let next = 0;
  const produce = async (count: number) => {
    const events = [...generateSignups({ seed: 313, count, startMs: Date.now() - 60_000, firstIndex: next, idPrefix: prefix })];
    next += count;
    await instance.produce(events.map((e) => ({ key: e.key, value: envelopeBytes(e.envelope) })));
    return events.map((e) => e.envelope.event_id);
  };

  before(async () => {
    instance = await PipelineInstance.create('it-replay-raw');
    [decided, dlq] = await Promise.all([instance.collect<Decision>('decided'), instance.collect('dlq', 'bytes')]);
    await instance.start();
  });
  after(() => instance?.stop());

  it('re-validates and re-decides the window once; bad records fail again without new dead letters; live events are decided live', async () => {
    const from = new Date().toISOString();
    const window = await produce(200);
    const samples = signupRisk.generator.malformed({ maxMessageBytes: signupRisk.maxMessageBytes, idPrefix: prefix });
    await instance.produce(samples.map((s) => ({ key: s.key, value: s.value })));
    await decided.until('the window decided', (messages) => messages.length >= window.length);
    await dlq.until('the bad records dead-lettered', (messages) => messages.length >= samples.length);
    await instance.waitForIdle();
    const to = new Date().toISOString();

    const replay = sluice(['replay', '--pipeline', instance.name, '--from-datetime', from, '--to-datetime', to, '--from-stage', 'validate', '--execute', '--json']);
    const live: string[] = [];
    let finished = false;
    void replay.then(() => {
      finished = true;
    });
    while (!finished) live.push(...(await produce(5)));
    const result = await replay;
    assert.equal(result.status, 0, result.stderr);
    const summary = JSON.parse(result.stdout) as { read: number; replayed: number; unchanged: number; changed: Record<string, number>; failed: number; new: number };
    assert.deepEqual(
      [summary.read, summary.replayed, summary.unchanged, summary.changed, summary.new, summary.failed],
      [window.length + samples.length, window.length, window.length, {}, 0, samples.length],
      'every valid event re-decided, the same way (same champion and policy); every bad record failed again',
    );
    assert.ok(live.length > 0, 'live events were produced while the replay ran');

    await decided.until('every re-decision and every live decision', (messages) => messages.length >= window.length * 2 + live.length);
    const byEvent = new Map<string, Decision[]>();
    for (const { value } of decided.messages) byEvent.set(value.event_id, [...(byEvent.get(value.event_id) ?? []), value]);
    for (const id of window) {
      const decisions = byEvent.get(id)!;
      assert.deepEqual(decisions.map((d) => [d.decision_version, d.replay_id !== null]).sort(), [[1, false], [2, true]], id);
      assert.equal(decisions[1]!.decision, decisions[0]!.decision);
    }
    for (const id of live) assert.deepEqual(byEvent.get(id)?.map((d) => [d.decision_version, d.replay_id]), [[1, null]], `${id}, live during the replay`);
    assert.equal(decided.messages.length, window.length * 2 + live.length, 'nothing else was decided');
    assert.equal(dlq.messages.length, samples.length, 'the replay wrote no dead letters');
  });
});
