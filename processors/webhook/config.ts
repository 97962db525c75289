/**
 * Configuration of the webhook sink: parsed once at start, before any I/O,
 * from the environment and the command's flags. It may hold the signing
 * secret: log `describeConfig()`, never the config as a whole.
 */
import { z } from 'zod';
import { SluiceError } from '../../lib/errors.ts';
import { httpUrlVar, integerVar, parseEnvSchemas } from '../../lib/settings.ts';

export const WEBHOOK_DEFAULTS = {
  /** One request's whole time (connect, send, answer); past it the attempt counts as a timeout and is retried. */
  requestTimeoutMs: 5_000,
  /** Attempts per decision, the first included; after the last failure the decision is dead-lettered. */
  maxAttempts: 10,
  /** No new attempt starts this long after the first one: the other half of the retry budget. */
  maxElapsedMs: 300_000, // five minutes
  retryInitialBackoffMs: 500,
  retryMaxBackoffMs: 30_000,
  /** A receiver's `Retry-After` is honoured up to this long; a longer one is cut to it. */
  retryAfterMaxMs: 120_000,
  /** Decisions handed to delivery at once (across partitions); their offsets are committed together. */
  maxBatchRecords: 100,
  /** A batch starts at the latest this long after its first decision arrived: the latency the sink adds. */
  maxBatchWaitMs: 20,
  fetchMaxWaitMs: 250,
  sessionTimeoutMs: 10_000,
  lagIntervalMs: 5_000,
  /** Distinct events whose delivered decision_version is remembered (about 100 bytes each). */
  versionMemory: 100_000,
  /** On SIGTERM, delivery goes on (retries included) this long; then the request in flight is abandoned. */
  stopGraceMs: 5_000,
  metricsPort: 9469,
} as const;

const envSchema = z.object({
  SLUICE_WEBHOOK_TIMEOUT_MS: integerVar(100, 600_000).default(WEBHOOK_DEFAULTS.requestTimeoutMs),
  SLUICE_WEBHOOK_MAX_ATTEMPTS: integerVar(1, 1_000).default(WEBHOOK_DEFAULTS.maxAttempts),
  SLUICE_WEBHOOK_MAX_ELAPSED_MS: integerVar(0, 86_400_000).default(WEBHOOK_DEFAULTS.maxElapsedMs),
  SLUICE_WEBHOOK_RETRY_INITIAL_BACKOFF_MS: integerVar(1, 600_000).default(WEBHOOK_DEFAULTS.retryInitialBackoffMs),
  SLUICE_WEBHOOK_RETRY_MAX_BACKOFF_MS: integerVar(1, 3_600_000).default(WEBHOOK_DEFAULTS.retryMaxBackoffMs),
  SLUICE_WEBHOOK_RETRY_AFTER_MAX_MS: integerVar(0, 3_600_000).default(WEBHOOK_DEFAULTS.retryAfterMaxMs),
  SLUICE_WEBHOOK_MAX_BATCH_RECORDS: integerVar(1, 10_000).default(WEBHOOK_DEFAULTS.maxBatchRecords),
  SLUICE_WEBHOOK_MAX_BATCH_WAIT_MS: integerVar(1, 60_000).default(WEBHOOK_DEFAULTS.maxBatchWaitMs),
  SLUICE_WEBHOOK_FETCH_MAX_WAIT_MS: integerVar(1, 10_000).default(WEBHOOK_DEFAULTS.fetchMaxWaitMs),
  SLUICE_WEBHOOK_SESSION_TIMEOUT_MS: integerVar(6_000, 300_000).default(WEBHOOK_DEFAULTS.sessionTimeoutMs),
  SLUICE_WEBHOOK_LAG_INTERVAL_MS: integerVar(0, 600_000).default(WEBHOOK_DEFAULTS.lagIntervalMs),
  SLUICE_WEBHOOK_VERSION_MEMORY: integerVar(1, 10_000_000).default(WEBHOOK_DEFAULTS.versionMemory),
  SLUICE_WEBHOOK_STOP_GRACE_MS: integerVar(0, 600_000).default(WEBHOOK_DEFAULTS.stopGraceMs),
  /** 0 turns the HTTP endpoints off; empty is an error, not 0. */
  SLUICE_METRICS_PORT: integerVar(0, 65_535).default(WEBHOOK_DEFAULTS.metricsPort),
});

export interface RetryPolicy {
  maxAttempts: number;
  maxElapsedMs: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  retryAfterMaxMs: number;
}

export interface WebhookConfig {
  url: string;
  /** The HMAC key; null: requests go out unsigned. A secret: never log it. */
  secret: string | null;
  /** The environment variable the secret came from, for the log. */
  secretEnv: string | null;
  /** Names this endpoint's consumer group and metrics when several sinks serve one pipeline; null: the default group. */
  endpointName: string | null;
  requestTimeoutMs: number;
  retry: RetryPolicy;
  maxBatchRecords: number;
  maxBatchWaitMs: number;
  fetchMaxWaitMs: number;
  sessionTimeoutMs: number;
  lagIntervalMs: number;
  versionMemory: number;
  stopGraceMs: number;
  metricsPort: number;
}

const ENDPOINT_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The sink's configuration from its flags and the environment. Every bad
 * value is named in one CONFIG_INVALID; a `--secret-env` naming an unset or
 * empty variable is refused, never silently turned into unsigned requests.
 */
export function webhookConfig(flags: { url: string; secretEnv?: string; name?: string }, env: NodeJS.ProcessEnv = process.env): WebhookConfig {
  const flagSchema = z.object({ url: httpUrlVar() });
  const problems: string[] = [];
  const urlCheck = flagSchema.safeParse({ url: flags.url });
  if (!urlCheck.success) problems.push(`--url "${flags.url}": expected an http:// or https:// URL`);
  if (flags.name !== undefined && !ENDPOINT_NAME.test(flags.name)) problems.push(`--name "${flags.name}": use 1 to 64 letters, digits, '-' or '_'`);
  let secret: string | null = null;
  if (flags.secretEnv !== undefined) {
    if (!ENV_NAME.test(flags.secretEnv)) problems.push(`--secret-env "${flags.secretEnv}": expected an environment variable name`);
    else {
      const value = env[flags.secretEnv];
      if (value === undefined || value.trim() === '') {
        problems.push(`--secret-env ${flags.secretEnv}: that environment variable is ${value === undefined ? 'not set' : 'empty'}; set it to the shared signing secret, or leave --secret-env out to send unsigned requests`);
      } else secret = value;
    }
  }
  let parsed: z.output<typeof envSchema> | undefined;
  try {
    parsed = parseEnvSchemas({ env: envSchema }, env).env;
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (problems.length > 0 || parsed === undefined) {
    throw new SluiceError('CONFIG_INVALID', `The webhook sink cannot start: ${problems.join('; ')}`);
  }
  if (parsed.SLUICE_WEBHOOK_RETRY_MAX_BACKOFF_MS < parsed.SLUICE_WEBHOOK_RETRY_INITIAL_BACKOFF_MS) {
    throw new SluiceError(
      'CONFIG_INVALID',
      `SLUICE_WEBHOOK_RETRY_MAX_BACKOFF_MS (${parsed.SLUICE_WEBHOOK_RETRY_MAX_BACKOFF_MS}) is below SLUICE_WEBHOOK_RETRY_INITIAL_BACKOFF_MS (${parsed.SLUICE_WEBHOOK_RETRY_INITIAL_BACKOFF_MS}); raise the maximum or lower the initial backoff.`,
    );
  }
  return {
    url: urlCheck.data!.url,
    secret,
    secretEnv: flags.secretEnv ?? null,
    endpointName: flags.name ?? null,
    requestTimeoutMs: parsed.SLUICE_WEBHOOK_TIMEOUT_MS,
    retry: {
      maxAttempts: parsed.SLUICE_WEBHOOK_MAX_ATTEMPTS,
      maxElapsedMs: parsed.SLUICE_WEBHOOK_MAX_ELAPSED_MS,
      initialBackoffMs: parsed.SLUICE_WEBHOOK_RETRY_INITIAL_BACKOFF_MS,
      maxBackoffMs: parsed.SLUICE_WEBHOOK_RETRY_MAX_BACKOFF_MS,
      retryAfterMaxMs: parsed.SLUICE_WEBHOOK_RETRY_AFTER_MAX_MS,
    },
    maxBatchRecords: parsed.SLUICE_WEBHOOK_MAX_BATCH_RECORDS,
    maxBatchWaitMs: parsed.SLUICE_WEBHOOK_MAX_BATCH_WAIT_MS,
    fetchMaxWaitMs: parsed.SLUICE_WEBHOOK_FETCH_MAX_WAIT_MS,
    sessionTimeoutMs: parsed.SLUICE_WEBHOOK_SESSION_TIMEOUT_MS,
    lagIntervalMs: parsed.SLUICE_WEBHOOK_LAG_INTERVAL_MS,
    versionMemory: parsed.SLUICE_WEBHOOK_VERSION_MEMORY,
    stopGraceMs: parsed.SLUICE_WEBHOOK_STOP_GRACE_MS,
    metricsPort: parsed.SLUICE_METRICS_PORT,
  };
}

/** Where requests go, for logs and dead letters: scheme, host and path; never the query (it may carry a token) or credentials. */
export function redactedUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
}

/** The config as it may be logged: the secret only as "signed with $NAME". */
export function describeConfig(config: WebhookConfig): Record<string, unknown> {
  const { secret, url, ...rest } = config;
  return { ...rest, url: redactedUrl(url), signed: secret !== null };
}
