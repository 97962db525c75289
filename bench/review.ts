/**
 * Measures the review service against the real local stack and prints figures
 * (never asserts): how long a review request takes from the commit of the
 * transaction that writes it to `<p>.review` until it is in the service's
 * queue (p50, p99), and how many resolutions per second one instance sustains
 * (each one fenced, synced and transactional: decision, label, state).
 *
 *   npm run bench:review -- [--items 400] [--resolutions 200] [--concurrency 8] [--json]
 */
import { parseArgs } from 'node:util';
import { pipelineTopics, registerPipelineSchemas } from '../cli/pipeline.ts';
import { deleteTopics, ensureTopics } from '../connectors/kafka/admin.ts';
import { openTransactionalProducer } from '../connectors/kafka/tx.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { pipelineTopicNames, topicName } from '../lib/contracts.ts';
import { createLogger } from '../lib/log.ts';
import { reviewConfigFromEnv } from '../review/config.ts';
import { itemIdOf } from '../review/queue.ts';
import { serveReview } from '../review/server.ts';
import { stateTopicOf } from '../review/topics.ts';

const { values } = parseArgs({ options: { items: { type: 'string', default: '400' }, resolutions: { type: 'string', default: '200' }, concurrency: { type: 'string', default: '8' }, json: { type: 'boolean', default: false } } });
const items = Number(values.items);
const resolutions = Math.min(items, Number(values.resolutions));
const concurrency = Number(values.concurrency);
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

const run = `${Date.now().toString(36)}`;
const pipeline = `signup-risk-rvbench-${run}`;
const config = reviewConfigFromEnv({
  ...process.env,
  SLUICE_REVIEW_PIPELINES: pipeline,
  SLUICE_REVIEW_REVIEWERS_TOPIC: `rvbench-${run}.reviewers`,
  SLUICE_REVIEW_SESSIONS_TOPIC: `rvbench-${run}.sessions`,
  SLUICE_REVIEW_PORT: '0',
});
const brokers = config.connections.kafkaBrokers;
process.stderr.write(`creating ${pipeline}\n`);
await ensureTopics(brokers, pipelineTopics(pipeline));
await registerPipelineSchemas(pipeline, config.connections.schemaRegistryUrl);

const committedAt = new Map<string, number>();
const latencies: number[] = [];
let arrived = 0;
let markAllArrived: () => void = () => {};
const allArrived = new Promise<void>((resolve) => {
  markAllArrived = resolve;
});
const service = await serveReview({
  config,
  logger: createLogger({ component: 'review-bench' }, 'warn'),
  onReviewApplied: (_p, itemId) => {
    const at = committedAt.get(itemId);
    if (at !== undefined) latencies.push(performance.now() - at);
    if (++arrived >= items) markAllArrived();
  },
});
try {
  const encode = await new SchemaCatalog(config.connections.schemaRegistryUrl).encoderFor(`${pipeline}.review-value`);
  const producer = await openTransactionalProducer({ brokers, clientId: 'review-bench', transactionalId: `review-bench-${run}` });
  const eventIds = Array.from({ length: items }, (_, i) => `rvbench-${run}-${i}`);
  // Like the decide stage: small transactions, one after another (about 10 requests every 20 ms).
  for (let i = 0; i < items; i += 10) {
    const tx = await producer.begin();
    const batch = eventIds.slice(i, i + 10);
    await tx.send(
      topicName(pipeline, 'review'),
      batch.map((eventId) => ({
        key: eventId,
        value: encode({ event_id: eventId, pipeline, decision: 'review', decided_by: 'model', reasons: ['score_above_review_threshold'], score: 0.7, model_version: 'bench', policy_version: 'bench', decision_version: 1, occurred_at: Date.now(), decided_at: Date.now(), payload: { user_id: eventId, email: 'a@example.com', email_domain: 'example.com', country: 'GB', ip_country: null, signup_channel: 'web', plan: 'free', email_domain_age_days: null, signups_from_ip_24h: null, referral_code: null } }),
      })),
    );
    const start = performance.now();
    for (const eventId of batch) committedAt.set(itemIdOf(pipeline, eventId), start);
    await tx.commit();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await producer.close();
  await allArrived;
  latencies.sort((a, b) => a - b);

  const { password } = await service.store.addReviewer('bench', 'reviewer', 'bench');
  const signIn = await fetch(`${service.url}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'bench', password }) });
  const cookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0]!;
  const { csrf_token } = (await signIn.json()) as { csrf_token: string };
  // The printed password is one-time: replace it before anything else.
  await fetch(`${service.url}/api/session/password`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf_token },
    body: JSON.stringify({ current_password: password, new_password: `${password}-bench` }),
  });
  const queue = eventIds.slice(0, resolutions).map((eventId) => itemIdOf(pipeline, eventId));
  const requestMs: number[] = [];
  const statuses = new Map<number, number>();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let itemId = queue.shift(); itemId !== undefined; itemId = queue.shift()) {
        const t = performance.now();
        const answer = await fetch(`${service.url}/api/pipelines/${pipeline}/items/${itemId}/resolve`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf_token },
          body: JSON.stringify({ decision: 'approve', reason: 'bench' }),
        });
        await answer.arrayBuffer();
        requestMs.push(performance.now() - t);
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1_000;
  requestMs.sort((a, b) => a - b);
  const figures = {
    items,
    arrival_ms: { p50: Math.round(quantile(latencies, 0.5)), p99: Math.round(quantile(latencies, 0.99)), max: Math.round(latencies.at(-1) ?? Number.NaN) },
    resolutions,
    concurrency,
    resolutions_per_second: Math.round((resolutions / seconds) * 10) / 10,
    resolve_ms: { p50: Math.round(quantile(requestMs, 0.5)), p99: Math.round(quantile(requestMs, 0.99)) },
    statuses: Object.fromEntries(statuses),
  };
  if (values.json) process.stdout.write(`${JSON.stringify(figures)}\n`);
  else {
    process.stdout.write(`review request → in the queue (from the commit of its transaction): p50 ${figures.arrival_ms.p50} ms, p99 ${figures.arrival_ms.p99} ms over ${items}\n`);
    process.stdout.write(`resolutions: ${figures.resolutions_per_second}/s with ${concurrency} concurrent reviewers (request p50 ${figures.resolve_ms.p50} ms, p99 ${figures.resolve_ms.p99} ms; statuses ${JSON.stringify(figures.statuses)})\n`);
  }
} finally {
  await service.stop();
  await deleteTopics(brokers, [...pipelineTopicNames(pipeline), stateTopicOf(pipeline), config.reviewersTopic, config.sessionsTopic]).catch(() => {});
}
process.exit(0);
