/**
 * The Prometheus alert rules (deploy/prometheus/alerts.yml) as promtool sees
 * them: `promtool check rules` accepts the file, and `promtool test rules`
 * passes deploy/prometheus/alerts.test.yml, in which every rule fires on
 * series that break it and stays quiet otherwise. Beside promtool: every alert
 * carries team, oncall and runbook_url labels, each runbook exists, every
 * rule has a test, and prometheus.yml loads the file.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parse } from 'yaml';

const ROOT = new URL('../../', import.meta.url);
const RULES = fileURLToPath(new URL('deploy/prometheus/alerts.yml', ROOT));
const TESTS = fileURLToPath(new URL('deploy/prometheus/alerts.test.yml', ROOT));

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
}
const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ name: string; rules: Rule[] }> }).groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert !== undefined);

/** Runs promtool, or fails saying how to install it. */
function promtool(args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { encoding: 'utf8' });
  if (run.error && (run.error as NodeJS.ErrnoException).code === 'ENOENT') {
    assert.fail('promtool is not installed: install Debian\'s prometheus package (apt-get install -y prometheus), which provides /usr/bin/promtool; .ci/run does so in CI.');
  }
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('Prometheus alert rules', () => {
  it('promtool check rules accepts deploy/prometheus/alerts.yml', () => {
    const run = promtool(['check', 'rules', RULES]);
    assert.equal(run.status, 0, run.output);
    assert.match(run.output, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  it('promtool test rules passes: every rule fires when broken and stays quiet otherwise', () => {
    const run = promtool(['test', 'rules', TESTS]);
    assert.equal(run.status, 0, run.output);
    assert.match(run.output, /SUCCESS/);
  });

  it('every alert is tested, both firing and quiet', () => {
    type Case = { alertname: string; exp_alerts?: Array<{ exp_labels?: Record<string, string> }> };
    const groups = (parse(readFileSync(TESTS, 'utf8')) as { tests: Array<{ input_series: Array<{ series: string }>; alert_rule_test?: Case[] }> }).tests;
    for (const { alert } of alerts) {
      const fires = groups.some((g) => (g.alert_rule_test ?? []).some((t) => t.alertname === alert && (t.exp_alerts ?? []).length > 0));
      assert.ok(fires, `${alert}: no test in alerts.test.yml makes it fire`);
      // Quiet: a case expecting nothing, or a pipeline whose series are in the test but not among those it fires for.
      const quiet = groups.some((g) =>
        (g.alert_rule_test ?? []).some((t) => {
          if (t.alertname !== alert) return false;
          if ((t.exp_alerts ?? []).length === 0) return true;
          const firing = new Set((t.exp_alerts ?? []).map((a) => a.exp_labels?.pipeline));
          const fed = g.input_series.filter((i) => !i.series.startsWith('sluice_pipeline_info')).map((i) => /pipeline="([^"]+)"/.exec(i.series)?.[1]);
          return fed.some((p) => p !== undefined && !firing.has(p));
        }),
      );
      assert.ok(quiet, `${alert}: no test in alerts.test.yml shows it quiet`);
    }
  });

  it('every alert names its team, on-call and an existing runbook', () => {
    assert.ok(alerts.length >= 10);
    for (const rule of alerts) {
      const labels = rule.labels ?? {};
      assert.equal(labels.oncall, '{{ $labels.oncall }}', `${rule.alert}: oncall comes from the pipeline's manifest`);
      assert.match(rule.expr, /group_left \(oncall\) sluice:pipeline_oncall:info/, `${rule.alert}: joins the pipeline's on-call`);
      assert.ok(['critical', 'warning'].includes(labels.severity ?? ''), `${rule.alert}: severity`);
      const runbook = labels.runbook_url ?? '';
      assert.match(runbook, /^docs\/runbooks\/.+\.md$/, `${rule.alert}: runbook_url`);
      if (runbook.includes('{{ $labels.check }}')) {
        for (const kind of ['feature_drift', 'score_drift', 'data_quality', 'output_collapse', 'volume_drop', 'stall', 'dead_letter_spike', 'lag_growth']) {
          assert.ok(existsSync(new URL(runbook.replace('{{ $labels.check }}', kind), ROOT)), `${rule.alert}: ${runbook} for ${kind} is missing`);
        }
      } else {
        assert.ok(existsSync(new URL(runbook, ROOT)), `${rule.alert}: ${runbook} is missing`);
      }
    }
  });

  it('the alerts promtool fires carry team, oncall and runbook_url values', () => {
    const tests = (parse(readFileSync(TESTS, 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: Array<{ exp_labels: Record<string, string> }> }> }> }).tests;
    const fired = tests.flatMap((t) => t.alert_rule_test ?? []).flatMap((t) => (t.exp_alerts ?? []).map((a) => ({ alert: t.alertname, labels: a.exp_labels })));
    for (const { alert, labels } of fired) {
      assert.ok(labels.team && labels.oncall && labels.runbook_url, `${alert}: labels ${JSON.stringify(labels)}`);
      assert.ok(existsSync(new URL(labels.runbook_url, ROOT)), `${alert}: ${labels.runbook_url} is missing`);
    }
  });

  it('prometheus.yml loads the rules', () => {
    const config = parse(readFileSync(new URL('deploy/prometheus/prometheus.yml', ROOT), 'utf8')) as { rule_files?: string[] };
    assert.deepEqual(config.rule_files, ['alerts.yml']);
  });
});
