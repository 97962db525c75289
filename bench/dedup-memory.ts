/**
 * What validate's duplicate check costs per id held, and per lookup: the
 * compact store (processors/validate/dedup.ts) beside the Map of strings it
 * replaced, each filled the same way (N 36-character UUIDs over three
 * partitions, recorded in chunks of 100 as the runner does).
 *
 *   node_modules/.bin/node --expose-gc bench/dedup-memory.ts [--ids 500000] [--passes 5] [--json FILE]
 *
 * Memory is measured in a child process per store (this script again, with
 * --store and a stage's heap flags and malloc setting), so one's freed memory cannot
 * hide the other's resident pages: V8 heap used, external and array buffers,
 * and RSS, after full collections, before and after the fill (which follows a
 * warm-up fill). Time, in this process, the stores taking turns: ns per id
 * recorded (building the chunk's Map included, as the runner does) and per
 * `seenAt` (of ids held, and of new ids, as most of a stream's are), the
 * median of --passes passes. Timings on a shared machine are noisy: compare
 * the two stores within one run.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NODE_FLAGS, stageProcessEnv } from '../cli/processes.ts';
import { percentile } from '../cli/traffic.ts';
import { DedupState } from '../processors/validate/dedup.ts';

const { values } = parseArgs({
  options: {
    ids: { type: 'string', default: '500000' },
    passes: { type: 'string', default: '5' },
    json: { type: 'string' },
    store: { type: 'string' },
  },
});
const ids = Number(values.ids);
const passes = Number(values.passes);
const PARTITIONS = 3;
const CHUNK = 100;
const T0 = Date.UTC(2026, 11, 1);
const DAY = 86_400_000;

interface Store {
  seenAt(partition: number, eventId: string, nowMs: number): number | undefined;
  record(partition: number, entries: Iterable<readonly [string, number]>, nowMs: number): void;
  readonly size: number;
}

/** The Map of strings validate used before (its code as it was, less the bound's turn to the largest partition, which filling never reaches), the reference. */
class MapDedupState implements Store {
  private readonly partitions = new Map<number, Map<string, number>>();
  private total = 0;
  evicted = 0;
  private readonly options: { windowMs: number; maxIds: number };

  constructor(options: { windowMs: number; maxIds: number }) {
    this.options = options;
  }

  get size(): number {
    return this.total;
  }

  seenAt(partition: number, eventId: string, nowMs: number): number | undefined {
    const at = this.partitions.get(partition)?.get(eventId);
    if (at === undefined) return undefined;
    return at > nowMs - this.options.windowMs ? at : undefined;
  }

  record(partition: number, entries: Iterable<readonly [string, number]>, nowMs: number): void {
    let ids = this.partitions.get(partition);
    if (ids === undefined) {
      ids = new Map<string, number>();
      this.partitions.set(partition, ids);
    }
    const oldest = nowMs - this.options.windowMs;
    for (const [eventId, at] of ids) {
      if (at > oldest) break;
      ids.delete(eventId);
      this.total--;
    }
    for (const [eventId, at] of entries) {
      const before = ids.size;
      ids.set(eventId, at);
      if (ids.size > before) this.total++;
    }
    while (this.total > this.options.maxIds) {
      const oldestId = ids.keys().next();
      if (oldestId.done) return;
      ids.delete(oldestId.value);
      this.total--;
      this.evicted++;
    }
  }
}

const STORES = {
  compact: () => new DedupState({ windowMs: DAY, maxIds: ids }),
  map: () => new MapDedupState({ windowMs: DAY, maxIds: ids }),
} satisfies Record<string, () => Store>;
type StoreName = keyof typeof STORES;

interface Memory {
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  rss: number;
}

interface Figures {
  store: StoreName;
  ids: number;
  before: Memory;
  after: Memory;
  /** After − before, per id held. */
  perId: Memory;
  /** The compact store's own count of the bytes it allocated. */
  allocated: number | undefined;
  /** ns per id, median of the passes: recorded into a growing store, recorded at the bound (each evicting the oldest), looked up. */
  recordNs: number;
  recordAtBoundNs: number;
  seenAtHeldNs: number;
  seenAtNewNs: number;
}

/** Memory after full collections, with turns of the event loop between them (array buffers are freed after a collection, not by it). */
async function memory(): Promise<Memory> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const { heapUsed, external, arrayBuffers, rss } = process.memoryUsage();
  return { heapUsed, external, arrayBuffers, rss };
}

/** Records `count` ids, CHUNK at a time, round robin over the partitions; `idAt(i)` makes the i-th. */
function fill(store: Store, count: number, idAt: (i: number) => string, from = 0): void {
  for (let i = from; i < from + count; i += CHUNK) {
    const partition = (i / CHUNK) % PARTITIONS;
    const chunk = new Map<string, number>();
    for (let j = i; j < Math.min(from + count, i + CHUNK); j++) chunk.set(idAt(j), T0 + j);
    store.record(partition, chunk, T0 + i);
  }
}

/** A random UUID as a flat string, as JSON.parse makes an event id (randomUUID's own result is built of several pieces). */
const uuid = (): string => Buffer.from(randomUUID(), 'latin1').toString('latin1');

async function measureMemory(name: StoreName): Promise<Pick<Figures, 'before' | 'after' | 'perId' | 'allocated'>> {
  // Warm up first (code compiled, start-up garbage gone): `before` is then the process as it runs.
  fill(STORES[name](), 30_000, uuid);
  const before = await memory();
  const store = STORES[name]();
  // Ids made on the fly: only what the store keeps of them stays.
  fill(store, ids, uuid);
  const after = await memory();
  if (store.size !== ids) throw new Error(`${name} holds ${store.size} ids, not ${ids}`);
  const allocated = store instanceof DedupState ? store.bytes : undefined;
  const perId = Object.fromEntries(Object.keys(before).map((key) => [key, (after[key as keyof Memory] - before[key as keyof Memory]) / ids])) as unknown as Memory;
  return { before, after, perId, allocated };
}

type Times = Pick<Figures, 'recordNs' | 'recordAtBoundNs' | 'seenAtHeldNs' | 'seenAtNewNs'>;

/** ns per id recorded, per seenAt of an id held and of a new one: the stores take turns, pass by pass, so a busy moment of the machine falls on both. */
function measureTime(): Record<StoreName, Times> {
  const held = Array.from({ length: ids }, uuid);
  const fresh = Array.from({ length: ids }, uuid);
  const names = Object.keys(STORES) as StoreName[];
  const samples = Object.fromEntries(names.map((name) => [name, { record: [] as number[], atBound: [] as number[], held: [] as number[], fresh: [] as number[] }]));
  for (let pass = 0; pass < passes; pass++) {
    for (const name of names) {
      const store = STORES[name]();
      const sample = samples[name]!;
      let started = process.hrtime.bigint();
      fill(store, ids, (i) => held[i]!);
      sample.record.push(Number(process.hrtime.bigint() - started) / ids);
      const nowMs = T0 + ids;
      let found = 0;
      started = process.hrtime.bigint();
      for (let i = 0; i < ids; i++) if (store.seenAt(Math.floor(i / CHUNK) % PARTITIONS, held[i]!, nowMs) !== undefined) found++;
      sample.held.push(Number(process.hrtime.bigint() - started) / ids);
      started = process.hrtime.bigint();
      for (let i = 0; i < ids; i++) if (store.seenAt(Math.floor(i / CHUNK) % PARTITIONS, fresh[i]!, nowMs) !== undefined) found--;
      sample.fresh.push(Number(process.hrtime.bigint() - started) / ids);
      if (found !== ids) throw new Error(`${name} found ${found} of ${ids} ids held, and new ones`);
      // The steady state of a busy stream: at the bound, each id recorded evicts the oldest.
      started = process.hrtime.bigint();
      fill(store, ids, (i) => fresh[i - ids]!, ids);
      sample.atBound.push(Number(process.hrtime.bigint() - started) / ids);
      const newest = store.seenAt(Math.floor((2 * ids - 1) / CHUNK) % PARTITIONS, fresh[ids - 1]!, T0 + 2 * ids);
      if (store.size !== ids || newest === undefined) throw new Error(`${name} did not keep the newest ${ids} ids`);
    }
  }
  return Object.fromEntries(
    names.map((name) => [name, { recordNs: percentile(samples[name]!.record, 50), recordAtBoundNs: percentile(samples[name]!.atBound, 50), seenAtHeldNs: percentile(samples[name]!.held, 50), seenAtNewNs: percentile(samples[name]!.fresh, 50) }]),
  ) as Record<StoreName, Times>;
}

if (values.store !== undefined) {
  if (!(values.store in STORES)) throw new Error(`--store ${values.store}: compact or map`);
  process.stdout.write(`${JSON.stringify(await measureMemory(values.store as StoreName))}\n`);
} else {
  const script = fileURLToPath(import.meta.url);
  const names = Object.keys(STORES) as StoreName[];
  const memories = names.map((store) => {
    process.stderr.write(`${store}: memory of ${ids.toLocaleString('en')} ids...\n`);
    // Bytecode flushing off: else the start-up code V8 drops during the fill shows as a smaller heap.
    const run = spawnSync(process.execPath, [...NODE_FLAGS, ...process.execArgv, '--no-flush-bytecode', script, '--store', store, '--ids', String(ids)], {
      // The stage processes' malloc setting too: which freed blocks go back to the system decides the RSS.
      env: stageProcessEnv(),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (run.status !== 0) throw new Error(`the ${store} run failed (exit ${run.status})`);
    return JSON.parse(run.stdout) as Pick<Figures, 'before' | 'after' | 'perId' | 'allocated'>;
  });
  process.stderr.write(`time: ${passes} passes of each store, in turns...\n`);
  const times = measureTime();
  const results: Figures[] = names.map((store, i) => ({ store, ids, ...memories[i]!, ...times[store] }));
  const mb = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MB`;
  const lines = results.map((r) =>
    [
      `${r.store.padEnd(8)} per id: heap ${r.perId.heapUsed.toFixed(1)} B, external ${r.perId.external.toFixed(1)} B (array buffers ${r.perId.arrayBuffers.toFixed(1)} B),`,
      `rss ${r.perId.rss.toFixed(1)} B, heap + external ${(r.perId.heapUsed + r.perId.external).toFixed(1)} B${r.allocated === undefined ? '' : ` (allocated ${(r.allocated / r.ids).toFixed(1)} B)`}`,
      `| heap ${mb(r.before.heapUsed)} → ${mb(r.after.heapUsed)}, external ${mb(r.before.external)} → ${mb(r.after.external)}, rss ${mb(r.before.rss)} → ${mb(r.after.rss)}`,
      `| record ${r.recordNs.toFixed(0)} ns/id (${r.recordAtBoundNs.toFixed(0)} at the bound), seenAt ${r.seenAtHeldNs.toFixed(0)} ns (held), ${r.seenAtNewNs.toFixed(0)} ns (new)`,
    ].join(' '),
  );
  process.stdout.write(`${ids.toLocaleString('en')} ids of 36 characters over ${PARTITIONS} partitions, Node ${process.version}\n${lines.join('\n')}\n`);
  if (values.json !== undefined) {
    const existing = existsSync(values.json) ? (JSON.parse(readFileSync(values.json, 'utf8')) as Record<string, unknown>) : {};
    writeFileSync(values.json, `${JSON.stringify({ ...existing, dedupMemory: results }, null, 2)}\n`);
    process.stderr.write(`wrote dedupMemory to ${values.json}\n`);
  }
}
