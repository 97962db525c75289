/**
 * `sluice status`: what it reports for a running pipeline instance is what is
 * true of it: one instance per stage, no lag once idle, output written in the
 * last minute, the dead letters of the last hour by reason (from ClickHouse,
 * loaded by the sink), the monitor's open alerts, the kill switch, the owners; and a stopped stage shows
 * as no instance with its backlog as lag. `sluice dlq inspect` groups the same
 * dead letters by fingerprint, with masked previews.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { spawnSink, type StageProcess } from '../../cli/processes.ts';
import type { DeadLetterGroup } from '../../cli/dlq.ts';
import type { PipelineStatus } from '../../cli/status.ts';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { TABLES } from '../../connectors/clickhouse/schema.ts';
import { type Alert, runbookOf, writeAlerts } from '../../monitor/alerts.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import { connections, sluiceSync, uniqueName, waitFor } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';

const clickhouse = createClickHouse({ url: connections.clickhouseUrl });
let instance: PipelineInstance | undefined;
let sink: StageProcess | undefined;
after(async () => {
  sink?.kill('SIGKILL');
  await sink?.exited;
  await instance?.stop();
  await clickhouse.close();
});

function status(name: string): PipelineStatus {
  const run = sluiceSync(['status', '--pipeline', name, '--json']);
  assert.equal(run.status, 0, run.stderr);
  const [only] = JSON.parse(run.stdout) as PipelineStatus[];
  assert.ok(only);
  return only;
}

it('reports instances, lag, throughput, dead letters by reason and fingerprint, kill switch and owners as they are', async () => {
  instance = await PipelineInstance.create('it-status');
  const { plugin, owners } = pipelineByName(instance.name);
  await instance.start();
  sink = spawnSink({ pipeline: instance.name, logFile: join(stackPaths().logs, 'tests', `${instance.name}.sink.log`) });
  await sink.running;

  const prefix = uniqueName('status');
  const events = [...plugin.generator.events({ seed: 4, count: 120, startMs: Date.now(), idPrefix: prefix })];
  const bad = plugin.generator.malformed({ maxMessageBytes: plugin.maxMessageBytes, idPrefix: prefix });
  await instance.produce([...events, ...bad].map(({ key, value }) => ({ key, value })));
  await instance.waitForIdle();
  await waitFor(
    'the dead letters in ClickHouse',
    async () => {
      const rows = await queryRows<{ n: string }>(clickhouse, `SELECT count() AS n FROM ${TABLES.deadLetters} WHERE pipeline = ${quote(instance!.name)}`);
      return Number(rows[0]?.n ?? 0) >= bad.length;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );

  // A firing alert, as the monitor writes it; a resolved one, which is not open.
  const alert = (kind: 'stall' | 'volume_drop', state: 'firing' | 'resolved'): Alert => ({
    alert_id: `${instance!.name}/${kind}`,
    pipeline: instance!.name,
    kind,
    subject: kind === 'stall' ? 'decide' : 'events',
    severity: 'critical',
    status: state,
    value: 0,
    threshold: 1,
    window_start: Date.now() - 120_000,
    started_at: Date.now() - 60_000,
    resolved_at: state === 'resolved' ? Date.now() : null,
    owners: { team: owners.team, oncall: owners.oncall },
    runbook: runbookOf(kind),
  });
  await writeAlerts(clickhouse, [alert('stall', 'firing'), alert('volume_drop', 'firing')]);
  await writeAlerts(clickhouse, [alert('volume_drop', 'resolved')]);

  const running = status(instance.name);
  assert.deepEqual(
    running.open_alerts?.map((a) => [a.kind, a.subject, a.runbook]),
    [['stall', 'decide', runbookOf('stall')]],
  );
  assert.equal(running.mode, 'independent');
  assert.equal(running.kill_switch.mode, 'model');
  assert.deepEqual(running.owners, owners);
  assert.deepEqual(
    running.stages.map((s) => [s.stage, s.instances, s.state, s.lag.total]),
    [
      ['validate', 1, 'Stable', 0],
      ['score', 1, 'Stable', 0],
      ['decide', 1, 'Stable', 0],
    ],
  );
  for (const stage of running.stages) assert.ok(stage.out_per_s > 0, `${stage.stage} wrote its ${events.length} records within the last minute`);
  const expected: Record<string, number> = {};
  for (const sample of bad) expected[sample.reason] = (expected[sample.reason] ?? 0) + 1;
  assert.deepEqual(running.dead_letters_last_hour, expected);
  assert.equal(running.clickhouse_error, null);
  assert.ok(running.newest_decision_age_s !== null && running.newest_decision_age_s < 600);

  // The same dead letters, grouped by fingerprint, previews masked.
  const inspect = sluiceSync(['dlq', 'inspect', '--pipeline', instance.name, '--since', '1h', '--json']);
  assert.equal(inspect.status, 0, inspect.stderr);
  const groups = JSON.parse(inspect.stdout) as DeadLetterGroup[];
  const byReason: Record<string, number> = {};
  for (const group of groups) byReason[group.reason] = (byReason[group.reason] ?? 0) + group.letters;
  assert.deepEqual(byReason, expected);
  for (const sample of bad.filter((b) => b.field !== null && b.reason === 'SCHEMA_VIOLATION')) {
    assert.ok(
      groups.some((g) => g.reason === sample.reason && g.field === sample.field),
      `a group for ${sample.reason} on ${sample.field}: ${groups.map((g) => `${g.reason}/${g.field}`).join(', ')}`,
    );
  }
  const emails = [...inspect.stdout.matchAll(/[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}/g)].map((m) => m[0]);
  assert.deepEqual(emails, [], 'no e-mail address in the previews or messages');
  const oneReason = sluiceSync(['dlq', 'inspect', '--pipeline', instance.name, '--reason', 'MALFORMED_PAYLOAD', '--json']);
  assert.ok((JSON.parse(oneReason.stdout) as DeadLetterGroup[]).every((g) => g.reason === 'MALFORMED_PAYLOAD'));

  // decide stopped, more events: no decide instance, its backlog as lag; the kill switch shows.
  await instance.stopStage('decide');
  const switched = sluiceSync(['kill-switch', 'on', '--pipeline', instance.name, '--reason', 'status test']);
  assert.equal(switched.status, 0, switched.stderr);
  const more = [...plugin.generator.events({ seed: 5, count: 40, startMs: Date.now(), idPrefix: `${prefix}-more` })];
  await instance.produce(more.map(({ key, value }) => ({ key, value })));
  const stopped = await waitFor(
    'the scored backlog of the stopped decide stage',
    () => {
      const now = status(instance!.name);
      return now.stages.find((s) => s.stage === 'decide')!.lag.total >= more.length ? now : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 1_000 },
  );
  const decide = stopped.stages.find((s) => s.stage === 'decide')!;
  assert.equal(decide.instances, 0);
  // As kafka-consumer-groups counts it: the transactions' commit markers are offsets too.
  assert.ok(decide.lag.total >= more.length && decide.lag.total < more.length + 20, `decide lag ${decide.lag.total}`);
  assert.deepEqual({ mode: stopped.kill_switch.mode, reason: stopped.kill_switch.reason }, { mode: 'rules', reason: 'status test' });
});
