/**
 * The monitor of one pipeline instance: evaluates closed windows against the
 * champion model's card and writes every check's value to
 * `sluice.monitor_windows`. `evaluateWindows` judges given windows (the CLI's
 * --once, backfills, tests); `runMonitor` follows the clock, one window
 * after another, each once it is closed.
 */
import type { ClickHouseClient } from '../connectors/clickhouse/client.ts';
import type { MonitorWindowRow } from '../connectors/clickhouse/schema.ts';
import type { ModelStore } from '../connectors/models/store.ts';
import { CARD_FILE, type ModelCard, parseCard } from '../connectors/onnx/card.ts';
import { errorMessage, isSluiceError, SluiceError } from '../lib/errors.ts';
import type { Logger } from '../lib/log.ts';
import type { PipelineInstance } from '../lib/pipeline.ts';
import { topicName } from '../lib/contracts.ts';
import { type CheckResult, evaluateFlow, evaluateLag, evaluateWindow, LAG_GROWTH_WINDOWS, MONITOR_DEFAULTS } from './checks.ts';
import { type Alert, alertTransitions, listAlerts, statusLookup, windowStatuses, writeAlerts } from './alerts.ts';
import { previousValues, readFlow, readWindowStats, writeMonitorRows } from './queries.ts';
import { latestClosedWindow, type Window } from './windows.ts';

export interface MonitorDeps {
  pipeline: PipelineInstance;
  clickhouse: ClickHouseClient;
  store: ModelStore;
  /** The version the control topic names champion now, or null (then the store's default version). */
  champion: () => string | null;
  logger: Logger;
  now: () => number;
  /** Produces alert states to the `sluice.alerts` topic (keyed by alert id); before they are written to ClickHouse, so a failure in between re-sends rather than loses. */
  publish: (alerts: readonly Alert[]) => Promise<void>;
  /** Each stage's consumer-group lag now (null: the topics do not exist); absent when judging the past (lag is a now-value). */
  lag?: () => Promise<ReadonlyMap<string, number> | null>;
}

export interface WindowEvaluation {
  window: Window;
  modelVersion: string;
  results: CheckResult[];
  /** The alerts this window opened or resolved. */
  alerts: Alert[];
}

/** Reads and caches the card of a model version (versions are immutable, so a card never changes). */
function cardReader(store: ModelStore, pipeline: PipelineInstance) {
  const cards = new Map<string, ModelCard>();
  return async (version: string): Promise<ModelCard> => {
    const cached = cards.get(version);
    if (cached) return cached;
    const kind = pipeline.plugin.kind;
    const bytes = await store.read(kind, version, CARD_FILE);
    if (bytes === null) throw new SluiceError('MODEL_VERSION_UNKNOWN', `The champion ${version} of ${pipeline.name} has no ${CARD_FILE} in ${store.location}; the monitor needs its reference distributions.`);
    const card = parseCard(bytes.toString('utf8'), `${kind}/${version}/${CARD_FILE}`, pipeline.plugin.model.monitoredNames);
    cards.set(version, card);
    return card;
  };
}

async function championVersion(deps: MonitorDeps): Promise<string> {
  const version = deps.champion() ?? (await deps.store.defaultVersion(deps.pipeline.plugin.kind));
  if (version === null) {
    throw new SluiceError('MODEL_VERSION_UNKNOWN', `No champion for ${deps.pipeline.name}: the control topic names none and ${deps.store.location} has no ACTIVE for ${deps.pipeline.plugin.kind}.`);
  }
  return version;
}

/** Judges each window against the champion's card and writes its rows; returns what it wrote. */
export async function evaluateWindows(deps: MonitorDeps, windows: readonly Window[]): Promise<WindowEvaluation[]> {
  const readCard = cardReader(deps.store, deps.pipeline);
  return evaluateWith(deps, readCard, windows);
}

async function evaluateWith(deps: MonitorDeps, readCard: (version: string) => Promise<ModelCard>, windows: readonly Window[]): Promise<WindowEvaluation[]> {
  const plugin = deps.pipeline.plugin;
  const evaluations: WindowEvaluation[] = [];
  for (const window of windows) {
    const modelVersion = await championVersion(deps);
    const card = await readCard(modelVersion);
    const stats = await readWindowStats(deps.clickhouse, { pipeline: deps.pipeline.name, modelVersion, card, monitoredNames: plugin.model.monitoredNames, window });
    const flow = await readFlow(deps.clickhouse, { pipeline: deps.pipeline.name, window, historyWindows: MONITOR_DEFAULTS.baselineWindows });
    const results = [
      ...evaluateWindow({ card, monitoredNames: plugin.model.monitoredNames, stats, settings: plugin.monitoring }),
      ...evaluateFlow({ topic: topicName(deps.pipeline.name, 'raw'), ...flow }),
    ];
    const lag = deps.lag ? await deps.lag() : null;
    if (lag !== null) {
      const previousLag = await previousValues(deps.clickhouse, { pipeline: deps.pipeline.name, window, check: 'lag_growth', count: LAG_GROWTH_WINDOWS });
      results.push(...evaluateLag(lag, previousLag));
    }
    const evaluatedAt = deps.now();
    const rows: MonitorWindowRow[] = results.map((r) => ({
      pipeline: deps.pipeline.name,
      window_start_ms: window.startMs,
      window_ms: window.lengthMs,
      check: r.check,
      subject: r.subject,
      value: r.value,
      threshold: r.threshold,
      status: r.status,
      sample_size: r.sampleSize,
      detail: r.detail,
      model_version: modelVersion,
      evaluated_at_ms: evaluatedAt,
    }));
    await writeMonitorRows(deps.clickhouse, rows);

    const [open, previous] = await Promise.all([
      listAlerts(deps.clickhouse, deps.pipeline.name, 'firing'),
      windowStatuses(deps.clickhouse, deps.pipeline.name, { startMs: window.startMs - window.lengthMs, lengthMs: window.lengthMs }),
    ]);
    const alerts = alertTransitions({ pipeline: deps.pipeline.name, owners: deps.pipeline.owners, window, results, open, previousStatus: statusLookup(previous) });
    await deps.publish(alerts);
    await writeAlerts(deps.clickhouse, alerts);
    for (const alert of alerts) deps.logger.warn({ alert_id: alert.alert_id, kind: alert.kind, subject: alert.subject, value: alert.value, threshold: alert.threshold }, `alert ${alert.status}`);

    const breaches = results.filter((r) => r.status === 'breach');
    deps.logger.info(
      { window_start: new Date(window.startMs).toISOString(), window_ms: window.lengthMs, model_version: modelVersion, events: stats.events, breaches: breaches.map((b) => `${b.check}:${b.subject}`) },
      breaches.length > 0 ? 'window breached' : 'window evaluated',
    );
    evaluations.push({ window, modelVersion, results, alerts });
  }
  return evaluations;
}

/**
 * Follows the clock until `signal` aborts: each window is judged once it has
 * been closed for the grace period, starting with the newest closed one. A
 * failed evaluation (ClickHouse down) is logged and retried on the next wake,
 * window by window, so none is skipped.
 */
export async function runMonitor(
  deps: MonitorDeps & { windowMs: number; graceMs: number; signal: AbortSignal; onEvaluated?: (e: WindowEvaluation, seconds: number) => void; onFailed?: (error: unknown) => void },
): Promise<void> {
  const readCard = cardReader(deps.store, deps.pipeline);
  let next: Window | null = null;
  while (!deps.signal.aborted) {
    next ??= latestClosedWindow(deps.now(), deps.windowMs, deps.graceMs);
    const due = next === null ? deps.now() + deps.windowMs : next.startMs + next.lengthMs + deps.graceMs;
    if (next !== null && due <= deps.now()) {
      const started = performance.now();
      try {
        for (const evaluation of await evaluateWith(deps, readCard, [next])) deps.onEvaluated?.(evaluation, (performance.now() - started) / 1000);
        next = { startMs: next.startMs + next.lengthMs, lengthMs: next.lengthMs };
      } catch (error) {
        deps.onFailed?.(error);
        deps.logger.warn({ err: error, retriable: isSluiceError(error) && error.retriable }, `could not evaluate a window; retrying: ${errorMessage(error)}`);
        await sleep(Math.min(deps.windowMs, 5_000), deps.signal);
      }
      continue;
    }
    await sleep(due - deps.now(), deps.signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
