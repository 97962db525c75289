/**
 * Hot swap, rollback, a tampered version and shadow scoring on the real stack:
 * a pipeline instance of the test's own (validate, score and decide as
 * processes) serving from a model store in a scratch directory, while events
 * keep flowing. The score stage is never restarted.
 *
 * Every scored record is checked against the model it names: the champion's
 * score, computed here with the same model, or 1 - that score for the drill
 * version, so a record scored by a half-loaded or wrong model cannot pass.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnSink, spawnStage, type StageProcess } from '../../cli/processes.ts';
import { runDocumentedQuery } from '../../connectors/clickhouse/analytics.ts';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { loadModel, MODELS_ROOT, type ScoringModel } from '../../connectors/onnx/model.ts';
import { SchemaCatalog } from '../../connectors/registry/registry.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { featuresOf } from '../../pipelines/signup-risk/features.ts';
import { envelopeBytes, generateSignups } from '../../pipelines/signup-risk/generator.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import type { DecisionRecord, SignupPayload } from '../../pipelines/signup-risk/types.ts';
import { aliasSetting, readControl, writeControl } from '../../processors/runtime/control.ts';
import { createLogger } from '../../lib/log.ts';
import type { ScoredRecord } from '../../processors/runtime/types.ts';
import { connections, sluiceSync, uniqueName, waitFor } from '../helpers.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';

const KIND = 'signup-risk';
const DRILL = 'signup-risk-drill-inverted';
const TAMPERED = 'signup-risk-tampered';
const quiet = createLogger({ component: 'test' }, 'error');

/** Events per model version in decision-mix rows. */
function countByEvents(rows: Array<Record<string, unknown>>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const row of rows) counts[String(row.model_version)] = (counts[String(row.model_version)] ?? 0) + Number(row.events);
  return counts;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** One sample of a Prometheus text exposition: the value of the series whose labels include `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('model lifecycle on a running pipeline', () => {
  let scratch: string;
  let champion: string;
  let instance: PipelineInstance;
  let scored: Collector<ScoredRecord<SignupPayload>>;
  let decided: Collector<DecisionRecord>;
  let reference: ScoringModel;
  let metricsUrl: string;
  let env: Record<string, string>;
  let sink: StageProcess;
  let next = 0;
  const prefix = uniqueName('evt-life');
  const clickhouse = createClickHouse({ url: connections.clickhouseUrl });
  // The hour before the current one: every event falls in one hour of the last day.
  const startMs = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000 + 60_000;

  /** Produces events of one seed, `count` of them, continuing the index where the last call stopped. */
  async function produce(count: number): Promise<string[]> {
    const events = [...generateSignups({ seed: 808, count, startMs, firstIndex: next, idPrefix: prefix })];
    next += count;
    await instance.produce(events.map((e) => ({ key: e.key, value: envelopeBytes(e.envelope) })));
    return events.map((e) => e.envelope.event_id);
  }

  /**
   * Keeps live traffic flowing, one event per produce round trip, until `done`
   * holds: a swap has to be seen on records that arrive while it happens.
   */
  async function trickleUntil<T>(what: string, done: () => Promise<T | undefined | false> | T | undefined | false): Promise<T> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const result = await done();
      if (result !== undefined && result !== false) return result;
      if (Date.now() > deadline) throw new Error(`Timed out after 30 s waiting for ${what}`);
      await produce(1);
    }
  }

  const scoredOf = (ids: string[]) => {
    const wanted = new Set(ids);
    return scored.until(`${ids.length} records scored`, (messages) => messages.filter((m) => wanted.has(m.value.event_id)).length >= ids.length).then((messages) =>
      messages.filter((m) => wanted.has(m.value.event_id)).map((m) => m.value),
    );
  };
  const metrics = async () => (await fetch(metricsUrl)).text();

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'sluice-model-life-'));
    champion = (await readFile(join(MODELS_ROOT, KIND, 'ACTIVE'), 'utf8')).trim();
    for (const version of [champion, DRILL]) await cp(join(MODELS_ROOT, KIND, version), join(scratch, KIND, version), { recursive: true });
    await writeFile(join(scratch, KIND, 'ACTIVE'), `${champion}\n`);
    // A version altered in the store after it was registered and promoted: its file no longer matches its card.
    await cp(join(MODELS_ROOT, KIND, DRILL), join(scratch, KIND, TAMPERED), { recursive: true });
    const card = JSON.parse(await readFile(join(scratch, KIND, TAMPERED, 'card.json'), 'utf8'));
    await writeFile(join(scratch, KIND, TAMPERED, 'card.json'), JSON.stringify({ ...card, version: TAMPERED, drill: false }));
    const bytes = await readFile(join(scratch, KIND, TAMPERED, 'model.onnx'));
    bytes[200] = bytes[200]! ^ 0x01;
    await writeFile(join(scratch, KIND, TAMPERED, 'model.onnx'), bytes);

    env = { SLUICE_MODELS_DIR: scratch, SLUICE_ACTOR: 'it-lifecycle' };
    reference = await loadModel(join(MODELS_ROOT, KIND, champion), {
      featureNames: signupRisk.model.featureNames,
      classes: signupRisk.model.output.classes,
      monitoredNames: signupRisk.model.monitoredNames,
    });
    instance = await PipelineInstance.create('it-model-life', env);
    [scored, decided] = await Promise.all([instance.collect<ScoredRecord<SignupPayload>>('scored'), instance.collect<DecisionRecord>('decided')]);
    const port = await freePort();
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
    const score = spawnStage({ pipeline: instance.name, stage: 'score', env: { ...env, SLUICE_METRICS_PORT: String(port) }, logFile: join(stackPaths().logs, 'tests', `${instance.name}.score.log`) });
    instance.stages.set('score', score);
    await migrate(clickhouse, { url: connections.clickhouseUrl });
    sink = spawnSink({ pipeline: instance.name, env: { SLUICE_SINK_MAX_BATCH_WAIT_MS: '200' }, logFile: join(stackPaths().logs, 'tests', `${instance.name}.sink.log`) });
    await Promise.all([instance.startStage('validate').running, instance.startStage('decide').running, score.running, sink.running]);
  });
  after(async () => {
    sink?.kill('SIGKILL');
    await sink?.exited;
    await instance?.stop();
    await clickhouse.close();
    await reference?.close();
    await rm(scratch, { recursive: true, force: true });
  });

  /** The champion's score of a scored record's payload, computed here. */
  const championScore = async (record: ScoredRecord<SignupPayload>) => (await reference.predict([featuresOf(record.payload)]))[1]!;

  /** Asserts each record's score is the one the version it names gives. */
  async function assertScoredByNamedVersion(records: Array<ScoredRecord<SignupPayload>>): Promise<void> {
    for (const record of records) {
      const expected = await championScore(record);
      assert.ok(record.model_version === champion || record.model_version === DRILL, `${record.event_id} names ${record.model_version}`);
      const want = record.model_version === DRILL ? 1 - expected : expected;
      assert.ok(Math.abs(record.score! - want) < 1e-6, `${record.event_id}: score ${record.score}, ${record.model_version} gives ${want}`);
    }
  }

  it('serves the default version while no alias names one', async () => {
    const records = await scoredOf(await produce(20));
    assert.ok(records.every((r) => r.model_version === champion));
    await assertScoredByNamedVersion(records);
    assert.equal(sample(await metrics(), 'sluice_model_info', { alias: 'champion', version: champion }), 1);
  });

  it('switches to a promoted version without a restart; every record names the version that scored it', async (t) => {
    const promotion = sluiceSync(['model', 'promote', DRILL, '--pipeline', instance.name, '--drill', '--reason', 'game day'], env);
    assert.equal(promotion.status, 0, promotion.stderr);
    const first = await trickleUntil('the first record scored by the drill', () => scored.messages.find((m) => m.value.model_version === DRILL));
    // From the moment promote wrote its record (updated_at) to the scoring of the first record by the new version.
    const state = await readControl({ brokers: connections.kafkaBrokers, catalog: new SchemaCatalog(connections.schemaRegistryUrl), clientId: `${instance.name}.test`, logger: quiet });
    const record = state.get(instance.name, aliasSetting('champion'))!;
    assert.deepEqual([record.value, record.reason, record.updated_by, record.history], [DRILL, 'game day', 'it-lifecycle', [champion]], 'who, why and what it replaced');
    t.diagnostic(`swap latency (promote's record written -> first record scored by ${DRILL}): ${Number(first.value.scored_at) - record.updated_at} ms`);
    const after = await scoredOf(await produce(20));
    assert.ok(after.every((r) => r.model_version === DRILL), 'everything produced after the swap is scored by the drill');

    const all = scored.messages.map((m) => m);
    await assertScoredByNamedVersion(all.map((m) => m.value));
    // Per partition, in offset order: champion, then drill, never back (the swap lands between batches, once).
    for (const partition of new Set(all.map((m) => m.partition))) {
      const versions = all.filter((m) => m.partition === partition).sort((a, b) => Number(BigInt(a.offset) - BigInt(b.offset))).map((m) => m.value.model_version);
      const firstDrill = versions.indexOf(DRILL);
      if (firstDrill >= 0) assert.ok(versions.slice(firstDrill).every((v) => v === DRILL), `partition ${partition}: ${versions.join(',')}`);
    }
    const decisions = await decided.until('decisions of the drill-scored events', (messages) => after.every((r) => messages.some((m) => m.value.event_id === r.event_id)));
    assert.ok(after.every((r) => decisions.find((m) => m.value.event_id === r.event_id)!.value.model_version === DRILL), 'the decisions name the drill model');
    assert.equal(sample(await metrics(), 'sluice_model_info', { alias: 'champion', version: DRILL }), 1);
    assert.equal(sample(await metrics(), 'sluice_model_info', { alias: 'champion', version: champion }), undefined);
  });

  it('rolls back to the previous champion, again without a restart', async () => {
    const rollback = sluiceSync(['model', 'rollback', '--pipeline', instance.name, '--reason', 'drill over'], env);
    assert.equal(rollback.status, 0, rollback.stderr);
    assert.equal(rollback.stdout, `champion of ${instance.name}: ${DRILL} -> ${champion} (drill over)\n`);
    const seen = scored.messages.length;
    await trickleUntil('a record scored by the champion again', () => scored.messages.slice(seen).some((m) => m.value.model_version === champion));
    const records = await scoredOf(await produce(20));
    assert.ok(records.every((r) => r.model_version === champion));
    await assertScoredByNamedVersion(records);
  });

  it('never serves a version whose file does not match its card: keeps the champion, logs and counts the refusal', async () => {
    // As if the store had been altered after promotion: the alias record is written directly, past promote's own checks.
    await writeControl({
      brokers: connections.kafkaBrokers,
      catalog: new SchemaCatalog(connections.schemaRegistryUrl),
      setting: { pipeline: instance.name, setting: aliasSetting('champion'), value: TAMPERED, reason: 'tampered', updated_by: 'it-lifecycle', history: [champion] },
    });
    await trickleUntil('the refusal counted', async () => sample(await metrics(), 'sluice_model_load_failures_total', { alias: 'champion', version: TAMPERED, code: 'MODEL_LOAD_FAILED' }));
    const records = await scoredOf(await produce(20));
    assert.ok(records.every((r) => r.model_version === champion), 'still the champion');
    await assertScoredByNamedVersion(records);
    assert.ok(scored.messages.every((m) => m.value.model_version !== TAMPERED), 'no record was ever scored by the tampered version');
    const log = await readFile(join(stackPaths().logs, 'tests', `${instance.name}.score.log`), 'utf8');
    const refusal = log.split('\n').find((line) => line.includes(`refused for champion`) && line.includes(TAMPERED));
    assert.ok(refusal, 'the refusal is logged');
    assert.equal(JSON.parse(refusal).code, 'MODEL_LOAD_FAILED');
    assert.equal(sample(await metrics(), 'sluice_model_info', { alias: 'champion', version: champion }), 1);
  });

  it('scores a challenger in shadow beside the champion, which alone decides', async () => {
    const promotion = sluiceSync(['model', 'promote', DRILL, '--pipeline', instance.name, '--alias', 'challenger', '--drill'], env);
    assert.equal(promotion.status, 0, promotion.stderr);
    await trickleUntil('the challenger served', async () => sample(await metrics(), 'sluice_model_info', { alias: 'challenger', version: DRILL }) === 1);
    // The baseline once the trickle's last events are scored: only the next 20 may move the shadow metrics.
    await scored.until('every event so far scored', (messages) => messages.length >= next);
    const before = await metrics();
    const countBefore = sample(before, 'sluice_shadow_scored_total', { version: DRILL }) ?? 0;
    const sumBefore = sample(before, 'sluice_shadow_score_difference_sum', { version: DRILL }) ?? 0;

    const records = await scoredOf(await produce(20));
    assert.ok(records.every((r) => r.model_version === champion), 'the champion scores every record');
    await assertScoredByNamedVersion(records);
    // The challenger's view travels on the scored record, beside the champion's.
    for (const record of records as Array<ScoredRecord<SignupPayload> & { shadow_model_version: string | null; shadow_score: number | null }>) {
      assert.equal(record.shadow_model_version, DRILL, record.event_id);
      assert.ok(Math.abs(record.shadow_score! - (1 - record.score!)) < 1e-6, `${record.event_id}: shadow ${record.shadow_score}, champion ${record.score}`);
    }
    const decisions = await decided.until('their decisions', (messages) => records.every((r) => messages.some((m) => m.value.event_id === r.event_id)));
    assert.ok(records.every((r) => decisions.find((m) => m.value.event_id === r.event_id)!.value.model_version === champion), 'the champion alone decides');
    // What the policy would have decided on the drill's score is recorded, never acted on.
    for (const record of records) {
      const decision = decisions.find((m) => m.value.event_id === record.event_id)!.value as DecisionRecord & { shadow_decision: string | null; shadow_model_version: string | null };
      assert.equal(decision.shadow_model_version, DRILL);
      const shadowScore = 1 - record.score!;
      // The shipped policy (0.9 block, 0.5 review, enterprise never blocked); a disposable domain is blocked by rule whatever the score.
      const expected = decision.decided_by === 'rule' ? 'block' : shadowScore >= 0.9 ? (record.payload.plan === 'enterprise' ? 'review' : 'block') : shadowScore >= 0.5 ? 'review' : 'approve';
      assert.equal(decision.shadow_decision, expected, `${record.event_id}: shadow score ${shadowScore}`);
    }

    // The drill scores 1 - s where the champion scores s: each shadow difference is |1 - 2s|.
    const after = await metrics();
    assert.equal((sample(after, 'sluice_shadow_scored_total', { version: DRILL }) ?? 0) - countBefore, 20);
    const expected = records.reduce((sum, r) => sum + Math.abs(1 - 2 * r.score!), 0);
    const recorded = (sample(after, 'sluice_shadow_score_difference_sum', { version: DRILL }) ?? 0) - sumBefore;
    assert.ok(Math.abs(recorded - expected) < 1e-4, `shadow differences add up to ${recorded}, expected ${expected}`);
  });

  it('ClickHouse says which version scored and which decided each event', async () => {
    const countBy = (versions: Array<string | null>) => {
      const counts: Record<string, number> = {};
      for (const v of versions) counts[v ?? 'none'] = (counts[v ?? 'none'] ?? 0) + 1;
      return counts;
    };
    const scoredBy = countBy(scored.messages.map((m) => m.value.model_version));
    assert.ok(scoredBy[DRILL]! > 0 && scoredBy[champion]! > 0, JSON.stringify(scoredBy));
    const decidedIds = await decided.until('every scored event decided', (messages) => messages.length >= scored.messages.length);
    const decidedBy = countBy(decidedIds.map((m) => m.value.model_version));
    assert.deepEqual(decidedBy, scoredBy, 'each decision names the version that scored its event');

    // One row per event and version that scored it: the champion's, and the challenger's where one shadowed it.
    type Shadowed = { shadow_model_version?: string | null };
    const shadowed = scored.messages.filter((m) => (m.value as Shadowed).shadow_model_version);
    assert.ok(shadowed.length >= 20 && shadowed.every((m) => (m.value as Shadowed).shadow_model_version === DRILL));
    const rowsBy = { ...scoredBy, [DRILL]: (scoredBy[DRILL] ?? 0) + shadowed.length };
    const outputs = await waitFor('ClickHouse model_outputs to match the scored topic', async () => {
      const rows = await queryRows<{ model_version: string; n: string }>(
        clickhouse,
        `SELECT model_version, count() AS n FROM sluice.model_outputs FINAL WHERE pipeline = ${quote(instance.name)} GROUP BY model_version`,
      );
      const got = Object.fromEntries(rows.map((r) => [r.model_version, Number(r.n)]));
      return JSON.stringify(Object.entries(got).sort()) === JSON.stringify(Object.entries(rowsBy).sort()) ? got : false;
    });
    assert.deepEqual(outputs, rowsBy);
    const shadowRows = await queryRows<{ event_id: string; score: number }>(
      clickhouse,
      `SELECT event_id, score FROM sluice.model_outputs FINAL WHERE pipeline = ${quote(instance.name)} AND model_version = ${quote(DRILL)}`,
    );
    for (const message of shadowed) {
      const row = shadowRows.find((r) => r.event_id === message.value.event_id);
      assert.ok(row && Math.abs(Number(row.score) - (1 - message.value.score!)) < 1e-6, `the challenger's row of ${message.value.event_id}`);
    }
    // The documented comparison: per hour, the events both scored, how often their decisions agree, how far their scores are.
    const shadowDecided = decidedIds.filter((m) => (m.value as Shadowed).shadow_model_version === DRILL);
    const agreeing = shadowDecided.filter((m) => m.value.decision === (m.value as { shadow_decision?: string }).shadow_decision).length;
    const differences = shadowDecided.map((m) => Math.abs(1 - 2 * m.value.score!)).sort((a, b) => a - b);
    const comparison = await waitFor('the shadow comparison to count every shadowed decision', async () => {
      const rows = await runDocumentedQuery(clickhouse, 'shadow-comparison', { pipeline: instance.name, days: 1 });
      return rows.reduce((n, row) => n + Number(row.events), 0) === shadowDecided.length ? rows : false;
    });
    assert.deepEqual(
      comparison.map((row) => [row.champion_version, row.challenger_version]),
      comparison.map(() => [champion, DRILL]),
    );
    assert.equal(comparison.reduce((n, row) => n + Number(row.agreeing), 0), agreeing);
    assert.ok(agreeing < shadowDecided.length, 'the inverted drill disagrees with the champion');
    const maxDifference = Math.max(...comparison.map((row) => Number(row.max_difference)));
    assert.ok(Math.abs(maxDifference - differences.at(-1)!) < 1e-5, `max difference ${maxDifference}, expected ${differences.at(-1)}`);
    const mix = await waitFor('the decision mix to count every decision', async () => {
      const rows = await runDocumentedQuery(clickhouse, 'decision-mix', { pipeline: instance.name, days: 1 });
      return rows.reduce((n, row) => n + Number(row.events), 0) === decidedIds.length ? rows : false;
    });
    assert.deepEqual(countByEvents(mix), decidedBy, 'decision-mix shows the decisions per model version');
  });
});
