/**
 * The top self-time entries of a V8 CPU profile (`node --cpu-prof`), grouped by
 * function and file, with the share of each library: kafkajs, avsc, node's own
 * code (and V8: GC, the compiler), sluice's code, other dependencies. Idle time
 * is left out of the shares: they say where the process spent its CPU.
 *
 *   node bench/profile-top.ts FILE.cpuprofile [--top 25] [--skip-ms 0] [--records N] [--inclusive NAME,NAME…] [--callers NAME]
 *
 * --skip-ms drops the first milliseconds (start-up: module loading, type
 * stripping, group join); --records divides the CPU time by the records the
 * process handled, for µs per record; --inclusive adds the total time spent
 * under functions of those names (e.g. the stage handler), callees included;
 * --callers lists who calls a function (e.g. `FastBuffer`, `writeBuffer`),
 * by the self time of that function under each caller.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export type Category = 'kafkajs' | 'avsc' | 'sluice' | 'node' | 'idle' | 'other';

/** Where a frame's code comes from. */
export function categoryOf(frame: CallFrame): Category {
  const { url, functionName } = frame;
  if (functionName === '(idle)') return 'idle';
  if (url.includes('/node_modules/kafkajs/')) return 'kafkajs';
  if (url.includes('/node_modules/avsc/')) return 'avsc';
  if (url.includes('/node_modules/')) return 'other';
  // node's own JS, builtins, (program), (garbage collector), and its TypeScript stripper (WebAssembly)
  if (url === '' || url.startsWith('node:') || url.startsWith('wasm://')) return 'node';
  return 'sluice';
}

export interface Entry {
  functionName: string;
  url: string;
  category: Category;
  selfMs: number;
}

export interface ProfileSummary {
  /** CPU time: every sample except idle ones, after the skipped start. */
  busyMs: number;
  idleMs: number;
  byCategory: Record<Category, number>;
  entries: Entry[];
  inclusiveMs: Record<string, number>;
  /** With `callers`: the self time of that function, by the nearest caller frame outside node's own code. */
  callersMs: Record<string, number>;
}

const shortUrl = (url: string) => url.replace(/^file:\/\/.*?\/node_modules\//, '').replace(/^file:\/\/.*?\/(?=(bin|lib|processors|connectors|pipelines|cli|bench)\/)/, '');

export function summarize(profile: CpuProfile, options: { skipMs?: number; inclusive?: readonly string[]; callers?: string } = {}): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const selfUs = new Map<number, number>();
  const inclusive = new Set(options.inclusive ?? []);
  const inclusiveUs = new Map<string, number>();
  const callersUs = new Map<string, number>();
  const skipUs = (options.skipMs ?? 0) * 1000;
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    // The delta before sample i is the time it stood for (as Chrome DevTools counts it, near enough).
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at <= skipUs) continue;
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
    if (options.callers !== undefined && byId.get(id)!.callFrame.functionName === options.callers) {
      let caller = parentOf.get(id);
      while (caller !== undefined && categoryOf(byId.get(caller)!.callFrame) === 'node' && byId.get(caller)!.callFrame.url !== '') caller = parentOf.get(caller);
      const frame = caller === undefined ? undefined : byId.get(caller)!.callFrame;
      const name = frame === undefined ? '(none)' : `${frame.functionName || '(anonymous)'} (${shortUrl(frame.url)})`;
      callersUs.set(name, (callersUs.get(name) ?? 0) + delta);
    }
    if (inclusive.size === 0) continue;
    const seen = new Set<string>();
    for (let node: number | undefined = id; node !== undefined; node = parentOf.get(node)) {
      const name = byId.get(node)!.callFrame.functionName;
      if (inclusive.has(name) && !seen.has(name)) {
        seen.add(name);
        inclusiveUs.set(name, (inclusiveUs.get(name) ?? 0) + delta);
      }
    }
  }
  const grouped = new Map<string, Entry>();
  const byCategory: Record<Category, number> = { kafkajs: 0, avsc: 0, sluice: 0, node: 0, idle: 0, other: 0 };
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    const category = categoryOf(frame);
    byCategory[category] += us / 1000;
    const key = `${frame.functionName}\u0000${frame.url}`;
    const entry = grouped.get(key) ?? { functionName: frame.functionName || '(anonymous)', url: shortUrl(frame.url), category, selfMs: 0 };
    entry.selfMs += us / 1000;
    grouped.set(key, entry);
  }
  const idleMs = byCategory.idle;
  const busyMs = Object.values(byCategory).reduce((a, b) => a + b, 0) - idleMs;
  const entries = [...grouped.values()].filter((e) => e.category !== 'idle').sort((a, b) => b.selfMs - a.selfMs);
  const toMs = (map: Map<string, number>) => Object.fromEntries([...map].sort(([, a], [, b]) => b - a).map(([k, us]) => [k, us / 1000]));
  return { busyMs, idleMs, byCategory, entries, inclusiveMs: toMs(inclusiveUs), callersMs: toMs(callersUs) };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: 'string', default: '25' },
      'skip-ms': { type: 'string', default: '0' },
      records: { type: 'string' },
      inclusive: { type: 'string' },
      callers: { type: 'string' },
    },
  });
  if (positionals.length === 0) {
    process.stderr.write('usage: node bench/profile-top.ts FILE.cpuprofile… [--top N] [--skip-ms MS] [--records N] [--inclusive NAME,NAME]\n');
    process.exit(2);
  }
  const records = values.records === undefined ? undefined : Number(values.records);
  const pct = (ms: number, of: number) => `${((ms / of) * 100).toFixed(1).padStart(5)}%`;
  const perRecord = (ms: number) => (records ? `  ${((ms * 1000) / records).toFixed(2).padStart(7)} µs/rec` : '');
  for (const file of positionals) {
    const summary = summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, {
      skipMs: Number(values['skip-ms']),
      inclusive: values.inclusive?.split(',').filter(Boolean),
      callers: values.callers,
    });
    const { busyMs } = summary;
    process.stdout.write(`${file}\n  CPU ${busyMs.toFixed(0)} ms (idle ${summary.idleMs.toFixed(0)} ms)${perRecord(busyMs)}\n  by origin:`);
    for (const [category, ms] of Object.entries(summary.byCategory).sort(([, a], [, b]) => b - a)) {
      if (category !== 'idle') process.stdout.write(`  ${category} ${pct(ms, busyMs).trim()}${records ? ` (${((ms * 1000) / records).toFixed(1)} µs/rec)` : ''}`);
    }
    process.stdout.write('\n');
    for (const [name, ms] of Object.entries(summary.inclusiveMs)) process.stdout.write(`  under ${name}: ${ms.toFixed(0)} ms ${pct(ms, busyMs).trim()}${perRecord(ms)}\n`);
    if (values.callers !== undefined) {
      process.stdout.write(`  ${values.callers} by caller:\n`);
      for (const [caller, ms] of Object.entries(summary.callersMs).slice(0, 10)) process.stdout.write(`    ${ms.toFixed(1).padStart(8)} ms  ${caller}\n`);
    }
    process.stdout.write('   self%   self ms  origin   function  (file)\n');
    for (const entry of summary.entries.slice(0, Number(values.top))) {
      process.stdout.write(`  ${pct(entry.selfMs, busyMs)} ${entry.selfMs.toFixed(1).padStart(8)}  ${entry.category.padEnd(7)}  ${entry.functionName}  (${entry.url})\n`);
    }
    process.stdout.write('\n');
  }
}
