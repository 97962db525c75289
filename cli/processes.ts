/**
 * Starts pipeline stages as separate OS processes (`sluice run <stage>`), the
 * way an operator would: used by the demo, the benchmark and the tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProcessName, StageName } from '../processors/runtime/stage.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/**
 * The JS entry in front of bin/sluice.ts: it serves the TypeScript modules from
 * the stripped-JavaScript cache (lib/strip-cache.js), so a long-running stage
 * does not keep Node's type stripper (about 25 MB) resident.
 */
export const SLUICE_BIN = join(ROOT, 'bin', 'sluice.js');
/**
 * V8's heap sizing for a stage (issue 13: ≤ 200 MB resident at the sustained
 * rate), measured with `npm run bench -- --modes-only` and per-record CPU:
 * - an 8 MiB young generation semi-space (V8's default grows with the host's
 *   memory, to 64 MiB): 10–25 MB less at peak than 16 MiB, CPU per record unchanged;
 * - an old generation capped below 2 GiB. Not to bound it (a stage's live heap
 *   is 50–150 MB), but because under 2 GiB V8 lets the heap grow to at most
 *   about twice the live data between full collections instead of four times
 *   (V8's heap-controller.h): 45–75 MB less at peak per stage. Independent
 *   stages keep their throughput; `run all` lost about a tenth of its rate in
 *   the benchmark. Validate's duplicate check holds its ids off the heap
 *   (500,000 by default, ~35 MB), but a restore reads a partition's changelog
 *   onto the heap first (~146 bytes an entry); see `nodeFlags`.
 */
export const NODE_FLAGS = ['--max-semi-space-size=8', '--max-old-space-size=2000'];
/** Above this many duplicate-check ids, a restore's changelog entries (~146 bytes each on the heap, until stored off it) may need more than the capped heap: the cap is left off. */
const UNCAPPED_HEAP_FROM_DEDUP_IDS = 5_000_000;

/**
 * glibc's malloc hands a freed block of at least this many bytes back to the
 * system at once. Left alone, it raises its threshold to the largest block
 * freed so far (32 MiB at most), so the process keeps fetch responses and
 * produce requests' buffers resident: with 128 KiB, 10–20 MB less at peak per
 * stage process in `npm run bench -- --modes-only` (score 214 → 199 MB,
 * co-located 254 → 234), throughput unchanged within its noise. glibc reads it
 * at start, so it is set for the processes sluice spawns and in the Dockerfile;
 * an explicit setting wins.
 */
export const MALLOC_MMAP_THRESHOLD = '131072';

/** This process's environment with MALLOC_MMAP_THRESHOLD, unless it sets its own: what a stage process (or a benchmark's child measured as one) starts with. */
export function stageProcessEnv(): NodeJS.ProcessEnv {
  return { MALLOC_MMAP_THRESHOLD_: MALLOC_MMAP_THRESHOLD, ...process.env };
}

/** NODE_FLAGS for a process with environment `env`: without the old-generation cap where a raised duplicate-check bound could outgrow it. */
export function nodeFlags(env: NodeJS.ProcessEnv): string[] {
  const dedupIds = Number(env['SLUICE_DEDUP_MAX_IDS'] ?? 0);
  return dedupIds > UNCAPPED_HEAP_FROM_DEDUP_IDS ? NODE_FLAGS.filter((flag) => !flag.startsWith('--max-old-space-size=')) : NODE_FLAGS;
}

export interface StageProcess {
  name: string;
  child: ChildProcess;
  /** Resolves once the stage logged `stage running` (joined its group, caught up with control). */
  running: Promise<void>;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<number | string>;
  /** Sends a signal; SIGTERM lets the stage finish its batch. */
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Spawns `sluice run <stage> --pipeline <pipeline>`. Its JSON log goes to
 * `logFile` when given. `running` rejects if the process exits before it is up.
 */
export function spawnStage(options: {
  pipeline: string;
  stage: ProcessName;
  env?: Record<string, string>;
  logFile?: string;
}): StageProcess {
  return spawnProcess({ ...options, name: options.stage, script: SLUICE_BIN, args: ['run', options.stage, '--pipeline', options.pipeline] });
}

/** Spawns `sluice sink clickhouse --pipeline <pipeline>`. */
export function spawnSink(options: { pipeline: string; env?: Record<string, string>; logFile?: string }): StageProcess {
  return spawnProcess({
    ...options,
    name: 'sink',
    script: SLUICE_BIN,
    args: ['sink', 'clickhouse', '--pipeline', options.pipeline],
    readyMessage: 'sink running',
  });
}

/** Spawns a Node script of the project that logs `readyMessage` (default `stage running`) once it is up. */
export function spawnProcess(options: {
  name: string;
  script: string;
  args: string[];
  env?: Record<string, string>;
  logFile?: string;
  readyMessage?: string;
}): StageProcess {
  const ready = `"msg":"${options.readyMessage ?? 'stage running'}"`;
  const env = { ...stageProcessEnv(), SLUICE_METRICS_PORT: '0', ...options.env };
  const child = spawn(process.execPath, [...nodeFlags(env), options.script, ...options.args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log: NodeJS.WritableStream | undefined;
  if (options.logFile) {
    mkdirSync(dirname(options.logFile), { recursive: true });
    log = createWriteStream(options.logFile, { flags: 'a' });
  }
  const exited = new Promise<number | string>((resolveExit) => {
    child.once('exit', (code, signal) => resolveExit(code ?? signal ?? 'unknown'));
  });
  let tail = '';
  const running = new Promise<void>((resolveRunning, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      log?.write(chunk);
      if (chunk.includes(ready)) resolveRunning();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      log?.write(chunk);
      tail = (tail + chunk.toString()).slice(-4_000);
    });
    void exited.then((code) => reject(new Error(`${options.name} exited (${code}) before it was running: ${tail.trim()}`)));
  });
  running.catch(() => {}); // callers that never await `running` must not crash on it
  return {
    name: options.name,
    child,
    running,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

export const STAGES: readonly StageName[] = ['validate', 'score', 'decide'];
