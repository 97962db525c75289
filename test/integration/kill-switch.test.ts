/**
 * The tiered kill switch on a running pipeline: `park` holds every event in
 * Kafka undecided (decide's lag grows in `sluice status`, nothing is lost or
 * decided) and back to `model` each held event is decided exactly once;
 * `review` sends every event to human review with the policy's verdict in
 * its reasons; the change is recorded with who and why.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import type { PipelineStatus } from '../../cli/status.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import { KILL_SWITCH_REVIEW_REASON } from '../../processors/decide/transform.ts';
import { freePort, sluiceSync, uniqueName, waitFor } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';

let instance: PipelineInstance | undefined;
after(() => instance?.stop());

function status(name: string): PipelineStatus {
  const run = sluiceSync(['status', '--pipeline', name, '--json']);
  assert.equal(run.status, 0, run.stderr);
  return (JSON.parse(run.stdout) as PipelineStatus[])[0]!;
}

function killSwitch(name: string, mode: string, reason: string): string {
  const run = sluiceSync(['kill-switch', 'set', '--pipeline', name, '--mode', mode, '--reason', reason]);
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

/** What decide's readiness endpoint says: it names the hold while it holds. */
async function decideReadiness(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/readyz`);
  return response.text();
}

it('parks events undecided with lag growing, then decides each once; review mode sends all to review', async () => {
  instance = await PipelineInstance.create('it-killswitch');
  const { plugin } = pipelineByName(instance.name);
  const port = await freePort();
  await Promise.all([instance.startStage('validate').running, instance.startStage('score').running, instance.startStage('decide', { SLUICE_METRICS_PORT: String(port) }).running]);
  const decided = await instance.collect<{ event_id: string; decision: string; decided_by: string; reasons: string[] }>('decided');
  const prefix = uniqueName('ks');

  assert.match(killSwitch(instance.name, 'park', 'upstream incident'), /model → park/);
  await waitFor('decide to hold its input', async () => (await decideReadiness(port)).includes('holding every partition'), { timeoutMs: 30_000, intervalMs: 200 });
  const parked = [...plugin.generator.events({ seed: 21, count: 60, startMs: Date.now(), idPrefix: `${prefix}-parked` })];
  await instance.produce(parked.map(({ key, value }) => ({ key, value })));

  const held = await waitFor(
    'the parked events as decide lag',
    () => {
      const now = status(instance!.name);
      const byStage = Object.fromEntries(now.stages.map((s) => [s.stage, s]));
      return byStage['score']!.lag.total === 0 && byStage['decide']!.lag.total >= parked.length ? now : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );
  assert.deepEqual(
    { mode: held.kill_switch.mode, reason: held.kill_switch.reason },
    { mode: 'park', reason: 'upstream incident' },
  );
  assert.equal(held.stages.find((s) => s.stage === 'decide')!.instances, 1, 'decide runs, holding');
  assert.equal(decided.messages.length, 0, 'nothing decided while parked');

  killSwitch(instance.name, 'model', 'incident over');
  await decided.until('every parked event decided', (messages) => messages.length >= parked.length);
  await instance.waitForIdle();
  // Heartbeats come every 5 s: the one after decide's first commit carries its newest output.
  const released = await waitFor('every stage to report its newest output in a heartbeat', () => {
    const now = status(instance!.name);
    return now.stages.every((s) => s.newest_output_age_s !== null) ? now : undefined;
  }, { timeoutMs: 30_000, intervalMs: 500 });
  assert.equal(released.stages.find((s) => s.stage === 'decide')!.lag.total, 0);
  for (const stage of released.stages) {
    assert.deepEqual([stage.stage, stage.errors, stage.transaction_aborts], [stage.stage, 0, 0], 'from the running instances\' heartbeats: none failed');
    assert.ok(stage.newest_output_age_s !== null && stage.newest_output_age_s < 120, `${stage.stage} committed output ${stage.newest_output_age_s} s ago`);
  }
  assert.deepEqual(decided.messages.map((m) => m.value.event_id).sort(), parked.map((e) => e.eventId).sort(), 'each parked event decided exactly once');
  assert.ok(decided.messages.some((m) => m.value.decision !== 'review'), 'the model decides again');

  // The owners from the manifest, as labels every stage exports.
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const info = metrics.split('\n').find((line) => line.startsWith('sluice_pipeline_info{'));
  assert.ok(info?.endsWith(' 1'), `sluice_pipeline_info exported: ${info}`);
  const owners = pipelineByName(instance.name).owners;
  for (const [label, value] of Object.entries({ data: owners.data, model: owners.model, infra: owners.infra, oncall: owners.oncall, escalation: owners.escalation, team: owners.team })) {
    assert.ok(info?.includes(`${label}="${value}"`), `${label}="${value}" in ${info}`);
  }

  killSwitch(instance.name, 'review', 'model suspected');
  // Events produced once decide shows the mode are all reviewed.
  await waitFor(
    'decide to follow the switch to review',
    async () => /sluice_kill_switch_mode\{[^}]*mode="review"[^}]*\} 1/.test(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()),
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  const reviewed = [...plugin.generator.events({ seed: 22, count: 30, startMs: Date.now(), idPrefix: `${prefix}-review` })];
  const reviewIds = new Set(reviewed.map((e) => e.eventId));
  const review = await instance.collect<{ event_id: string }>('review');
  await instance.produce(reviewed.map(({ key, value }) => ({ key, value })));
  const all = await decided.until('the reviewed events', (messages) => messages.filter((m) => reviewIds.has(m.value.event_id)).length >= reviewed.length);
  for (const m of all.filter((m) => reviewIds.has(m.value.event_id))) {
    assert.equal(m.value.decision, plugin.reviewDecision);
    assert.equal(m.value.reasons[0], KILL_SWITCH_REVIEW_REASON);
  }
  await review.until('every reviewed event on the review topic', (messages) => messages.filter((m) => reviewIds.has(m.value.event_id)).length >= reviewed.length);
});
