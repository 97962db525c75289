/** Times given on the command line. */
import { SluiceError } from '../lib/errors.ts';

const UNITS_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`/`--until`: a duration back from now (`90m`, `24h`, `7d`) or an ISO-8601 instant, in ms. */
export function sinceMs(value: string, now: number): number {
  const relative = /^(\d+)([smhd])$/.exec(value.trim());
  if (relative) return now - Number(relative[1]) * UNITS_MS[relative[2]!]!;
  const absolute = Date.parse(value);
  if (Number.isNaN(absolute)) throw new SluiceError('CONFIG_INVALID', `--since ${value}: give a duration back from now (90m, 24h, 7d) or an ISO-8601 time (2026-12-01T03:00:00Z).`);
  return absolute;
}

