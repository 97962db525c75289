/**
 * `sluice monitor`: judges a pipeline's closed windows from ClickHouse against
 * its champion model's card (docs/monitoring.md) and writes every check's
 * value to `sluice.monitor_windows`. Long-running by default; `--once` judges
 * the newest closed window(s) and exits, for cron and tests.
 */
import type { Command } from 'commander';
import { createClickHouse } from '../connectors/clickhouse/client.ts';
import { assertSchemaCurrent } from '../connectors/clickhouse/migrate.ts';
import { ensureTopics, openProducer } from '../connectors/kafka/admin.ts';
import { modelStoreFromEnv } from '../connectors/models/config.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { SluiceError } from '../lib/errors.ts';
import { createCommandLogger, createLogger } from '../lib/log.ts';
import { startMetricsServer } from '../lib/metrics.ts';
import { connectionsFromEnv } from '../lib/settings.ts';
import { ALERTS_TOPIC, type AlertStatus, listAlerts } from '../monitor/alerts.ts';
import { measureLag } from '../monitor/lag.ts';
import { createMonitorMetrics } from '../monitor/metrics.ts';
import { type WindowEvaluation, evaluateWindows, runMonitor } from '../monitor/monitor.ts';
import { closedWindows, parseDuration } from '../monitor/windows.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { clickhouseCredentialsFromEnv } from '../processors/sink/config.ts';
import { followControl } from '../processors/runtime/control.ts';

interface MonitorOptions {
  pipeline: string;
  window: string;
  grace: string;
  once?: boolean;
  windows: string;
  at?: string;
  json?: boolean;
  metricsPort: string;
}

function instant(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms)) throw new SluiceError('CONFIG_INVALID', `--at must be an RFC 3339 time or epoch milliseconds, got "${text}".`);
  return ms;
}

function print(evaluation: WindowEvaluation, json: boolean): void {
  const start = new Date(evaluation.window.startMs).toISOString();
  for (const r of evaluation.results) {
    if (json) {
      process.stdout.write(`${JSON.stringify({ window_start: start, window_ms: evaluation.window.lengthMs, model_version: evaluation.modelVersion, ...r })}\n`);
    } else {
      process.stdout.write(`${start}  ${r.check.padEnd(18)}${r.subject.padEnd(30)}${String(r.value).padStart(10)}  ${String(r.threshold).padStart(8)}  ${r.status.padEnd(13)}n=${r.sampleSize}\n`);
    }
  }
  for (const a of evaluation.alerts) {
    if (json) process.stdout.write(`${JSON.stringify({ alert: a })}\n`);
    else process.stderr.write(`alert ${a.status}: ${a.kind} ${a.subject} (${a.value} vs ${a.threshold}) ${a.alert_id}; ${a.owners.team}/${a.owners.oncall}; ${a.runbook}\n`);
  }
}

const ALERT_STATUSES = ['firing', 'resolved', 'all'] as const;

export function registerMonitorCommand(program: Command): void {
  program
    .command('monitor')
    .description('judge each closed window of a pipeline against its champion model card (drift, data quality, output collapse); values go to sluice.monitor_windows')
    .requiredOption('--pipeline <name>', 'the pipeline (instance) to watch')
    .option('--window <duration>', 'window length; windows start at multiples of it', '60s')
    .option('--grace <duration>', 'how long after its end a window is judged: must cover the sink\'s lag', '30s')
    .option('--once', 'judge the newest closed window(s), print the results and exit')
    .option('--windows <n>', 'with --once: how many of the newest closed windows', '1')
    .option('--at <time>', 'with --once: judge as if the clock read this (RFC 3339 or epoch ms), to backfill or re-judge')
    .option('--json', 'print one JSON object per check and window')
    .option('--metrics-port <port>', 'serve /metrics, /livez and /readyz on this port while running (0: off)', process.env.SLUICE_METRICS_PORT ?? '9468')
    .action(async (options: MonitorOptions) => {
      const pipeline = pipelineByName(options.pipeline);
      const windowMs = parseDuration(options.window, '--window');
      const graceMs = parseDuration(options.grace, '--grace', { allowZero: true });
      const count = Number(options.windows);
      if (!Number.isSafeInteger(count) || count < 1 || count > 10_000) throw new SluiceError('CONFIG_INVALID', `--windows must be a whole number from 1 to 10000, got "${options.windows}".`);
      if (options.at !== undefined && !options.once) throw new SluiceError('CONFIG_INVALID', '--at applies to --once only.');
      const metricsPort = Number(options.metricsPort);
      if (!Number.isSafeInteger(metricsPort) || metricsPort < 0 || metricsPort > 65_535) throw new SluiceError('CONFIG_INVALID', `--metrics-port must be a port number (0: off), got "${options.metricsPort}".`);
      const now = options.at === undefined ? () => Date.now() : (() => {
        const at = instant(options.at!);
        return () => at;
      })();

      const connections = connectionsFromEnv();
      const { user, password } = clickhouseCredentialsFromEnv();
      const clickhouse = createClickHouse({ url: connections.clickhouseUrl, username: user, password });
      // --once prints its results on stdout (--json for scripts): its log goes to stderr.
      const logger = options.once ? createCommandLogger({ component: 'monitor', pipeline: pipeline.name }, 'warn') : createLogger({ component: 'monitor', pipeline: pipeline.name });
      await ensureTopics(connections.kafkaBrokers, [{ topic: ALERTS_TOPIC, partitions: 1, replicationFactor: 1, config: {} }]);
      const producer = await openProducer(connections.kafkaBrokers, `${pipeline.name}.monitor`);
      const { state, follower } = await followControl({
        brokers: connections.kafkaBrokers,
        catalog: new SchemaCatalog(connections.schemaRegistryUrl),
        clientId: `${pipeline.name}.monitor`,
        logger,
      });
      try {
        await assertSchemaCurrent(clickhouse);
        const deps = {
          pipeline,
          clickhouse,
          store: modelStoreFromEnv(),
          champion: () => state.modelAlias(pipeline.name, 'champion'),
          logger,
          now,
          publish: (alerts: readonly { alert_id: string }[]) =>
            producer.send(ALERTS_TOPIC, alerts.map((a) => ({ key: a.alert_id, value: Buffer.from(JSON.stringify(a), 'utf8') }))),
          // Lag is a now-value: measured when judging the present, not when judging as of --at.
          lag: options.at === undefined ? () => measureLag(connections.kafkaBrokers, pipeline.name, state) : undefined,
        };
        if (options.once) {
          const windows = closedWindows(now(), windowMs, graceMs, count);
          for (const evaluation of await evaluateWindows(deps, windows)) print(evaluation, options.json === true);
          return;
        }
        const stop = new AbortController();
        for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => stop.abort());
        const metrics = createMonitorMetrics({ pipeline: pipeline.name, team: pipeline.owners.team });
        let lastFailed = false;
        const server =
          metricsPort === 0
            ? null
            : await startMetricsServer(metricsPort, metrics.registry, {
                ready: () => (lastFailed ? { ready: false, detail: 'the last window evaluation failed; retrying' } : { ready: true, detail: 'ok' }),
              });
        logger.info({ window_ms: windowMs, grace_ms: graceMs, metrics_port: metricsPort }, 'monitor started');
        try {
          await runMonitor({
            ...deps,
            windowMs,
            graceMs,
            signal: stop.signal,
            onEvaluated: (e, seconds) => {
              lastFailed = false;
              metrics.observe(e, seconds);
              // Running, the log says what each window found; --json streams every value too.
              if (options.json) print(e, true);
              else for (const a of e.alerts) print({ ...e, results: [], alerts: [a] }, false);
            },
            onFailed: () => {
              lastFailed = true;
              metrics.failures.inc();
            },
          });
        } finally {
          server?.close();
        }
      } finally {
        await follower.stop();
        await producer.close().catch(() => {});
        await clickhouse.close();
      }
    });

  program
    .command('alerts')
    .description('the monitor\'s alerts (sluice.alerts)')
    .command('list')
    .description('list a pipeline\'s alerts in their latest state, newest first')
    .requiredOption('--pipeline <name>', 'the pipeline (instance)')
    .option('--status <status>', `${ALERT_STATUSES.join(' | ')}`, 'all')
    .option('--json', 'print one JSON array of the alerts')
    .action(async (options: { pipeline: string; status: string; json?: boolean }) => {
      if (!(ALERT_STATUSES as readonly string[]).includes(options.status)) {
        throw new SluiceError('CONFIG_INVALID', `--status must be one of ${ALERT_STATUSES.join(', ')}, got "${options.status}".`);
      }
      const pipeline = pipelineByName(options.pipeline);
      const connections = connectionsFromEnv();
      const { user, password } = clickhouseCredentialsFromEnv();
      const clickhouse = createClickHouse({ url: connections.clickhouseUrl, username: user, password });
      try {
        const alerts = await listAlerts(clickhouse, pipeline.name, options.status as AlertStatus | 'all');
        if (options.json) return void process.stdout.write(`${JSON.stringify(alerts, null, 2)}\n`);
        for (const a of alerts) {
          const when = `${new Date(a.started_at).toISOString()}${a.resolved_at === null ? '' : ` → ${new Date(a.resolved_at).toISOString()}`}`;
          process.stdout.write(`${a.status.padEnd(9)}${a.severity.padEnd(9)}${a.kind.padEnd(18)}${a.subject.padEnd(30)}${when}  ${a.owners.team}/${a.owners.oncall}  ${a.runbook}\n`);
        }
        if (alerts.length === 0) process.stderr.write(`no ${options.status === 'all' ? '' : `${options.status} `}alerts for ${pipeline.name}\n`);
      } finally {
        await clickhouse.close();
      }
    });
}
