/**
 * validate's duplicate check and event-time flags, without a broker: the
 * state (window, bound, restore), its compact store against the Map of
 * strings it replaced (exactness, growth, memory reuse), the stage as the
 * driver runs it (in-chunk and later duplicates, the changelog entries it
 * writes), the sink's row for a dropped duplicate, and the gateway's keying
 * from the manifest.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryCodec } from '../../connectors/registry/memory.ts';
import { keyingOf } from '../../ingest/keying.ts';
import { topicName } from '../../lib/contracts.ts';
import { createLogger } from '../../lib/log.ts';
import { createRng } from '../../lib/prng.ts';
import { createStageMetrics } from '../../lib/metrics.ts';
import type { PipelineInstance } from '../../lib/pipeline.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import { ticketTriage } from '../../pipelines/ticket-triage/index.ts';
import { stageConfigFromEnv } from '../../processors/runtime/config.ts';
import { processIsolating, type StageDefinition, type StageServices } from '../../processors/runtime/runtime.ts';
import { mapRecords } from '../../processors/sink/rows.ts';
import { changelogSchema, type DedupEntry } from '../../processors/validate/changelog.ts';
import { DedupState, hashOf } from '../../processors/validate/dedup.ts';
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

describe('duplicate check: the compact store, against a Map of strings', () => {
  it('answers as a Map with the same rules would, over many random records, restores, expiries and bounds on several partitions', () => {
    const colliding = hashCollisions(4);
    const pool = [
      '',
      'a',
      'ab',
      'abc',
      'b',
      'é',
      'Ã©',
      '\u00e9\u00e9',
      '😀',
      '\ud83d',
      '\ude00',
      '\ude00\ud83d',
      '\ufffd',
      '\ud800',
      '\u0000',
      'x'.repeat(128),
      'x'.repeat(127),
      'é'.repeat(128),
      ...colliding.flat(),
      ...Array.from({ length: 120 }, (_, i) => (i % 3 === 0 ? randomUuid(i) : `evt-${i}${i % 5 === 0 ? 'ü' : ''}`)),
    ];
    // The last three hash poorly on purpose: most ids share a slot's probe run, so only their bytes tell them apart;
    // the last one's runs start at the index's last slots and wrap around to its first.
    for (const [seed, maxIds, windowMs, hash] of [
      [1, 40, DAY, undefined],
      [2, 1_000, 2 * HOUR, undefined],
      [3, 7, HOUR, undefined],
      [4, 90, 30 * 60_000, undefined],
      [5, 60, DAY, (id: string) => id.length % 4],
      [6, 1_000, 3 * HOUR, () => 7],
      [7, 200, DAY, (id: string) => -1 - (id.length % 3)],
    ] as const) {
      const rng = createRng(seed);
      const random = rng.next;
      const pick = rng.pick;
      const state = new DedupState({ windowMs, maxIds, hash });
      const model = new MapDedup({ windowMs, maxIds });
      let nowMs = T0;
      for (let op = 0; op < 3_000; op++) {
        nowMs += Math.floor(random() * 10 * 60_000);
        const partition = Math.floor(random() * 4);
        const roll = random();
        const entries = Array.from({ length: Math.floor(random() * 12) }, () => [pick(pool), nowMs - Math.floor(random() * windowMs * 1.2)] as const);
        const what = roll < 0.7 ? 'record' : roll < 0.85 ? 'expire' : 'restore';
        if (what === 'record') {
          state.record(partition, entries, nowMs);
          model.record(partition, entries, nowMs);
        } else if (what === 'expire') {
          state.expire(partition, nowMs);
          model.expire(partition, nowMs);
        } else {
          state.restore(partition, entries, nowMs);
          model.restore(partition, entries, nowMs);
        }
        const at = `seed ${seed}, op ${op} (${what})`;
        assert.equal(state.size, model.size, at);
        assert.equal(state.evicted, model.evicted, at);
        for (let p = 0; p < 5; p++) {
          for (const id of pool) {
            const when = nowMs + Math.floor(random() * 2 - 1) * Math.floor(windowMs / 2);
            assert.equal(state.seenAt(p, id, when), model.seenAt(p, id, when), `${at}: partition ${p}, id ${JSON.stringify(id)}`);
          }
        }
      }
    }
  });

  it('never takes one id for another: same hash, same bytes in another encoding, a prefix, a lone surrogate', () => {
    const pairs: Array<readonly [string, string]> = [
      ...hashCollisions(3),
      ['é', 'Ã©'],
      ['\ud800', '\ufffd'],
      ['\ud800', '\udc00'],
      ['\ud83d\ude00', '\ude00\ud83d'],
      ['ab', 'abc'],
      ['', '\u0000'],
    ];
    // With the real hash, and with one that gives every id the same slot: the bytes decide.
    for (const [[one, other], hash] of pairs.flatMap((pair) => [[pair, undefined] as const, [pair, () => 0] as const])) {
      const state = new DedupState({ windowMs: DAY, maxIds: 1_000, hash });
      // Adjacent in the arena: "ab" then "c" must not read as "abc".
      state.record(0, [[one, T0], ['c', T0 + 1]], T0 + 1);
      assert.equal(state.seenAt(0, one, T0 + 2), T0, JSON.stringify(one));
      assert.equal(state.seenAt(0, other, T0 + 2), undefined, `${JSON.stringify(other)} is not ${JSON.stringify(one)}`);
      state.record(0, [[other, T0 + 2]], T0 + 2);
      assert.equal(state.size, 3, `${JSON.stringify(other)} is held apart from ${JSON.stringify(one)}`);
      assert.equal(state.seenAt(0, one, T0 + 3), T0);
      assert.equal(state.seenAt(0, other, T0 + 3), T0 + 2);
    }
  });

  it('grows far past its initial capacity and still finds every id, and only those', () => {
    // Arena offsets start near 2^32: they wrap within the first ids, here and in the tests above.
    const count = 150_000;
    const state = new DedupState({ windowMs: DAY, maxIds: 1_000_000 });
    const ids = Array.from({ length: count }, (_, i) => randomUuid(i));
    for (let i = 0; i < count; i += 1_000) state.record(i % 3, ids.slice(i, i + 1_000).map((id, j) => [id, T0 + i + j] as const), T0 + i);
    assert.equal(state.size, count);
    for (let i = 0; i < count; i++) {
      const partition = Math.floor(i / 1_000) % 3;
      assert.equal(state.seenAt(partition, ids[i]!, T0 + count), T0 + i, ids[i]);
      assert.equal(state.seenAt((partition + 1) % 3, ids[i]!, T0 + count), undefined);
    }
    for (let i = 0; i < 10_000; i++) assert.equal(state.seenAt(i % 3, randomUuid(count + i), T0 + count), undefined);
  });

  it('frees the arrays it outgrows at once: while it grows, the process holds what it reports, not every size it grew through', () => {
    // Without the collector's help: a full collection would free them too, later, when a stage's peak was already reached.
    const before = process.memoryUsage().arrayBuffers;
    const state = new DedupState({ windowMs: DAY, maxIds: 1_000_000 });
    for (let i = 0; i < 300_000; i += 1_000) state.record(0, Array.from({ length: 1_000 }, (_, j) => [randomUuid(i + j), T0] as const), T0);
    const held = process.memoryUsage().arrayBuffers - before;
    assert.ok(held < state.bytes * 1.1, `array buffers grew by ${held} bytes for a store of ${state.bytes}`);
  });

  it('reuses its memory as ids expire: a steady stream through the window does not grow it, an emptied partition gives it back', () => {
    const windowMs = 60_000;
    const state = new DedupState({ windowMs, maxIds: 1_000_000 });
    let bytesAfterWarmUp = 0;
    // 300,000 ids of up to 60 bytes through a window that holds 2,000 of them: 18 MB if the arena kept every id.
    for (let i = 0; i < 300_000; i += 100) {
      const nowMs = T0 + i * 30;
      state.record(0, Array.from({ length: 100 }, (_, j) => [`${randomUuid(i + j)}${'é'.repeat((i + j) % 12)}`, nowMs] as const), nowMs);
      if (i === 20_000) bytesAfterWarmUp = state.bytes;
      if (i > 0 && i % 10_000 === 0) {
        assert.equal(state.size, 2_000);
        assert.equal(state.seenAt(0, `${randomUuid(i)}${'é'.repeat(i % 12)}`, nowMs), nowMs);
        assert.equal(state.seenAt(0, `${randomUuid(i - 2_000)}${'é'.repeat((i - 2_000) % 12)}`, nowMs), undefined, 'out of the window');
      }
    }
    assert.ok(state.bytes <= bytesAfterWarmUp, `${state.bytes} bytes after the stream, ${bytesAfterWarmUp} after its first 20,000 ids`);
    assert.ok(state.bytes < 500_000, `${state.bytes} bytes for 2,000 ids`);

    const large = new DedupState({ windowMs, maxIds: 1_000_000 });
    const empty = new DedupState({ windowMs, maxIds: 1_000_000 });
    empty.record(0, [['one', T0]], T0);
    large.record(0, Array.from({ length: 100_000 }, (_, i) => [randomUuid(i), T0] as const), T0);
    assert.ok(large.bytes > 20 * empty.bytes, `${large.bytes} bytes for 100,000 ids`);
    large.record(0, [['one', T0 + windowMs]], T0 + windowMs);
    assert.equal(large.size, 1);
    assert.equal(large.bytes, empty.bytes, 'back to the size a new partition starts with');
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

/**
 * The duplicate check's semantics as the Map of strings had them, the
 * reference the compact store must match: insertion order is validation
 * order, a recorded id takes the new time and keeps its place.
 */
class MapDedup {
  private readonly partitions = new Map<number, Map<string, number>>();
  size = 0;
  evicted = 0;
  private readonly options: { windowMs: number; maxIds: number };
  constructor(options: { windowMs: number; maxIds: number }) {
    this.options = options;
  }

  seenAt(partition: number, id: string, nowMs: number): number | undefined {
    const at = this.partitions.get(partition)?.get(id);
    return at !== undefined && at > nowMs - this.options.windowMs ? at : undefined;
  }

  record(partition: number, entries: Iterable<readonly [string, number]>, nowMs: number): void {
    let ids = this.partitions.get(partition);
    if (ids === undefined) {
      ids = new Map<string, number>();
      this.partitions.set(partition, ids);
    }
    this.expire(partition, nowMs);
    for (const [id, at] of entries) {
      if (!ids.has(id)) this.size++;
      ids.set(id, at);
    }
    this.bound(partition);
  }

  restore(partition: number, entries: Iterable<readonly [string, number]>, nowMs: number): void {
    this.size -= this.partitions.get(partition)?.size ?? 0;
    const ids = new Map<string, number>();
    this.partitions.set(partition, ids);
    for (const [id, at] of entries) {
      if (at <= nowMs - this.options.windowMs || ids.has(id)) continue;
      ids.set(id, at);
      this.size++;
    }
    this.bound(partition);
  }

  expire(partition: number, nowMs: number): void {
    const ids = this.partitions.get(partition);
    for (const [id, at] of ids ?? []) {
      if (at > nowMs - this.options.windowMs) break;
      ids!.delete(id);
      this.size--;
    }
  }

  private bound(partition: number): void {
    while (this.size > this.options.maxIds) {
      let ids = this.partitions.get(partition)!;
      if (ids.size === 0) ids = [...this.partitions.values()].reduce((largest, candidate) => (candidate.size > largest.size ? candidate : largest));
      const oldest = ids.keys().next();
      if (oldest.done) return;
      ids.delete(oldest.value);
      this.size--;
      this.evicted++;
    }
  }
}

/** A UUID-shaped id, the same for the same `n`. */
function randomUuid(n: number): string {
  const rng = createRng(n);
  const hex = Array.from({ length: 32 }, () => rng.int(0, 15).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** `count` pairs of distinct ids with the same 32-bit hash (a birthday search: about ten among 300,000 ids). */
function hashCollisions(count: number): Array<readonly [string, string]> {
  const seen = new Map<number, string>();
  const pairs: Array<readonly [string, string]> = [];
  for (let i = 0; pairs.length < count; i++) {
    const id = i % 2 === 0 ? `c${i}` : `c${i}-ü`;
    const other = seen.get(hashOf(id));
    if (other !== undefined) pairs.push([other, id]);
    else seen.set(hashOf(id), id);
  }
  return pairs;
}
