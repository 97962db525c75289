/**
 * The circuit breaker on a running pipeline: a burst of malformed events on
 * one partition opens that partition's circuit (its records wait in Kafka,
 * visible in `sluice status`), good events on the other partitions keep being
 * decided, and `sluice circuit reset` lets the held records through: each good
 * event decided once, each bad one dead-lettered once.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, it } from 'node:test';
import type { PipelineStatus } from '../../cli/status.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import { sluiceSync, uniqueName, waitFor } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';

const instances: PipelineInstance[] = [];
after(() => Promise.all(instances.map((i) => i.stop())));

function status(name: string): PipelineStatus {
  const run = sluiceSync(['status', '--pipeline', name, '--json']);
  assert.equal(run.status, 0, run.stderr);
  return (JSON.parse(run.stdout) as PipelineStatus[])[0]!;
}

// Judged from 20 records, over a window of 50; small transactions, so the breaker acts mid-burst, at
// about 20 records: the 10 or so bad ones left, followed by 20 good ones, do not open it again after the reset.
const BAD = 30;
const ENV = { SLUICE_CIRCUIT_MIN_RECORDS: '20', SLUICE_CIRCUIT_WINDOW: '50', SLUICE_MAX_BATCH_RECORDS: '5' };

/** A running instance of its own, collecting its decisions and dead letters. */
async function startInstance(label: string, env: Record<string, string>) {
  const instance = await PipelineInstance.create(label, env);
  instances.push(instance);
  await instance.start();
  return {
    instance,
    plugin: pipelineByName(instance.name).plugin,
    decided: await instance.collect<{ event_id: string }>('decided'),
    dlq: await instance.collect('dlq', 'bytes'),
  };
}

/** BAD malformed events, all on partition 0: what an upstream deploy that broke its events sends there. */
const badEvents = (prefix: string) =>
  Array.from({ length: BAD }, (_, i) => ({ key: `${prefix}-bad-${i}`, value: `{"event_id": "${prefix}-bad-${i}", broken`, partition: 0 }));

it('holds the partition that floods the dead-letter topic, keeps the others flowing, and resumes on reset', async () => {
  const { instance, plugin, decided, dlq } = await startInstance('it-circuit', ENV);
  const prefix = uniqueName('circuit');

  // An upstream deploy broke every event it sends to partition 0.
  await instance.produce(badEvents(prefix));
  const open = await waitFor(
    'the circuit of validate partition 0 to open',
    () => {
      const now = status(instance.name);
      return now.stages.find((s) => s.stage === 'validate')!.open_circuits.length > 0 ? now : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );
  const validate = open.stages.find((s) => s.stage === 'validate')!;
  assert.deepEqual(
    validate.open_circuits.map((c) => c.partition),
    [0],
  );
  assert.match(validate.open_circuits[0]!.reason ?? '', /dead-lettered/);

  // Good events everywhere: the other partitions flow, partition 0's wait behind the burst.
  const good = [...plugin.generator.events({ seed: 31, count: 60, startMs: Date.now(), idPrefix: prefix })].map((event, i) => ({ event, partition: i % 3 }));
  await instance.produce(good.map(({ event, partition }) => ({ key: event.key, value: event.value, partition })));
  const elsewhere = new Set(good.filter((g) => g.partition !== 0).map((g) => g.event.eventId));
  const onZero = new Set(good.filter((g) => g.partition === 0).map((g) => g.event.eventId));
  await decided.until('the good events of partitions 1 and 2', (messages) => messages.filter((m) => elsewhere.has(m.value.event_id)).length >= elsewhere.size);
  const held = status(instance.name);
  const heldLag = held.stages.find((s) => s.stage === 'validate')!.lag.partitions.find((p) => p.partition === 0)!.lag;
  assert.ok(heldLag >= onZero.size, `partition 0 held with its backlog: lag ${heldLag}`);
  assert.equal(decided.messages.filter((m) => onZero.has(m.value.event_id)).length, 0, 'nothing of partition 0 decided while open');
  assert.ok(dlq.messages.length < BAD, `the breaker stopped the flood: ${dlq.messages.length} of ${BAD} dead-lettered before it opened`);

  const reset = sluiceSync(['circuit', 'reset', '--pipeline', instance.name, '--stage', 'validate', '--reason', 'producer fixed']);
  assert.equal(reset.status, 0, reset.stderr);
  assert.match(reset.stdout, /closed .* validate partition 0/);

  await decided.until('every good event', (messages) => messages.filter((m) => onZero.has(m.value.event_id) || elsewhere.has(m.value.event_id)).length >= good.length);
  await dlq.until('every bad event dead-lettered', (messages) => messages.length >= BAD);
  await instance.waitForIdle();
  const ids = decided.messages.map((m) => m.value.event_id);
  assert.equal(new Set(ids).size, ids.length, 'each event decided once');
  assert.deepEqual(ids.sort(), good.map((g) => g.event.eventId).sort());
  const letters = dlq.messages.map((m) => String(m.key));
  assert.equal(new Set(letters).size, BAD, 'each bad event dead-lettered once');
  assert.equal(letters.length, BAD);
  assert.deepEqual(
    status(instance.name).stages.flatMap((s) => s.open_circuits),
    [],
  );
});

it('probes after the cool-down: a bad probe opens it again, a good one closes it, with nothing lost', async () => {
  const { instance, plugin, decided, dlq } = await startInstance('it-circuit-probe', { ...ENV, SLUICE_CIRCUIT_COOLDOWN_SECONDS: '2' });
  const prefix = uniqueName('probe');
  // Bad records, then good ones, all on partition 0: the probes meet the rest of the burst first.
  const good = [...plugin.generator.events({ seed: 32, count: 20, startMs: Date.now(), idPrefix: prefix })];
  await instance.produce([
    ...badEvents(prefix),
    ...good.map((event) => ({ key: event.key, value: event.value, partition: 0 })),
  ]);
  await decided.until('every good event, through the probes', (messages) => messages.length >= good.length);
  await dlq.until('every bad event dead-lettered', (messages) => messages.length >= BAD);
  await instance.waitForIdle();
  assert.deepEqual(decided.messages.map((m) => m.value.event_id).sort(), good.map((e) => e.eventId).sort(), 'each good event decided once');
  assert.equal(new Set(dlq.messages.map((m) => String(m.key))).size, BAD);
  assert.equal(dlq.messages.length, BAD, 'each bad event dead-lettered once');
  const log = readFileSync(join(stackPaths().logs, 'tests', `${instance.name}.validate.log`), 'utf8');
  assert.ok((log.match(/circuit open: /g) ?? []).length >= 2, 'opened, then opened again by a failed probe');
  assert.match(log, /circuit closed: the probe transaction passed/);
  assert.deepEqual(
    status(instance.name).stages.flatMap((s) => s.open_circuits),
    [],
  );
});
