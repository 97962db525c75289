/**
 * Alerts from monitor verdicts. One open alert per pipeline × kind × subject:
 * a breach opens one (unless one is firing already: no duplicates), and it
 * resolves only once the check has passed for two windows in a row, so a value
 * hovering at its threshold does not flap. A window without a verdict
 * (`insufficient`) neither opens nor resolves anything.
 *
 * Each state is written to ClickHouse `sluice.alerts` (the latest row per
 * alert stands) and produced to the Kafka topic `sluice.alerts` (JSON, keyed
 * by alert id), carrying the pipeline's owners and the runbook of its kind.
 */
import { type ClickHouseClient, clickHouseError, queryRows, quote } from '../connectors/clickhouse/client.ts';
import { TABLES } from '../connectors/clickhouse/schema.ts';
import type { Owners } from '../lib/pipeline.ts';
import type { CheckKind, CheckResult, CheckStatus } from './checks.ts';
import type { Window } from './windows.ts';

export const ALERTS_TOPIC = 'sluice.alerts';

export type AlertStatus = 'firing' | 'resolved';

/** The JSON value on the `sluice.alerts` topic, and what `sluice alerts list --json` prints. */
export interface Alert {
  alert_id: string;
  pipeline: string;
  kind: CheckKind;
  subject: string;
  severity: 'critical' | 'warning';
  status: AlertStatus;
  /** The value and threshold of the window that fired it (firing) or resolved it (resolved). */
  value: number;
  threshold: number;
  /** That window's start, epoch ms. */
  window_start: number;
  /** Epoch ms: the end of the window whose breach opened it (so a re-run or backfill writes the same alert). */
  started_at: number;
  /** Epoch ms: the end of the window whose pass resolved it; null while firing. */
  resolved_at: number | null;
  owners: { team: string; oncall: string };
  /** What to check and what to do for this kind. */
  runbook: string;
}

/** Silent failures page; drift and quality are looked at within the day. */
const SEVERITY: Record<CheckKind, Alert['severity']> = {
  feature_drift: 'warning',
  score_drift: 'warning',
  data_quality: 'warning',
  output_collapse: 'critical',
  volume_drop: 'critical',
  dead_letter_spike: 'critical',
  stall: 'critical',
  lag_growth: 'critical',
};

/**
 * The runbook of an alert kind under the pipeline's runbook base (docs/runbooks/
 * or a URL ending in `/`): what to check and what to do. Every kind has its
 * page in docs/runbooks/ (test/unit/monitor-alerts.test.ts checks each exists).
 */
export const runbookOf = (kind: CheckKind, base = 'docs/runbooks/'): string => `${base}${kind}.md`;

const keyOf = (kind: string, subject: string) => `${kind}\u0000${subject}`;

/**
 * The alert states one window's results bring about, given the alerts open
 * before it and each check's status in the window before it (undefined when
 * it was not judged). Pure.
 */
export function alertTransitions(args: {
  pipeline: string;
  owners: Owners;
  window: Window;
  results: readonly CheckResult[];
  open: readonly Alert[];
  previousStatus: (kind: CheckKind, subject: string) => CheckStatus | undefined;
}): Alert[] {
  const windowEnd = args.window.startMs + args.window.lengthMs;
  const open = new Map(args.open.map((a) => [keyOf(a.kind, a.subject), a]));
  const changes: Alert[] = [];
  for (const r of args.results) {
    const firing = open.get(keyOf(r.check, r.subject));
    if (r.status === 'breach' && firing === undefined) {
      changes.push({
        alert_id: `${args.pipeline}/${r.check}/${r.subject}/${args.window.startMs}`,
        pipeline: args.pipeline,
        kind: r.check,
        subject: r.subject,
        severity: SEVERITY[r.check],
        status: 'firing',
        value: r.value,
        threshold: r.threshold,
        window_start: args.window.startMs,
        started_at: windowEnd,
        resolved_at: null,
        owners: { team: args.owners.team, oncall: args.owners.oncall },
        runbook: runbookOf(r.check, args.owners.runbookBase),
      });
    } else if (r.status === 'ok' && firing !== undefined && args.previousStatus(r.check, r.subject) === 'ok') {
      changes.push({ ...firing, status: 'resolved', value: r.value, threshold: r.threshold, window_start: args.window.startMs, resolved_at: windowEnd });
    }
  }
  return changes;
}

interface AlertRow {
  alert_id: string;
  latest_pipeline: string;
  latest_kind: string;
  latest_subject: string;
  latest_severity: string;
  latest_status: string;
  latest_value: number;
  latest_threshold: number;
  latest_window_start_ms: number | string;
  latest_started_at_ms: number | string;
  latest_resolved_at_ms: number | string;
  latest_team: string;
  latest_oncall: string;
  latest_runbook: string;
}

const rowToAlert = (r: AlertRow): Alert => ({
  alert_id: r.alert_id,
  pipeline: r.latest_pipeline,
  kind: r.latest_kind as CheckKind,
  subject: r.latest_subject,
  severity: r.latest_severity as Alert['severity'],
  status: r.latest_status as AlertStatus,
  value: r.latest_value,
  threshold: r.latest_threshold,
  window_start: Number(r.latest_window_start_ms),
  started_at: Number(r.latest_started_at_ms),
  resolved_at: Number(r.latest_resolved_at_ms) > 0 ? Number(r.latest_resolved_at_ms) : null,
  owners: { team: r.latest_team, oncall: r.latest_oncall },
  runbook: r.latest_runbook,
});

/** A pipeline's alerts in their latest state, newest first; `status` filters. */
export async function listAlerts(client: ClickHouseClient, pipeline: string, status: AlertStatus | 'all' = 'all'): Promise<Alert[]> {
  // Aliases never reuse a column name (18.16 rejects `argMax(status, …) AS status`).
  const sql = `SELECT
    alert_id,
    argMax(pipeline, updated_at_ms) AS latest_pipeline,
    argMax(kind, updated_at_ms) AS latest_kind,
    argMax(subject, updated_at_ms) AS latest_subject,
    argMax(severity, updated_at_ms) AS latest_severity,
    argMax(status, updated_at_ms) AS latest_status,
    argMax(value, updated_at_ms) AS latest_value,
    argMax(threshold, updated_at_ms) AS latest_threshold,
    argMax(window_start_ms, updated_at_ms) AS latest_window_start_ms,
    argMax(started_at_ms, updated_at_ms) AS latest_started_at_ms,
    argMax(resolved_at_ms, updated_at_ms) AS latest_resolved_at_ms,
    argMax(owners_team, updated_at_ms) AS latest_team,
    argMax(owners_oncall, updated_at_ms) AS latest_oncall,
    argMax(runbook, updated_at_ms) AS latest_runbook
FROM ${TABLES.alerts}
WHERE pipeline = ${quote(pipeline)}
GROUP BY alert_id
${status === 'all' ? '' : `HAVING latest_status = ${quote(status)}\n`}ORDER BY latest_started_at_ms DESC, alert_id`;
  try {
    return (await queryRows<AlertRow>(client, sql)).map(rowToAlert);
  } catch (error) {
    throw clickHouseError(error, `listing the alerts of ${pipeline}`);
  }
}

/** Each check's status in one window, as the monitor recorded it (the latest evaluation). */
export async function windowStatuses(client: ClickHouseClient, pipeline: string, window: Window): Promise<Map<string, CheckStatus>> {
  const sql = `SELECT check, subject, argMax(status, evaluated_at_ms) AS latest_status
FROM ${TABLES.monitorWindows}
WHERE pipeline = ${quote(pipeline)} AND window_ms = ${window.lengthMs} AND window_start_ms = ${window.startMs}
GROUP BY check, subject`;
  try {
    const rows = await queryRows<{ check: string; subject: string; latest_status: CheckStatus }>(client, sql);
    return new Map(rows.map((r) => [keyOf(r.check, r.subject), r.latest_status]));
  } catch (error) {
    throw clickHouseError(error, `reading the monitor statuses of ${pipeline}`);
  }
}

export const statusLookup = (statuses: ReadonlyMap<string, CheckStatus>) => (kind: string, subject: string) => statuses.get(keyOf(kind, subject));

/** Writes alert states to ClickHouse (the row of a later state replaces the earlier one: updated_at_ms is the window end that caused it). */
export async function writeAlerts(client: ClickHouseClient, alerts: readonly Alert[]): Promise<void> {
  if (alerts.length === 0) return;
  const rows = alerts.map((a) => ({
    alert_id: a.alert_id,
    pipeline: a.pipeline,
    kind: a.kind,
    subject: a.subject,
    severity: a.severity,
    status: a.status,
    value: a.value,
    threshold: a.threshold,
    window_start_ms: a.window_start,
    started_at_ms: a.started_at,
    resolved_at_ms: a.resolved_at ?? 0,
    owners_team: a.owners.team,
    owners_oncall: a.owners.oncall,
    runbook: a.runbook,
    updated_at_ms: a.resolved_at ?? a.started_at,
  }));
  try {
    await client.insert({ table: TABLES.alerts, format: 'JSONEachRow', values: rows });
  } catch (error) {
    throw clickHouseError(error, `writing ${rows.length} alerts to ${TABLES.alerts}`);
  }
}
