/** `sluice review serve` settings: one schema over the environment, parsed before any I/O. */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { type Connections, connectionSchema, connectionsOf, integerVar, parseEnvSchemas } from '../lib/settings.ts';

export const REVIEW_DEFAULTS = {
  port: 8090,
  /** A claim holds an item for this long unless renewed (unless the pipeline's manifest says otherwise). */
  leaseSeconds: 600, // ten minutes
  /** An item not resolved by created_at + this expires to the pipeline's fallback decision (unless its manifest says otherwise). */
  slaSeconds: 4 * 3_600, // four hours
  sessionSeconds: 12 * 3_600,
  /** How often each instance looks for expired items. */
  expirySweepMs: 1_000,
  reviewersTopic: 'sluice.review.reviewers',
  sessionsTopic: 'sluice.review.sessions',
} as const;

const schema = z.object({
  SLUICE_REVIEW_PORT: integerVar(0, 65_535).default(REVIEW_DEFAULTS.port),
  SLUICE_REVIEW_HOST: z.string().trim().min(1).default('127.0.0.1'),
  /** Comma-separated pipeline instances to serve; default: every registered pipeline. */
  SLUICE_REVIEW_PIPELINES: z.string().trim().optional(),
  SLUICE_REVIEW_LEASE_SECONDS: integerVar(1, 86_400).optional(),
  SLUICE_REVIEW_SLA_SECONDS: integerVar(1, 30 * 86_400).optional(),
  SLUICE_REVIEW_SESSION_SECONDS: integerVar(60, 30 * 86_400).default(REVIEW_DEFAULTS.sessionSeconds),
  SLUICE_REVIEW_REVIEWERS_TOPIC: z.string().trim().min(1).default(REVIEW_DEFAULTS.reviewersTopic),
  SLUICE_REVIEW_SESSIONS_TOPIC: z.string().trim().min(1).default(REVIEW_DEFAULTS.sessionsTopic),
  /** Set when the service is reached over https (behind a proxy): cookies get `Secure`. */
  SLUICE_REVIEW_COOKIE_SECURE: z.enum(['true', 'false']).default('false'),
  SLUICE_REVIEW_INSTANCE_ID: z.string().trim().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, . _ - (at most 64)').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export interface ReviewConfig {
  connections: Connections;
  port: number;
  host: string;
  /** undefined: every registered pipeline. */
  pipelines: string[] | undefined;
  /** Overrides every pipeline's lease (manifest `review.leaseSeconds`) when set. */
  leaseMs: number | undefined;
  /** Overrides every pipeline's SLA (manifest `review.slaSeconds`) when set (tests: a few seconds). */
  slaMs: number | undefined;
  sessionMs: number;
  reviewersTopic: string;
  sessionsTopic: string;
  cookieSecure: boolean;
  instanceId: string;
  logLevel: string;
  expirySweepMs: number;
}

export function reviewConfigFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: { port?: number } = {}): ReviewConfig {
  const parsed = parseEnvSchemas({ connections: connectionSchema, review: schema }, env);
  const r = parsed.review;
  return {
    connections: connectionsOf(parsed.connections),
    port: overrides.port ?? r.SLUICE_REVIEW_PORT,
    host: r.SLUICE_REVIEW_HOST,
    pipelines: r.SLUICE_REVIEW_PIPELINES ? r.SLUICE_REVIEW_PIPELINES.split(',').map((p) => p.trim()).filter(Boolean) : undefined,
    leaseMs: r.SLUICE_REVIEW_LEASE_SECONDS === undefined ? undefined : r.SLUICE_REVIEW_LEASE_SECONDS * 1_000,
    slaMs: r.SLUICE_REVIEW_SLA_SECONDS === undefined ? undefined : r.SLUICE_REVIEW_SLA_SECONDS * 1_000,
    sessionMs: r.SLUICE_REVIEW_SESSION_SECONDS * 1_000,
    reviewersTopic: r.SLUICE_REVIEW_REVIEWERS_TOPIC,
    sessionsTopic: r.SLUICE_REVIEW_SESSIONS_TOPIC,
    cookieSecure: r.SLUICE_REVIEW_COOKIE_SECURE === 'true',
    instanceId: r.SLUICE_REVIEW_INSTANCE_ID ?? `review-${randomUUID().slice(0, 8)}`,
    logLevel: r.LOG_LEVEL,
    expirySweepMs: REVIEW_DEFAULTS.expirySweepMs,
  };
}
