/**
 * The gateway's Kafka writer: two transactional producers per gateway
 * instance (idempotent, acks=all), with group commit. Requests that arrive
 * while transactions are in flight are gathered into the next one, so a single
 * event per request and 500 per request both cost one transaction per round
 * trip, not one per event. Two requests in flight at once have no order
 * between them, so two transactions may commit in either order; one request's
 * events keep their order per key.
 *
 * Every transaction holds the events and their idempotency records, so an
 * event is never visible without its record nor the other way round. Each
 * request has a deadline: a transaction that has not committed by then is
 * abandoned; its requests answer 503, and the producer is replaced by a new
 * one with the same transactional id, whose initialization fences the old one
 * and makes the broker abort what it left open (KAFKA-NOTES: after a timeout
 * whose outcome is unknown, never reuse the producer).
 *
 * kafkajs stays behind connectors/kafka/client.ts's factory; the producer's
 * per-partition base offsets are read here because connectors/kafka/tx.ts
 * does not return them (see docs/ingest.md).
 */
import { createKafka, kafkaErrorType, type Producer } from '../connectors/kafka/client.ts';
import { messageBytes, packByBytes } from '../connectors/kafka/exactly-once.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/log.ts';
import { IngestError } from './errors.ts';
import type { EventLog, OutgoingEvent } from './event-log.ts';
import { type Accepted, BATCH_ENTRIES, encodeAcceptedBatch } from './idempotency.ts';
import { partitionFor } from './partitioner.ts';

/** Bytes per produce request, below the broker's default 1 MiB max.message.bytes per partition batch. */
const SEND_CHUNK_BYTES = 512 * 1_024;
/** A transaction gathers at most this much, so one slow transaction stays well inside the deadline. */
const TXN_MAX_BYTES = 8 * 1_024 * 1_024;
const TXN_MAX_EVENTS = 10_000;
const PARTITION_CACHE_MS = 30_000;
/**
 * Transactional producers per instance. A transaction's steps are round trips
 * (send, send, commit); with two, one gathers and sends while the other
 * commits, which doubles what small requests get through.
 */
const PRODUCERS = 2;

interface Pending {
  events: readonly OutgoingEvent[];
  bytes: number;
  resolve(accepted: Accepted[]): void;
  reject(error: IngestError): void;
  timer: NodeJS.Timeout;
  settled: boolean;
  txn?: Txn;
}

interface Txn {
  pendings: Pending[];
  abandoned: boolean;
  abandon(): void;
}

/** One transactional producer and its transaction in flight, if any. */
interface Lane {
  index: number;
  transactionalId: string;
  producer?: Producer;
  state: 'connecting' | 'ready' | 'busy';
  lastFailure: string;
  /** The transaction in flight (or the last one), settled either way. */
  work: Promise<unknown>;
}

export interface KafkaEventLogOptions {
  brokers: string[];
  instanceId: string;
  idempotencyTopic: string;
  produceTimeoutMs: number;
  /** Event bytes waiting for a transaction; beyond it, OVERLOADED. */
  maxQueuedBytes: number;
  logger: Logger;
  now?: () => number;
  /** Transactional producers (default 2); each is `sluice.ingest.<instanceId>.<n>`. */
  producers?: number;
  /** Called after each committed transaction (metrics). */
  onCommit?(events: number, durationMs: number): void;
}

export interface KafkaEventLog extends EventLog {
  /**
   * Writes one record with this key and value to every partition of `topic`
   * (outside any transaction): a reader that has seen it on every partition
   * has read everything committed before it.
   */
  markPartitions(topic: string, key: string, value: Buffer): Promise<number>;
  close(): Promise<void>;
}

export async function openKafkaEventLog(options: KafkaEventLogOptions): Promise<KafkaEventLog> {
  const now = options.now ?? Date.now;
  const logger = options.logger.child({ component: 'ingest-kafka' });
  const kafka = createKafka({ brokers: options.brokers, clientId: `sluice-ingest-${options.instanceId}`, logger, requestTimeoutMs: options.produceTimeoutMs });
  const admin = kafka.admin();
  await admin.connect();
  const partitionCache = new Map<string, { count: number | undefined; at: number }>();
  let closing = false;
  const closed = () => closing;
  const queue: Pending[] = [];
  let queuedBytes = 0;
  /** Producers replaced after a failure, and the work they may still be retrying: closed for good on close(). */
  const retired: Array<{ producer: Producer; work: Promise<unknown> }> = [];
  const lanes: Lane[] = Array.from({ length: options.producers ?? PRODUCERS }, (_, index) => ({
    index,
    transactionalId: `sluice.ingest.${options.instanceId}.${index}`,
    state: 'connecting',
    lastFailure: '',
    work: Promise.resolve(),
  }));

  const newProducer = (transactionalId: string) =>
    kafka.producer({
      transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // Above the produce deadline (an abandoned transaction is aborted at once by the next producer's init anyway).
      transactionTimeout: Math.max(10_000, options.produceTimeoutMs * 3),
      // The broker answers CONCURRENT_TRANSACTIONS for a few ms after each commit while it writes the
      // markers: retry after 10 ms, not kafkajs's ~300 ms, or every transaction pays that (the stages'
      // producers do the same, connectors/kafka/exactly-once.ts). The request deadline bounds the total.
      retry: { retries: 30, initialRetryTime: 10, maxRetryTime: 500 },
    });

  async function connect(lane: Lane): Promise<void> {
    for (let attempt = 0; !closed(); attempt++) {
      const candidate = newProducer(lane.transactionalId);
      try {
        // Initializing the transactional id fences any earlier producer with it and aborts its open transaction.
        await candidate.connect();
        if (closed()) {
          await candidate.disconnect().catch(() => {});
          return;
        }
        lane.producer = candidate;
        lane.state = 'ready';
        lane.lastFailure = '';
        logger.info({ transactionalId: lane.transactionalId }, 'producer ready');
        kick();
        return;
      } catch (error) {
        lane.lastFailure = errorMessage(error);
        await candidate.disconnect().catch(() => {});
        const delayMs = Math.min(5_000, 200 * 2 ** attempt);
        logger.warn({ err: error, delayMs }, 'cannot start the transactional producer; retrying');
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  function replaceProducer(lane: Lane, reason: string): void {
    if (closed() || lane.state === 'connecting') return;
    lane.lastFailure = reason;
    const old = lane.producer;
    lane.producer = undefined;
    lane.state = 'connecting';
    if (old) {
      // kafkajs may reconnect a producer whose send is still retrying: disconnect it now and again once that work has ended.
      retired.push({ producer: old, work: lane.work });
      void old.disconnect().catch(() => {});
    }
    void connect(lane);
  }

  const unavailable = (detail: string) =>
    new IngestError('KAFKA_UNAVAILABLE', `Kafka did not acknowledge within ${options.produceTimeoutMs} ms (${detail}); nothing was accepted: retry with the same event ids.`, {
      retryAfterSeconds: Math.max(1, Math.ceil(options.produceTimeoutMs / 1_000)),
    });

  function settle(pending: Pending, outcome: { accepted: Accepted[] } | { error: IngestError }): void {
    if (pending.settled) return;
    pending.settled = true;
    clearTimeout(pending.timer);
    if (!pending.txn) {
      const index = queue.indexOf(pending);
      if (index >= 0) queue.splice(index, 1);
      queuedBytes -= pending.bytes;
    }
    if ('accepted' in outcome) pending.resolve(outcome.accepted);
    else pending.reject(outcome.error);
  }

  async function partitions(topic: string): Promise<number | undefined> {
    const cached = partitionCache.get(topic);
    if (cached && now() - cached.at < PARTITION_CACHE_MS) return cached.count;
    let count: number | undefined;
    try {
      const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
      count = metadata.topics[0]?.partitions.length || undefined;
    } catch (error) {
      const type = kafkaErrorType(error);
      if (type !== 'UNKNOWN_TOPIC_OR_PARTITION' && !/does not host this topic/.test(errorMessage(error))) {
        throw new IngestError('KAFKA_UNAVAILABLE', `Cannot read the metadata of ${topic} from Kafka: ${errorMessage(error)}. Retry shortly.`, { retryAfterSeconds: 2, cause: error });
      }
    }
    partitionCache.set(topic, { count, at: now() });
    return count;
  }

  async function runTransaction(txn: Txn, active: Producer): Promise<Accepted[][]> {
    const startedAt = now();
    const events = txn.pendings.flatMap((p) => p.events.map((event) => ({ event, pending: p })));
    const placed = [] as Array<{ topic: string; partition: number; key: string; value: Buffer }>;
    for (const { event } of events) {
      const count = await partitions(event.topic);
      if (count === undefined) throw new Error(`topic ${event.topic} does not exist`);
      placed.push({ topic: event.topic, partition: partitionFor(event.key, count), key: event.key, value: event.value });
    }
    const transaction = await active.transaction();
    try {
      const coordinates: Array<{ partition: number; offset: string }> = new Array(placed.length);
      const indexed = placed.map((message, index) => ({ message, index }));
      for (const chunk of packByBytes(indexed, (item) => messageBytes(item.message), SEND_CHUNK_BYTES, Number.POSITIVE_INFINITY)) {
        const byTopic = new Map<string, typeof chunk>();
        for (const item of chunk) byTopic.set(item.message.topic, [...(byTopic.get(item.message.topic) ?? []), item]);
        const metadata = await transaction.sendBatch({
          acks: -1,
          timeout: options.produceTimeoutMs,
          topicMessages: [...byTopic].map(([topic, items]) => ({
            topic,
            messages: items.map(({ message }) => ({ key: message.key, value: message.value, partition: message.partition })),
          })),
        });
        // Within one request, a partition's messages form one batch in the order given: offsets run from its base offset.
        const next = new Map<string, bigint>();
        for (const m of metadata) next.set(`${m.topicName}\u0000${m.partition}`, BigInt(m.baseOffset ?? '-1'));
        for (const { message, index } of chunk) {
          const slot = `${message.topic}\u0000${message.partition}`;
          const offset = next.get(slot);
          if (offset === undefined || offset < 0n) throw new Error(`no offset from the broker for ${message.topic}[${message.partition}]`);
          coordinates[index] = { partition: message.partition, offset: offset.toString() };
          next.set(slot, offset + 1n);
        }
        if (txn.abandoned) break;
      }
      const at = now();
      const accepted: Accepted[] = events.map(({ event }, i) => ({ ...coordinates[i]!, at, ...(event.document && { document: event.document }) }));
      if (!txn.abandoned) {
        const byPipeline = new Map<string, Array<{ eventId: string; accepted: Accepted }>>();
        events.forEach(({ event }, i) => {
          const slash = event.idempotencyKey.indexOf('/');
          const pipeline = event.idempotencyKey.slice(0, slash);
          const list = byPipeline.get(pipeline) ?? [];
          if (list.length === 0) byPipeline.set(pipeline, list);
          list.push({ eventId: event.idempotencyKey.slice(slash + 1), accepted: accepted[i]! });
        });
        const records: Array<{ key: string; value: Buffer }> = [];
        for (const [pipeline, entries] of byPipeline) {
          for (let from = 0; from < entries.length; from += BATCH_ENTRIES) {
            const slice = entries.slice(from, from + BATCH_ENTRIES);
            records.push({ key: `${pipeline}/${slice[0]!.eventId}`, value: encodeAcceptedBatch(pipeline, at, slice) });
          }
        }
        for (const chunk of packByBytes(records, messageBytes, SEND_CHUNK_BYTES, Number.POSITIVE_INFINITY)) {
          await transaction.send({ topic: options.idempotencyTopic, acks: -1, timeout: options.produceTimeoutMs, messages: chunk });
          if (txn.abandoned) break;
        }
      }
      // Past its deadline the requests have been answered 503: never commit then.
      if (txn.abandoned) {
        await transaction.abort().catch(() => {});
        return [];
      }
      await transaction.commit();
      options.onCommit?.(events.length, now() - startedAt);
      const perRequest: Accepted[][] = [];
      let cursor = 0;
      for (const p of txn.pendings) {
        perRequest.push(accepted.slice(cursor, cursor + p.events.length));
        cursor += p.events.length;
      }
      return perRequest;
    } catch (error) {
      await transaction.abort().catch(() => {});
      throw error;
    }
  }

  /** Starts a transaction on every idle producer while requests wait. */
  function kick(): void {
    for (const lane of lanes) {
      if (queue.length === 0) return;
      if (lane.state === 'ready' && lane.producer) startTransaction(lane, lane.producer);
    }
  }

  function startTransaction(lane: Lane, producer: Producer): void {
    const taken: Pending[] = [];
    let bytes = 0;
    let count = 0;
    while (queue.length > 0) {
      const next = queue[0]!;
      if (taken.length > 0 && (bytes + next.bytes > TXN_MAX_BYTES || count + next.events.length > TXN_MAX_EVENTS)) break;
      queue.shift();
      queuedBytes -= next.bytes;
      bytes += next.bytes;
      count += next.events.length;
      taken.push(next);
    }
    lane.state = 'busy';
    const txn: Txn = { pendings: taken, abandoned: false, abandon: () => {} };
    txn.abandon = () => {
      if (txn.abandoned) return;
      txn.abandoned = true;
      for (const p of taken) settle(p, { error: unavailable('the transaction did not commit in time') });
      replaceProducer(lane, 'a transaction did not commit within the deadline');
    };
    for (const p of taken) p.txn = txn;
    const work = runTransaction(txn, producer);
    lane.work = work.catch(() => {});
    work.then(
      (outcome) => {
        if (txn.abandoned) return; // answered 503 already; the producer is being replaced
        for (const [i, p] of taken.entries()) settle(p, { accepted: outcome[i]! });
        lane.state = 'ready';
        kick();
      },
      (error) => {
        if (txn.abandoned) return;
        logger.warn({ err: error, events: count }, 'transaction failed; its requests answer 503');
        for (const p of taken) settle(p, { error: unavailable(errorMessage(error)) });
        replaceProducer(lane, errorMessage(error));
      },
    );
  }

  for (const lane of lanes) void connect(lane);
  const lastFailure = () => lanes.map((lane) => lane.lastFailure).find((failure) => failure !== '') ?? '';
  const anyReady = () => lanes.some((lane) => lane.state !== 'connecting');

  return {
    partitions,
    async markPartitions(topic, key, value) {
      const count = await partitions(topic);
      if (count === undefined) throw new IngestError('KAFKA_UNAVAILABLE', `Topic ${topic} does not exist.`);
      const plain = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
      await plain.connect();
      try {
        await plain.send({ topic, acks: -1, messages: Array.from({ length: count }, (_, partition) => ({ key, value, partition })) });
      } finally {
        await plain.disconnect();
      }
      return count;
    },
    append(events) {
      if (events.length === 0) return Promise.resolve([]);
      if (!anyReady()) {
        const failure = lastFailure();
        return Promise.reject(
          new IngestError('KAFKA_UNAVAILABLE', `Kafka is not accepting events right now${failure ? ` (${failure})` : ''}; retry with the same event ids.`, { retryAfterSeconds: 2 }),
        );
      }
      const bytes = events.reduce((sum, e) => sum + e.value.length + e.key.length + e.idempotencyKey.length, 0);
      if (queuedBytes + bytes > options.maxQueuedBytes) {
        return Promise.reject(new IngestError('OVERLOADED', 'Too many events are waiting for Kafka on this gateway; retry shortly (with the same event ids).', { retryAfterSeconds: 1 }));
      }
      return new Promise<Accepted[]>((resolve, reject) => {
        const pending: Pending = {
          events,
          bytes,
          resolve,
          reject,
          settled: false,
          timer: setTimeout(() => {
            if (pending.txn) pending.txn.abandon();
            else settle(pending, { error: unavailable('still waiting for a transaction') });
          }, options.produceTimeoutMs),
        };
        queue.push(pending);
        queuedBytes += bytes;
        kick();
      });
    },
    health() {
      if (anyReady()) return { ready: true, detail: 'producer ready' };
      const failure = lastFailure();
      return { ready: false, detail: `producer connecting${failure ? `: ${failure}` : ''}` };
    },
    async close() {
      closing = true;
      for (const p of [...queue]) settle(p, { error: unavailable('the gateway is shutting down') });
      await Promise.race([Promise.allSettled(lanes.map((lane) => lane.work)), new Promise((resolve) => setTimeout(resolve, options.produceTimeoutMs).unref())]);
      await Promise.all(lanes.map((lane) => lane.producer?.disconnect().catch(() => {})));
      const settled = Promise.allSettled(retired.map((r) => r.work));
      await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
      await Promise.all(retired.map((r) => r.producer.disconnect().catch(() => {})));
      await admin.disconnect().catch(() => {});
    },
  };
}
