import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The process logger: JSON lines to stdout. Personal data in events is never
 * logged whole; these paths are redacted wherever they appear.
 */
export function createLogger(bindings: Record<string, unknown> = {}, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    redact: { paths: ['payload.email', '*.payload.email', 'email', 'password', '*.password'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
