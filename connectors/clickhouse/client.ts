/**
 * The ClickHouse adapter: the one place that imports @clickhouse/client.
 * SQL here and in callers must run on ClickHouse 18.16 (the local stack) and on
 * current ClickHouse: no query parameters (18.16 rejects `param_*` settings),
 * so values are inlined with `quote()`.
 */
import { type ClickHouseClient, ClickHouseLogLevel, createClient } from '@clickhouse/client';
import { errorMessage, SluiceError } from '../../lib/errors.ts';

export type { ClickHouseClient };

export interface ClickHouseOptions {
  url: string;
  /** Default: `default`, ClickHouse's own default user. */
  username?: string;
  /** Default: none. Callers read it from their configuration; it is never logged. */
  password?: string;
  database?: string;
  requestTimeoutMs?: number;
}

export function createClickHouse(options: ClickHouseOptions): ClickHouseClient {
  return createClient({
    url: options.url,
    username: options.username ?? 'default',
    password: options.password ?? '',
    database: options.database ?? 'default',
    request_timeout: options.requestTimeoutMs ?? 30_000,
    log: { level: ClickHouseLogLevel.OFF }, // callers log failures with context
  });
}

/** A string literal for ClickHouse SQL. */
export function quote(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

export async function queryRows<T>(client: ClickHouseClient, query: string): Promise<T[]> {
  const result = await client.query({ query, format: 'JSONEachRow' });
  return result.json<T>();
}

/** The server's numeric error code, from the client error (current servers) or its message (18.16: `Code: 291, e.displayText() = …`). */
export function serverErrorCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === 'string' && /^\d+$/.test(code)) return Number(code);
  const match = /(?:^|\s)Code: (\d+)[.,]/.exec(error instanceof Error ? error.message : String(error));
  return match ? Number(match[1]) : undefined;
}

/** Server errors that mean "try again later" rather than "this statement is wrong". */
const TRANSIENT_SERVER_CODES = new Set([
  159, // TIMEOUT_EXCEEDED
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY
  252, // TOO_MANY_PARTS
  319, // UNKNOWN_STATUS_OF_INSERT
  425, // SYSTEM_ERROR
]);

/** Access problems: wrong user or password, a database the user may not read, a readonly user writing. */
const ACCESS_SERVER_CODES = new Set([164, 192, 193, 194, 291, 497, 516]);

/**
 * Classifies a ClickHouse client failure once, for every caller: no answer at
 * all (refused, reset, timed out) or a transient server condition is
 * CLICKHOUSE_UNAVAILABLE (retriable); an access refusal CLICKHOUSE_ACCESS_DENIED;
 * any other server error CLICKHOUSE_QUERY_FAILED.
 */
export function clickHouseError(error: unknown, what: string): SluiceError {
  const code = serverErrorCode(error);
  const detail = errorMessage(error).split('\n')[0]!.slice(0, 500);
  if (code === undefined || TRANSIENT_SERVER_CODES.has(code)) {
    return new SluiceError(
      'CLICKHOUSE_UNAVAILABLE',
      `ClickHouse did not complete ${what}: ${detail}. Check that it is running (npx sluice stack status); this is retried.`,
      { cause: error },
    );
  }
  if (ACCESS_SERVER_CODES.has(code)) {
    return new SluiceError('CLICKHOUSE_ACCESS_DENIED', `ClickHouse refused ${what} (code ${code}): ${detail}`, { cause: error });
  }
  return new SluiceError('CLICKHOUSE_QUERY_FAILED', `ClickHouse rejected ${what} (code ${code}): ${detail}`, { cause: error });
}
