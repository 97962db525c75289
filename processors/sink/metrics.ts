/**
 * Prometheus metrics of the ClickHouse sink (served like a stage's, by
 * lib/metrics.ts's server): rows written per table, insert latency, lag behind
 * the end of each topic, failures, and records that yield no row.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export function createSinkMetrics(labels: { pipeline: string; team: string }) {
  const registry = new Registry();
  registry.setDefaultLabels({ ...labels, stage: 'sink-clickhouse' });
  collectDefaultMetrics({ register: registry, prefix: 'sluice_process_' });
  return {
    registry,
    recordsIn: new Counter({ name: 'sluice_sink_records_in_total', help: 'Kafka records written to ClickHouse and committed, by topic', labelNames: ['topic'], registers: [registry] }),
    rowsWritten: new Counter({ name: 'sluice_sink_rows_written_total', help: 'Rows inserted into ClickHouse, by table (a batch retried after a failure counts again)', labelNames: ['table'], registers: [registry] }),
    insertDuration: new Histogram({
      name: 'sluice_sink_insert_duration_seconds',
      help: 'Time of one insert into one table',
      labelNames: ['table'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    batchRecords: new Histogram({ name: 'sluice_sink_batch_records', help: 'Kafka records per written batch', buckets: [1, 10, 100, 1_000, 5_000, 20_000, 100_000], registers: [registry] }),
    failures: new Counter({ name: 'sluice_sink_failures_total', help: 'Failed attempts to write a batch (it is retried), by error code', labelNames: ['code'], registers: [registry] }),
    commitFailures: new Counter({ name: 'sluice_sink_commit_failures_total', help: 'Offset commits that failed after a successful write (the batch is written again later)', registers: [registry] }),
    skipped: new Counter({ name: 'sluice_sink_skipped_records_total', help: 'Records that yield no row (undecodable, unknown schema), by reason', labelNames: ['reason'], registers: [registry] }),
    lag: new Gauge({ name: 'sluice_sink_lag_records', help: 'Records between the sink group\'s committed offsets and the end of each topic', labelNames: ['topic'], registers: [registry] }),
    buffered: new Gauge({ name: 'sluice_sink_buffered_records', help: 'Records fetched and waiting to be written', registers: [registry] }),
    lastProgress: new Gauge({ name: 'sluice_last_progress_timestamp_seconds', help: 'When the sink last wrote and committed a batch', registers: [registry] }),
  };
}

export type SinkMetrics = ReturnType<typeof createSinkMetrics>;
