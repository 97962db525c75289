/**
 * The game-day drill end to end, on the real stack: a pipeline instance
 * decides under its champion, the drill model (1 − the champion's score) is
 * promoted and decides a window of events, it is rolled back, and `sluice
 * replay` re-decides the window, once even when SIGKILLed halfway.
 *
 * The truth to compare with is a second instance fed the very same events
 * that never left the champion (co-located mode, to spare the machine two
 * processes): after the replay, the decision that stands for every event of
 * the window must be the one that instance made.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnSink, type StageProcess } from '../../cli/processes.ts';
import { runDocumentedQuery } from '../../connectors/clickhouse/analytics.ts';
import { createClickHouse, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { committedOffsets, openProducer } from '../../connectors/kafka/admin.ts';
import { MODELS_ROOT } from '../../connectors/onnx/model.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { envelopeBytes, generateSignups } from '../../pipelines/signup-risk/generator.ts';
import type { DecisionRecord } from '../../pipelines/signup-risk/types.ts';
import { connections, sluiceAsync, sluiceSync, uniqueName, waitFor } from '../helpers.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';

const KIND = 'signup-risk';
const DRILL = 'signup-risk-drill-inverted';
type Decision = DecisionRecord & { replay_id: string | null };

const sluice = sluiceAsync;

describe('the drill: promote a bad model, roll back, replay the window', () => {
  let champion: string;
  let subject: PipelineInstance;
  let truth: PipelineInstance;
  let decided: Collector<Decision>;
  let truthDecided: Collector<Decision>;
  let sink: StageProcess;
  const clickhouse = createClickHouse({ url: connections.clickhouseUrl });
  const prefix = uniqueName('evt-replay');
  const startMs = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000 + 60_000;
  let next = 0;
  const before_: string[] = [];
  const windowIds: string[] = [];
  const after_: string[] = [];
  let human: { eventId: string; key: string };
  let fromIso: string;
  let toIso: string;
  const env = { SLUICE_ACTOR: 'it-replay', SLUICE_REPLAY_CHUNK_RECORDS: '5' };
  const replayArgs = () => ['replay', '--pipeline', subject.name, '--from-datetime', fromIso, '--to-datetime', toIso];

  /** Produces `count` events to both instances; returns their ids and keys. */
  async function produce(count: number): Promise<Array<{ eventId: string; key: string }>> {
    const events = [...generateSignups({ seed: 909, count, startMs, firstIndex: next, idPrefix: prefix })];
    next += count;
    const messages = events.map((e) => ({ key: e.key, value: envelopeBytes(e.envelope) }));
    await Promise.all([subject.produce(messages), truth.produce(messages)]);
    return events.map((e) => ({ eventId: e.envelope.event_id, key: e.key }));
  }
  const decisionsOf = (collector: Collector<Decision>, id: string) => collector.messages.filter((m) => m.value.event_id === id).map((m) => m.value);
  const allDecided = (collector: Collector<Decision>, ids: string[]) =>
    collector.until(`${ids.length} events decided`, (messages) => {
      const seen = new Set(messages.map((m) => m.value.event_id));
      return ids.every((id) => seen.has(id));
    }, 120_000);
  /** Live events, one round trip each, until the subject's latest decision names `version`. */
  async function probeUntil(version: string): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const [probe] = await produce(1);
      windowIds.push(probe!.eventId);
      const decision = await waitFor('the probe decided', () => decisionsOf(decided, probe!.eventId)[0]);
      if (decision.model_version === version) return;
      if (Date.now() > deadline) throw new Error(`no decision by ${version} within 30 s`);
    }
  }

  before(async () => {
    champion = (await readFile(join(MODELS_ROOT, KIND, 'ACTIVE'), 'utf8')).trim();
    [subject, truth] = await Promise.all([PipelineInstance.create('it-replay', env), PipelineInstance.create('it-replay-truth', env)]);
    const mode = sluiceSync(['mode', 'set', 'colocated', '--pipeline', truth.name]);
    assert.equal(mode.status, 0, mode.stderr);
    [decided, truthDecided] = await Promise.all([subject.collect<Decision>('decided'), truth.collect<Decision>('decided')]);
    await migrate(clickhouse, { url: connections.clickhouseUrl });
    sink = spawnSink({ pipeline: subject.name, env: { SLUICE_SINK_MAX_BATCH_WAIT_MS: '200' }, logFile: join(stackPaths().logs, 'tests', `${subject.name}.sink.log`) });
    await Promise.all([subject.start(), truth.startStage('all').running, sink.running]);
  });
  after(async () => {
    sink?.kill('SIGKILL');
    await sink?.exited;
    await Promise.all([subject?.stop(), truth?.stop()]);
    await clickhouse.close();
  });

  it('decides under the champion, then under the drill model, then under the champion again', async () => {
    before_.push(...(await produce(30)).map((e) => e.eventId));
    await Promise.all([allDecided(decided, before_), allDecided(truthDecided, before_)]);
    assert.ok(before_.every((id) => decisionsOf(decided, id)[0]!.model_version === champion));

    fromIso = new Date().toISOString();
    const promote = sluiceSync(['model', 'promote', DRILL, '--pipeline', subject.name, '--drill', '--reason', 'game day'], env);
    assert.equal(promote.status, 0, promote.stderr);
    await probeUntil(DRILL);
    const window = await produce(600);
    windowIds.push(...window.map((e) => e.eventId));
    await allDecided(decided, windowIds);
    assert.ok(window.every((e) => decisionsOf(decided, e.eventId)[0]!.model_version === DRILL), 'the window is decided by the drill');
    const flipped = window.filter((e) => decisionsOf(decided, e.eventId)[0]!.decision !== 'approve').length;
    assert.ok(flipped > window.length / 2, `the drill sends most signups to review or block (${flipped} of ${window.length})`);

    const rollback = sluiceSync(['model', 'rollback', '--pipeline', subject.name, '--reason', 'game day: detected'], env);
    assert.equal(rollback.status, 0, rollback.stderr);
    await probeUntil(champion);
    await subject.waitForIdle();
    toIso = new Date().toISOString();

    after_.push(...(await produce(30)).map((e) => e.eventId));
    await Promise.all([allDecided(decided, after_), allDecided(truthDecided, [...windowIds, ...after_])]);
    assert.ok(after_.every((id) => decisionsOf(decided, id)[0]!.model_version === champion));

    // A reviewer corrected one event of the window: a replay must leave it alone.
    human = window[7]!;
    const encode = await subject.catalog.encoderFor(`${subject.topic('decided')}-value`);
    const first = decisionsOf(decided, human.eventId)[0]!;
    const producer = await openProducer(connections.kafkaBrokers, 'it-replay-reviewer');
    try {
      await producer.send(subject.topic('decided'), [
        { key: human.key, value: encode({ ...first, decision: 'approve', decided_by: 'human', reasons: ['human_review'], score: null, model_version: null, decision_version: 2, decided_at: Date.now(), replay_id: null }) },
      ]);
    } finally {
      await producer.close();
    }
    await waitFor('the human decision on the topic', () => decisionsOf(decided, human.eventId).some((d) => d.decided_by === 'human'));
  });

  it('prints the plan without --execute and changes nothing', async () => {
    const plan = await sluice([...replayArgs(), '--json'], env).exited;
    assert.equal(plan.status, 0, plan.stderr);
    const parsed = JSON.parse(plan.stdout) as { replay: string; action: string; topic: string; modelVersion: string; humanDecided: number; ranges: Array<{ partition: number; start: string; end: string; events: number }> };
    assert.equal(parsed.action, 'start');
    assert.equal(parsed.humanDecided, 1, 'the plan counts the human decision a run will keep');
    assert.equal(parsed.topic, subject.topic('validated'));
    assert.equal(parsed.modelVersion, champion, 'it would decide with the champion now serving');
    assert.equal(parsed.ranges.length, 3);
    assert.equal(parsed.ranges.reduce((n, r) => n + r.events, 0), windowIds.length, 'exactly the events validated in the window');
    const text = await sluice(replayArgs(), env).exited;
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`total events ${windowIds.length}\\n`));
    assert.match(text.stdout, /run again with --execute/);
    const group = `sluice.${subject.name}.replay.${parsed.replay}`;
    const offsets = await committedOffsets(connections.kafkaBrokers, group, [subject.topic('validated')]);
    assert.ok(offsets.every((o) => o.offset === '-1'), 'no replay has started');
    assert.ok(decided.messages.every((m) => m.value.replay_id === null), 'nothing re-decided');
  });

  it('re-decides the window once, even when the replay is SIGKILLed halfway and run again', async (t) => {
    const replayed = () => decided.messages.filter((m) => m.value.replay_id !== null);
    const first = sluice([...replayArgs(), '--execute'], env);
    await waitFor('the first re-decisions', () => replayed().length >= 20, { timeoutMs: 60_000, intervalMs: 20 });
    first.kill();
    assert.equal((await first.exited).status, 'SIGKILL');
    const atKill = replayed().length;
    t.diagnostic(`killed after ${atKill} of ${windowIds.length - 1} re-decisions were visible`);
    assert.ok(atKill < windowIds.length - 1, 'killed before the end');

    const started = Date.now();
    const rerun = await sluice([...replayArgs(), '--execute'], env).exited;
    assert.equal(rerun.status, 0, rerun.stderr);
    assert.match(rerun.stdout, /\(resumed\)/);
    assert.match(rerun.stderr, /replay r\w+-1 \|/, 'a progress bar on stderr');
    t.diagnostic(`rerun: ${Date.now() - started} ms\n${rerun.stdout}`);

    const others = windowIds.filter((id) => id !== human.eventId);
    await decided.until('a re-decision of every event of the window', () => {
      const seen = new Set(replayed().map((m) => m.value.event_id));
      return others.every((id) => seen.has(id));
    });
    const run = replayed()[0]!.value.replay_id!;
    for (const id of others) {
      const mine = decisionsOf(decided, id);
      const re = mine.filter((d) => d.replay_id !== null);
      assert.equal(re.length, 1, `${id}: one re-decision, got ${re.length}`);
      assert.equal(re[0]!.replay_id, run, 'every re-decision names the replay');
      const standing = mine.reduce((a, b) => (b.decision_version > a.decision_version ? b : a));
      assert.equal(standing, re[0], `${id}: the re-decision has the highest version`);
      const [reference] = decisionsOf(truthDecided, id);
      assert.deepEqual(
        [standing.decision, standing.decided_by, standing.model_version, standing.score?.toFixed(9)],
        [reference!.decision, reference!.decided_by, reference!.model_version, reference!.score?.toFixed(9)],
        `${id}: the decision that stands is the champion's`,
      );
    }
    const mine = decisionsOf(decided, human.eventId);
    assert.ok(mine.every((d) => d.replay_id === null), 'the human decision was not overridden');
    assert.equal(mine.reduce((a, b) => (b.decision_version > a.decision_version ? b : a)).decided_by, 'human');
    for (const id of [...before_, ...after_]) {
      assert.deepEqual(decisionsOf(decided, id).map((d) => [d.decision_version, d.replay_id]), [[1, null]], `${id} is outside the window: untouched`);
    }
    for (const id of new Set(decided.messages.map((m) => m.value.event_id))) {
      const versions = decisionsOf(decided, id).map((d) => d.decision_version);
      assert.equal(new Set(versions).size, versions.length, `${id}: no two decisions with the same version (${versions})`);
    }

    const again = await sluice([...replayArgs(), '--execute'], env).exited;
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /already finished: nothing to do/);
  });

  it('replays a finished window again only with --force: nothing left to change, the human decision still skipped', async () => {
    const forced = await sluice([...replayArgs(), '--execute', '--force', '--json'], { ...env, SLUICE_REPLAY_CHUNK_RECORDS: '1000' }).exited;
    assert.equal(forced.status, 0, forced.stderr);
    const summary = JSON.parse(forced.stdout) as { replay: string; replayed: number; changed: Record<string, number>; unchanged: number; skipped_human: number; resumed: boolean };
    assert.match(summary.replay, /-2$/, 'a second run');
    assert.deepEqual([summary.replayed, summary.unchanged, summary.changed, summary.skipped_human, summary.resumed], [windowIds.length - 1, windowIds.length - 1, {}, 1, false]);
    await decided.until('the second run written', (messages) => messages.filter((m) => m.value.replay_id === summary.replay).length >= windowIds.length - 1);
    for (const id of windowIds.filter((w) => w !== human.eventId)) {
      assert.deepEqual(decisionsOf(decided, id).map((d) => d.decision_version).sort(), [1, 2, 3], `${id}: each run's re-decision above the last`);
    }
  });

  it('leaves nothing standing that the drill model decided (ClickHouse, FINAL)', async () => {
    const total = before_.length + windowIds.length + after_.length;
    const rows = await waitFor('every decision and re-decision in ClickHouse', async () => {
      const [row] = await queryRows<{ events: string; drill: string; replayed: string; version3: string }>(
        clickhouse,
        `SELECT count() AS events, countIf(model_version = ${quote(DRILL)}) AS drill, countIf(replay_id != '') AS replayed, countIf(decision_version = 3) AS version3 FROM sluice.decisions FINAL WHERE pipeline = ${quote(subject.name)}`,
      );
      return row && Number(row.events) === total && Number(row.replayed) === windowIds.length - 1 && Number(row.version3) === windowIds.length - 1 ? row : false;
    });
    assert.equal(Number(rows.drill), 0, 'no standing decision names the drill model');
    const mix = await runDocumentedQuery(clickhouse, 'decision-mix', { pipeline: subject.name, days: 1 });
    assert.ok(mix.every((row) => row.model_version !== DRILL), JSON.stringify(mix));
  });
});
