/**
 * Exactly-once consume → transform → produce over kafkajs.
 *
 * For every chunk of a fetched batch, one Kafka transaction holds the chunk's
 * outputs, its dead letters and the consumer offset (last offset + 1), so a
 * crash at any moment either commits all of it or none of it.
 *
 * kafkajs leaves these duties to us (KAFKA-NOTES.md):
 * - Zombie fencing: its sendOffsets carries no group generation (no KIP-447), so
 *   each input partition gets its own transactional producer, id
 *   `<prefix>.<topic>.<partition>`. The new owner's initTransactions bumps the
 *   epoch and fences the old owner; after that we re-read the committed offset,
 *   because the old owner may have committed after our group fetched offsets.
 * - A failed commit or abort wedges a kafkajs producer: it is thrown away, a new
 *   one is made, and the partition is rewound to its committed offset.
 * - Errors never escape eachBatch (kafkajs would crash or wedge the consumer):
 *   a transient failure rewinds and backs off; the handler itself must turn bad
 *   data into dead letters.
 */
import type { EachBatchPayload, KafkaMessage, Producer } from 'kafkajs';
import type { SourceRecord } from '../../processors/runtime/types.ts';
import { errorMessage, isSluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { createKafka, type KafkaClient } from './client.ts';

export interface OutgoingMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer;
  headers?: Record<string, string>;
}

export interface ChunkResult {
  messages: OutgoingMessage[];
}

export interface ExactlyOnceOptions {
  brokers: string[];
  clientId: string;
  groupId: string;
  topic: string;
  /** `<prefix>.<topic>.<partition>` is each partition's transactional id. */
  transactionalIdPrefix: string;
  /** The most records one transaction holds; bounds the slow tail of a batch. */
  maxBatchRecords: number;
  /** Must exceed the slowest chunk (inference included), below the broker's transaction.max.timeout.ms. */
  transactionTimeoutMs: number;
  /** How long an idle fetch waits for data; bounds the latency added per hop. */
  maxWaitTimeMs: number;
  /** How long the group waits for a silent member before moving its partitions. */
  sessionTimeoutMs: number;
  logger: Logger;
  /** Turns a chunk into outgoing messages. Throwing means "transient: retry the chunk later". */
  handle(records: SourceRecord[], partition: number): Promise<ChunkResult>;
  onCommitted?(info: { partition: number; records: number; messages: OutgoingMessage[]; durationMs: number }): void;
  onFailure?(info: { partition: number; cause: string; code: string }): void;
}

export interface ExactlyOnceHandle {
  /** True once the consumer has joined its group and holds an assignment (possibly empty). */
  joined(): boolean;
  /** Consecutive failed attempts on any partition; 0 when healthy. */
  failing(): number;
  stop(): Promise<void>;
}

const BACKOFF_INITIAL_MS = 200;
const BACKOFF_MAX_MS = 10_000;

function toSourceRecord(topic: string, partition: number, message: KafkaMessage): SourceRecord {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    const first = Array.isArray(value) ? value[0] : value;
    headers[name] = first === undefined ? undefined : String(first);
  }
  return {
    topic,
    partition,
    offset: message.offset,
    key: message.key,
    value: message.value,
    headers,
    timestampMs: Number(message.timestamp),
  };
}

const nextOffset = (offset: string) => (BigInt(offset) + 1n).toString();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startExactlyOnce(options: ExactlyOnceOptions): Promise<ExactlyOnceHandle> {
  const log = options.logger;
  const kafka: KafkaClient = createKafka({ brokers: options.brokers, clientId: options.clientId, logger: log });
  const admin = kafka.admin();
  const consumer = kafka.consumer({
    groupId: options.groupId,
    allowAutoTopicCreation: false,
    readUncommitted: false,
    maxWaitTimeInMs: options.maxWaitTimeMs,
    // A crashed member holds its partitions until its session times out: keep it short.
    sessionTimeout: options.sessionTimeoutMs,
    heartbeatInterval: Math.max(500, Math.floor(options.sessionTimeoutMs / 10)),
    maxBytesPerPartition: 1_048_576,
    retry: { retries: 10 },
  });

  const producers = new Map<number, Producer>();
  const attempts = new Map<number, number>();
  let isJoined = false;
  let stopping = false;

  const transactionalId = (partition: number) => `${options.transactionalIdPrefix}.${options.topic}.${partition}`;

  async function dropProducer(partition: number): Promise<void> {
    const producer = producers.get(partition);
    producers.delete(partition);
    await producer?.disconnect().catch(() => {});
  }

  /**
   * The partition's producer, created and initialised on first use after an
   * assignment. Returns the committed offset read after fencing, so the caller
   * can skip records a fenced zombie already committed.
   */
  async function producerFor(partition: number): Promise<{ producer: Producer; committed: string | null }> {
    const existing = producers.get(partition);
    if (existing) return { producer: existing, committed: null };
    const producer = kafka.producer({
      transactionalId: transactionalId(partition),
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: options.transactionTimeoutMs,
      allowAutoTopicCreation: false,
      // The broker answers CONCURRENT_TRANSACTIONS while it writes the previous
      // commit's markers, for a few milliseconds. kafkajs's default first retry
      // comes after ~300 ms, which would add that much latency to every
      // transaction; the Java client retries after 20 ms for the same reason.
      // Bounded: after the last retry the chunk fails, the producer is dropped
      // and the records are redelivered, so exactly-once holds.
      retry: { initialRetryTime: 10, maxRetryTime: 2_000, retries: 30 },
    });
    try {
      await producer.connect(); // InitProducerId: fences any older owner of this partition
      const [offsets] = await admin.fetchOffsets({ groupId: options.groupId, topics: [options.topic] });
      const committed = offsets?.partitions.find((p) => p.partition === partition)?.offset ?? '-1';
      // Registered only once the committed offset is known, so a retry after a failure here fences and checks again.
      producers.set(partition, producer);
      return { producer, committed: committed === '-1' ? null : committed };
    } catch (error) {
      await producer.disconnect().catch(() => {});
      throw error;
    }
  }

  async function rewind(partition: number): Promise<void> {
    const [offsets] = await admin.fetchOffsets({ groupId: options.groupId, topics: [options.topic] }).catch(() => []);
    const committed = offsets?.partitions.find((p) => p.partition === partition)?.offset;
    if (committed !== undefined && committed !== '-1') {
      consumer.seek({ topic: options.topic, partition, offset: committed });
    } else {
      // Nothing committed yet: start of the partition, like a fresh group.
      const offsets = await admin.fetchTopicOffsets(options.topic).catch(() => []);
      const low = offsets.find((p) => p.partition === partition)?.low ?? '0';
      consumer.seek({ topic: options.topic, partition, offset: low });
    }
  }

  async function commitChunk(partition: number, records: SourceRecord[], producer: Producer): Promise<void> {
    const started = performance.now();
    const { messages } = await options.handle(records, partition);
    const handledAt = performance.now();
    const transaction = await producer.transaction();
    try {
      const byTopic = new Map<string, OutgoingMessage[]>();
      for (const message of messages) {
        const list = byTopic.get(message.topic);
        if (list) list.push(message);
        else byTopic.set(message.topic, [message]);
      }
      if (byTopic.size > 0) {
        await transaction.sendBatch({
          acks: -1,
          topicMessages: [...byTopic].map(([topic, list]) => ({
            topic,
            messages: list.map((m) => ({ key: m.key, value: m.value, headers: m.headers })),
          })),
        });
      }
      const last = records[records.length - 1]!;
      await transaction.sendOffsets({
        consumerGroupId: options.groupId,
        topics: [{ topic: options.topic, partitions: [{ partition, offset: nextOffset(last.offset) }] }],
      });
      await transaction.commit();
    } catch (error) {
      await transaction.abort().catch(() => {});
      throw error;
    }
    const committedAt = performance.now();
    log.debug(
      {
        partition,
        records: records.length,
        first: records[0]!.offset,
        messages: messages.length,
        handleMs: Math.round((handledAt - started) * 10) / 10,
        transactionMs: Math.round((committedAt - handledAt) * 10) / 10,
      },
      'committed',
    );
    options.onCommitted?.({ partition, records: records.length, messages, durationMs: performance.now() - started });
  }

  async function eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
    const partition = batch.partition;
    if (batch.messages.length === 0) return;
    let messages = batch.messages;
    try {
      const { producer, committed } = await producerFor(partition);
      if (committed !== null) {
        // A zombie may have committed past what our group fetched: skip what it already did.
        const committedBig = BigInt(committed);
        const skipped = messages.filter((m) => BigInt(m.offset) < committedBig);
        if (skipped.length > 0) {
          log.warn({ partition, committed, skipped: skipped.length }, 'skipping records a previous owner already committed');
          for (const m of skipped) resolveOffset(m.offset);
          messages = messages.filter((m) => BigInt(m.offset) >= committedBig);
        }
      }
      for (let start = 0; start < messages.length; start += options.maxBatchRecords) {
        if (!isRunning() || isStale()) return;
        const chunk = messages.slice(start, start + options.maxBatchRecords);
        await commitChunk(
          partition,
          chunk.map((m) => toSourceRecord(batch.topic, partition, m)),
          producer,
        );
        resolveOffset(chunk[chunk.length - 1]!.offset);
        attempts.delete(partition);
        await heartbeat();
      }
    } catch (error) {
      // Any failure: the transaction's outcome is unknown or aborted. Throw the
      // producer away (a kafkajs producer is wedged after a failed commit), rewind
      // to the committed offset, back off, and let the next fetch redeliver.
      const attempt = (attempts.get(partition) ?? 0) + 1;
      attempts.set(partition, attempt);
      const code = isSluiceError(error) ? error.code : ((error as { type?: string }).type ?? (error as Error).name ?? 'Error');
      options.onFailure?.({ partition, cause: errorMessage(error), code });
      const backoffMs = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** (attempt - 1));
      log.warn({ partition, attempt, backoffMs, code, err: errorMessage(error) }, 'chunk failed; rewinding to the committed offset');
      await dropProducer(partition);
      if (stopping) return;
      await rewind(partition).catch((rewindError) => log.warn({ err: errorMessage(rewindError) }, 'rewind failed'));
      await sleep(backoffMs);
    }
  }

  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    isJoined = true;
    log.info({ assigned: event.payload.memberAssignment[options.topic] ?? [] }, 'joined group');
    // Eager rebalancing revokes everything, and a partition may have had another
    // owner in between: every producer is re-initialised (fencing) and the
    // committed offset re-read on first use.
    for (const partition of [...producers.keys()]) void dropProducer(partition);
  });
  consumer.on(consumer.events.CRASH, (event) => {
    isJoined = false;
    log.error({ err: errorMessage(event.payload.error), restart: event.payload.restart }, 'consumer crashed');
  });

  await admin.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: options.topic, fromBeginning: true });
  const partitions = (await admin.fetchTopicMetadata({ topics: [options.topic] })).topics[0]?.partitions.length ?? 1;
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: partitions,
    eachBatch,
  });

  return {
    joined: () => isJoined,
    failing: () => Math.max(0, ...attempts.values()),
    async stop() {
      stopping = true;
      await consumer.disconnect().catch(() => {});
      await Promise.all([...producers.keys()].map(dropProducer));
      await admin.disconnect().catch(() => {});
    },
  };
}
