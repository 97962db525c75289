/**
 * Prometheus metrics of a processor, and the HTTP endpoints that expose them:
 * /metrics, /livez (the process is alive; no dependency checks) and /readyz
 * (the stage is making progress, not merely connected). Labels never carry an
 * event or user id.
 */
import { createServer, type Server } from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { SluiceError } from './errors.ts';

export function createStageMetrics(labels: { pipeline: string; stage: string; team: string }) {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  // Default process and Node.js metrics under their usual names (process_cpu_seconds_total, nodejs_heap_size_used_bytes…).
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    info: new Gauge({ name: 'sluice_stage_info', help: 'Static information about the running stage', labelNames: ['version'], registers: [registry] }),
    recordsIn: new Counter({ name: 'sluice_records_in_total', help: 'Records consumed from the input topic', registers: [registry] }),
    recordsOut: new Counter({ name: 'sluice_records_out_total', help: 'Records produced, by output topic', labelNames: ['topic'], registers: [registry] }),
    deadLetters: new Counter({ name: 'sluice_dead_letters_total', help: 'Records sent to the dead-letter topic, by reason', labelNames: ['reason'], registers: [registry] }),
    // No label: field names come from producers, and a label value a producer chooses could mint any number of series.
    droppedFields: new Counter({ name: 'sluice_dropped_fields_total', help: 'Unknown payload fields dropped during validation', registers: [registry] }),
    // validate's duplicate check and event-time bounds (processors/validate/dedup.ts, docs/ingest.md).
    duplicates: new Counter({ name: 'sluice_duplicates_total', help: 'Events dropped by validate because their event_id was validated within the dedup window', registers: [registry] }),
    dedupIds: new Gauge({ name: 'sluice_dedup_ids', help: 'Event ids the duplicate check holds in memory (all partitions of this process)', registers: [registry] }),
    dedupEvicted: new Counter({
      name: 'sluice_dedup_evicted_total',
      help: 'Event ids forgotten before their window ended because the id bound (SLUICE_DEDUP_MAX_IDS) was reached',
      registers: [registry],
    }),
    dedupRestores: new Counter({ name: 'sluice_dedup_restores_total', help: 'Partitions whose duplicate-check state was reloaded from the changelog', registers: [registry] }),
    untimelyEvents: new Counter({
      name: 'sluice_untimely_events_total',
      help: "Validated events whose occurred_at is outside the pipeline's bounds: late (older than latenessMs) or early (beyond clockSkewMs)",
      labelNames: ['timeliness'],
      registers: [registry],
    }),
    batchDuration: new Histogram({
      name: 'sluice_batch_duration_seconds',
      help: 'Time to process and commit one transaction of records',
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    batchRecords: new Histogram({ name: 'sluice_batch_records', help: 'Records per transaction', buckets: [1, 8, 32, 128, 512, 2048], registers: [registry] }),
    transactionAborts: new Counter({ name: 'sluice_transaction_aborts_total', help: 'Transactions aborted or failed; the records are redelivered', labelNames: ['cause'], registers: [registry] }),
    retries: new Counter({ name: 'sluice_retries_total', help: 'Batches retried after a transient failure', labelNames: ['code'], registers: [registry] }),
    modelLatency: new Histogram({
      name: 'sluice_model_latency_seconds',
      help: 'Model inference time per micro-batch',
      buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: [registry],
    }),
    killSwitch: new Gauge({ name: 'sluice_kill_switch', help: '1 while the pipeline kill switch is in any mode but model (rules, review or park)', registers: [registry] }),
    killSwitchMode: new Gauge({ name: 'sluice_kill_switch_mode', help: '1 for the kill-switch mode in force (model, rules, review, park), 0 for the others', labelNames: ['mode'], registers: [registry] }),
    circuitOpen: new Gauge({
      name: 'sluice_circuit_open',
      help: '1 while the circuit breaker holds an input partition (too many dead letters): its records wait in Kafka',
      labelNames: ['partition'],
      registers: [registry],
    }),
    circuitTrips: new Counter({ name: 'sluice_circuit_trips_total', help: 'Times the circuit breaker opened a partition (a failed probe counts again)', registers: [registry] }),
    pipelineInfo: new Gauge({
      name: 'sluice_pipeline_info',
      help: "The pipeline's owners from its manifest, as labels (value 1)",
      labelNames: ['data', 'model', 'infra', 'oncall', 'escalation', 'runbook'],
      registers: [registry],
    }),
    kafkaRequests: new Histogram({
      name: 'sluice_kafka_request_duration_seconds',
      help: 'Requests sent to Kafka by the stage and their round trip, by API and client (the transactional producers or the consumer)',
      labelNames: ['api', 'client'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
      registers: [registry],
    }),
    lastProgress: new Gauge({ name: 'sluice_last_progress_timestamp_seconds', help: 'When the stage last committed a transaction', registers: [registry] }),
  };
}

export type StageMetrics = ReturnType<typeof createStageMetrics>;

export interface HealthProbe {
  /** Ready: joined the group, caught up with the control topic, and not stuck retrying. */
  ready(): { ready: boolean; detail: string };
}

export function startMetricsServer(port: number, registry: Registry, health: HealthProbe): Promise<Server> {
  const server = createServer(async (request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      response.writeHead(200, { 'content-type': registry.contentType });
      response.end(await registry.metrics());
    } else if (path === '/livez') {
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.end('ok\n');
    } else if (path === '/readyz') {
      const { ready, detail } = health.ready();
      response.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
      response.end(`${detail}\n`);
    } else {
      response.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new SluiceError('CONFIG_INVALID', `SLUICE_METRICS_PORT=${port} is already in use (another instance on this host?). Give each instance its own port, or 0 to turn the endpoints off.`)
          : error,
      );
    });
    server.listen(port, '0.0.0.0', () => resolve(server));
  });
}
