/**
 * Monitor windows: [start, start + length) in event time (occurred_at), with
 * starts at multiples of the length since the epoch, so every monitor, re-run
 * or backfill judges the same windows. A window is closed, and may be judged,
 * once the clock has passed its end by the grace period, which must cover the
 * sink's lag (its batch wait plus the pipeline's own latency) so that no
 * window is judged on partial data.
 */
import { SluiceError } from '../lib/errors.ts';

export interface Window {
  startMs: number;
  lengthMs: number;
}

/** The newest window that is closed at `nowMs`, or null before the first one. */
export function latestClosedWindow(nowMs: number, lengthMs: number, graceMs: number): Window | null {
  const end = Math.floor((nowMs - graceMs) / lengthMs) * lengthMs;
  return end - lengthMs < 0 ? null : { startMs: end - lengthMs, lengthMs };
}

/** The `count` newest closed windows at `nowMs`, oldest first. */
export function closedWindows(nowMs: number, lengthMs: number, graceMs: number, count: number): Window[] {
  const latest = latestClosedWindow(nowMs, lengthMs, graceMs);
  if (latest === null) return [];
  const windows: Window[] = [];
  for (let i = count - 1; i >= 0; i--) {
    const startMs = latest.startMs - i * lengthMs;
    if (startMs >= 0) windows.push({ startMs, lengthMs });
  }
  return windows;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration such as `60s`, `10s`, `5m`, `1h`, `500ms` (a bare number is seconds), in ms; zero only when `allowZero`. */
export function parseDuration(text: string, what: string, { allowZero = false }: { allowZero?: boolean } = {}): number {
  const match = /^(\d+)(ms|s|m|h)?$/.exec(text.trim());
  if (!match) throw new SluiceError('CONFIG_INVALID', `${what} must be a duration such as 10s, 60s, 5m or 1h, got "${text}".`);
  const ms = Number(match[1]) * UNITS[match[2] ?? 's']!;
  if (!Number.isSafeInteger(ms) || (ms === 0 && !allowZero)) throw new SluiceError('CONFIG_INVALID', `${what} must be positive, got "${text}".`);
  return ms;
}
