import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The process logger: JSON lines to stdout. Personal data in events is never
 * logged whole; these paths are redacted wherever they appear.
 */
export function createLogger(bindings: Record<string, unknown> = {}, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino(options(bindings, level));
}

/** For a command whose stdout is its result (`status --json`, `model list`…): the same logger, to stderr. */
export function createCommandLogger(bindings: Record<string, unknown> = {}, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino(options(bindings, level), pino.destination(2));
}

function options(bindings: Record<string, unknown>, level: string) {
  return {
    level,
    base: { pid: process.pid, ...bindings },
    redact: { paths: ['payload.email', '*.payload.email', 'email', 'password', '*.password'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
}
