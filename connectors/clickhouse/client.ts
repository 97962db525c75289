/**
 * The ClickHouse adapter: the one place that imports @clickhouse/client.
 * SQL here and in callers must run on ClickHouse 18.16 (the local stack) and on
 * current ClickHouse: no query parameters (18.16 rejects `param_*` settings),
 * so values are inlined with `quote()`.
 */
import { type ClickHouseClient, ClickHouseLogLevel, createClient } from '@clickhouse/client';

export type { ClickHouseClient };

export interface ClickHouseOptions {
  url: string;
  username?: string;
  password?: string;
  database?: string;
  requestTimeoutMs?: number;
}

export function createClickHouse(options: ClickHouseOptions): ClickHouseClient {
  return createClient({
    url: options.url,
    username: options.username ?? process.env.CLICKHOUSE_USER ?? 'default',
    password: options.password ?? process.env.CLICKHOUSE_PASSWORD ?? '',
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
