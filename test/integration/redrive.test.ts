/**
 * `sluice dlq redrive`: events dead-lettered while a limit was too low are
 * decided once it is raised and they are re-driven, each exactly once, even
 * when the re-drive is killed halfway and run again, or run twice; events that
 * fail again go back to the dead-letter topic naming the re-drive, and are
 * never re-driven again.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import type { DecisionCommon } from '../../processors/decide/transform.ts';
import { sluiceAsync, sluiceSync, uniqueName, waitFor } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';
import { generateSignups } from '../../pipelines/signup-risk/generator.ts';

let instance: PipelineInstance | undefined;
after(() => instance?.stop());

const redrive = (name: string, ...extra: string[]) => {
  const run = sluiceSync(['dlq', 'redrive', '--pipeline', name, '--since', '1h', '--json', ...extra]);
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout) as { plan?: { selected: number; by_reason: Record<string, number>; already_redriven: number; failed_after_redrive: number }; selected: number; redriven: number; redrive_id: string };
};

it('re-drives dead letters once each, resumes after a kill, and never loops', async () => {
  // validate with a low size limit: padded events are dead-lettered as OVERSIZED.
  instance = await PipelineInstance.create('it-redrive');
  const decided = await instance.collect<DecisionCommon>('decided');
  const dlq = await instance.collect<Buffer>('dlq', 'bytes');
  await Promise.all([instance.startStage('validate', { SLUICE_MAX_MESSAGE_BYTES: '2000' }).running, instance.startStage('score').running, instance.startStage('decide').running]);

  const prefix = uniqueName('redrive');
  const padded = [...generateSignups({ seed: 8, count: 40, startMs: Date.now(), idPrefix: `${prefix}-big` })].map((event) => ({
    key: event.key,
    value: Buffer.from(JSON.stringify({ ...event.envelope, padding: 'x'.repeat(3_000) })),
    eventId: event.envelope.event_id,
  }));
  const broken = Array.from({ length: 5 }, (_, i) => ({ key: `${prefix}-broken-${i}`, value: Buffer.from(`{"event_id": "${prefix}-broken-${i}", not json`) }));
  await instance.produce([...padded, ...broken].map(({ key, value }) => ({ key, value })));
  await dlq.until('every padded and broken event dead-lettered', (ms) => ms.length >= padded.length + broken.length, 60_000);

  const plan = redrive(instance.name).plan!;
  assert.equal(plan.selected, padded.length + broken.length);
  assert.deepEqual(plan.by_reason, { OVERSIZED: padded.length, MALFORMED_PAYLOAD: broken.length });

  // The limit raised: validate restarted without it.
  await instance.stopStage('validate');
  await instance.startStage('validate').running;

  // A re-drive killed after its first transactions, then run again: each event decided once.
  const killed = sluiceAsync(['dlq', 'redrive', '--pipeline', instance.name, '--since', '1h', '--reason', 'OVERSIZED', '--execute'], { SLUICE_REDRIVE_CHUNK_RECORDS: '1' });
  await waitFor('the first re-driven event decided', () => decided.messages.some((m) => m.value.event_id.startsWith(`${prefix}-big`)), { timeoutMs: 60_000 });
  killed.kill('SIGKILL');
  await killed.exited;
  const rest = redrive(instance.name, '--reason', 'OVERSIZED', '--execute');
  const ids = new Set(padded.map((e) => e.eventId));
  await decided.until('every padded event decided', (ms) => ms.filter((m) => ids.has(m.value.event_id)).length >= ids.size, 60_000);
  await instance.waitForIdle();
  assert.ok(rest.redriven <= padded.length);
  const mine = decided.messages.filter((m) => ids.has(m.value.event_id));
  assert.equal(mine.length, padded.length, 'each re-driven event decided exactly once');
  assert.equal(new Set(mine.map((m) => m.value.event_id)).size, padded.length);

  // Run twice: nothing left to re-drive.
  const again = redrive(instance.name, '--reason', 'OVERSIZED', '--execute');
  assert.equal(again.redriven, 0);
  assert.equal(again.selected, 0);

  // The broken events fail again: their new dead letters name the re-drive, and are never re-driven.
  const brokenRun = redrive(instance.name, '--reason', 'MALFORMED_PAYLOAD', '--execute');
  assert.equal(brokenRun.redriven, broken.length);
  await dlq.until('the broken events dead-lettered again', (ms) => ms.filter((m) => m.headers['dlq.redrive.id'] === brokenRun.redrive_id).length >= broken.length, 60_000);
  const last = redrive(instance.name, '--reason', 'MALFORMED_PAYLOAD');
  assert.equal(last.plan!.selected, 0);
  assert.equal(last.plan!.failed_after_redrive, broken.length);
  assert.equal(last.plan!.already_redriven, broken.length);
});
