/**
 * The webhook sink's pure policies, free of I/O so tests control time and
 * randomness: the request a decision becomes (body, idempotency key, HMAC
 * signature), how an attempt's result is classified (delivered, retry, give
 * up), how long to wait before the next attempt (backoff with jitter, or the
 * receiver's `Retry-After`), the retry budget, and latest-version-wins.
 */
import { createHmac } from 'node:crypto';
import type { RetryPolicy } from './config.ts';

export const HEADERS = {
  idempotencyKey: 'idempotency-key',
  eventId: 'x-sluice-event-id',
  decisionVersion: 'x-sluice-decision-version',
  pipeline: 'x-sluice-pipeline',
  attempt: 'x-sluice-attempt',
  timestamp: 'x-sluice-timestamp',
  signature: 'x-sluice-signature',
} as const;

/** The signature scheme's version, the prefix of the signature header's value: a future scheme can be told apart. */
export const SIGNATURE_SCHEME = 'v1';

/**
 * HMAC-SHA256 (hex) over `<timestamp>.<body>`, keyed with the shared secret.
 * The timestamp (unix seconds) is signed with the body so a receiver can
 * refuse an old request replayed by whoever captured it.
 */
export function signatureOf(secret: string, timestampSeconds: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex');
}

/** The value of the signature header: `v1=<hex>`. */
export const signatureHeader = (secret: string, timestampSeconds: number, body: string): string => `${SIGNATURE_SCHEME}=${signatureOf(secret, timestampSeconds, body)}`;

/** What a receiver can drop a redelivery by: the same decision of the same event always has the same key. */
export const idempotencyKey = (eventId: string, decisionVersion: number): string => `${eventId}:${decisionVersion}`;

/** The fields of a decision the sink itself relies on; the rest goes to the receiver as decoded. */
export interface DeliverableDecision {
  event_id: string;
  decision_version: number;
  [field: string]: unknown;
}

export interface WebhookRequest {
  eventId: string;
  decisionVersion: number;
  idempotencyKey: string;
  /** The JSON body, exactly the bytes that are signed. */
  body: string;
}

/** The request body of one decision: `{"pipeline": …, "decision": {…as decoded…}}`, times as epoch ms. */
export function requestOf(pipeline: string, decision: DeliverableDecision): WebhookRequest {
  return {
    eventId: decision.event_id,
    decisionVersion: decision.decision_version,
    idempotencyKey: idempotencyKey(decision.event_id, decision.decision_version),
    body: JSON.stringify({ pipeline, decision }),
  };
}

/**
 * The headers of one attempt. The timestamp and signature are made per
 * attempt, so a retry after a long `Retry-After` is not refused as stale by a
 * receiver that checks the timestamp.
 */
export function headersOf(args: { pipeline: string; request: WebhookRequest; attempt: number; nowMs: number; secret: string | null }): Record<string, string> {
  const { request } = args;
  const timestamp = Math.floor(args.nowMs / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'sluice-webhook',
    [HEADERS.idempotencyKey]: request.idempotencyKey,
    [HEADERS.eventId]: request.eventId,
    [HEADERS.decisionVersion]: String(request.decisionVersion),
    [HEADERS.pipeline]: args.pipeline,
    [HEADERS.attempt]: String(args.attempt),
    [HEADERS.timestamp]: String(timestamp),
  };
  if (args.secret !== null) headers[HEADERS.signature] = signatureHeader(args.secret, timestamp, request.body);
  return headers;
}

/**
 * `Retry-After` in milliseconds from now: delta-seconds (`120`) or an HTTP
 * date (`Wed, 21 Oct 2026 07:28:00 GMT`; a date in the past means now).
 * Anything else is null: the sink's own backoff applies.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null {
  if (value === null || value === undefined) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Date.parse accepts bare numbers and odd forms too; an HTTP date names a weekday or a month.
  if (!/[a-z]{3}/i.test(text)) return null;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - nowMs);
}

/** What one attempt came to. */
export type AttemptResult =
  | { kind: 'response'; status: number; retryAfter: string | null }
  | { kind: 'timeout' }
  /** No answer at all: refused, reset, DNS… `code` is the system error code when there is one. */
  | { kind: 'network'; code: string }
  /** The sink is stopping and gave up on the request in flight: neither delivered nor failed. */
  | { kind: 'abandoned' };

export type Verdict =
  | { action: 'delivered' }
  /** `waitMs`: the receiver's Retry-After, when it sent one. */
  | { action: 'retry'; cause: string; retryAfterMs: number | null }
  | { action: 'give-up'; cause: string }
  | { action: 'abandon' };

/**
 * The retry classification. 2xx is delivered. 408, 429, 5xx, timeouts and
 * connection errors are worth another attempt (the receiver or the network is
 * struggling). Any other 4xx means the receiver refuses this request as it is
 * (bad auth, unknown route, payload rejected): sending it again cannot help,
 * so it is dead-lettered at once. 3xx is not followed (a redirected POST
 * becomes a GET in most clients): the URL is wrong, and that is not retried
 * either.
 */
export function classify(result: AttemptResult, nowMs: number): Verdict {
  switch (result.kind) {
    case 'abandoned':
      return { action: 'abandon' };
    case 'timeout':
      return { action: 'retry', cause: 'timeout', retryAfterMs: null };
    case 'network':
      return { action: 'retry', cause: `network:${result.code}`, retryAfterMs: null };
    case 'response': {
      const { status } = result;
      if (status >= 200 && status < 300) return { action: 'delivered' };
      if (status === 408 || status === 429 || status >= 500) return { action: 'retry', cause: `http:${status}`, retryAfterMs: parseRetryAfter(result.retryAfter, nowMs) };
      return { action: 'give-up', cause: `http:${status}` };
    }
  }
}

/**
 * Exponential backoff with "equal jitter": half the doubled delay is kept,
 * the other half is random, so a fleet of sinks retrying one receiver spreads
 * out instead of hitting it in waves. `random` is in [0, 1).
 */
export function backoffWithJitter(attempt: number, policy: Pick<RetryPolicy, 'initialBackoffMs' | 'maxBackoffMs'>, random: number): number {
  const base = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + (base / 2) * random);
}

/** How long to wait before the next attempt: the receiver's Retry-After (capped) when it gave one, else the backoff. */
export function waitBeforeRetry(verdict: { retryAfterMs: number | null }, attempt: number, policy: RetryPolicy, random: number): number {
  if (verdict.retryAfterMs !== null) return Math.min(verdict.retryAfterMs, policy.retryAfterMaxMs);
  return backoffWithJitter(attempt, policy, random);
}

/** Where a decision's delivery ended. */
export type DeliveryOutcome =
  | { outcome: 'delivered'; attempts: number; status: number }
  /** Out of budget, or refused for good: to the dead-letter topic. `status` is the last HTTP status, if any answered. */
  | { outcome: 'failed'; attempts: number; cause: string; status: number | null; elapsedMs: number; retriable: boolean }
  | { outcome: 'abandoned'; attempts: number };

export interface DeliveryDeps {
  policy: RetryPolicy;
  now(): number;
  random(): number;
  /** Sends attempt number `attempt` (1-based). */
  send(attempt: number): Promise<AttemptResult>;
  /** Waits `ms`; resolves false when the sink is stopping and the wait should end delivery of this decision. */
  sleep(ms: number): Promise<boolean>;
  onRetry?(info: { attempt: number; cause: string; waitMs: number }): void;
}

/**
 * Delivers one decision: attempts until it is delivered, refused for good, or
 * the retry budget is spent (`maxAttempts` attempts, or no new attempt
 * starting more than `maxElapsedMs` after the first).
 */
export async function deliverWithRetries(deps: DeliveryDeps): Promise<DeliveryOutcome> {
  const { policy } = deps;
  const startedAt = deps.now();
  let lastStatus: number | null = null;
  for (let attempt = 1; ; attempt++) {
    const result = await deps.send(attempt);
    if (result.kind === 'response') lastStatus = result.status;
    const verdict = classify(result, deps.now());
    if (verdict.action === 'abandon') return { outcome: 'abandoned', attempts: attempt };
    if (verdict.action === 'delivered') return { outcome: 'delivered', attempts: attempt, status: lastStatus ?? 0 };
    const elapsedMs = deps.now() - startedAt;
    if (verdict.action === 'give-up') return { outcome: 'failed', attempts: attempt, cause: verdict.cause, status: lastStatus, elapsedMs, retriable: false };
    const waitMs = waitBeforeRetry(verdict, attempt, policy, deps.random());
    if (attempt >= policy.maxAttempts || elapsedMs + waitMs > policy.maxElapsedMs) {
      return { outcome: 'failed', attempts: attempt, cause: verdict.cause, status: lastStatus, elapsedMs, retriable: true };
    }
    deps.onRetry?.({ attempt, cause: verdict.cause, waitMs });
    if (!(await deps.sleep(waitMs))) return { outcome: 'abandoned', attempts: attempt };
  }
}

/**
 * Latest version wins, within a bounded memory: per event, the highest
 * decision_version this sink has settled (delivered, or dead-lettered: a
 * receiver must not be handed an older decision while a newer one waits on
 * the dead-letter topic), for the `capacity` events settled most recently. An
 * event pushed out of memory is forgotten: an older version of it arriving
 * after that would be delivered (receivers must compare decision_version too).
 */
export class LatestVersions {
  private readonly versions = new Map<string, number>();
  readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Why `version` of `eventId` must not be delivered, or null when it may. */
  verdict(eventId: string, version: number): 'superseded' | 'duplicate' | null {
    const delivered = this.versions.get(eventId);
    if (delivered === undefined || version > delivered) return null;
    return version === delivered ? 'duplicate' : 'superseded';
  }

  settled(eventId: string, version: number): void {
    const current = this.versions.get(eventId);
    if (current !== undefined && current >= version) return;
    // Re-inserting moves the event to the end of the map's order: the oldest entry is the first.
    this.versions.delete(eventId);
    this.versions.set(eventId, version);
    if (this.versions.size > this.capacity) this.versions.delete(this.versions.keys().next().value!);
  }

  get size(): number {
    return this.versions.size;
  }
}
