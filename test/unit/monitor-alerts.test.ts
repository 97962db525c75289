/**
 * Alert states from monitor verdicts, window after window: one alert while a
 * check keeps failing, resolved only after two passing windows, never by a
 * window without a verdict, and carrying the owners and the runbook.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { type Alert, alertTransitions, runbookOf } from '../../monitor/alerts.ts';
import { CHECKS, type CheckResult, type CheckStatus } from '../../monitor/checks.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';

const owners = signupRisk.owners;
const W = 10_000;
const result = (status: CheckStatus, value = status === 'breach' ? 0.5 : 0.01): CheckResult => ({
  check: 'feature_drift',
  subject: 'plan_free',
  value,
  threshold: 0.2,
  status,
  sampleSize: 500,
  detail: '',
});

/** Runs the statuses through the state machine as the monitor would, window by window; returns every change. */
function run(statuses: CheckStatus[]): Array<{ window: number; alert: Alert }> {
  let open: Alert[] = [];
  const changes: Array<{ window: number; alert: Alert }> = [];
  statuses.forEach((status, i) => {
    const window = { startMs: i * W, lengthMs: W };
    const alerts = alertTransitions({ pipeline: 'p', owners, window, results: [result(status)], open, previousStatus: () => statuses[i - 1] });
    for (const alert of alerts) {
      changes.push({ window: i, alert });
      open = alert.status === 'firing' ? [...open, alert] : open.filter((a) => a.alert_id !== alert.alert_id);
    }
  });
  return changes;
}

describe('monitor alerts', () => {
  it('a breach opens one alert, which stays the only one while the check keeps failing', () => {
    const changes = run(['ok', 'breach', 'breach', 'breach']);
    assert.equal(changes.length, 1);
    const { window, alert } = changes[0]!;
    assert.equal(window, 1);
    assert.deepEqual(alert, {
      alert_id: `p/feature_drift/plan_free/${W}`,
      pipeline: 'p',
      kind: 'feature_drift',
      subject: 'plan_free',
      severity: 'warning',
      status: 'firing',
      value: 0.5,
      threshold: 0.2,
      window_start: W,
      started_at: 2 * W,
      resolved_at: null,
      owners: { team: 'trust-and-safety', oncall: 'trust-oncall' },
      runbook: 'docs/runbooks/feature_drift.md',
    });
  });

  it('resolves after two passing windows in a row, not after one (no flapping)', () => {
    const changes = run(['breach', 'ok', 'breach', 'ok', 'ok', 'ok']);
    assert.deepEqual(
      changes.map((c) => [c.window, c.alert.status]),
      [
        [0, 'firing'],
        [4, 'resolved'],
      ],
    );
    const resolved = changes[1]!.alert;
    assert.equal(resolved.alert_id, changes[0]!.alert.alert_id);
    assert.equal(resolved.resolved_at, 5 * W);
    assert.equal(resolved.started_at, W);
  });

  it('a window without a verdict neither opens nor resolves; a later breach opens a new alert', () => {
    const changes = run(['breach', 'insufficient', 'ok', 'insufficient', 'ok', 'ok', 'breach']);
    assert.deepEqual(
      changes.map((c) => [c.window, c.alert.status, c.alert.alert_id]),
      [
        [0, 'firing', 'p/feature_drift/plan_free/0'],
        [5, 'resolved', 'p/feature_drift/plan_free/0'],
        [6, 'firing', `p/feature_drift/plan_free/${6 * W}`],
      ],
    );
  });

  it('silent failures are critical; every kind has its runbook page', () => {
    const stall = alertTransitions({ pipeline: 'p', owners, window: { startMs: 0, lengthMs: W }, results: [{ ...result('breach'), check: 'stall', subject: 'decide' }], open: [], previousStatus: () => undefined });
    assert.equal(stall[0]!.severity, 'critical');
    assert.equal(runbookOf('dead_letter_spike'), 'docs/runbooks/dead_letter_spike.md');
    assert.equal(runbookOf('stall', 'https://runbooks.example.com/sluice/'), 'https://runbooks.example.com/sluice/stall.md');
    for (const kind of CHECKS) {
      const path = runbookOf(kind);
      let page: string;
      try {
        page = readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
      } catch {
        assert.fail(`the runbook of ${kind}, ${path}, is missing: write it (what to check, what to do)`);
      }
      // A page that is only a pointer names the page that holds the runbook.
      assert.match(page, /^# /, `${path} starts with a title`);
      assert.match(page, /sluice |\]\(\.\/[a-z_-]+\.md\)/, `${path} names the commands to run or the page that does`);
    }
  });
});
