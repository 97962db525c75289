/** Shared helpers for tests against the real local stack. */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Kafka, logLevel } from 'kafkajs';
import { NODE_FLAGS, SLUICE_BIN } from '../cli/processes.ts';
import { connectionsFromEnv } from '../lib/settings.ts';

export const connections = connectionsFromEnv();

/** A name no other test run uses: topics, groups, subjects, tables. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/**
 * Polls `check` until it returns a value other than undefined/false, or fails
 * after `timeoutMs` with the last observation, so a failure says what was seen.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 60_000, intervalMs = 100 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}; last observation: ${String(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Runs `sluice <args>` to completion: its exit status, stdout and stderr. */
export function sluiceSync(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [...NODE_FLAGS, SLUICE_BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
}

/** A `sluice` child process: how it ended (exit code, or the signal that ended it), its output, and how long it ran. */
export interface SluiceRun {
  exited: Promise<{ status: number | string; stdout: string; stderr: string; ms: number }>;
  kill(signal?: NodeJS.Signals): void;
}

/** Runs `sluice <args>` without blocking this process: the test's own consumers keep heartbeating meanwhile. */
export function sluiceAsync(args: string[], env: Record<string, string> = {}): SluiceRun {
  const started = Date.now();
  const child = spawn(process.execPath, [...NODE_FLAGS, SLUICE_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ status: number | string; stdout: string; stderr: string; ms: number }>((resolve) =>
    child.once('close', (code, signal) => resolve({ status: code ?? signal ?? 'unknown', stdout, stderr, ms: Date.now() - started })),
  );
  return { exited, kill: (signal = 'SIGKILL') => child.kill(signal) };
}

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A plain kafkajs client whose troubles are collected: every error it logs
 * and every retry it schedules (kafkajs logs each with its wait, retryTime).
 * For tests that a request was answered at once.
 */
export function kafkaCollectingTroubles(clientId: string): { kafka: Kafka; troubles: string[] } {
  const troubles: string[] = [];
  const kafka = new Kafka({
    brokers: connections.kafkaBrokers,
    clientId,
    logLevel: logLevel.DEBUG,
    logCreator: () => ({ level, namespace, log }) => {
      if (level === logLevel.ERROR || log['retryTime'] !== undefined) troubles.push(`${namespace}: ${log.message} ${String(log['error'] ?? '')}`.trim());
    },
  });
  return { kafka, troubles };
}
