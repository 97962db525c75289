/**
 * The webhook sink of a pipeline: its own consumer group
 * (`sluice.<pipeline>.webhook`, or `sluice.<pipeline>.webhook.<name>` for one
 * of several endpoints) reads `<p>.decided` read-committed and POSTs each
 * decision to one HTTP endpoint (deliverer.ts).
 *
 * At-least-once from Kafka (offsets committed only after a batch's decisions
 * are delivered or dead-lettered), made idempotent for the receiver by the
 * `idempotency-key` header. The batch consumer fetches apart from delivery, so
 * the group membership stays alive (heartbeats) while a receiver is retried.
 */
import type { Server } from 'node:http';
import { openProducer, topicPartitions } from '../../connectors/kafka/admin.ts';
import { type BatchConsumer, startBatchConsumer } from '../../connectors/kafka/batch-consumer.ts';
import { SchemaCatalog } from '../../connectors/registry/registry.ts';
import { topicName } from '../../lib/contracts.ts';
import { keepRunning, Resources } from '../../lib/lifecycle.ts';
import { createLogger, type Logger } from '../../lib/log.ts';
import { startMetricsServer } from '../../lib/metrics.ts';
import { retry } from '../../lib/retry.ts';
import type { Connections } from '../../lib/settings.ts';
import { describeConfig, redactedUrl, type WebhookConfig } from './config.ts';
import { createDeliverer, type Deliverer } from './deliverer.ts';
import { post } from './http.ts';
import { createWebhookMetrics, type WebhookMetrics } from './metrics.ts';

export const webhookGroupId = (pipeline: string, endpointName: string | null = null): string =>
  endpointName === null ? `sluice.${pipeline}.webhook` : `sluice.${pipeline}.webhook.${endpointName}`;

/** After a stop began, the process exits by itself this long after the grace, even if a client hangs. */
const SHUTDOWN_MARGIN_MS = 20_000;

export interface RunningWebhookSink {
  consumer: BatchConsumer;
  deliverer: Deliverer;
  metrics: WebhookMetrics;
  stop(): Promise<void>;
  /** Resolves when the sink has stopped (signal or stop()). */
  done: Promise<void>;
}

/** Runs the webhook sink until SIGTERM/SIGINT or stop(). */
export async function runWebhookSink(args: {
  pipeline: { name: string; owners: { team: string } };
  connections: Connections;
  config: WebhookConfig;
  logger?: Logger;
  handleSignals?: boolean;
}): Promise<RunningWebhookSink> {
  const { pipeline, connections, config } = args;
  const endpoint = config.endpointName ?? 'default';
  const logger = args.logger ?? createLogger({ pipeline: pipeline.name, stage: 'sink-webhook', endpoint });
  const metrics = createWebhookMetrics({ pipeline: pipeline.name, team: pipeline.owners.team, endpoint });
  const groupId = webhookGroupId(pipeline.name, config.endpointName);
  const topic = topicName(pipeline.name, 'decided');
  const dlqTopic = topicName(pipeline.name, 'dlq');
  const resources = new Resources(logger);

  try {
    for (const needed of [topic, dlqTopic]) await topicPartitions(connections.kafkaBrokers, needed);
    const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
    await retry(() => catalog.probe(), { what: 'reaching the schema registry', logger, initialMs: 500, maxMs: 5_000 });
    const producer = await openProducer(connections.kafkaBrokers, `${groupId}.dlq`);
    resources.add(() => producer.close());

    const deliverer = createDeliverer({
      pipeline: pipeline.name,
      config,
      codec: catalog,
      post,
      writeDeadLetter: (message) => producer.send(message.topic, [{ key: message.key, value: message.value, headers: message.headers }]),
      metrics,
      logger,
    });

    let lastFlushAt = Date.now();
    const consumer = await startBatchConsumer({
      brokers: connections.kafkaBrokers,
      clientId: groupId,
      groupId,
      topics: [topic],
      maxBatchRecords: config.maxBatchRecords,
      maxBatchWaitMs: config.maxBatchWaitMs,
      fetchMaxWaitMs: config.fetchMaxWaitMs,
      sessionTimeoutMs: config.sessionTimeoutMs,
      // Registry or Kafka away (the receiver's own failures are retried per decision, not here).
      retryBackoffMs: { initial: 200, max: 5_000 },
      lagIntervalMs: config.lagIntervalMs,
      logger,
      handle: (records) => deliverer.handle(records),
      onFlushed: () => {
        lastFlushAt = Date.now();
        metrics.lastProgress.set(lastFlushAt / 1000);
      },
      onCommitFailed: () => metrics.commitFailures.inc(),
      onLag: (lags) => metrics.lag.set(lags.reduce((n, { lag }) => n + lag, 0)),
    });
    resources.add(() => consumer.stop());

    if (config.metricsPort > 0) {
      const server: Server = await startMetricsServer(config.metricsPort, metrics.registry, {
        ready: () => {
          if (!consumer.joined()) return { ready: false, detail: 'not in the consumer group yet' };
          if (consumer.failing() >= 3) return { ready: false, detail: `retrying a batch after a registry or Kafka failure (${consumer.failing()} attempts)` };
          return { ready: true, detail: `ok; last commit ${Math.round((Date.now() - lastFlushAt) / 1000)} s ago` };
        },
      });
      resources.add(() => new Promise<void>((resolve) => server.close(() => resolve())));
    }
    if (config.secret === null) {
      logger.warn({ url: redactedUrl(config.url) }, 'no --secret-env: requests are NOT signed; receivers cannot tell them from forged ones');
    }
    logger.info({ topic, groupId, dlqTopic, ...describeConfig(config) }, 'webhook sink running');

    const lifecycle = keepRunning({
      resources,
      logger,
      stopping: 'delivering the batch in hand (within the stop grace) and committing it',
      handleSignals: args.handleSignals !== false,
      onStop: () => deliverer.beginStop(),
      ...(args.handleSignals !== false && { shutdownTimeoutMs: config.stopGraceMs + SHUTDOWN_MARGIN_MS }),
    });
    return { consumer, deliverer, metrics, ...lifecycle };
  } catch (error) {
    await resources.close();
    throw error;
  }
}
