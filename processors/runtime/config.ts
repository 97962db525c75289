/**
 * A stage process's configuration: connections, runtime settings and the
 * stage's own, parsed together from the environment before any I/O, so every
 * bad variable is listed in one CONFIG_INVALID.
 */
import { z } from 'zod';
import { type Connections, connectionSchema, connectionsOf, integerVar, parseEnvSchemas, probabilityVar } from '../../lib/settings.ts';
import type { CircuitSettings } from './circuit.ts';
import type { ProcessName } from './stage.ts';

export const RUNTIME_DEFAULTS = {
  /** Records per transaction: bounds the slow tail of a batch well inside the transaction timeout. */
  maxBatchRecords: 500,
  /**
   * Bytes one transaction may produce, below the broker's default
   * max.message.bytes (1 MiB); the output topics' own limit lowers it further.
   */
  maxBatchBytes: 900_000,
  transactionTimeoutMs: 60_000,
  /** How long an idle fetch waits; data is returned as soon as it arrives. */
  fetchMaxWaitMs: 100,
  /** A crashed instance's partitions move after this long. */
  sessionTimeoutMs: 10_000,
  /**
   * Partitions whose batches one process handles at the same time; 0: all it
   * is assigned. Each has its own transaction in flight, all on one event loop.
   */
  concurrentPartitions: 0,
  /** After SIGTERM, the process exits by itself within this long, finished or not. */
  shutdownTimeoutMs: 10_000,
  metricsPorts: { validate: 9464, score: 9465, decide: 9466, all: 9470 } as Record<ProcessName, number>,
} as const;

export const runtimeSchema = z.object({
  SLUICE_MAX_BATCH_RECORDS: integerVar(1, 10_000).optional(),
  SLUICE_MAX_BATCH_BYTES: integerVar(16_384, 100_000_000).optional(),
  SLUICE_TRANSACTION_TIMEOUT_MS: integerVar(1_000, 900_000).optional(),
  SLUICE_FETCH_MAX_WAIT_MS: integerVar(1, 10_000).optional(),
  SLUICE_SESSION_TIMEOUT_MS: integerVar(6_000, 300_000).optional(),
  SLUICE_CONCURRENT_PARTITIONS: integerVar(0, 1_000).optional(),
  SLUICE_SHUTDOWN_TIMEOUT_MS: integerVar(1_000, 300_000).optional(),
  /** 0 turns the HTTP endpoints off; empty is an error, not 0. */
  SLUICE_METRICS_PORT: integerVar(0, 65_535).optional(),
  /** The circuit breaker (processors/runtime/circuit.ts): each overrides the pipeline manifest's `circuitBreaker`. */
  SLUICE_CIRCUIT_THRESHOLD: probabilityVar().optional(),
  SLUICE_CIRCUIT_WINDOW: integerVar(1, 1_000_000).optional(),
  SLUICE_CIRCUIT_MIN_RECORDS: integerVar(1, 1_000_000).optional(),
  SLUICE_CIRCUIT_COOLDOWN_SECONDS: integerVar(1, 7 * 86_400).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export interface RuntimeConfig {
  maxBatchRecords: number;
  maxBatchBytes: number;
  transactionTimeoutMs: number;
  fetchMaxWaitMs: number;
  sessionTimeoutMs: number;
  concurrentPartitions: number;
  shutdownTimeoutMs: number;
  metricsPort: number;
  logLevel: string;
  /** The circuit breaker settings the environment sets; the manifest's and the defaults fill the rest. */
  circuit: Partial<CircuitSettings>;
}

export function runtimeConfigOf(stage: ProcessName, parsed: z.output<typeof runtimeSchema>): RuntimeConfig {
  return {
    maxBatchRecords: parsed.SLUICE_MAX_BATCH_RECORDS ?? RUNTIME_DEFAULTS.maxBatchRecords,
    maxBatchBytes: parsed.SLUICE_MAX_BATCH_BYTES ?? RUNTIME_DEFAULTS.maxBatchBytes,
    transactionTimeoutMs: parsed.SLUICE_TRANSACTION_TIMEOUT_MS ?? RUNTIME_DEFAULTS.transactionTimeoutMs,
    fetchMaxWaitMs: parsed.SLUICE_FETCH_MAX_WAIT_MS ?? RUNTIME_DEFAULTS.fetchMaxWaitMs,
    sessionTimeoutMs: parsed.SLUICE_SESSION_TIMEOUT_MS ?? RUNTIME_DEFAULTS.sessionTimeoutMs,
    concurrentPartitions: parsed.SLUICE_CONCURRENT_PARTITIONS ?? RUNTIME_DEFAULTS.concurrentPartitions,
    shutdownTimeoutMs: parsed.SLUICE_SHUTDOWN_TIMEOUT_MS ?? RUNTIME_DEFAULTS.shutdownTimeoutMs,
    metricsPort: parsed.SLUICE_METRICS_PORT ?? RUNTIME_DEFAULTS.metricsPorts[stage],
    logLevel: parsed.LOG_LEVEL,
    circuit: definedOnly({
      threshold: parsed.SLUICE_CIRCUIT_THRESHOLD,
      window: parsed.SLUICE_CIRCUIT_WINDOW,
      minRecords: parsed.SLUICE_CIRCUIT_MIN_RECORDS,
      coolDownMs: parsed.SLUICE_CIRCUIT_COOLDOWN_SECONDS === undefined ? undefined : parsed.SLUICE_CIRCUIT_COOLDOWN_SECONDS * 1_000,
    }),
  };
}

const definedOnly = <T extends object>(value: T): Partial<T> => Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;

export function runtimeConfigFromEnv(stage: ProcessName, env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  return runtimeConfigOf(stage, parseEnvSchemas({ runtime: runtimeSchema }, env).runtime);
}

/** Connections and runtime settings of a stage process, and `extra` schemas (the stage's own), in one parse. */
export function stageConfigFromEnv<S extends Record<string, z.ZodType>>(
  stage: ProcessName,
  extra: S,
  env: NodeJS.ProcessEnv = process.env,
): { connections: Connections; runtime: RuntimeConfig } & { [K in keyof S]: z.output<S[K]> } {
  const parsed = parseEnvSchemas({ ...extra, connections: connectionSchema, runtime: runtimeSchema }, env) as Record<string, unknown>;
  return {
    ...(parsed as { [K in keyof S]: z.output<S[K]> }),
    connections: connectionsOf(parsed['connections'] as z.output<typeof connectionSchema>),
    runtime: runtimeConfigOf(stage, parsed['runtime'] as z.output<typeof runtimeSchema>),
  };
}
