/**
 * The Grafana dashboards (deploy/grafana/provisioning/dashboards) and the
 * Prometheus alert rules (deploy/prometheus/alerts.yml) against the code:
 * every metric a PromQL expression names must be one the code exports. The
 * exported names are collected from the source itself (the `name: 'sluice_…'`
 * of every prom-client metric, with `_bucket`, `_sum` and `_count` for
 * histograms) and from prom-client's default metrics, which every process
 * registers; a dashboard that names a metric nobody exports shows an empty
 * panel forever, and this test fails instead.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { parse } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARDS = join(ROOT, 'deploy/grafana/provisioning/dashboards');
const SKIP = new Set(['node_modules', 'test', 'bench', '.git', '.sluice', 'training', 'deploy']);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    if (SKIP.has(entry) || entry.startsWith('.')) return [];
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return sources(path);
    return entry.endsWith('.ts') ? [path] : [];
  });
}

/** Every metric name the code registers, with the series a histogram or summary adds. */
function exportedMetrics(): Set<string> {
  const names = new Set<string>();
  const definition = /new (Counter|Gauge|Histogram|Summary)\(\{\s*name:\s*'([a-zA-Z_:][a-zA-Z0-9_:]*)'/g;
  for (const file of sources(ROOT)) {
    for (const [, type, name] of readFileSync(file, 'utf8').matchAll(definition)) {
      names.add(name!);
      if (type === 'Histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
      if (type === 'Summary') for (const suffix of ['_sum', '_count']) names.add(`${name}${suffix}`);
    }
  }
  return names;
}

async function defaultMetrics(): Promise<Set<string>> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
  }
  return names;
}

const KEYWORDS = new Set([
  // aggregations, modifiers and operators
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset',
  // functions used in PromQL
  'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'time', 'timestamp', 'histogram_quantile', 'abs', 'clamp_min', 'clamp_max',
  'last_over_time', 'max_over_time', 'min_over_time', 'avg_over_time', 'sum_over_time', 'count_over_time', 'absent', 'absent_over_time',
  'changes', 'resets', 'vector', 'scalar', 'label_replace', 'label_join', 'round', 'ceil', 'floor', 'sort', 'sort_desc', 'label_values', 'inf', 'nan',
]);

/**
 * The metric names an expression selects: the identifiers left once label
 * matchers, grouping clauses, ranges, strings, numbers and Grafana variables
 * are taken out, minus PromQL's own words.
 */
function metricNamesOf(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ' ')
    .replace(/\b\d+(\.\d+)?([eE][+-]?\d+)?\b/g, ' ');
  const identifiers = stripped.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
  return [...new Set(identifiers.filter((id) => !KEYWORDS.has(id.toLowerCase())))];
}

interface Expression {
  where: string;
  expr: string;
}

/** Every PromQL expression of every dashboard: panel targets and query variables. */
function dashboardExpressions(): Expression[] {
  const found: Expression[] = [];
  for (const file of readdirSync(DASHBOARDS).filter((f) => f.endsWith('.json'))) {
    const dashboard = JSON.parse(readFileSync(join(DASHBOARDS, file), 'utf8')) as {
      panels?: Array<{ title?: string; targets?: Array<{ expr?: string }>; panels?: unknown[] }>;
      templating?: { list?: Array<{ name: string; query?: string | { query?: string } }> };
    };
    for (const panel of dashboard.panels ?? []) {
      for (const target of panel.targets ?? []) if (target.expr) found.push({ where: `${file}: ${panel.title}`, expr: target.expr });
    }
    for (const variable of dashboard.templating?.list ?? []) {
      const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
      if (query) found.push({ where: `${file}: variable $${variable.name}`, expr: query });
    }
  }
  return found;
}

const rules = (parse(readFileSync(join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string; record?: string; expr: string }> }> }).groups.flatMap((g) => g.rules);

/** The names an expression uses that nothing exports (recording rules of alerts.yml count as exported). */
function unknownNames(expr: string, exported: ReadonlySet<string>): string[] {
  return metricNamesOf(expr).filter((name) => !exported.has(name));
}

describe('dashboards and alert rules name only exported metrics', async () => {
  const exported = new Set([...exportedMetrics(), ...(await defaultMetrics()), ...rules.flatMap((r) => (r.record ? [r.record] : []))]);

  it('reads the metric names out of the source', () => {
    for (const name of ['sluice_records_in_total', 'sluice_batch_duration_seconds_bucket', 'sluice_monitor_value', 'sluice_sink_lag_records', 'sluice_model_load_failures_total', 'sluice_circuit_open', 'process_resident_memory_bytes']) {
      assert.ok(exported.has(name), `${name} should be among the exported metrics`);
    }
    assert.ok(!exported.has('sluice_records_in_total_bucket'), 'only histograms have buckets');
  });

  it('takes metric names, and nothing else, out of PromQL', () => {
    assert.deepEqual(metricNamesOf('histogram_quantile(0.95, sum by (le, stage) (rate(sluice_batch_duration_seconds_bucket{pipeline="$pipeline",stage=~"a|b"}[$__rate_interval])))'), ['sluice_batch_duration_seconds_bucket']);
    assert.deepEqual(metricNamesOf('time() - sluice_last_progress_timestamp_seconds{stage="score"} > 300 and on (pipeline) sum by (pipeline) (rate(sluice_records_in_total[5m])) > 0'), ['sluice_last_progress_timestamp_seconds', 'sluice_records_in_total']);
    assert.deepEqual(metricNamesOf('label_values(sluice_pipeline_info, pipeline)'), ['sluice_pipeline_info', 'pipeline']);
  });

  it('flags a metric nobody exports', () => {
    assert.deepEqual(unknownNames('sum(rate(sluice_records_in_totl{pipeline="$pipeline"}[5m]))', exported), ['sluice_records_in_totl']);
    assert.deepEqual(unknownNames('sluice_sink_lag_records_bucket', exported), ['sluice_sink_lag_records_bucket']);
  });

  it('every dashboard query names exported metrics only', () => {
    const expressions = dashboardExpressions();
    assert.ok(expressions.length >= 30, `only ${expressions.length} dashboard queries found`);
    const labels = new Set(['pipeline', 'stage', 'check', 'subject', 'le', 'topic', 'reason', 'version', 'alias', 'mode', 'partition', 'code', 'cause', 'kind', 'status', 'table']);
    const problems = expressions.flatMap(({ where, expr }) => unknownNames(expr, exported).filter((n) => !(where.includes('variable') && labels.has(n))).map((n) => `${where}: ${n} in ${expr}`));
    assert.deepEqual(problems, [], 'dashboards name metrics nobody exports');
  });

  it('every alert rule names exported metrics only', () => {
    const problems = rules.flatMap((r) => unknownNames(r.expr, exported).map((n) => `${r.alert ?? r.record}: ${n}`));
    assert.deepEqual(problems, [], 'alert rules name metrics nobody exports');
  });

  it('the three dashboards are provisioned: pipeline overview, drift, model', () => {
    const files = readdirSync(DASHBOARDS).filter((f) => f.endsWith('.json')).sort();
    assert.deepEqual(files, ['drift.json', 'model.json', 'pipeline-overview.json']);
    const uids = files.map((f) => (JSON.parse(readFileSync(join(DASHBOARDS, f), 'utf8')) as { uid: string }).uid);
    assert.equal(new Set(uids).size, uids.length, 'dashboard uids are unique');
    const drift = readFileSync(join(DASHBOARDS, 'drift.json'), 'utf8');
    assert.match(drift, /sluice_monitor_value\{pipeline=\\"\$pipeline\\",check=\\"feature_drift\\"\}/, 'the drift dashboard charts sluice_monitor_value per check and subject');
    const provider = parse(readFileSync(join(DASHBOARDS, 'sluice.yml'), 'utf8')) as { providers: Array<{ type: string; options: { path: string } }> };
    assert.equal(provider.providers[0]!.type, 'file');
    assert.equal(provider.providers[0]!.options.path, '/etc/grafana/provisioning/dashboards');
  });
});
