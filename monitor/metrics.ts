/**
 * The monitor's Prometheus metrics: every check value of the newest judged
 * window as a gauge, beside its threshold and verdict, so dashboards and
 * Prometheus rules see what `sluice.monitor_windows` holds. Subjects are
 * feature names, reason codes, stage names and topic names from the pipeline's
 * own definition, never a value a producer chose.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { WindowEvaluation } from './monitor.ts';

const STATUS_VALUE = { ok: 0, breach: 1, insufficient: -1 } as const;

export function createMonitorMetrics(labels: { pipeline: string; team: string }) {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  collectDefaultMetrics({ register: registry });
  const metrics = {
    registry,
    value: new Gauge({ name: 'sluice_monitor_value', help: 'A check\'s value in the newest judged window (PSI, rate, ratio…)', labelNames: ['check', 'subject'], registers: [registry] }),
    threshold: new Gauge({ name: 'sluice_monitor_threshold', help: 'The threshold the check\'s value was judged against', labelNames: ['check', 'subject'], registers: [registry] }),
    status: new Gauge({ name: 'sluice_monitor_status', help: 'The check\'s verdict in the newest judged window: 1 breach, 0 ok, -1 too few events', labelNames: ['check', 'subject'], registers: [registry] }),
    alerts: new Counter({ name: 'sluice_monitor_alerts_total', help: 'Alert states the monitor published, by kind and status (firing, resolved)', labelNames: ['kind', 'status'], registers: [registry] }),
    windowEnd: new Gauge({ name: 'sluice_monitor_window_end_timestamp_seconds', help: 'The end of the newest judged window', registers: [registry] }),
    evaluation: new Histogram({ name: 'sluice_monitor_evaluation_duration_seconds', help: 'How long judging one window took (queries, statistics, writes)', buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] }),
    failures: new Counter({ name: 'sluice_monitor_evaluation_failures_total', help: 'Window evaluations that failed and will be retried', registers: [registry] }),
    /** Records one judged window. */
    observe(evaluation: WindowEvaluation, seconds: number): void {
      for (const r of evaluation.results) {
        const l = { check: r.check, subject: r.subject };
        metrics.value.set(l, r.value);
        metrics.threshold.set(l, r.threshold);
        metrics.status.set(l, STATUS_VALUE[r.status]);
      }
      for (const a of evaluation.alerts) metrics.alerts.inc({ kind: a.kind, status: a.status });
      metrics.windowEnd.set((evaluation.window.startMs + evaluation.window.lengthMs) / 1000);
      metrics.evaluation.observe(seconds);
    },
  };
  return metrics;
}
