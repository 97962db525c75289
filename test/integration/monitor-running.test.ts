/**
 * `sluice monitor` as a long-running process: it judges each window as it
 * closes, one after another, serves every value on /metrics, raises an alert
 * when the input of a pipeline instance stops, and stops cleanly on SIGTERM.
 * The instance's input history (12 windows of 4 s with 100 events each, up to
 * the current window) is written to ClickHouse as the sink would; nothing
 * arrives after it, so the first windows the monitor judges are a volume drop.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../../connectors/clickhouse/retention.ts';
import { type StageEventRow, TABLES } from '../../connectors/clickhouse/schema.ts';
import { insertTableRows } from '../../connectors/clickhouse/writer.ts';
import { connections, freePort, type SluiceRun, sluiceAsync, uniqueName, waitFor } from '../helpers.ts';

const WINDOW_MS = 4_000;
const name = uniqueName('signup-risk-monrun');
const client = createClickHouse({ url: connections.clickhouseUrl });

function history(currentStart: number): StageEventRow[] {
  const rows: StageEventRow[] = [];
  for (let w = 12; w >= 1; w--) {
    for (let i = 0; i < 100; i++) {
      const occurred = currentStart - w * WINDOW_MS + i * 40;
      for (const [stage, suffix] of [['validate', 'validated'], ['score', 'scored'], ['decide', 'decided']] as const) {
        rows.push({
          pipeline: name,
          stage,
          outcome: 'passed',
          detail: '',
          event_id: `${name}-${w}-${i}`,
          decision_version: 0,
          occurred_at_ms: occurred,
          stage_at_ms: occurred + 10,
          kafka_topic: `${name}.${suffix}`,
          kafka_partition: 0,
          kafka_offset: w * 100 + i,
          kafka_timestamp_ms: occurred + 10,
        });
      }
    }
  }
  return rows;
}

describe('sluice monitor, running', { timeout: 120_000 }, () => {
  let run: SluiceRun | undefined;
  let port: number;

  before(async () => {
    await migrate(client, { url: connections.clickhouseUrl });
    await insertTableRows(client, { stageEvents: history(Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS), modelOutputs: [], decisions: [], deadLetters: [] });
    port = await freePort();
  });

  after(async () => {
    run?.kill('SIGKILL');
    await deletePipelineRows(client, name).catch(() => {});
    for (const table of [TABLES.monitorWindows, TABLES.alerts]) await client.command({ query: `ALTER TABLE ${table} DELETE WHERE pipeline = ${quote(name)}` }).catch(() => {});
    await client.close();
  });

  it('judges consecutive windows as they close, shows them on /metrics, alerts on the stopped input, and exits on SIGTERM', async () => {
    run = sluiceAsync(['monitor', '--pipeline', name, '--window', '4s', '--grace', '0s', '--metrics-port', String(port)]);
    const metric = async (pattern: RegExp) => {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
      const text = response?.ok ? await response.text() : '';
      return pattern.exec(text) ?? undefined;
    };
    // The input stopped: volume_drop breaches (status 1) and one alert fires.
    const volume = new RegExp(`sluice_monitor_status\\{[^}]*check="volume_drop",subject="${name}\\.raw"[^}]*\\} 1`);
    await waitFor('volume_drop breached on /metrics', () => metric(volume), { timeoutMs: 60_000, intervalMs: 250 });
    await waitFor('the alert counted on /metrics', () => metric(/sluice_monitor_alerts_total\{[^}]*kind="volume_drop",status="firing"[^}]*\} 1/), { timeoutMs: 30_000, intervalMs: 250 });

    // Consecutive windows, each judged once it closed.
    const windows = await waitFor(
      'two consecutive judged windows',
      async () => {
        const rows = await queryRows<{ window_start_ms: string; evaluated_at_ms: string }>(
          client,
          `SELECT window_start_ms, max(evaluated_at_ms) AS evaluated_at_ms FROM ${TABLES.monitorWindows}
           WHERE pipeline = ${quote(name)} AND window_ms = ${WINDOW_MS} AND check = 'volume_drop' GROUP BY window_start_ms ORDER BY window_start_ms`,
        );
        return rows.length >= 2 ? rows.map((r) => ({ start: Number(r.window_start_ms), evaluatedAt: Number(r.evaluated_at_ms) })) : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    for (const [i, w] of windows.entries()) {
      assert.equal(w.start % WINDOW_MS, 0, 'aligned to the window length');
      assert.ok(w.evaluatedAt >= w.start + WINDOW_MS, 'judged only once closed');
      if (i > 0) assert.equal(w.start - windows[i - 1]!.start, WINDOW_MS, 'one window after another, none skipped');
    }
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(ready.status, 200);

    run.kill('SIGTERM');
    const exited = await run.exited;
    assert.equal(exited.status, 0, exited.stderr);
    assert.match(exited.stderr, /alert firing: volume_drop/);
  });
});
