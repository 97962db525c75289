/**
 * The gateway's settings: one schema over the environment, parsed once before
 * any I/O (every bad variable listed in one CONFIG_INVALID). Units in names.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { SluiceError } from '../lib/errors.ts';
import { connectionSchema, connectionsOf, httpUrlVar, integerVar, parseEnvSchemas, type Connections } from '../lib/settings.ts';

const KIB = 1_024;
const MIB = 1_024 * KIB;

export const INGEST_DEFAULTS = {
  port: 8_088,
  /** The compacted topic of API keys (hashed) that every gateway instance follows. */
  keysTopic: 'sluice.ingest.keys',
  /** The topic of accepted event ids (per pipeline; records expire with the window), restored by every instance at start. */
  idempotencyTopic: 'sluice.ingest.idempotency',
  idempotencyPartitions: 3,
  /** A repeated event_id (or document) within this window answers `duplicate`. */
  idempotencyWindowMs: 86_400_000, // 24 h
  /** The most event ids an instance remembers: bounds memory (about 110 bytes of typed arrays per entry of the bound); the oldest go first. */
  idempotencyMaxEntries: 500_000,
  /** An accepted event is acknowledged by Kafka within this, or the request answers 503. */
  produceTimeoutMs: 5_000,
  /**
   * Bytes of request bodies held at once (read, parsed or waiting for Kafka); beyond it, 503. Parsed JSON
   * takes a few times its bytes in heap, so this bounds the heap too: 16 MiB of bodies stays far inside
   * the 192 MB old space docs/ingest.md recommends for a gateway under 300 MB of RSS.
   */
  maxInflightBytes: 16 * MIB,
  maxEventBytes: 256 * KIB,
  maxRequestBytes: 5 * MIB,
  maxDocumentBytes: 10 * MIB,
  maxEventsPerRequest: 500,
  /** Extracted document text is cut at this many bytes of UTF-8 (`text_truncated`). */
  maxDocumentTextBytes: 64 * KIB,
  /** Documents parsed at once (PDF parsing is CPU and memory heavy); beyond it they wait for a slot, within the in-flight byte budget. */
  documentConcurrency: 2,
  /** Events a key may send per second unless `add-key --rate` says otherwise. */
  defaultRatePerSecond: 100,
  documentDir: '.sluice/documents',
} as const;

const ingestSchema = z.object({
  SLUICE_INGEST_PORT: integerVar(0, 65_535).default(INGEST_DEFAULTS.port),
  SLUICE_INGEST_HOST: z.string().trim().min(1).default('0.0.0.0'),
  SLUICE_INGEST_KEYS_TOPIC: z.string().trim().min(1).default(INGEST_DEFAULTS.keysTopic),
  SLUICE_INGEST_IDEMPOTENCY_TOPIC: z.string().trim().min(1).default(INGEST_DEFAULTS.idempotencyTopic),
  SLUICE_INGEST_IDEMPOTENCY_WINDOW_MS: integerVar(1_000, 30 * 86_400_000).default(INGEST_DEFAULTS.idempotencyWindowMs),
  SLUICE_INGEST_IDEMPOTENCY_MAX_ENTRIES: integerVar(1_000, 50_000_000).default(INGEST_DEFAULTS.idempotencyMaxEntries),
  SLUICE_INGEST_PRODUCE_TIMEOUT_MS: integerVar(100, 60_000).default(INGEST_DEFAULTS.produceTimeoutMs),
  SLUICE_INGEST_MAX_INFLIGHT_BYTES: integerVar(MIB, 4_096 * MIB).default(INGEST_DEFAULTS.maxInflightBytes),
  SLUICE_INGEST_DOCUMENT_DIR: z.string().trim().min(1).default(INGEST_DEFAULTS.documentDir),
  /** Set to keep documents on S3-compatible storage instead of SLUICE_INGEST_DOCUMENT_DIR. */
  SLUICE_INGEST_S3_ENDPOINT: httpUrlVar().optional(),
  SLUICE_INGEST_S3_BUCKET: z.string().trim().min(1).optional(),
  SLUICE_INGEST_S3_PREFIX: z.string().default('documents/'),
  SLUICE_INGEST_S3_REGION: z.string().trim().min(1).default('us-east-1'),
  AWS_ACCESS_KEY_ID: z.string().optional(),
  AWS_SECRET_ACCESS_KEY: z.string().optional(),
  AWS_SESSION_TOKEN: z.string().optional(),
  /** Names this instance's transactional producer; a restart with the same id aborts what its predecessor left open at once. */
  SLUICE_INGEST_INSTANCE_ID: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9._-]{1,100}$/, 'expected 1-100 letters, digits, ".", "_" or "-"')
    .optional(),
  /** Of the gateway's own topics when it creates them (production: 3, and then min.insync.replicas=2). */
  SLUICE_REPLICATION_FACTOR: integerVar(1, 7).default(1),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export interface IngestConfig {
  connections: Connections;
  port: number;
  host: string;
  keysTopic: string;
  idempotencyTopic: string;
  idempotencyWindowMs: number;
  idempotencyMaxEntries: number;
  produceTimeoutMs: number;
  maxInflightBytes: number;
  documentDir: string;
  /** Documents on S3-compatible storage instead of documentDir. */
  s3?: { endpoint: string; bucket: string; prefix: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } };
  instanceId: string;
  replicationFactor: number;
  logLevel: string;
}

export function ingestConfigFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: { port?: number } = {}): IngestConfig {
  const parsed = parseEnvSchemas({ connections: connectionSchema, ingest: ingestSchema }, env);
  const i = parsed.ingest;
  let s3: IngestConfig['s3'];
  if (i.SLUICE_INGEST_S3_ENDPOINT !== undefined) {
    const missing = [
      ...(i.SLUICE_INGEST_S3_BUCKET ? [] : ['SLUICE_INGEST_S3_BUCKET']),
      ...(i.AWS_ACCESS_KEY_ID ? [] : ['AWS_ACCESS_KEY_ID']),
      ...(i.AWS_SECRET_ACCESS_KEY ? [] : ['AWS_SECRET_ACCESS_KEY']),
    ];
    if (missing.length > 0) throw new SluiceError('CONFIG_INVALID', `SLUICE_INGEST_S3_ENDPOINT is set: also set ${missing.join(', ')}.`);
    s3 = {
      endpoint: i.SLUICE_INGEST_S3_ENDPOINT,
      bucket: i.SLUICE_INGEST_S3_BUCKET!,
      prefix: i.SLUICE_INGEST_S3_PREFIX,
      region: i.SLUICE_INGEST_S3_REGION,
      credentials: { accessKeyId: i.AWS_ACCESS_KEY_ID!, secretAccessKey: i.AWS_SECRET_ACCESS_KEY!, ...(i.AWS_SESSION_TOKEN && { sessionToken: i.AWS_SESSION_TOKEN }) },
    };
  }
  return {
    ...(s3 && { s3 }),
    connections: connectionsOf(parsed.connections),
    port: overrides.port ?? i.SLUICE_INGEST_PORT,
    host: i.SLUICE_INGEST_HOST,
    keysTopic: i.SLUICE_INGEST_KEYS_TOPIC,
    idempotencyTopic: i.SLUICE_INGEST_IDEMPOTENCY_TOPIC,
    idempotencyWindowMs: i.SLUICE_INGEST_IDEMPOTENCY_WINDOW_MS,
    idempotencyMaxEntries: i.SLUICE_INGEST_IDEMPOTENCY_MAX_ENTRIES,
    produceTimeoutMs: i.SLUICE_INGEST_PRODUCE_TIMEOUT_MS,
    maxInflightBytes: i.SLUICE_INGEST_MAX_INFLIGHT_BYTES,
    documentDir: i.SLUICE_INGEST_DOCUMENT_DIR,
    instanceId: i.SLUICE_INGEST_INSTANCE_ID ?? `${hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 60)}-${process.pid}`,
    replicationFactor: i.SLUICE_REPLICATION_FACTOR,
    logLevel: i.LOG_LEVEL,
  };
}
