/**
 * The one retry helper of sluice: bounded exponential backoff that a stop can
 * interrupt, and log lines throttled so an outage does not flood the log.
 */
import type { Logger } from './log.ts';
import { isSluiceError } from './errors.ts';

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function interruptibleSleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export const backoffMs = (attempt: number, initialMs: number, maxMs: number): number => Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));

/**
 * A logger whose warn/error lines are written at most once per `intervalMs`;
 * lines dropped in between are counted into the next one (`suppressed`).
 */
export function throttledLog(logger: Logger, intervalMs: number) {
  let lastAt = 0;
  let suppressed = 0;
  const write = (level: 'warn' | 'error') => (fields: Record<string, unknown>, message: string) => {
    const now = Date.now();
    if (now - lastAt < intervalMs) {
      suppressed++;
      return;
    }
    logger[level](suppressed > 0 ? { ...fields, suppressed } : fields, message);
    lastAt = now;
    suppressed = 0;
  };
  return { warn: write('warn'), error: write('error') };
}

export interface RetryOptions {
  /** For the log line: what is being tried ("reading the control topic"). */
  what: string;
  logger: Logger;
  /** Give up after this long in total (the last error is thrown); default: never. */
  deadlineMs?: number;
  initialMs?: number;
  maxMs?: number;
  signal?: AbortSignal;
  /** Which errors are worth retrying; default: SluiceErrors marked retriable, and anything not a SluiceError. */
  retriable?(error: unknown): boolean;
}

/**
 * Runs `step` until it succeeds, retrying retriable failures with bounded,
 * interruptible backoff and at most one log line every few seconds. Throws the
 * last error when it is not retriable, the deadline has passed, or `signal`
 * aborted.
 */
export async function retry<T>(step: () => Promise<T>, options: RetryOptions): Promise<T> {
  const started = Date.now();
  const log = throttledLog(options.logger, 5_000);
  const retriable = options.retriable ?? ((error: unknown) => (isSluiceError(error) ? error.retriable : true));
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      const delayMs = backoffMs(attempt, options.initialMs ?? 250, options.maxMs ?? 5_000);
      const pastDeadline = options.deadlineMs !== undefined && Date.now() + delayMs - started > options.deadlineMs;
      if (!retriable(error) || pastDeadline || options.signal?.aborted) throw error;
      log.warn({ err: error, attempt, delayMs }, `${options.what} failed; retrying`);
      await interruptibleSleep(delayMs, options.signal);
      if (options.signal?.aborted) throw error;
    }
  }
}
