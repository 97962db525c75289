/**
 * Configuration of the ClickHouse sink: parsed once at start from the
 * environment. It holds the ClickHouse password: log `clickhouse.user`, never
 * the config as a whole.
 */
import { z } from 'zod';
import { integerVar, parseEnv } from '../../lib/settings.ts';

export const SINK_DEFAULTS = {
  /** Kafka records per insert batch (each yields one or two rows per table it touches). */
  maxBatchRecords: 20_000,
  /** A batch is written at the latest this long after its first record arrived. */
  maxBatchWaitMs: 1_000,
  /** How long an idle fetch waits for data. */
  fetchMaxWaitMs: 250,
  /** A crashed sink's partitions move (or a restarted one resumes) after this long. */
  sessionTimeoutMs: 10_000,
  retryInitialBackoffMs: 200,
  retryMaxBackoffMs: 5_000,
  /** How often lag (records behind the end of each topic) is measured. */
  lagIntervalMs: 5_000,
  clickhouseRequestTimeoutMs: 30_000,
  metricsPort: 9467,
  clickhouseUser: 'default',
  clickhousePassword: '',
} as const;

/** Who to connect to ClickHouse as: the sink, and the CLI's ClickHouse commands. */
export const clickhouseCredentialsSchema = z.object({
  /** Empty means the default user, as ClickHouse itself has it. */
  CLICKHOUSE_USER: z
    .string()
    .trim()
    .transform((user) => user || SINK_DEFAULTS.clickhouseUser)
    .default(SINK_DEFAULTS.clickhouseUser),
  CLICKHOUSE_PASSWORD: z.string().default(SINK_DEFAULTS.clickhousePassword),
});

/** ClickHouse user and password. A secret: never log `password`. */
export interface ClickHouseCredentials {
  user: string;
  password: string;
}

const sinkSchema = clickhouseCredentialsSchema.extend({
  SLUICE_SINK_MAX_BATCH_RECORDS: integerVar(1, 1_000_000).default(SINK_DEFAULTS.maxBatchRecords),
  SLUICE_SINK_MAX_BATCH_WAIT_MS: integerVar(1, 600_000).default(SINK_DEFAULTS.maxBatchWaitMs),
  SLUICE_SINK_FETCH_MAX_WAIT_MS: integerVar(1, 10_000).default(SINK_DEFAULTS.fetchMaxWaitMs),
  SLUICE_SINK_SESSION_TIMEOUT_MS: integerVar(6_000, 300_000).default(SINK_DEFAULTS.sessionTimeoutMs),
  SLUICE_SINK_RETRY_INITIAL_BACKOFF_MS: integerVar(1, 60_000).default(SINK_DEFAULTS.retryInitialBackoffMs),
  SLUICE_SINK_RETRY_MAX_BACKOFF_MS: integerVar(1, 600_000).default(SINK_DEFAULTS.retryMaxBackoffMs),
  SLUICE_SINK_LAG_INTERVAL_MS: integerVar(0, 600_000).default(SINK_DEFAULTS.lagIntervalMs),
  SLUICE_CLICKHOUSE_REQUEST_TIMEOUT_MS: integerVar(1_000, 600_000).default(SINK_DEFAULTS.clickhouseRequestTimeoutMs),
  /** 0 turns the HTTP endpoints off; empty is an error, not 0. */
  SLUICE_METRICS_PORT: integerVar(0, 65_535).default(SINK_DEFAULTS.metricsPort),
});

export interface SinkConfig {
  maxBatchRecords: number;
  maxBatchWaitMs: number;
  fetchMaxWaitMs: number;
  sessionTimeoutMs: number;
  retryBackoffMs: { initial: number; max: number };
  lagIntervalMs: number;
  clickhouseRequestTimeoutMs: number;
  metricsPort: number;
  /** Who the sink writes to ClickHouse as. */
  clickhouse: ClickHouseCredentials;
}

export function sinkConfigFromEnv(env: NodeJS.ProcessEnv = process.env): SinkConfig {
  const parsed = parseEnv(sinkSchema, env);
  return {
    maxBatchRecords: parsed.SLUICE_SINK_MAX_BATCH_RECORDS,
    maxBatchWaitMs: parsed.SLUICE_SINK_MAX_BATCH_WAIT_MS,
    fetchMaxWaitMs: parsed.SLUICE_SINK_FETCH_MAX_WAIT_MS,
    sessionTimeoutMs: parsed.SLUICE_SINK_SESSION_TIMEOUT_MS,
    retryBackoffMs: { initial: parsed.SLUICE_SINK_RETRY_INITIAL_BACKOFF_MS, max: parsed.SLUICE_SINK_RETRY_MAX_BACKOFF_MS },
    lagIntervalMs: parsed.SLUICE_SINK_LAG_INTERVAL_MS,
    clickhouseRequestTimeoutMs: parsed.SLUICE_CLICKHOUSE_REQUEST_TIMEOUT_MS,
    metricsPort: parsed.SLUICE_METRICS_PORT,
    clickhouse: { user: parsed.CLICKHOUSE_USER, password: parsed.CLICKHOUSE_PASSWORD },
  };
}

/** CLICKHOUSE_USER and CLICKHOUSE_PASSWORD; by default the user `default` with no password. */
export function clickhouseCredentialsFromEnv(env: NodeJS.ProcessEnv = process.env): ClickHouseCredentials {
  const parsed = parseEnv(clickhouseCredentialsSchema, env);
  return { user: parsed.CLICKHOUSE_USER, password: parsed.CLICKHOUSE_PASSWORD };
}
