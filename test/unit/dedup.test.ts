/**
 * validate's duplicate check and event-time flags, without a broker: the
 * state (window, bound, restore), the stage as the driver runs it (in-chunk
 * and later duplicates, the changelog entries it writes), the sink's row for
 * a dropped duplicate, and the gateway's keying from the manifest.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryCodec } from '../../connectors/registry/memory.ts';
import { keyingOf } from '../../ingest/keying.ts';
import { topicName } from '../../lib/contracts.ts';
import { createLogger } from '../../lib/log.ts';
import { createStageMetrics } from '../../lib/metrics.ts';
import type { PipelineInstance } from '../../lib/pipeline.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import { ticketTriage } from '../../pipelines/ticket-triage/index.ts';
import { stageConfigFromEnv } from '../../processors/runtime/config.ts';
import { processIsolating, type StageDefinition, type StageServices } from '../../processors/runtime/runtime.ts';
import { mapRecords } from '../../processors/sink/rows.ts';
import { changelogSchema, type DedupEntry } from '../../processors/validate/changelog.ts';
import { DedupState } from '../../processors/validate/dedup.ts';
import { validateStage } from '../../processors/validate/runner.ts';
import { timelinessOf } from '../../processors/validate/transform.ts';
import { PipelineDriver } from '../driver.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 11, 1);

describe('duplicate check: state', () => {
  it('remembers an id for the window, per partition, then forgets it', () => {
    const state = new DedupState({ windowMs: DAY, maxIds: 1_000 });
    state.record(0, [['a', T0]], T0);
    assert.equal(state.seenAt(0, 'a', T0 + 1), T0);
    assert.equal(state.seenAt(1, 'a', T0 + 1), undefined, 'another partition holds its own ids');
    assert.equal(state.seenAt(0, 'a', T0 + DAY - 1), T0, 'still inside the window');
    assert.equal(state.seenAt(0, 'a', T0 + DAY), undefined, 'the window has passed');
    state.record(0, [['b', T0 + DAY]], T0 + DAY);
    assert.equal(state.size, 1, 'the expired id was dropped from memory when the partition moved on');
  });

  it('holds at most maxIds across partitions: the oldest go first, and are counted', () => {
    const state = new DedupState({ windowMs: DAY, maxIds: 3 });
    state.record(0, [['a', T0], ['b', T0 + 1]], T0 + 1);
    state.record(1, [['c', T0 + 2]], T0 + 2);
    state.record(0, [['d', T0 + 3]], T0 + 3);
    assert.equal(state.size, 3);
    assert.equal(state.evicted, 1);
    assert.equal(state.seenAt(0, 'a', T0 + 4), undefined, 'the oldest id of the growing partition went');
    for (const [partition, id] of [[0, 'b'], [1, 'c'], [0, 'd']] as const) assert.notEqual(state.seenAt(partition, id, T0 + 4), undefined, id);
  });

  it('restore replaces a partition: what an aborted chunk recorded is gone, the window still applies, a duplicate keeps the first time', () => {
    const state = new DedupState({ windowMs: DAY, maxIds: 1_000 });
    state.record(0, [['committed', T0], ['aborted', T0 + 1]], T0 + 1);
    state.record(1, [['other', T0]], T0);
    // The changelog holds only committed entries; an expired one and a duplicate's entry among them.
    state.restore(0, [['old', T0 - DAY - 1], ['committed', T0], ['committed', T0 + 5]], T0 + 10);
    assert.equal(state.seenAt(0, 'aborted', T0 + 10), undefined, 'a redelivered event is not taken for a duplicate of its aborted copy');
    assert.equal(state.seenAt(0, 'committed', T0 + 10), T0);
    assert.equal(state.seenAt(0, 'old', T0 + 10), undefined);
    assert.equal(state.seenAt(1, 'other', T0 + 10), T0, 'other partitions are untouched');
    assert.equal(state.size, 2);
  });
});

describe('duplicate check: the validate stage', () => {
  it('decides each event once: a copy in the same chunk and in a later one are dropped, and written to the changelog as duplicates', async () => {
    const driver = await PipelineDriver.create('signup-risk', { clockMs: T0 });
    try {
      const events = [...signupRisk.generator.events({ seed: 3, count: 20, startMs: T0 - 60_000, idPrefix: 'dup' })];
      const raw = events.map(({ key, value }) => ({ key, value }));
      const first = await driver.pipe([...raw, raw[4]!, raw[7]!]);
      assert.equal(first.decided.length, 20);
      assert.equal(first['validate-dedup'].length, 22);
      const dropped = first['validate-dedup'].filter((m) => (m.value as DedupEntry).duplicate);
      assert.deepEqual(dropped.map((m) => m.key), [events[4]!.eventId, events[7]!.eventId], 'keyed by event id');

      driver.clockMs += HOUR;
      const again = await driver.pipe(raw.slice(0, 5));
      assert.equal(again.validated.length, 0);
      assert.equal(again.decided.length, 0);
      assert.equal(again.dlq.length, 0, 'a duplicate is not a dead letter');
      const entry = again['validate-dedup'][0]!.value as DedupEntry;
      assert.equal(entry.duplicate, true);
      assert.equal(Number(entry.first_validated_at), T0);
      assert.equal(Number(entry.validated_at), T0 + HOUR);

      driver.clockMs += DAY;
      assert.equal((await driver.pipe(raw.slice(0, 5))).decided.length, 5, 'past the window an id is new again');
    } finally {
      await driver.close();
    }
  });

  it("writes each changelog entry to the input record's partition number, keyed by event id; a chunk that fails records nothing", async () => {
    const stage = await buildStage();
    const [event] = [...signupRisk.generator.events({ seed: 4, count: 1, startMs: T0, idPrefix: 'p' })];
    const record = (partition: number, offset: number) => ({
      source: { topic: 'signup-risk.raw', partition, offset: String(offset), key: Buffer.from(event!.key), value: event!.value, headers: {}, timestampMs: T0 },
      value: event!.value,
    });
    const [onTwo] = await stage.process([record(2, 10)]);
    assert.ok(onTwo?.kind === 'emit');
    const changelog = onTwo.outputs.find((o) => o.to === 'validate-dedup')!;
    assert.equal(changelog.partition, 2);
    assert.equal(changelog.key?.toString(), event!.eventId);
    const [onZero] = await stage.process([record(0, 11)]);
    assert.deepEqual(
      onZero?.kind === 'emit' && onZero.outputs.map((o) => o.to),
      ['validated', 'validate-dedup'],
      'the same id on another partition is not a duplicate there',
    );
    const [dup] = await stage.process([record(2, 12)]);
    assert.deepEqual(dup?.kind === 'emit' && dup.outputs.map((o) => o.to), ['validate-dedup']);
  });

  it('a chunk the stage fails on records nothing: run again record by record, its events are not their own duplicates', async () => {
    const events = [...signupRisk.generator.events({ seed: 6, count: 3, startMs: T0, idPrefix: 'iso' })];
    const poison = (JSON.parse(events[1]!.value.toString()) as { payload: { user_id: string } }).payload.user_id;
    const stage = await buildStage((eventType, payload) => {
      if ((payload as { user_id?: string }).user_id === poison) throw new TypeError('a defect in the payload rules');
      return signupRisk.payload(eventType, payload);
    });
    const inputs = events.map((event, i) => ({
      source: { topic: 'signup-risk.raw', partition: 0, offset: String(i), key: Buffer.from(event.key), value: event.value, headers: {}, timestampMs: T0 },
      value: event.value,
    }));
    const outcomes = await processIsolating(stage, inputs, createLogger({}, 'silent'));
    assert.deepEqual(
      outcomes.map((o) => (o.kind === 'emit' ? o.outputs.map((out) => out.to).join('+') : o.reason)),
      ['validated+validate-dedup', 'PROCESSING_FAILED', 'validated+validate-dedup'],
    );
  });
});

describe('late and early events', () => {
  it('flags occurred_at outside the bounds, and only then', () => {
    const bounds = { latenessMs: HOUR, clockSkewMs: 5 * 60_000 };
    assert.equal(timelinessOf(T0 - HOUR - 1, T0, bounds), 'late');
    assert.equal(timelinessOf(T0 - HOUR, T0, bounds), null);
    assert.equal(timelinessOf(T0 + 5 * 60_000, T0, bounds), null);
    assert.equal(timelinessOf(T0 + 5 * 60_000 + 1, T0, bounds), 'early');
    assert.equal(timelinessOf(0, T0, {}), null, 'a pipeline without bounds flags nothing');
  });

  it("still validates and decides a late or early event, flagged in the validated record by the manifest's bounds", async () => {
    const driver = await PipelineDriver.create('signup-risk', { clockMs: T0 });
    try {
      const bounds = signupRisk.ingest!;
      const at = (occurredAtMs: number) => [...signupRisk.generator.events({ seed: 5, count: 1, startMs: occurredAtMs, idPrefix: `t${occurredAtMs}` })][0]!;
      const events = [at(T0 - bounds.latenessMs! - 1), at(T0 - 1_000), at(T0 + bounds.clockSkewMs! + 1)];
      const out = await driver.pipe(events.map(({ key, value }) => ({ key, value })));
      assert.equal(out.decided.length, 3);
      assert.deepEqual(
        out.validated.map((m) => (m.value as { timeliness: string | null }).timeliness),
        ['late', null, 'early'],
      );
    } finally {
      await driver.close();
    }
  });
});

describe('ClickHouse: a dropped duplicate', () => {
  it('maps a duplicate changelog entry to a stage event with outcome duplicate; a first validation and a marker to nothing', () => {
    const codec = new MemoryCodec();
    const subject = `${topicName('signup-risk', 'validate-dedup')}-value`;
    codec.register(subject, changelogSchema());
    const encode = codec.encoderForSync(subject);
    const entry: DedupEntry = { event_id: 'e-1', first_validated_at: T0, validated_at: T0 + HOUR, occurred_at: T0 - 1_000, duplicate: true, source_offset: 9 };
    const record = (value: Buffer | null, offset: number) => ({ topic: 'signup-risk.validate-dedup', partition: 1, offset: String(offset), key: Buffer.from('e-1'), value, headers: {}, timestampMs: T0 + HOUR });
    const { rows, skipped } = mapRecords(
      [record(encode(entry), 3), record(encode({ ...entry, duplicate: false, validated_at: T0 }), 2), record(null, 4)],
      { pipeline: 'signup-risk', decode: (value) => codec.decodeSync(value) },
    );
    assert.deepEqual(skipped, []);
    assert.deepEqual(rows.stageEvents, [
      {
        pipeline: 'signup-risk',
        stage: 'validate',
        outcome: 'duplicate',
        detail: `first validated at ${new Date(T0).toISOString()}`,
        event_id: 'e-1',
        decision_version: 0,
        occurred_at_ms: T0 - 1_000,
        stage_at_ms: T0 + HOUR,
        kafka_topic: 'signup-risk.validate-dedup',
        kafka_partition: 1,
        kafka_offset: 3,
        kafka_timestamp_ms: T0 + HOUR,
      },
    ]);
  });
});

describe('keying from the manifest', () => {
  it('keys by the first envelope path that holds a string, else by the event id', () => {
    const signup = keyingOf(signupRisk);
    assert.equal(signup('user_signed_up', { user_id: 'u-7' }, 'e-1'), 'u-7');
    assert.equal(signup('user_signed_up', { user_id: '' }, 'e-1'), 'e-1');
    const triage = keyingOf(ticketTriage);
    assert.equal(triage('ticket_created', { ticket: { ticket_key: 'SUP-1' } }, 'e-2'), 'SUP-1');
    assert.equal(triage('document_uploaded', { document: { document_id: 'sha256:ab' } }, 'e-3'), 'sha256:ab');
    assert.equal(triage('document_uploaded', { document: 'not an object' }, 'e-4'), 'e-4');
    assert.throws(() => keyingOf({ ...signupRisk, ingest: { keying: ['occurred_at'] } }), /not event_id, event_type or payload/);
  });
});

/** The validate stage as its runner builds it for signup-risk, without the runtime (no changelog restore). */
async function buildStage(payload = signupRisk.payload): Promise<StageDefinition<Buffer>> {
  const plugin = { ...signupRisk, payload };
  const pipeline: PipelineInstance = { name: 'signup-risk', plugin, owners: plugin.owners };
  const services = {
    pipeline,
    catalog: new MemoryCodec(),
    control: {},
    logger: createLogger({}, 'silent'),
    metrics: createStageMetrics({ pipeline: 'signup-risk', stage: 'validate', team: 'test' }),
    now: () => T0,
  } as unknown as StageServices<PipelineInstance>;
  return (await validateStage.factory(stageConfigFromEnv('validate', validateStage.settings(signupRisk), {}))(services)) as StageDefinition<Buffer>;
}
