/**
 * The history checks of `sluice monitor` against the real ClickHouse: a
 * pipeline instance's record flow over fourteen one-minute windows, as the
 * sink records it in sluice.stage_events, with three faults in it: the input
 * cut to a tenth (window 10), the decide stage stopped for two windows (11
 * and 12), and 30% malformed events (window 13). Each must be flagged in its
 * window under the right kind and subject, and nothing else anywhere; each
 * opens one alert, on the sluice.alerts topic and in `sluice alerts list`,
 * with the pipeline's owners and a runbook, and the volume alert resolves
 * after two windows of normal input.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../../connectors/clickhouse/retention.ts';
import { type StageEventRow, TABLES } from '../../connectors/clickhouse/schema.ts';
import { insertTableRows } from '../../connectors/clickhouse/writer.ts';
import { followTopic } from '../../connectors/kafka/follow.ts';
import { createLogger } from '../../lib/log.ts';
import { ALERTS_TOPIC, type Alert } from '../../monitor/alerts.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import { connections, sluiceSync, uniqueName, waitFor } from '../helpers.ts';

const WINDOW_MS = 60_000;
const WINDOWS = 14;
const name = uniqueName('signup-risk-monflow');
const client = createClickHouse({ url: connections.clickhouseUrl });
const base = Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS - 30 * WINDOW_MS;
const startOf = (w: number) => base + w * WINDOW_MS;

/** What each window holds: inputs, how many of them malformed, and whether decide ran. */
function plan(w: number): { inputs: number; malformed: number; decide: boolean } {
  if (w === 10) return { inputs: 10, malformed: 0, decide: true };
  if (w === 11 || w === 12) return { inputs: 100, malformed: 1, decide: false };
  if (w === 13) return { inputs: 100, malformed: 30, decide: true };
  return { inputs: 100, malformed: 1, decide: true };
}

function stageEvents(): StageEventRow[] {
  const rows: StageEventRow[] = [];
  let offset = 0;
  for (let w = 0; w < WINDOWS; w++) {
    const { inputs, malformed, decide } = plan(w);
    for (let i = 0; i < inputs; i++) {
      const occurred = startOf(w) + Math.floor((i * WINDOW_MS) / inputs);
      const row = (stage: string, suffix: string, outcome: StageEventRow['outcome'], detail: string): StageEventRow => ({
        pipeline: name,
        stage,
        outcome,
        detail,
        event_id: outcome === 'dead_lettered' ? '' : `${name}-${w}-${i}`,
        decision_version: stage === 'decide' ? 1 : 0,
        occurred_at_ms: occurred,
        stage_at_ms: occurred + 20,
        kafka_topic: `${name}.${suffix}`,
        kafka_partition: 0,
        kafka_offset: offset++,
        kafka_timestamp_ms: occurred + 20,
      });
      if (i < malformed) {
        rows.push(row('validate', 'dlq', 'dead_lettered', 'MALFORMED_PAYLOAD'));
        continue;
      }
      rows.push(row('validate', 'validated', 'passed', ''), row('score', 'scored', 'passed', ''));
      if (decide) rows.push(row('decide', 'decided', 'passed', 'approve'));
    }
  }
  return rows;
}

// After both suites: the alerts suite reads what the first one's monitor run wrote.
after(async () => {
  await deletePipelineRows(client, name).catch(() => {});
  for (const table of [TABLES.monitorWindows, TABLES.alerts]) await client.command({ query: `ALTER TABLE ${table} DELETE WHERE pipeline = ${quote(name)}` }).catch(() => {});
  await client.close();
});

describe('sluice monitor: volume, dead letters and stalls from the pipeline\'s own history', { timeout: 180_000 }, () => {
  before(async () => {
    await migrate(client, { url: connections.clickhouseUrl });
    await insertTableRows(client, { stageEvents: stageEvents(), modelOutputs: [], decisions: [], deadLetters: [] });
  });

  it('flags each fault in its window under the right kind and subject, and nothing else', async () => {
    const at = new Date(startOf(WINDOWS) + 1_000).toISOString();
    const run = sluiceSync(['monitor', '--pipeline', name, '--window', '60s', '--grace', '1s', '--once', '--windows', String(WINDOWS), '--at', at, '--json']);
    assert.equal(run.status, 0, run.stderr);
    const printed = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { window_start: string; check: string; subject: string; value: number; status: string });
    const breaches = new Map<number, string[]>();
    for (const r of printed.filter((p) => p.status === 'breach')) {
      const w = (Date.parse(r.window_start) - base) / WINDOW_MS;
      breaches.set(w, [...(breaches.get(w) ?? []), `${r.check}:${r.subject}`]);
    }
    assert.deepEqual(Object.fromEntries([...breaches].sort((a, b) => a[0] - b[0])), {
      10: [`volume_drop:${name}.raw`],
      12: ['stall:decide'],
      13: ['dead_letter_spike:all', 'dead_letter_spike:MALFORMED_PAYLOAD'],
    });

    const stored = await waitFor('the flow checks in monitor_windows', async () => {
      const rows = await queryRows<{ window_start_ms: string; check: string; subject: string; value: number; threshold: number; status: string }>(
        client,
        `SELECT window_start_ms, check, subject, value, threshold, status FROM ${TABLES.monitorWindows} FINAL
         WHERE pipeline = ${quote(name)} AND check IN ('volume_drop', 'dead_letter_spike', 'stall') AND status = 'breach' ORDER BY window_start_ms, check, subject`,
      );
      return rows.length === 4 ? rows : undefined;
    });
    // Window 13's baseline: windows 3–12 read 910 inputs and 9 dead letters, so the threshold is max(2%, 5 × 9/910) = 0.049451.
    assert.deepEqual(
      stored.map((r) => [(Number(r.window_start_ms) - base) / WINDOW_MS, r.check, r.subject, r.value, r.threshold]),
      [
        [10, 'volume_drop', `${name}.raw`, 0.1, 0.5],
        [12, 'stall', 'decide', 0, 0],
        [13, 'dead_letter_spike', 'MALFORMED_PAYLOAD', 0.3, 0.049451],
        [13, 'dead_letter_spike', 'all', 0.3, 0.049451],
      ],
    );
  });
});

describe('sluice monitor alerts', { timeout: 180_000 }, () => {
  it('opens one alert per fault, resolves the volume drop after two passing windows, and tells the owners', async () => {
    // The monitor run of the test above wrote them; `alerts list` reads them back.
    const list = sluiceSync(['alerts', 'list', '--pipeline', name, '--json']);
    assert.equal(list.status, 0, list.stderr);
    const alerts = JSON.parse(list.stdout) as Alert[];
    const summary = alerts.map((a) => [a.kind, a.subject, a.status, (a.started_at - base) / WINDOW_MS, a.resolved_at === null ? null : (a.resolved_at - base) / WINDOW_MS]);
    // started_at / resolved_at: the end of the window that opened / resolved it (window w ends at w + 1).
    assert.deepEqual(
      summary.sort((a, b) => String(a[0]).localeCompare(String(b[0])) || String(a[1]).localeCompare(String(b[1]))),
      [
        ['dead_letter_spike', 'all', 'firing', 14, null],
        ['dead_letter_spike', 'MALFORMED_PAYLOAD', 'firing', 14, null],
        ['stall', 'decide', 'firing', 13, null],
        ['volume_drop', `${name}.raw`, 'resolved', 11, 13],
      ],
    );
    const owners = pipelineByName(name).owners;
    for (const alert of alerts) {
      assert.deepEqual(alert.owners, { team: owners.team, oncall: owners.oncall });
      assert.equal(alert.runbook, `docs/runbooks/${alert.kind}.md`);
      assert.ok(['critical', 'warning'].includes(alert.severity));
    }
    const firing = JSON.parse(sluiceSync(['alerts', 'list', '--pipeline', name, '--status', 'firing', '--json']).stdout) as Alert[];
    assert.equal(firing.length, 3);

    // The same states on the Kafka topic, keyed by alert id: the volume alert twice (firing, then resolved).
    const seen: Array<{ key: string; alert: Alert }> = [];
    const follower = await followTopic({
      brokers: connections.kafkaBrokers,
      topic: ALERTS_TOPIC,
      clientId: `${name}.test`,
      logger: createLogger({ component: 'test' }, 'error'),
      onMessage: (m) => {
        if (m.key?.startsWith(`${name}/`) && m.value) seen.push({ key: m.key, alert: JSON.parse(m.value.toString('utf8')) as Alert });
      },
    });
    try {
      await waitFor('five alert states on the topic', () => seen.length >= 5 && seen, { timeoutMs: 30_000 });
    } finally {
      await follower.stop();
    }
    assert.deepEqual(seen.map((m) => `${m.alert.kind}:${m.alert.status}`).sort(), [
      'dead_letter_spike:firing',
      'dead_letter_spike:firing',
      'stall:firing',
      'volume_drop:firing',
      'volume_drop:resolved',
    ]);
    for (const m of seen) assert.equal(m.key, m.alert.alert_id);
    assert.deepEqual(new Set(seen.map((m) => m.alert.alert_id)), new Set(alerts.map((a) => a.alert_id)));
  });
});
