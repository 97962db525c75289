/**
 * Prometheus metrics of the webhook sink (served by lib/metrics.ts's server):
 * what became of each decision, every request by status, request latency,
 * retries by cause, dead letters, and lag behind `<p>.decided`. Labels carry
 * HTTP statuses and causes (a bounded set), never an event id.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export function createWebhookMetrics(labels: { pipeline: string; team: string; endpoint: string }) {
  const registry = new Registry();
  registry.setDefaultLabels({ ...labels, stage: 'sink-webhook' });
  collectDefaultMetrics({ register: registry, prefix: 'sluice_process_' });
  return {
    registry,
    decisions: new Counter({
      name: 'sluice_webhook_decisions_total',
      help: 'Decisions read from <p>.decided, by outcome: delivered, dead_lettered, superseded (an older version than one delivered), duplicate (that version already delivered)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    requests: new Counter({
      name: 'sluice_webhook_requests_total',
      help: 'Requests sent to the receiver, by result: the HTTP status, timeout, or network:<code>',
      labelNames: ['status'],
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'sluice_webhook_request_duration_seconds',
      help: 'Time of one request, answer drained (timeouts included, at the timeout)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    deliveryDuration: new Histogram({
      name: 'sluice_webhook_delivery_duration_seconds',
      help: 'Time from a decision\'s first attempt to its delivery, retries included',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300],
      registers: [registry],
    }),
    retries: new Counter({ name: 'sluice_webhook_retries_total', help: 'Attempts followed by another, by cause (http:<status>, timeout, network:<code>)', labelNames: ['cause'], registers: [registry] }),
    deadLetters: new Counter({ name: 'sluice_webhook_dead_letters_total', help: 'Decisions written to <p>.dlq, by reason', labelNames: ['reason'], registers: [registry] }),
    batchFailures: new Counter({
      name: 'sluice_webhook_batch_failures_total',
      help: 'Batches retried because of the registry or Kafka (not the receiver), by error code; what was delivered is not sent again',
      labelNames: ['code'],
      registers: [registry],
    }),
    commitFailures: new Counter({ name: 'sluice_webhook_commit_failures_total', help: 'Offset commits that failed after delivery (those decisions may be delivered again after a restart)', registers: [registry] }),
    lag: new Gauge({ name: 'sluice_webhook_lag_records', help: 'Decisions between the sink group\'s committed offsets and the end of <p>.decided', registers: [registry] }),
    lastProgress: new Gauge({ name: 'sluice_last_progress_timestamp_seconds', help: 'When the sink last committed a batch of handled decisions', registers: [registry] }),
  };
}

export type WebhookMetrics = ReturnType<typeof createWebhookMetrics>;
