/**
 * The monitor's documented queries (drift-over-time, data-quality,
 * alert-history) on the local ClickHouse 18.16, over rows as the monitor
 * writes them: a window judged twice counts once (its latest evaluation), an
 * alert written twice and then resolved is one alert in its latest state. Run
 * through `sluice clickhouse query`, as an analyst would.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runDocumentedQuery } from '../../connectors/clickhouse/analytics.ts';
import { createClickHouse, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { type MonitorWindowRow, TABLES } from '../../connectors/clickhouse/schema.ts';
import { type Alert, writeAlerts } from '../../monitor/alerts.ts';
import { writeMonitorRows } from '../../monitor/queries.ts';
import { connections, sluiceSync, uniqueName } from '../helpers.ts';

const name = uniqueName('signup-risk-monan');
const client = createClickHouse({ url: connections.clickhouseUrl });
const WINDOW_MS = 60_000;
// The hour before the current one: every window falls in one hour of the last day.
const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
const at = (w: number) => hour + w * WINDOW_MS;

function row(w: number, check: string, subject: string, value: number, threshold: number, status: string, evaluatedAt: number, detail = ''): MonitorWindowRow {
  return { pipeline: name, window_start_ms: at(w), window_ms: WINDOW_MS, check, subject, value, threshold, status, sample_size: 500, detail, model_version: 'm1', evaluated_at_ms: evaluatedAt };
}

function alert(id: string, kind: Alert['kind'], subject: string, startW: number, resolvedW: number | null): Alert {
  return {
    alert_id: `${name}/${kind}/${subject}/${id}`,
    pipeline: name,
    kind,
    subject,
    severity: kind === 'feature_drift' ? 'warning' : 'critical',
    status: resolvedW === null ? 'firing' : 'resolved',
    value: resolvedW === null ? 0.9 : 0.05,
    threshold: 0.2,
    window_start: at((resolvedW ?? startW) - 1),
    started_at: at(startW),
    resolved_at: resolvedW === null ? null : at(resolvedW),
    owners: { team: 'trust-and-safety', oncall: 'trust-oncall' },
    runbook: `docs/runbooks/${kind}.md`,
  };
}

describe('the monitor\'s documented queries on ClickHouse 18.16', () => {
  before(async () => {
    await migrate(client, { url: connections.clickhouseUrl });
    await writeMonitorRows(client, [
      // Window 0 judged twice: the first evaluation (a breach) is replaced by the second.
      row(0, 'feature_drift', 'signups_from_ip_24h_log1p', 0.9, 0.2, 'breach', at(1)),
      row(0, 'feature_drift', 'signups_from_ip_24h_log1p', 0.05, 0.2, 'ok', at(2)),
      row(1, 'feature_drift', 'signups_from_ip_24h_log1p', 0.5, 0.2, 'breach', at(2)),
      row(2, 'feature_drift', 'signups_from_ip_24h_log1p', 0.01, 0.2, 'insufficient', at(3)),
      row(1, 'score_drift', 'score', 0.1, 0.2, 'ok', at(2)),
      row(1, 'data_quality', 'ip_country', 0.3, 0.165, 'breach', at(2), 'null rate (ip_country_missing); reference 0.1150 + 0.05'),
      row(2, 'data_quality', 'ip_country', 0.1, 0.165, 'ok', at(3), 'null rate (ip_country_missing); reference 0.1150 + 0.05'),
      row(1, 'data_quality', 'email_local_digits', 0.02, 0.01, 'breach', at(2), 'out-of-range rate outside the reference [0, 8]'),
      row(1, 'volume_drop', `${name}.raw`, 0.1, 0.5, 'breach', at(2)),
    ]);
    const firing = alert('a', 'feature_drift', 'signups_from_ip_24h_log1p', 2, null);
    // At least once: the firing state twice, then the resolved one.
    await writeAlerts(client, [firing]);
    await writeAlerts(client, [firing, alert('b', 'volume_drop', `${name}.raw`, 3, null)]);
    await writeAlerts(client, [alert('a', 'feature_drift', 'signups_from_ip_24h_log1p', 2, 4)]);
  });

  after(async () => {
    for (const table of [TABLES.monitorWindows, TABLES.alerts]) await client.command({ query: `ALTER TABLE ${table} DELETE WHERE pipeline = ${quote(name)}` }).catch(() => {});
    await client.close();
  });

  it('drift-over-time: per hour, check and subject, each window once at its latest evaluation', async () => {
    const rows = await runDocumentedQuery(client, 'drift-over-time', { pipeline: name });
    assert.deepEqual(
      rows.map((r) => [r['check_kind'], r['subject'], Number(r['windows']), r['worst_psi'], r['mean_psi'], r['psi_threshold'], Number(r['breached_windows']), Number(r['windows_without_verdict'])]),
      [
        ['feature_drift', 'signups_from_ip_24h_log1p', 3, 0.5, 0.1867, 0.2, 1, 1],
        ['score_drift', 'score', 1, 0.1, 0.1, 0.2, 0, 0],
      ],
    );
    assert.equal(Date.parse(`${String(rows[0]!['hour']).replace(' ', 'T')}Z`), hour, 'the hour of the windows (UTC)');
  });

  it('data-quality: per field, the null rate and the out-of-range rate apart', async () => {
    const rows = await runDocumentedQuery(client, 'data-quality', { pipeline: name });
    assert.deepEqual(
      rows.map((r) => [r['subject'], r['measure'], Number(r['windows']), r['mean_rate'], r['worst_rate'], r['rate_threshold'], Number(r['breached_windows'])]),
      [
        ['email_local_digits', 'out_of_range', 1, 0.02, 0.02, 0.01, 1],
        ['ip_country', 'null_rate', 2, 0.2, 0.3, 0.165, 1],
      ],
    );
  });

  it('alert-history through sluice clickhouse query: each alert once, in its latest state, newest first', () => {
    const run = sluiceSync(['clickhouse', 'query', 'alert-history', '--pipeline', name, '--json']);
    assert.equal(run.status, 0, run.stderr);
    const rows = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(
      rows.map((r) => [r['alert_kind'], r['latest_status'], Number(r['minutes_open']), r['latest_value'], r['oncall'], r['runbook_page']]),
      [
        ['volume_drop', 'firing', 0, 0.9, 'trust-oncall', 'docs/runbooks/volume_drop.md'],
        ['feature_drift', 'resolved', 2, 0.05, 'trust-oncall', 'docs/runbooks/feature_drift.md'],
      ],
    );
  });
});
