/**
 * The ClickHouse sink of a pipeline: its own consumer group
 * (`sluice.<pipeline>.sink.clickhouse`) reads `<p>.validated`, `<p>.scored`,
 * `<p>.decided` and `<p>.dlq`, and writes each batch to the four tables, and
 * `<p>.feedback` (reviewers' labels) to the labels table.
 *
 * At-least-once from Kafka (offsets committed only after the insert), made
 * idempotent in ClickHouse (a row written twice collapses). ClickHouse or the
 * registry down: the batch is retried with backoff and nothing is committed,
 * so the sink catches up when they return. The pipeline never waits for the
 * sink: it is just another consumer group.
 */
import type { Server } from 'node:http';
import { assertSchemaCurrent } from '../../connectors/clickhouse/migrate.ts';
import { type ClickHouseClient, createClickHouse } from '../../connectors/clickhouse/client.ts';
import { insertTableRows } from '../../connectors/clickhouse/writer.ts';
import { topicPartitions } from '../../connectors/kafka/admin.ts';
import { type BatchConsumer, startBatchConsumer } from '../../connectors/kafka/batch-consumer.ts';
import { SchemaCatalog } from '../../connectors/registry/registry.ts';
import { keepRunning, Resources } from '../../lib/lifecycle.ts';
import { createLogger, type Logger } from '../../lib/log.ts';
import { startMetricsServer } from '../../lib/metrics.ts';
import { retry } from '../../lib/retry.ts';
import type { Connections } from '../../lib/settings.ts';
import type { SourceRecord } from '../runtime/types.ts';
import { topicName } from '../runtime/types.ts';
import { type SinkConfig, sinkConfigFromEnv } from './config.ts';
import { createSinkMetrics, type SinkMetrics } from './metrics.ts';
import { insertLabels } from './labels.ts';
import { mapRecords, rowCount, SINK_TOPIC_SUFFIXES } from './rows.ts';

/** What the sink needs to know of a pipeline: its instance name (topics, group) and its owners (metric labels). */
export interface SinkPipeline {
  name: string;
  owners: { team: string };
}

export const sinkGroupId = (pipeline: string) => `sluice.${pipeline}.sink.clickhouse`;
export const sinkTopics = (pipeline: string) => SINK_TOPIC_SUFFIXES.map((suffix) => topicName(pipeline, suffix));

export interface RunningSink {
  consumer: BatchConsumer;
  metrics: SinkMetrics;
  stop(): Promise<void>;
  /** Resolves when the sink has stopped (signal or stop()). */
  done: Promise<void>;
}

/** Writes one batch: decode (schemas fetched first), map, insert every table. Throws to have it retried. */
export function batchWriter(args: {
  pipeline: string;
  catalog: SchemaCatalog;
  client: ClickHouseClient;
  metrics: SinkMetrics;
  logger: Logger;
}): (records: SourceRecord[]) => Promise<void> {
  const { pipeline, catalog, client, metrics, logger } = args;
  return async (records) => {
    // A registry outage throws here (retriable): the batch waits, nothing is skipped.
    await catalog.prefetch(records.map((r) => r.value));
    const { rows, labels, skipped } = mapRecords(records, { pipeline, decode: (value) => catalog.decodeSync(value) });
    const [reports, labelReport] = await Promise.all([insertTableRows(client, rows), insertLabels(client, labels)]);
    if (labelReport) reports.push(labelReport);
    for (const report of reports) {
      metrics.rowsWritten.inc({ table: report.table }, report.rows);
      metrics.insertDuration.observe({ table: report.table }, report.durationMs / 1000);
    }
    for (const skip of skipped) {
      metrics.skipped.inc({ reason: skip.reason });
      logger.error({ topic: skip.topic, partition: skip.partition, offset: skip.offset, reason: skip.reason }, `record yields no row: ${skip.detail}`);
    }
    const byTopic = new Map<string, number>();
    for (const record of records) byTopic.set(record.topic, (byTopic.get(record.topic) ?? 0) + 1);
    for (const [topic, count] of byTopic) metrics.recordsIn.inc({ topic }, count);
    logger.debug({ records: records.length, rows: rowCount(rows) + labels.length }, 'batch written');
  };
}

/**
 * Runs the sink until SIGTERM/SIGINT or stop(). `groupId` defaults to
 * `sluice.<pipeline>.sink.clickhouse`.
 */
export async function runClickHouseSink(args: {
  pipeline: SinkPipeline;
  connections: Connections;
  config?: SinkConfig;
  logger?: Logger;
  handleSignals?: boolean;
  groupId?: string;
}): Promise<RunningSink> {
  const { pipeline, connections } = args;
  const config = args.config ?? sinkConfigFromEnv();
  const logger = args.logger ?? createLogger({ pipeline: pipeline.name, stage: 'sink-clickhouse' });
  const metrics = createSinkMetrics({ pipeline: pipeline.name, team: pipeline.owners.team });
  const client = createClickHouse({
    url: connections.clickhouseUrl,
    username: config.clickhouse.user,
    password: config.clickhouse.password,
    requestTimeoutMs: config.clickhouseRequestTimeoutMs,
  });
  const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
  const groupId = args.groupId ?? sinkGroupId(pipeline.name);
  const topics = sinkTopics(pipeline.name);
  const resources = new Resources(logger);
  resources.add(() => client.close());

  try {
    for (const topic of topics) await topicPartitions(connections.kafkaBrokers, topic);
    // Waits for ClickHouse to answer with the current schema (0.5 s doubling to 5 s between tries);
    // a schema that is behind is not retriable and fails the start at once.
    await retry(() => assertSchemaCurrent(client), { what: 'reaching ClickHouse and checking its schema', logger, initialMs: 500, maxMs: 5_000 });

    let lastFlushAt = Date.now();
    const consumer = await startBatchConsumer({
      brokers: connections.kafkaBrokers,
      clientId: groupId,
      groupId,
      topics,
      maxBatchRecords: config.maxBatchRecords,
      maxBatchWaitMs: config.maxBatchWaitMs,
      fetchMaxWaitMs: config.fetchMaxWaitMs,
      sessionTimeoutMs: config.sessionTimeoutMs,
      retryBackoffMs: config.retryBackoffMs,
      lagIntervalMs: config.lagIntervalMs,
      logger,
      handle: batchWriter({ pipeline: pipeline.name, catalog, client, metrics, logger }),
      onFlushed: ({ records }) => {
        lastFlushAt = Date.now();
        metrics.batchRecords.observe(records);
        metrics.lastProgress.set(lastFlushAt / 1000);
      },
      onFailure: ({ code }) => metrics.failures.inc({ code }),
      onCommitFailed: () => metrics.commitFailures.inc(),
      onLag: (lags) => {
        const byTopic = new Map<string, number>();
        for (const { topic, lag } of lags) byTopic.set(topic, (byTopic.get(topic) ?? 0) + lag);
        for (const [topic, lag] of byTopic) metrics.lag.set({ topic }, lag);
        metrics.buffered.set(consumer.buffered());
      },
    });
    resources.add(() => consumer.stop());

    if (config.metricsPort > 0) {
      const server: Server = await startMetricsServer(config.metricsPort, metrics.registry, {
        ready: () => {
          if (!consumer.joined()) return { ready: false, detail: 'not in the consumer group yet' };
          if (consumer.failing() >= 3) return { ready: false, detail: `retrying a failing batch (${consumer.failing()} attempts)` };
          return { ready: true, detail: `ok; last write ${Math.round((Date.now() - lastFlushAt) / 1000)} s ago` };
        },
      });
      resources.add(() => new Promise<void>((resolve) => server.close(() => resolve())));
    }
    // The ClickHouse password is never logged: only the user name goes out.
    const { clickhouse, ...settings } = config;
    logger.info({ topics, groupId, ...settings, clickhouseUser: clickhouse.user }, 'sink running');

    const lifecycle = keepRunning({
      resources,
      logger,
      stopping: 'writing what is buffered',
      handleSignals: args.handleSignals !== false,
    });
    return { consumer, metrics, ...lifecycle };
  } catch (error) {
    await resources.close();
    throw error;
  }
}
