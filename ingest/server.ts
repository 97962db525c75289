/**
 * `sluice ingest serve`: wires the real dependencies (Kafka, the keys and
 * idempotency topics, the local document store) into the app and listens.
 * Start-up: parse the settings, create the gateway's two topics if
 * missing, read both to their end, start the producer, then listen; /readyz
 * turns 200 only then. SIGTERM stops listening, lets requests in flight
 * finish (their transactions commit or abort) and exits.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { ensureTopics, openAdmin, type TopicSpec } from '../connectors/kafka/admin.ts';
import { followTopic } from '../connectors/kafka/follow.ts';
import { errorMessage, SluiceError } from '../lib/errors.ts';
import { keepRunning, Resources, type Running } from '../lib/lifecycle.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { retry } from '../lib/retry.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { buildIngestApp, type IngestLimits } from './app.ts';
import type { IngestConfig } from './config.ts';
import { localDocumentStore, s3DocumentStore } from './documents.ts';
import { IdempotencyIndex } from './idempotency.ts';
import { openKafkaEventLog } from './kafka-log.ts';
import { KeyRing, RateLimiter } from './keys.ts';
import { createIngestMetrics } from './metrics.ts';

const DAY_MS = 86_400_000;
/** Keys of the sync records on the idempotency topic (never an idempotency key: those start with a pipeline name). */
const SYNC_PREFIX = '__sync/';

/** The gateway's own topics: the keys compacted (one record per key), the idempotency records deleted a little after the window. */
export function ingestTopics(config: Pick<IngestConfig, 'keysTopic' | 'idempotencyTopic' | 'idempotencyWindowMs'>, replicationFactor = 1, partitions = 3): TopicSpec[] {
  const durability: Record<string, string> = replicationFactor >= 3 ? { 'min.insync.replicas': '2' } : {};
  return [
    { topic: config.keysTopic, partitions: 1, replicationFactor, config: { ...durability, 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '0', 'segment.ms': String(DAY_MS) } },
    {
      topic: config.idempotencyTopic,
      partitions,
      replicationFactor,
      config: {
        ...durability,
        'cleanup.policy': 'delete',
        'retention.ms': String(config.idempotencyWindowMs + 3_600_000),
        'segment.ms': String(Math.min(DAY_MS, Math.max(60_000, Math.floor(config.idempotencyWindowMs / 4)))),
      },
    },
  ];
}

export interface RunningGateway extends Running {
  app: FastifyInstance;
  /** The port listened on (useful with port 0). */
  port: number;
  url: string;
}

export async function serveIngest(options: {
  config: IngestConfig;
  logger?: Logger;
  handleSignals?: boolean;
  limits?: Partial<IngestLimits>;
}): Promise<RunningGateway> {
  const { config } = options;
  const logger = options.logger ?? createLogger({ component: 'ingest', instance: config.instanceId }, config.logLevel);
  const brokers = config.connections.kafkaBrokers;
  const resources = new Resources(logger);
  try {
    await ensureTopics(brokers, ingestTopics(config, config.replicationFactor)).catch((error) => {
      throw new SluiceError('KAFKA_UNAVAILABLE', `Cannot reach Kafka at ${brokers.join(',')} (KAFKA_BROKERS) to check the gateway's topics: ${errorMessage(error)}`, { cause: error });
    });
    // Topics just created may not have a leader everywhere yet; followTopic would fail on them.
    const admin = await openAdmin(brokers, `sluice-ingest-${config.instanceId}`);
    try {
      for (const topic of [config.keysTopic, config.idempotencyTopic]) {
        await retry(() => admin.partitionWatermarks(topic), { what: `waiting for ${topic} to have leaders`, logger, deadlineMs: 30_000, initialMs: 100, maxMs: 1_000 });
      }
    } finally {
      await admin.close();
    }
    const metrics = createIngestMetrics();
    const keys = new KeyRing();
    const idempotency = new IdempotencyIndex({ windowMs: config.idempotencyWindowMs, maxEntries: config.idempotencyMaxEntries });

    const keysFollower = await followTopic({
      brokers,
      topic: config.keysTopic,
      clientId: `sluice-ingest-keys-${config.instanceId}`,
      logger,
      onMessage: (message) => {
        if (message.key !== null) keys.apply(message.key, message.value);
      },
    });
    resources.add(() => keysFollower.stop());
    const events = await openKafkaEventLog({
      brokers,
      instanceId: config.instanceId,
      idempotencyTopic: config.idempotencyTopic,
      produceTimeoutMs: config.produceTimeoutMs,
      maxQueuedBytes: Math.floor(config.maxInflightBytes / 2),
      logger,
      onCommit: (count) => metrics.transactions.observe(count),
    });
    resources.add(() => events.close());

    // The idempotency topic is written in transactions, so its end offset sits past a commit marker that a
    // reader never receives: "caught up" is instead having read a sync record this instance writes to every
    // partition after subscribing (read-committed: every transaction committed before it has been read too).
    const syncKey = `${SYNC_PREFIX}${config.instanceId}`;
    const syncToken = randomUUID();
    const unsynced = new Set<number>();
    let syncWritten = false;
    let idsCaughtUp = false;
    let markSynced: () => void = () => {};
    const synced = new Promise<void>((resolve) => {
      markSynced = () => {
        idsCaughtUp = true;
        logger.info({ entries: idempotency.size }, 'idempotency window restored');
        resolve();
      };
    });
    const idempotencyFollower = await followTopic({
      brokers,
      topic: config.idempotencyTopic,
      clientId: `sluice-ingest-idempotency-${config.instanceId}`,
      logger,
      onMessage: (message) => {
        if (message.key === null) return;
        if (message.key.startsWith(SYNC_PREFIX)) {
          if (message.key === syncKey && message.value?.toString('utf8') === syncToken) {
            unsynced.delete(message.partition);
            if (syncWritten && unsynced.size === 0 && !idsCaughtUp) markSynced();
          }
          return;
        }
        idempotency.apply(message.value);
      },
    });
    resources.add(() => idempotencyFollower.stop());
    const partitionCount = (await events.partitions(config.idempotencyTopic)) ?? 0;
    for (let partition = 0; partition < partitionCount; partition++) unsynced.add(partition);
    await events.markPartitions(config.idempotencyTopic, syncKey, Buffer.from(syncToken, 'utf8'));
    syncWritten = true;
    if (unsynced.size === 0 && !idsCaughtUp) markSynced();

    let keysCaughtUp = false;
    const restore = Promise.all([
      keysFollower.caughtUp.then(() => {
        keysCaughtUp = true;
      }),
      synced,
    ]);

    const app = await buildIngestApp({
      pipelineByName,
      keys,
      rateLimiter: new RateLimiter(),
      idempotency,
      events,
      documents: config.s3 ? s3DocumentStore(config.s3) : localDocumentStore(config.documentDir),
      metrics,
      logger,
      ...(options.limits && { limits: options.limits }),
      ready: () => {
        if (!keysCaughtUp) return { ready: false, detail: `reading the keys topic ${config.keysTopic}` };
        if (!idsCaughtUp) return { ready: false, detail: `restoring the idempotency window from ${config.idempotencyTopic}` };
        return events.health();
      },
    });
    // Requests in flight finish (their transactions commit or abort) before the producer closes.
    resources.add(() => app.close());

    // Duplicates must be recognized from the first request: listen only once the window is restored.
    await restore;
    const deadline = Date.now() + 30_000;
    while (!events.health().ready) {
      if (Date.now() > deadline) {
        throw new SluiceError('KAFKA_UNAVAILABLE', `The gateway's transactional producer did not start within 30 s: ${events.health().detail}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    let address: string;
    try {
      address = await app.listen({ port: config.port, host: config.host });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        throw new SluiceError('CONFIG_INVALID', `Port ${config.port} is already in use; pass --port or set SLUICE_INGEST_PORT.`);
      }
      throw error;
    }
    const port = (app.server.address() as { port: number }).port;
    logger.info({ address, port, keys: keys.size, idempotencyEntries: idempotency.size }, 'ingest API listening');
    const running = keepRunning({ resources, logger, stopping: 'finishing requests in flight', handleSignals: options.handleSignals ?? false, shutdownTimeoutMs: options.handleSignals ? 15_000 : undefined });
    return { ...running, app, port, url: `http://127.0.0.1:${port}` };
  } catch (error) {
    await resources.close();
    throw error;
  }
}
