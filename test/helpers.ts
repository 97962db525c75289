/** Shared helpers for tests against the real local stack. */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
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
