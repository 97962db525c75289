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
export const SLUICE_BIN = join(ROOT, 'bin', 'sluice.ts');
/** As in the Dockerfile: a 16 MiB young generation semi-space (V8's default grows with the host's memory, to 64 MiB). */
export const NODE_FLAGS = ['--disable-warning=TimeoutNegativeWarning', '--max-semi-space-size=16'];

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
  const child = spawn(process.execPath, [...NODE_FLAGS, options.script, ...options.args], {
    cwd: ROOT,
    env: { ...process.env, SLUICE_METRICS_PORT: '0', ...options.env },
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
