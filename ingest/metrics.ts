/**
 * The gateway's Prometheus metrics. Labels never carry a key, an event id or
 * a pipeline name a caller could invent: `pipeline` is set only once a key has
 * been accepted for it, `-` otherwise.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export function createIngestMetrics() {
  const registry = new Registry();
  registry.setDefaultLabels({ component: 'ingest' });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new Counter({
      name: 'sluice_ingest_requests_total',
      help: 'HTTP requests answered, by route, status and pipeline',
      labelNames: ['route', 'status', 'pipeline'],
      registers: [registry],
    }),
    events: new Counter({
      name: 'sluice_ingest_events_total',
      help: 'Events answered, by pipeline and result (accepted, duplicate, rejected)',
      labelNames: ['pipeline', 'result'],
      registers: [registry],
    }),
    requestBytes: new Counter({
      name: 'sluice_ingest_request_bytes_total',
      help: 'Request body bytes received, by route and pipeline',
      labelNames: ['route', 'pipeline'],
      registers: [registry],
    }),
    producedBytes: new Counter({ name: 'sluice_ingest_produced_bytes_total', help: 'Event bytes produced to raw topics, by pipeline', labelNames: ['pipeline'], registers: [registry] }),
    produceLatency: new Histogram({
      name: 'sluice_ingest_produce_duration_seconds',
      help: 'Time from a request handing its events to Kafka to their commit (or failure)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    transactions: new Histogram({
      name: 'sluice_ingest_transaction_events',
      help: 'Events per Kafka transaction (group commit)',
      buckets: [1, 10, 100, 500, 1_000, 5_000, 10_000],
      registers: [registry],
    }),
    inflightBytes: new Gauge({ name: 'sluice_ingest_inflight_bytes', help: 'Request bytes held right now (bounded by SLUICE_INGEST_MAX_INFLIGHT_BYTES)', registers: [registry] }),
    idempotencyEntries: new Gauge({ name: 'sluice_ingest_idempotency_entries', help: 'Event ids remembered for duplicate detection', registers: [registry] }),
    idempotencyEvictions: new Gauge({
      name: 'sluice_ingest_idempotency_evicted_early_total',
      help: 'Event ids forgotten before the window ended, to bound memory (raise SLUICE_INGEST_IDEMPOTENCY_MAX_ENTRIES)',
      registers: [registry],
    }),
    documents: new Counter({ name: 'sluice_ingest_documents_total', help: 'Documents answered, by pipeline and outcome (accepted, duplicate, or the error code)', labelNames: ['pipeline', 'outcome'], registers: [registry] }),
    keys: new Gauge({ name: 'sluice_ingest_keys', help: 'API keys in force', registers: [registry] }),
  };
}

export type IngestMetrics = ReturnType<typeof createIngestMetrics>;
