/**
 * `sluice monitor --once` against the real ClickHouse of the local stack: two
 * closed one-minute windows of a fresh signup-risk instance, one of traffic
 * from the project's generator (the population the champion was trained and
 * carded on), one where every signup that reports `signups_from_ip_24h`
 * reports far more of them. The monitor must flag the shifted window's
 * feature and leave the stationary one alone, and write what it measured to
 * sluice.monitor_windows, where an analyst reads it.
 *
 * The rows are what the sink would write for those events: features by the
 * pipeline's own adapter, scores by the champion ONNX model, decisions by the
 * pipeline's policy. The reference window's rows are inserted twice, as an
 * at-least-once sink may, and must be counted once.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../../connectors/clickhouse/retention.ts';
import { type DecisionRow, type ModelOutputRow, TABLES } from '../../connectors/clickhouse/schema.ts';
import { insertTableRows } from '../../connectors/clickhouse/writer.ts';
import { MODELS_ROOT } from '../../connectors/models/store.ts';
import { loadModel, type ScoringModel } from '../../connectors/onnx/model.ts';
import type { Alert } from '../../monitor/alerts.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import { connections, sluiceSync, uniqueName, waitFor } from '../helpers.ts';

const WINDOW_MS = 60_000;
const EVENTS_PER_WINDOW = 1000;
const name = uniqueName('signup-risk-mon');
const pipeline = pipelineByName(name);
const plugin = pipeline.plugin;
const client = createClickHouse({ url: connections.clickhouseUrl });
let model: ScoringModel;

/** The rows the sink would write for `count` generated events from `startMs`, with `shift` applied to each raw payload first. */
async function windowRows(startMs: number, seed: number, shift: (payload: Record<string, unknown>) => void): Promise<{ outputs: ModelOutputRow[]; decisions: DecisionRow[] }> {
  const policy = plugin.policy.load(plugin.policy.configSchema.parse({}));
  const events = [...plugin.generator.events({ seed, count: EVENTS_PER_WINDOW, startMs, spacingMs: WINDOW_MS / EVENTS_PER_WINDOW, idPrefix: name })];
  const parsed = events.map((event) => {
    const envelope = JSON.parse(event.value.toString('utf8')) as { payload: Record<string, unknown> };
    shift(envelope.payload);
    const result = plugin.payload(event.eventType, envelope.payload);
    assert.ok(result.ok, `generated event ${event.eventId} is valid`);
    const features = Array.from(plugin.model.features(event.eventType, result.value));
    return { event, payload: result.value, features, monitored: plugin.model.monitored(event.eventType, result.value, features) };
  });
  const probabilities = await model.predict(parsed.map((p) => p.features));
  const classes = model.classes.length;
  const outputs: ModelOutputRow[] = [];
  const decisions: DecisionRow[] = [];
  parsed.forEach(({ event, payload, monitored }, i) => {
    const score = probabilities[i * classes + 1]!;
    const verdict = policy.decide({ eventType: event.eventType, payload, score, label: null, classScores: {} }, { killSwitchOn: false });
    const common = { pipeline: name, event_id: event.eventId, occurred_at_ms: event.occurredAtMs, kafka_partition: 0, kafka_offset: seed * 10_000 + i };
    outputs.push({ ...common, model_version: model.version, score, label: '', class_names: [], class_scores: [], feature_names: [...plugin.model.monitoredNames], feature_values: monitored, scored_at_ms: event.occurredAtMs + 5 });
    decisions.push({ ...common, decision: verdict.decision, decided_by: verdict.decidedBy, reasons: verdict.reasons, score, model_version: model.version, policy_version: policy.version, decision_version: 1, decided_at_ms: event.occurredAtMs + 9, extra_names: [], extra_values: [] });
  });
  return { outputs, decisions };
}

/** The `check:subject` of each breach in the window starting at `startMs`. */
const breachesIn = (printed: ReadonlyArray<{ window_start: string; check: string; subject: string; status: string }>, startMs: number) =>
  printed.filter((r) => r.window_start === new Date(startMs).toISOString() && r.status === 'breach').map((r) => `${r.check}:${r.subject}`);

interface MonitorRow {
  window_start_ms: string;
  check: string;
  subject: string;
  value: number;
  threshold: number;
  status: string;
  sample_size: string;
  model_version: string;
}

describe('sluice monitor on ClickHouse', { timeout: 180_000 }, () => {
  // Two whole windows well in the past: minute-aligned, the stationary one first.
  const stationaryStart = Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS - 10 * WINDOW_MS;
  const shiftedStart = stationaryStart + WINDOW_MS;

  before(async () => {
    await migrate(client, { url: connections.clickhouseUrl });
    const version = (await readFile(join(MODELS_ROOT, plugin.kind, 'ACTIVE'), 'utf8')).trim();
    model = await loadModel(join(MODELS_ROOT, plugin.kind, version), { featureNames: plugin.model.featureNames, classes: plugin.model.output.classes, monitoredNames: plugin.model.monitoredNames });
    const stationary = await windowRows(stationaryStart, 11, () => {});
    // The shift: every signup that reports signups_from_ip_24h reports 40 to 80 of them (the reference's top bin is > 4, its median 0).
    const shifted = await windowRows(shiftedStart, 12, (payload) => {
      if (typeof payload.signups_from_ip_24h === 'number') payload.signups_from_ip_24h = 40 + (payload.signups_from_ip_24h % 41);
    });
    const rows = (w: { outputs: ModelOutputRow[]; decisions: DecisionRow[] }) => ({ stageEvents: [], modelOutputs: w.outputs, decisions: w.decisions, deadLetters: [] });
    await insertTableRows(client, rows(stationary));
    await insertTableRows(client, rows(stationary)); // the at-least-once sink's duplicates
    await insertTableRows(client, rows(shifted));
  });

  after(async () => {
    await deletePipelineRows(client, name).catch(() => {});
    for (const table of [TABLES.monitorWindows, TABLES.alerts]) await client.command({ query: `ALTER TABLE ${table} DELETE WHERE pipeline = ${quote(name)}` }).catch(() => {});
    await model?.close();
    await client.close();
  });

  it('flags the shifted feature in the shifted window, nothing in the stationary one, and records every value', async (t) => {
    const at = new Date(shiftedStart + WINDOW_MS + 5_000).toISOString();
    const run = sluiceSync(['monitor', '--pipeline', name, '--window', '60s', '--grace', '5s', '--once', '--windows', '2', '--at', at, '--json']);
    assert.equal(run.status, 0, run.stderr);
    const lines = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const printed = lines.filter((l) => 'check' in l) as unknown as Array<{ window_start: string; check: string; subject: string; value: number; status: string; sampleSize: number; detail: string }>;
    const alerts = lines.flatMap((l) => ('alert' in l ? [l.alert as Alert] : []));
    assert.deepEqual(
      alerts.map((a) => [a.kind, a.subject, a.status, a.window_start]).sort(),
      breachesIn(printed, shiftedStart).map((b) => [...b.split(':'), 'firing', shiftedStart]).sort(),
      'one firing alert per breach of the shifted window, none for the stationary one',
    );
    const breachesOf = (startMs: number) => breachesIn(printed, startMs);

    const largest = (startMs: number, check: string) =>
      printed.filter((r) => r.window_start === new Date(startMs).toISOString() && r.check === check).sort((a, b) => b.value - a.value)[0];
    t.diagnostic(`shifted window breaches: ${breachesOf(shiftedStart).join(', ')}`);
    t.diagnostic(`stationary window: largest feature PSI ${JSON.stringify(largest(stationaryStart, 'feature_drift'))}, score PSI ${largest(stationaryStart, 'score_drift')?.value}`);
    assert.deepEqual(breachesOf(stationaryStart), [], 'the stationary window raises nothing');
    assert.ok(breachesOf(shiftedStart).includes('feature_drift:signups_from_ip_24h_log1p'), `shifted window breaches: ${breachesOf(shiftedStart).join(', ')}`);
    for (const other of ['ip_country_mismatch', 'plan_free', 'channel_web', 'email_domain_age_days_log1p']) {
      assert.ok(!breachesOf(shiftedStart).includes(`feature_drift:${other}`), `${other} did not move`);
    }
    const stationaryDrift = printed.find((r) => r.window_start === new Date(stationaryStart).toISOString() && r.subject === 'signups_from_ip_24h_log1p' && r.check === 'feature_drift')!;
    assert.equal(stationaryDrift.sampleSize, EVENTS_PER_WINDOW, 'rows inserted twice count once');
    assert.match(stationaryDrift.detail, /ks_p=/);

    const stored = await waitFor('the monitor rows of both windows', async () => {
      const found = await queryRows<MonitorRow>(
        client,
        `SELECT window_start_ms, check, subject, value, threshold, status, sample_size, model_version
         FROM ${TABLES.monitorWindows} FINAL WHERE pipeline = ${quote(name)} AND window_ms = ${WINDOW_MS} ORDER BY window_start_ms, check, subject`,
      );
      return found.length === printed.length ? found : undefined;
    });
    const drift = (startMs: number) => stored.find((r) => Number(r.window_start_ms) === startMs && r.check === 'feature_drift' && r.subject === 'signups_from_ip_24h_log1p')!;
    assert.equal(drift(shiftedStart).status, 'breach');
    assert.ok(drift(shiftedStart).value >= 0.2 && drift(shiftedStart).threshold === 0.2, JSON.stringify(drift(shiftedStart)));
    assert.equal(drift(stationaryStart).status, 'ok');
    assert.ok(drift(stationaryStart).value < 0.05, JSON.stringify(drift(stationaryStart)));
    assert.equal(Number(drift(stationaryStart).sample_size), EVENTS_PER_WINDOW);
    assert.equal(drift(shiftedStart).model_version, model.version);
    assert.deepEqual(
      stored.filter((r) => r.status === 'breach' && Number(r.window_start_ms) === stationaryStart),
      [],
    );
  });

  it('judges a window with no traffic as insufficient, not as drift', () => {
    const at = new Date(stationaryStart - WINDOW_MS + 1_000).toISOString();
    const run = sluiceSync(['monitor', '--pipeline', name, '--window', '60s', '--grace', '0s', '--once', '--at', at, '--json']);
    assert.equal(run.status, 0, run.stderr);
    const printed = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { status: string; window_start: string });
    assert.ok(printed.length > 0);
    assert.ok(printed.every((r) => r.status === 'insufficient' && r.window_start === new Date(stationaryStart - 2 * WINDOW_MS).toISOString()), JSON.stringify(printed[0]));
  });
});
