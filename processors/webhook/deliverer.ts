/**
 * Delivers a batch of `<p>.decided` records to the receiver: the batch
 * consumer's `handle` (its offsets are committed once this resolves).
 *
 * - Order per key: a partition's records go one after the other, in offset
 *   order (a later decision for a key never overtakes an earlier one);
 *   partitions go in parallel.
 * - Each record ends delivered, dead-lettered (DELIVERY_FAILED after the
 *   retry budget or a refusal; a record that cannot be decoded as its
 *   contract), or skipped (an older or equal decision_version than one this
 *   sink delivered or dead-lettered for that event). The dead letter is written before the
 *   batch resolves, so its offset is committed only after it.
 * - A registry or Kafka outage throws (the batch consumer retries the batch).
 *   Records already handled are remembered per partition, so the retry does
 *   not deliver them again.
 * - Stopping: delivery goes on for a grace period (a healthy receiver
 *   finishes the batch, which is then committed); then the request in flight
 *   is abandoned and the batch throws, so nothing unhandled is committed.
 */
import { deadLetter, type DeadLetter, type SourceRecord, topicName } from '../../lib/contracts.ts';
import { isFramed, type SchemaCodec } from '../../lib/codec.ts';
import { isSluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { interruptibleSleep, retry } from '../../lib/retry.ts';
import { dlqHeaders } from '../runtime/stage.ts';
import type { WebhookConfig } from './config.ts';
import type { WebhookMetrics } from './metrics.ts';
import { type AttemptResult, type DeliverableDecision, type DeliveryOutcome, deliverWithRetries, headersOf, LatestVersions, requestOf } from './policy.ts';

/** The stage a webhook dead letter names (`dlq.stage`); `sluice dlq redrive` leaves such letters alone. */
export const WEBHOOK_STAGE = 'webhook';

export interface DeadLetterMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer;
  headers: Record<string, string>;
}

export interface DelivererDeps {
  pipeline: string;
  config: WebhookConfig;
  codec: Pick<SchemaCodec, 'prefetch' | 'decodeSync'>;
  post(args: { url: string; headers: Record<string, string>; body: string; timeoutMs: number; stop: AbortSignal }): Promise<AttemptResult>;
  writeDeadLetter(message: DeadLetterMessage): Promise<void>;
  metrics: WebhookMetrics;
  logger: Logger;
  now?(): number;
  random?(): number;
}

export interface Deliverer {
  handle(records: SourceRecord[]): Promise<void>;
  /** Starts the stop: delivery goes on for `stopGraceMs`, then what is in flight is abandoned. */
  beginStop(): void;
  /** Records handled (delivered, dead-lettered or skipped) since start. */
  handled(): number;
}

/** Thrown when a stop interrupted a batch: nothing of it is committed, and its records are read again after a restart. */
export class DeliveryInterrupted extends Error {
  constructor(pending: number) {
    super(`stopping: ${pending} decision(s) of the batch were not delivered; they are delivered after a restart`);
    this.name = 'DeliveryInterrupted';
  }
}

type RecordResult = 'done' | 'abandoned';

export function createDeliverer(deps: DelivererDeps): Deliverer {
  const { pipeline, config, metrics, logger } = deps;
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const versions = new LatestVersions(config.versionMemory);
  /** Per partition, the highest offset handled by this process: a retried or refetched batch skips up to it. */
  const handledUpTo = new Map<string, bigint>();
  const stop = new AbortController();
  let stopDeadline = Number.POSITIVE_INFINITY;
  let handledCount = 0;
  const dlqTopic = topicName(pipeline, 'dlq');

  /** Sleeps unless the stop's grace ends first; false: give up this decision for now. */
  async function sleep(ms: number): Promise<boolean> {
    if (stop.signal.aborted || now() + ms > stopDeadline) return false;
    await interruptibleSleep(ms, stop.signal);
    return !stop.signal.aborted;
  }

  async function writeDeadLetter(source: SourceRecord, letter: DeadLetter, extra: Record<string, string>): Promise<void> {
    const message: DeadLetterMessage = {
      topic: dlqTopic,
      key: source.key,
      value: source.value ?? Buffer.alloc(0),
      headers: { ...dlqHeaders(WEBHOOK_STAGE, source, letter, now()), ...extra },
    };
    // Kafka briefly away: the partition waits here (order kept), until the stop aborts it.
    await retry(() => deps.writeDeadLetter(message), { what: `writing a dead letter to ${dlqTopic}`, logger, signal: stop.signal, initialMs: 200, maxMs: 5_000 });
    metrics.deadLetters.inc({ reason: letter.reason });
    metrics.decisions.inc({ outcome: 'dead_lettered' });
  }

  function decode(record: SourceRecord): { decision: DeliverableDecision } | { letter: DeadLetter } {
    if (record.value === null || record.value.length === 0) return { letter: deadLetter('MALFORMED_PAYLOAD', 'empty value on the decided topic') };
    if (!isFramed(record.value)) return { letter: deadLetter('MALFORMED_PAYLOAD', 'not in the registry wire format (magic byte 0, schema id, Avro)') };
    const decoded = deps.codec.decodeSync(record.value);
    if (decoded.kind === 'unknown-schema') return { letter: deadLetter('UNKNOWN_SCHEMA', `schema id ${decoded.schemaId} is not in the registry`) };
    if (decoded.kind === 'undecodable') return { letter: deadLetter('MALFORMED_PAYLOAD', decoded.message) };
    const value = decoded.value as Partial<DeliverableDecision> | null;
    if (typeof value?.event_id !== 'string' || typeof value.decision_version !== 'number') {
      return { letter: deadLetter('SCHEMA_VIOLATION', 'event_id or decision_version: missing from the decoded decision') };
    }
    return { decision: value as DeliverableDecision };
  }

  async function deliver(decision: DeliverableDecision): Promise<DeliveryOutcome> {
    const request = requestOf(pipeline, decision);
    let firstAt = 0;
    return deliverWithRetries({
      policy: config.retry,
      now,
      random,
      sleep,
      send: async (attempt) => {
        const startedAt = now();
        if (attempt === 1) firstAt = startedAt;
        const headers = headersOf({ pipeline, request, attempt, nowMs: startedAt, secret: config.secret });
        const result = await deps.post({ url: config.url, headers, body: request.body, timeoutMs: config.requestTimeoutMs, stop: stop.signal });
        if (result.kind !== 'abandoned') {
          metrics.requests.inc({ status: result.kind === 'response' ? String(result.status) : result.kind === 'timeout' ? 'timeout' : `network:${result.code}` });
          metrics.requestDuration.observe((now() - startedAt) / 1000);
        }
        if (result.kind === 'response' && result.status >= 200 && result.status < 300) metrics.deliveryDuration.observe((now() - firstAt) / 1000);
        return result;
      },
      onRetry: ({ attempt, cause, waitMs }) => {
        metrics.retries.inc({ cause });
        logger.warn({ event_id: request.eventId, decision_version: request.decisionVersion, attempt, cause, waitMs }, 'delivery failed; retrying');
      },
    });
  }

  async function handleRecord(record: SourceRecord): Promise<RecordResult> {
    const decoded = decode(record);
    if ('letter' in decoded) {
      logger.error({ partition: record.partition, offset: record.offset, reason: decoded.letter.reason }, `unreadable decision dead-lettered: ${decoded.letter.message}`);
      await writeDeadLetter(record, decoded.letter, {});
      return 'done';
    }
    const { decision } = decoded;
    const skip = versions.verdict(decision.event_id, decision.decision_version);
    if (skip !== null) {
      metrics.decisions.inc({ outcome: skip });
      logger.info({ event_id: decision.event_id, decision_version: decision.decision_version, skip }, 'not delivered: this sink already delivered (or dead-lettered) a version as high or higher');
      return 'done';
    }
    const outcome = await deliver(decision);
    if (outcome.outcome === 'abandoned') return 'abandoned';
    if (outcome.outcome === 'delivered') {
      versions.settled(decision.event_id, decision.decision_version);
      metrics.decisions.inc({ outcome: 'delivered' });
      logger.debug({ event_id: decision.event_id, decision_version: decision.decision_version, attempts: outcome.attempts }, 'delivered');
      return 'done';
    }
    const why = outcome.retriable
      ? `still failing after ${outcome.attempts} attempt(s) over ${Math.round(outcome.elapsedMs / 100) / 10} s (the retry budget); last: ${outcome.cause}`
      : `refused by the receiver (${outcome.cause}); not retried`;
    const letter: DeadLetter = { ...deadLetter('DELIVERY_FAILED', `webhook delivery ${why}`, decision.event_id), errorCode: outcome.cause };
    logger.error({ event_id: decision.event_id, decision_version: decision.decision_version, attempts: outcome.attempts, cause: outcome.cause }, `decision dead-lettered: ${letter.message}`);
    await writeDeadLetter(record, letter, {
      'dlq.webhook.attempts': String(outcome.attempts),
      'dlq.webhook.decision_version': String(decision.decision_version),
      ...(outcome.status !== null && { 'dlq.webhook.status': String(outcome.status) }),
    });
    versions.settled(decision.event_id, decision.decision_version);
    return 'done';
  }

  /** One partition's records, in order; stops at the first one not handled. Returns how many were left. */
  async function handlePartition(records: SourceRecord[]): Promise<number> {
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      const key = `${record.topic}\u0000${record.partition}`;
      const offset = BigInt(record.offset);
      const done = handledUpTo.get(key);
      if (done !== undefined && offset <= done) continue;
      if (stop.signal.aborted) return records.length - i;
      const result = await handleRecord(record);
      if (result === 'abandoned') return records.length - i;
      handledUpTo.set(key, offset);
      handledCount++;
    }
    return 0;
  }

  return {
    async handle(records) {
      if (stop.signal.aborted) throw new DeliveryInterrupted(records.length);
      // A registry outage throws here (retriable): nothing of the batch is delivered yet.
      await deps.codec.prefetch(records.map((r) => r.value));
      const byPartition = new Map<string, SourceRecord[]>();
      for (const record of records) {
        const key = `${record.topic}\u0000${record.partition}`;
        const list = byPartition.get(key);
        if (list) list.push(record);
        else byPartition.set(key, [record]);
      }
      // allSettled: a partition that fails must not leave the others running unawaited.
      const results = await Promise.allSettled([...byPartition.values()].map(handlePartition));
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) {
        const error = failure.reason;
        if (!stop.signal.aborted) metrics.batchFailures.inc({ code: isSluiceError(error) ? error.code : ((error as Error).name ?? 'Error') });
        throw error;
      }
      const pending = results.reduce((n, r) => n + (r.status === 'fulfilled' ? r.value : 0), 0);
      if (pending > 0) throw new DeliveryInterrupted(pending);
    },
    beginStop() {
      if (stopDeadline !== Number.POSITIVE_INFINITY) return;
      stopDeadline = now() + config.stopGraceMs;
      logger.info({ graceMs: config.stopGraceMs }, 'stopping: delivering what is in hand, then abandoning the request in flight');
      setTimeout(() => stop.abort(), config.stopGraceMs).unref();
    },
    handled: () => handledCount,
  };
}
