/**
 * Shared by the review service's integration and browser tests: a service
 * instance of its own (unique accounts and sessions topics, only the test's
 * pipelines), an API client that keeps the session cookie and CSRF token, and
 * ways to put review requests on `<p>.review` and to read `<p>.decided` to a
 * known point, and the pipeline's ClickHouse sink (labels and decisions).
 */
import { randomUUID } from 'node:crypto';
import { type ClickHouseClient, queryRows, quote } from '../../connectors/clickhouse/client.ts';
import { migrate } from '../../connectors/clickhouse/migrate.ts';
import { deletePipelineRows } from '../../connectors/clickhouse/retention.ts';
import { TABLES } from '../../connectors/clickhouse/schema.ts';
import { deleteTopics, openProducer } from '../../connectors/kafka/admin.ts';
import { openTransactionalProducer } from '../../connectors/kafka/tx.ts';
import { createLogger } from '../../lib/log.ts';
import { addReviewer } from '../../cli/review.ts';
import { sinkConfigFromEnv } from '../../processors/sink/config.ts';
import type { LabelRow } from '../../processors/sink/labels.ts';
import { type RunningSink, runClickHouseSink } from '../../processors/sink/runner.ts';
import { type ReviewConfig, reviewConfigFromEnv } from '../../review/config.ts';
import { type RunningReview, serveReview } from '../../review/server.ts';
import { stateTopicOf } from '../../review/topics.ts';
import { connections, uniqueName, waitFor } from '../helpers.ts';
import type { Collector, PipelineInstance } from '../pipeline-harness.ts';

export function reviewConfig(pipelines: string[], env: Record<string, string> = {}): ReviewConfig {
  const id = uniqueName('review');
  return reviewConfigFromEnv({
    ...process.env,
    SLUICE_REVIEW_PIPELINES: pipelines.join(','),
    SLUICE_REVIEW_REVIEWERS_TOPIC: `${id}.reviewers`,
    SLUICE_REVIEW_SESSIONS_TOPIC: `${id}.sessions`,
    SLUICE_REVIEW_PORT: '0',
    ...env,
  });
}

export async function startReview(config: ReviewConfig): Promise<RunningReview> {
  return serveReview({ config, logger: createLogger({ component: 'review-test', instance: config.instanceId }, 'warn') });
}

/** Deletes the topics a test's service created. */
export async function dropReviewTopics(config: ReviewConfig): Promise<void> {
  await deleteTopics(connections.kafkaBrokers, [config.reviewersTopic, config.sessionsTopic, ...(config.pipelines ?? []).map(stateTopicOf)]).catch(() => {});
}

export async function reviewer(config: ReviewConfig, name: string, role: 'reviewer' | 'admin' = 'reviewer'): Promise<{ username: string; password: string }> {
  return { username: name, password: await addReviewer(config, name, role, 'test') };
}

export interface Answer<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

/** A browser-like API client: the session cookie and the CSRF token it was given. */
export class ApiClient {
  readonly baseUrl: string;
  cookie: string | undefined;
  csrf: string | undefined;

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl;
  }

  async request<T = Record<string, unknown>>(method: string, path: string, body?: unknown, options: { csrf?: string | null } = {}): Promise<Answer<T>> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.cookie) headers['cookie'] = this.cookie;
    const csrf = options.csrf === undefined ? this.csrf : options.csrf;
    if (csrf && method !== 'GET') headers['x-csrf-token'] = csrf;
    const response = await fetch(this.baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : null) as T, headers: response.headers };
  }

  async signIn(username: string, password: string): Promise<Answer> {
    const answer = await this.request('POST', '/api/session', { username, password });
    const setCookie = answer.headers.get('set-cookie');
    if (answer.status === 200 && setCookie) {
      this.cookie = setCookie.split(';')[0];
      this.csrf = String(answer.body['csrf_token']);
    }
    return answer;
  }

  /** First sign-in with a one-time password: signs in and replaces it; returns the new password. */
  async activate(username: string, oneTimePassword: string): Promise<string> {
    const signedIn = await this.signIn(username, oneTimePassword);
    if (signedIn.status !== 200 || signedIn.body['must_change_password'] !== true) throw new Error(`first sign-in of ${username}: ${signedIn.status} ${JSON.stringify(signedIn.body)}`);
    const password = `pw-${randomUUID()}`;
    const changed = await this.request('POST', '/api/session/password', { current_password: oneTimePassword, new_password: password });
    if (changed.status !== 204) throw new Error(`password change of ${username}: ${changed.status} ${JSON.stringify(changed.body)}`);
    return password;
  }
}

/** Review requests as the decide stage writes them (an audit sample carries `kind: 'audit'`), for tests that need no model. */
export async function produceReviews(instance: PipelineInstance, records: Array<Record<string, unknown>>): Promise<void> {
  const encode = await instance.catalog.encoderFor(`${instance.name}.review-value`);
  const producer = await openProducer(connections.kafkaBrokers, 'sluice-review-test');
  try {
    await producer.send(
      instance.topic('review'),
      records.map((record) => ({ key: `key-${String(record['event_id'])}`, value: encode(record) })),
    );
  } finally {
    await producer.close();
  }
}

/**
 * Reads `<p>.decided` up to now on the partition of `key`: commits a barrier
 * decision under that key in a transaction and waits until the collector has
 * it. Every decision committed on that partition before it has then been read.
 */
export async function readDecidedUpTo(instance: PipelineInstance, collector: Collector<Record<string, unknown>>, key: string, barrier: Record<string, unknown>): Promise<void> {
  const encode = await instance.catalog.encoderFor(`${instance.name}.decided-value`);
  const eventId = `barrier-${randomUUID()}`;
  const producer = await openTransactionalProducer({ brokers: connections.kafkaBrokers, clientId: 'sluice-review-test', transactionalId: `test.${eventId}` });
  try {
    const tx = await producer.begin();
    await tx.send(instance.topic('decided'), [{ key, value: encode({ ...barrier, event_id: eventId }) }]);
    await tx.commit();
  } finally {
    await producer.close();
  }
  await collector.until(`barrier ${eventId} on ${instance.topic('decided')}`, (messages) => messages.some((m) => m.value['event_id'] === eventId));
}

/** The pipeline's ClickHouse sink, in this process, on a schema migrated first (labels and decisions land where analysts read them). */
export async function startSink(client: ClickHouseClient, pipeline: string): Promise<RunningSink> {
  await migrate(client, { url: connections.clickhouseUrl });
  return runClickHouseSink({
    pipeline: { name: pipeline, owners: { team: 'test' } },
    connections,
    config: { ...sinkConfigFromEnv({}), maxBatchWaitMs: 200, sessionTimeoutMs: 6_000, metricsPort: 0 },
    logger: createLogger({ component: 'review-test-sink' }, 'error'),
    handleSignals: false,
  });
}

/** Stops the sink and deletes the pipeline's rows, its labels included (retention never touches labels). */
export async function dropSinkRows(client: ClickHouseClient, pipeline: string, sink: RunningSink | undefined): Promise<void> {
  if (sink) {
    await sink.stop();
    await sink.done;
  }
  await deletePipelineRows(client, pipeline).catch(() => {});
  await client.command({ query: `ALTER TABLE ${TABLES.labels} DELETE WHERE pipeline = ${quote(pipeline)}` }).catch(() => {});
}

/** The labels ClickHouse holds for an event, one per label (deduplicated as the documented queries do). */
export async function labelsInClickHouse(client: ClickHouseClient, pipeline: string, eventId: string): Promise<LabelRow[]> {
  return queryRows<LabelRow>(
    client,
    `SELECT DISTINCT pipeline, event_id, item_id, kind, label, label_field_names, label_field_values, reviewer, reason, original_decision, original_decided_by,
       original_decision_version, decision_version, score, model_version, policy_version, occurred_at_ms, created_at_ms, labeled_at_ms
     FROM ${TABLES.labels} WHERE pipeline = ${quote(pipeline)} AND event_id = ${quote(eventId)}`,
  );
}

/** The decision that stands in ClickHouse for an event, with the review columns (migration 6). */
export async function standingDecision(client: ClickHouseClient, pipeline: string, eventId: string): Promise<Record<string, unknown> | undefined> {
  const [row] = await queryRows<Record<string, unknown>>(
    client,
    `SELECT argMax(decision, decision_version) AS standing, argMax(decided_by, decision_version) AS by, max(decision_version) AS version,
       argMax(reviewed_by, decision_version) AS reviewer, argMax(review_reason, decision_version) AS reason, argMax(corrects_decision_version, decision_version) AS corrects
     FROM ${TABLES.decisions} WHERE pipeline = ${quote(pipeline)} AND event_id = ${quote(eventId)} GROUP BY event_id`,
  );
  return row;
}

export { waitFor };
