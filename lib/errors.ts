/**
 * One error type for all of sluice. Every error carries a stable `code` from the
 * catalog below (tests and callers match on codes, never on message text), a
 * `retriable` flag that routes it (retry with backoff, or not), and a message
 * that says what to do about it.
 */
export const ERROR_CODES = {
  CONFIG_INVALID: { retriable: false },
  STACK_PREREQUISITE_MISSING: { retriable: false },
  STACK_PORT_IN_USE: { retriable: false },
  STACK_SERVICE_FAILED: { retriable: false },
  STACK_DOWNLOAD_FAILED: { retriable: false },
  KAFKA_UNAVAILABLE: { retriable: true },
  KAFKA_TRANSACTION_FAILED: { retriable: true },
  TOPIC_MISSING: { retriable: false },
  REGISTRY_UNAVAILABLE: { retriable: true },
  SCHEMA_INCOMPATIBLE: { retriable: false },
  SCHEMA_NOT_REGISTERED: { retriable: false },
  CLICKHOUSE_UNAVAILABLE: { retriable: true },
  MODEL_LOAD_FAILED: { retriable: false },
  MODEL_INVALID: { retriable: false },
  MODEL_VERSION_UNKNOWN: { retriable: false },
  MODEL_VERSION_EXISTS: { retriable: false },
  MODEL_DRILL_REFUSED: { retriable: false },
  MODEL_NO_PREVIOUS: { retriable: false },
  MODEL_STORE_UNAVAILABLE: { retriable: true },
  CONTROL_WRITE_FAILED: { retriable: true },
  PIPELINE_UNKNOWN: { retriable: false },
  CLICKHOUSE_QUERY_FAILED: { retriable: false },
  CLICKHOUSE_SCHEMA_OUTDATED: { retriable: false },
  CLICKHOUSE_ACCESS_DENIED: { retriable: false },
  QUERY_UNKNOWN: { retriable: false },
  MODE_CONFLICT: { retriable: false },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retriable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.retriable = options.retriable ?? ERROR_CODES[code].retriable;
  }
}

export function isSluiceError(error: unknown, code?: ErrorCode): error is SluiceError {
  return error instanceof SluiceError && (code === undefined || error.code === code);
}

/** The message of anything thrown, for logs and CLI output. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
