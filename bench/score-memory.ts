/**
 * Where the score stage's memory goes, without a broker: loads the active
 * signup-risk model through the onnxruntime adapter (as the stage does), scores
 * `--events` validated records through the score transform in chunks like the
 * runtime hands them (mostly 50–500 records, a quarter of the chunks 1–10),
 * holding the last `--hold` chunks' outputs as the runtime does until its
 * transaction commits, for `--passes` passes. Prints the process's memory after
 * each step and at peak (RSS, anonymous and file-backed, V8's heap by space,
 * resident size by mapping), the JS heap allocated per record scored (and how
 * much of it V8 put straight into the old generation), the scoring rate per
 * pass and its median, and the scores' sha256, so that a change can be checked
 * to leave every score bit-identical. Prints figures; asserts nothing.
 *
 * Run it with a stage's heap flags (cli/processes.ts NODE_FLAGS):
 *
 *   node --max-semi-space-size=8 --max-old-space-size=2000 bench/score-memory.ts [--events 100000] [--passes 3] [--hold 1] [--version <v>] [--json FILE]
 *
 * Started this way Node also keeps its type stripper (~23 MB, in "imports")
 * resident, which a stage process does not. To measure without it, start the
 * script through the strip cache as bin/sluice.js starts a stage:
 *
 *   node --max-semi-space-size=8 --max-old-space-size=2000 --input-type=module \
 *     -e "(await import('./lib/strip-cache.js')).registerStripCache(); await import('./bench/score-memory.ts')" -- [options]
 *
 * (the first run after a change to a module still strips it, and loads the stripper).
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GCProfiler, type GCProfilerResult, getHeapSpaceStatistics } from 'node:v8';
import { percentile } from '../cli/traffic.ts';
import { positiveInteger } from './args.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '100000' },
    passes: { type: 'string', default: '3' },
    hold: { type: 'string', default: '1' },
    version: { type: 'string' },
    json: { type: 'string' },
  },
});
const events = positiveInteger('events', values.events);
const passes = positiveInteger('passes', values.passes);
/** Chunks whose outputs stay referenced while the next are made and scored, as the runtime holds a chunk's outputs until its transaction commits. */
const hold = Number(values.hold);
if (!Number.isSafeInteger(hold) || hold < 0) throw new Error(`--hold must be a non-negative integer, got ${values.hold}`);

const MIB = 1024 * 1024;
/** Chunks the runtime hands the stage: up to SLUICE_MAX_BATCH_RECORDS (500) when records queue up, a few when they trickle in. */
const LARGE_CHUNK = { min: 50, max: 500 };
const SMALL_CHUNK = { min: 1, max: 10 };
const SMALL_CHUNK_SHARE = 0.25;

interface Memory {
  rssMb: number;
  /** Resident anonymous memory (heaps, native allocations) and file-backed (mapped code: node, libonnxruntime), from /proc. */
  rssAnonMb: number;
  rssFileMb: number;
  heapTotalMb: number;
  heapUsedMb: number;
  externalMb: number;
  arrayBuffersMb: number;
}

const round = (bytes: number): number => Math.round((bytes / MIB) * 10) / 10;

function procStatusKb(field: string): number {
  const match = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) : Number.NaN;
}

function memory(): Memory {
  const usage = process.memoryUsage();
  return {
    rssMb: round(usage.rss),
    rssAnonMb: round(procStatusKb('RssAnon') * 1024),
    rssFileMb: round(procStatusKb('RssFile') * 1024),
    heapTotalMb: round(usage.heapTotal),
    heapUsedMb: round(usage.heapUsed),
    externalMb: round(usage.external),
    arrayBuffersMb: round(usage.arrayBuffers),
  };
}

const maxOf = (a: Memory, b: Memory): Memory => {
  const out = { ...a };
  for (const key of Object.keys(out) as Array<keyof Memory>) out[key] = Math.max(a[key], b[key]);
  return out;
};

/** V8's heap by space (committed MiB): which part of the heap grows. */
function heapSpaces(): Record<string, number> {
  return Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, round(s.physical_space_size)]));
}
const maxSpaces = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(Object.entries(b).map(([k, v]) => [k, Math.max(v, a[k] ?? 0)]));

/**
 * What V8's collector saw while `run` ran: bytes allocated on the JS heap; of
 * them, bytes allocated straight into the old generation between collections
 * (allocation sites V8 decided to pretenure) and bytes promoted there by
 * scavenges; the collections.
 */
async function gcAccount(run: () => Promise<void>): Promise<{ allocatedBytes: number; pretenuredBytes: number; promotedBytes: number; scavenges: number; markCompacts: number }> {
  type Stats = GCProfilerResult['statistics'][number]['beforeGC'];
  const oldUsed = (stats: Stats) => stats.heapSpaceStatistics.find((s) => s.spaceName === 'old_space')?.spaceUsedSize ?? 0;
  const profiler = new GCProfiler();
  const usedBefore = process.memoryUsage().heapUsed;
  const oldBefore = getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')?.space_used_size ?? 0;
  profiler.start();
  await run();
  const { statistics } = profiler.stop();
  let allocatedBytes = 0;
  let pretenuredBytes = 0;
  let promotedBytes = 0;
  let used = usedBefore;
  let old = oldBefore;
  for (const gc of statistics) {
    allocatedBytes += gc.beforeGC.heapStatistics.usedHeapSize - used;
    pretenuredBytes += oldUsed(gc.beforeGC) - old;
    if (gc.gcType === 'Scavenge') promotedBytes += oldUsed(gc.afterGC) - oldUsed(gc.beforeGC);
    used = gc.afterGC.heapStatistics.usedHeapSize;
    old = oldUsed(gc.afterGC);
  }
  allocatedBytes += process.memoryUsage().heapUsed - used;
  pretenuredBytes += (getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')?.space_used_size ?? 0) - old;
  return {
    allocatedBytes,
    pretenuredBytes,
    promotedBytes,
    scavenges: statistics.filter((gc) => gc.gcType === 'Scavenge').length,
    markCompacts: statistics.filter((gc) => gc.gcType === 'MarkSweepCompact').length,
  };
}

/** Resident MiB by mapping (/proc/self/smaps): the malloc heap ([heap]), anonymous maps (V8's heap, large mallocs), each library. */
function mappings(): Record<string, number> {
  const rss: Record<string, number> = {};
  let name = '';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) name = header[1] === '' ? '[anon]' : header[1]!.replace(/^.*\//, '');
    else if (line.startsWith('Rss:')) rss[name] = (rss[name] ?? 0) + Number(line.split(/\s+/)[1]) / 1024;
  }
  return Object.fromEntries(
    Object.entries(rss)
      .filter(([, mb]) => mb >= 0.5)
      .sort(([, a], [, b]) => b - a)
      .map(([key, mb]) => [key, Math.round(mb * 10) / 10]),
  );
}

const steps: Array<{ step: string; memory: Memory; mappingsMb: Record<string, number> }> = [];
const mark = (step: string) => steps.push({ step, memory: memory(), mappingsMb: mappings() });

mark('node started');
const { createRng } = await import('../lib/prng.ts');
const { generateSignups } = await import('../pipelines/signup-risk/generator.ts');
const { signupRisk } = await import('../pipelines/signup-risk/index.ts');
const { scoreBatch } = await import('../processors/score/transform.ts');
type Validated = import('../pipelines/signup-risk/types.ts').ValidatedRecord;
mark('imports (pipeline, transform)');
const startMs = Date.UTC(2026, 11, 1);
/**
 * The validated records, as JSON: a chunk's records are parsed from these (a
 * decode's worth of allocation, as the runtime's Avro decode makes them) and
 * dropped after it. Generating them anew per pass would allocate several times
 * what scoring does, and hide it.
 */
const POOL_SIZE = Math.min(events, 1_000);
const pool = [...generateSignups({ seed: 4_242, count: POOL_SIZE, startMs, spacingMs: 1, idPrefix: 'bench-evt' })].map((event) =>
  JSON.stringify({
    event_id: event.envelope.event_id,
    event_type: event.envelope.event_type,
    occurred_at: event.occurredAtMs,
    source: event.envelope.source,
    payload: event.payload,
    dropped_fields: event.droppedFields,
    validated_at: event.occurredAtMs + 2,
  } satisfies Validated),
);
mark(`${POOL_SIZE} records pooled as JSON`);

const { loadModel, resolveModelDir } = await import('../connectors/onnx/model.ts');
mark('onnxruntime-node imported');

const adapter = signupRisk.model;
const model = await loadModel(await resolveModelDir(signupRisk.kind, values.version), {
  featureNames: adapter.featureNames,
  classes: adapter.output.classes,
  monitoredNames: adapter.monitoredNames,
});
mark('model loaded');

/** The chunk sizes of one pass, the same in every pass and every run. */
function chunkSizes(): number[] {
  const rng = createRng(13, 1);
  const sizes: number[] = [];
  for (let left = events; left > 0; ) {
    const range = rng.chance(SMALL_CHUNK_SHARE) ? SMALL_CHUNK : LARGE_CHUNK;
    const size = Math.min(left, rng.int(range.min, range.max));
    sizes.push(size);
    left -= size;
  }
  return sizes;
}

interface Pass {
  largeRowsPerSecond: number;
  smallRowsPerSecond: number;
  rowsPerSecond: number;
  scoresSha256: string;
  gc: Awaited<ReturnType<typeof gcAccount>>;
}

const sizes = chunkSizes();
let peak = memory();
const spacesAfterLoad = heapSpaces();
let peakSpaces = spacesAfterLoad;

/** One pass over the records, chunk by chunk. Without `score`, the records are only made (what a pass allocates besides scoring). */
async function pass(score: boolean): Promise<Pass> {
  let next = 0;
  const held: unknown[] = [];
  const digest = createHash('sha256');
  const score64 = new Float64Array(1);
  const scoreBytes = new Uint8Array(score64.buffer);
  const timeNs = { large: 0n, small: 0n };
  const rows = { large: 0, small: 0 };
  const gc = await gcAccount(async () => {
    for (const size of sizes) {
      const records: Validated[] = [];
      for (let i = 0; i < size; i++) records.push(JSON.parse(pool[next++ % POOL_SIZE]!) as Validated);
      if (!score) continue;
      const started = process.hrtime.bigint();
      const outcomes = await scoreBatch(records, { adapter, scorer: model, now: Date.now });
      const kind = size <= SMALL_CHUNK.max ? 'small' : 'large';
      timeNs[kind] += process.hrtime.bigint() - started;
      rows[kind] += size;
      for (const outcome of outcomes) {
        if (outcome.kind !== 'emit') throw new Error(`record ${outcome.eventId} was dead-lettered: ${outcome.reason} ${outcome.message}`);
        score64[0] = outcome.outputs[0]!.value.score ?? Number.NaN;
        digest.update(scoreBytes);
      }
      held.push(outcomes);
      if (held.length > hold) held.shift();
      // The outputs' send and commit: other work runs before the next chunk.
      await new Promise((resolve) => setImmediate(resolve));
      peak = maxOf(peak, memory());
      peakSpaces = maxSpaces(peakSpaces, heapSpaces());
    }
  });
  const rate = (n: number, ns: bigint) => Math.round(n / (Number(ns) / 1e9));
  return {
    largeRowsPerSecond: rate(rows.large, timeNs.large),
    smallRowsPerSecond: rate(rows.small, timeNs.small),
    rowsPerSecond: rate(rows.large + rows.small, timeNs.large + timeNs.small),
    scoresSha256: digest.digest('hex'),
    gc,
  };
}

const results: Pass[] = [];
let recordsOnly: Pass;
try {
  for (let i = 0; i < passes; i++) {
    results.push(await pass(true));
    mark(`after pass ${i + 1}`);
  }
  recordsOnly = await pass(false);
} finally {
  await model.close();
}
peak = { ...maxOf(peak, memory()), rssMb: Math.max(peak.rssMb, round(procStatusKb('VmHWM') * 1024)) };

const hashes = new Set(results.map((r) => r.scoresSha256));
const report = {
  model: model.version,
  node: process.version,
  execArgv: process.execArgv,
  events,
  passes,
  hold,
  chunks: { count: sizes.length, small: sizes.filter((s) => s <= SMALL_CHUNK.max).length, large: LARGE_CHUNK, smallRange: SMALL_CHUNK },
  steps,
  /** The largest value of each figure seen after any chunk; rssMb is the kernel's high-water mark (VmHWM). */
  peak,
  /** Resident size of each V8 heap space after the model loaded and its largest during scoring. */
  heapSpacesMb: { afterLoad: spacesAfterLoad, peak: peakSpaces },
  rowsPerSecondMedian: percentile(results.map((r) => r.rowsPerSecond), 50),
  largeChunkRowsPerSecondMedian: percentile(results.map((r) => r.largeRowsPerSecond), 50),
  smallChunkRowsPerSecondMedian: percentile(results.map((r) => r.smallRowsPerSecond), 50),
  scoresSha256: hashes.size === 1 ? [...hashes][0]! : 'differs between passes',
  /** JS heap bytes per record (median of the passes), scoring alone: a pass's figure less that of a pass that only makes the records. */
  scoringHeapBytesPerRecord: {
    allocated: Math.round((percentile(results.map((r) => r.gc.allocatedBytes), 50) - recordsOnly.gc.allocatedBytes) / events),
    pretenured: Math.round((percentile(results.map((r) => r.gc.pretenuredBytes), 50) - recordsOnly.gc.pretenuredBytes) / events),
    promoted: Math.round((percentile(results.map((r) => r.gc.promotedBytes), 50) - recordsOnly.gc.promotedBytes) / events),
  },
  recordsOnly: recordsOnly.gc,
  results,
};

if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
const out = process.stdout;
out.write(`model ${report.model}, node ${report.node} ${report.execArgv.join(' ')}\n`);
out.write(
  `${events} records per pass, ${passes} passes; ${report.chunks.count} chunks per pass (${report.chunks.small} of 1–10 records, the rest 50–500); outputs of the last ${hold} chunk(s) held\n\n`,
);
const columns: Array<[keyof Memory, string]> = [
  ['rssMb', 'RSS'],
  ['rssAnonMb', 'anon'],
  ['rssFileMb', 'file'],
  ['heapTotalMb', 'heap total'],
  ['heapUsedMb', 'heap used'],
  ['externalMb', 'external'],
  ['arrayBuffersMb', 'arrayBuffers'],
];
const row = (label: string, m: Memory) => `${label.padEnd(30)}${columns.map(([key, title]) => m[key].toFixed(1).padStart(title.length + 2)).join('')}\n`;
out.write(`${'MiB'.padEnd(30)}${columns.map(([, title]) => title.padStart(title.length + 2)).join('')}\n`);
for (const { step, memory: m } of steps) out.write(row(step, m));
out.write(row('peak (RSS: VmHWM)', peak));
const mapped = (at: (typeof steps)[number]) => Object.entries(at.mappingsMb).slice(0, 6).map(([k, v]) => `${k} ${v}`).join(', ');
out.write(`\nresident by mapping, MiB: after load: ${mapped(steps.find((s) => s.step === 'model loaded')!)}\n  after the last pass: ${mapped(steps.at(-1)!)}\n`);
out.write(`\nV8 heap spaces, resident MiB after load → peak: ${Object.entries(peakSpaces).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${spacesAfterLoad[k]} → ${v}`).join(', ')}\n`);
out.write(`\nrows/s (median of ${passes}): all ${report.rowsPerSecondMedian}, chunks 50–500 ${report.largeChunkRowsPerSecondMedian}, chunks 1–10 ${report.smallChunkRowsPerSecondMedian}\n`);
out.write(`per pass: ${results.map((r) => `${r.rowsPerSecond} (${r.largeRowsPerSecond}/${r.smallRowsPerSecond})`).join(', ')}\n`);
out.write(
  `JS heap per record scored: ${report.scoringHeapBytesPerRecord.allocated} bytes allocated, of which ${report.scoringHeapBytesPerRecord.pretenured} straight into the old generation ` +
    `(pretenured) and ${report.scoringHeapBytesPerRecord.promoted} promoted there by scavenges; ` +
    `per pass ${results.map((r) => `${r.gc.scavenges} scavenges/${r.gc.markCompacts} mark-compacts`).join(', ')}\n`,
);
out.write(`scores sha256 ${report.scoresSha256}\n`);
