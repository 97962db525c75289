/**
 * At-least-once consumption of several topics in one consumer group, in
 * batches bounded by records and time, for sinks outside Kafka (ClickHouse).
 *
 * Records are buffered as they are fetched; a flush hands up to
 * `maxBatchRecords` of them, oldest first, to `handle`. Only once `handle`
 * has resolved are the offsets committed (last offset + 1 per partition, so a
 * restart re-reads nothing it wrote). If `handle` throws, the same records are
 * retried with backoff, forever: nothing is committed and nothing is dropped.
 * The sink must therefore be idempotent: a crash between write and commit
 * writes the same records again.
 *
 * kafkajs duties kept here (KAFKA-NOTES.md):
 * - autoCommit off; commits carry the group generation, so a member that lost
 *   a partition in a rebalance cannot commit for it.
 * - Fetching is decoupled from flushing: eachBatch only buffers, so a slow or
 *   failing sink never blocks the fetch loop, whose heartbeats keep the member
 *   in its group. Backpressure is `pause()` once the buffer holds
 *   `maxBufferedRecords` (it applies from the next fetch, #1376, so the buffer
 *   may overshoot by one fetch).
 * - Rebalances are eager: on every join kafkajs resumes from the committed
 *   offsets, so everything buffered but uncommitted is discarded and will be
 *   fetched again. A flush already in flight may finish its write, but does
 *   not commit for a generation that is gone.
 * - A transactional producer leaves a control record after each commit; when
 *   it ends a fetched batch, the committed offset moves past it too.
 */
import type { EachBatchPayload } from 'kafkajs';
import type { SourceRecord } from '../../lib/contracts.ts';
import { errorMessage, isSluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { CONSUMER_RETRY, createKafka } from './client.ts';

export interface BatchConsumerOptions {
  brokers: string[];
  clientId: string;
  groupId: string;
  topics: string[];
  /** The most records one flush hands to `handle`. */
  maxBatchRecords: number;
  /** A flush happens at the latest this long after its oldest record arrived. */
  maxBatchWaitMs: number;
  /** Fetching pauses while this many records wait; default 2 × maxBatchRecords. */
  maxBufferedRecords?: number;
  /** How long an idle fetch waits for data. */
  fetchMaxWaitMs?: number;
  /** How long the group waits for a silent member (a crashed sink) before moving its partitions. */
  sessionTimeoutMs?: number;
  /** Backoff between attempts at a failing batch: doubles from the first to the last. */
  retryBackoffMs?: { initial: number; max: number };
  /** How often lag is measured for `onLag`; 0 turns it off. */
  lagIntervalMs?: number;
  logger: Logger;
  /** Writes a batch. Resolving means "written": the offsets are committed next. Throwing means "retry these records". */
  handle(records: SourceRecord[]): Promise<void>;
  onFlushed?(info: { records: number; durationMs: number; attempts: number }): void;
  onFailure?(info: { code: string; cause: string; attempt: number; backoffMs: number }): void;
  onCommitFailed?(info: { cause: string }): void;
  onLag?(lag: PartitionLag[]): void;
}

export interface PartitionLag {
  topic: string;
  partition: number;
  /** Records between the group's committed offset and the end of the partition. */
  lag: number;
}

export interface BatchConsumer {
  /** True once the consumer has joined its group. */
  joined(): boolean;
  /** Consecutive failed attempts at the current batch; 0 when healthy. */
  failing(): number;
  /** Records fetched and waiting to be written. */
  buffered(): number;
  /** Records behind the end of each partition, measured now (committed offsets; end of partition = high watermark). */
  lag(): Promise<PartitionLag[]>;
  /** Stops fetching, makes one last attempt to write and commit what is buffered, and disconnects. */
  stop(): Promise<void>;
}

export const BATCH_CONSUMER_DEFAULTS = {
  fetchMaxWaitMs: 250,
  sessionTimeoutMs: 10_000,
  retryBackoffMs: { initial: 200, max: 5_000 },
  lagIntervalMs: 5_000,
} as const;

interface Buffered {
  record: SourceRecord;
  /** The offset to commit once this record is written (past a trailing control record when there is one). */
  next: string;
  arrivedAt: number;
}

function toSourceRecord(topic: string, partition: number, message: EachBatchPayload['batch']['messages'][number]): SourceRecord {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    const first = Array.isArray(value) ? value[0] : value;
    headers[name] = first === undefined ? undefined : String(first);
  }
  return { topic, partition, offset: message.offset, key: message.key, value: message.value, headers, timestampMs: Number(message.timestamp) };
}

const plusOne = (offset: string) => (BigInt(offset) + 1n).toString();

export async function startBatchConsumer(options: BatchConsumerOptions): Promise<BatchConsumer> {
  const log = options.logger;
  const maxBuffered = options.maxBufferedRecords ?? 2 * options.maxBatchRecords;
  const backoff = options.retryBackoffMs ?? BATCH_CONSUMER_DEFAULTS.retryBackoffMs;
  const lagIntervalMs = options.lagIntervalMs ?? BATCH_CONSUMER_DEFAULTS.lagIntervalMs;
  const sessionTimeoutMs = options.sessionTimeoutMs ?? BATCH_CONSUMER_DEFAULTS.sessionTimeoutMs;
  const kafka = createKafka({ brokers: options.brokers, clientId: options.clientId, logger: log });
  const admin = kafka.admin();
  const consumer = kafka.consumer({
    groupId: options.groupId,
    allowAutoTopicCreation: false,
    readUncommitted: false,
    maxWaitTimeInMs: options.fetchMaxWaitMs ?? BATCH_CONSUMER_DEFAULTS.fetchMaxWaitMs,
    sessionTimeout: sessionTimeoutMs,
    heartbeatInterval: Math.max(500, Math.floor(sessionTimeoutMs / 10)),
    maxBytesPerPartition: 1_048_576,
    retry: CONSUMER_RETRY,
  });

  let buffer: Buffered[] = [];
  let generation = 0;
  let isJoined = false;
  let paused = false;
  let stopping = false;
  let attempt = 0;
  // Two wake-ups: new data ends the wait for a due flush; only stop() or a
  // rebalance ends a backoff (new data must not hammer a failing sink).
  let wakeFlush: (() => void) | null = null;
  let wakeBackoff: (() => void) | null = null;
  const signal = () => {
    const resolve = wakeFlush;
    wakeFlush = null;
    resolve?.();
  };
  const interruptBackoff = () => {
    const resolve = wakeBackoff;
    wakeBackoff = null;
    resolve?.();
  };
  const sleep = (ms: number, onWake: (wake: () => void) => void) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      onWake(() => {
        clearTimeout(timer);
        resolve();
      });
    });

  const allTopics = () => options.topics.map((topic) => ({ topic }));

  function setPaused(value: boolean): void {
    if (value === paused) return;
    paused = value;
    if (value) consumer.pause(allTopics());
    else consumer.resume(allTopics());
    log.debug({ buffered: buffer.length }, value ? 'buffer full: fetching paused' : 'fetching resumed');
  }

  async function eachBatch({ batch, resolveOffset }: EachBatchPayload): Promise<void> {
    const { messages } = batch;
    if (messages.length === 0) return;
    const arrivedAt = Date.now();
    const last = messages.length - 1;
    // batch.lastOffset() includes a trailing control record; committing past it keeps lag at 0 when caught up.
    const batchNext = plusOne(batch.lastOffset());
    messages.forEach((message, i) => {
      buffer.push({ record: toSourceRecord(batch.topic, batch.partition, message), next: i === last ? batchNext : plusOne(message.offset), arrivedAt });
    });
    // Moves the fetch position on; with autoCommit off nothing is committed until the flush.
    resolveOffset(messages[last]!.offset);
    if (buffer.length >= maxBuffered) setPaused(true);
    signal();
  }

  /** Waits until a flush is due: a full batch, the oldest record old enough, or stop. */
  async function flushDue(): Promise<void> {
    for (;;) {
      if (stopping || buffer.length >= options.maxBatchRecords) return;
      if (buffer.length > 0) {
        const remaining = buffer[0]!.arrivedAt + options.maxBatchWaitMs - Date.now();
        if (remaining <= 0) return;
        await sleep(remaining, (wake) => {
          wakeFlush = wake;
        });
      } else {
        await new Promise<void>((resolve) => {
          wakeFlush = resolve;
        });
      }
    }
  }

  async function commit(taken: Buffered[]): Promise<void> {
    const next = new Map<string, { topic: string; partition: number; offset: string }>();
    for (const { record, next: offset } of taken) {
      next.set(`${record.topic}\u0000${record.partition}`, { topic: record.topic, partition: record.partition, offset });
    }
    try {
      await consumer.commitOffsets([...next.values()]);
    } catch (error) {
      // Written but not committed: after a rebalance or restart these records are written again, and collapse.
      options.onCommitFailed?.({ cause: errorMessage(error) });
      log.warn({ err: error }, 'offset commit failed; the batch will be written again after a rebalance or restart');
    }
  }

  /** Writes the oldest records until they are written (or their generation is gone); commits; removes them. */
  async function flushOnce(final: boolean): Promise<void> {
    const taken = buffer.slice(0, options.maxBatchRecords);
    if (taken.length === 0) return;
    const takenGeneration = generation;
    const started = performance.now();
    for (attempt = 1; ; attempt++) {
      try {
        await options.handle(taken.map((b) => b.record));
        break;
      } catch (error) {
        const code = isSluiceError(error) ? error.code : ((error as Error).name ?? 'Error');
        const backoffMs = Math.min(backoff.max, backoff.initial * 2 ** (attempt - 1));
        options.onFailure?.({ code, cause: errorMessage(error), attempt, backoffMs });
        log.warn({ attempt, backoffMs, code, records: taken.length, err: error }, 'writing a batch failed; retrying the same records');
        if (final || stopping) return;
        await sleep(backoffMs, (wake) => {
          wakeBackoff = wake;
        });
        if (generation !== takenGeneration || stopping) {
          attempt = 0; // rebalanced or stopping: these records will be fetched again
          return;
        }
      }
    }
    const attempts = attempt;
    attempt = 0;
    if (generation !== takenGeneration) return;
    await commit(taken);
    if (generation !== takenGeneration) return;
    buffer = buffer.slice(taken.length);
    if (paused && buffer.length < maxBuffered) setPaused(false);
    options.onFlushed?.({ records: taken.length, durationMs: performance.now() - started, attempts });
  }

  let loopDone: Promise<void> = Promise.resolve();
  async function loop(): Promise<void> {
    while (!stopping) {
      await flushDue();
      if (stopping) break;
      await flushOnce(false);
    }
    // Graceful stop: one attempt at what is buffered, so a restart has less to re-read.
    while (buffer.length > 0 && isJoined) {
      const before = buffer.length;
      await flushOnce(true);
      if (buffer.length === before) break;
    }
  }

  /** Lag measurements in flight: stop() waits for them, so none reopens a connection after disconnect. */
  const measuring = new Set<Promise<unknown>>();
  function measureLag(): Promise<PartitionLag[]> {
    // After stop, the admin client is disconnected: a request would silently open a new socket that nothing closes.
    if (stopping) return Promise.resolve([]);
    const measurement = measureLagNow();
    measuring.add(measurement);
    void measurement.finally(() => measuring.delete(measurement)).catch(() => {});
    return measurement;
  }

  async function measureLagNow(): Promise<PartitionLag[]> {
    const [committed, ends] = await Promise.all([
      admin.fetchOffsets({ groupId: options.groupId, topics: options.topics }),
      Promise.all(options.topics.map(async (topic) => ({ topic, offsets: await admin.fetchTopicOffsets(topic) }))),
    ]);
    const lags: PartitionLag[] = [];
    for (const { topic, offsets } of ends) {
      const group = committed.find((c) => c.topic === topic)?.partitions ?? [];
      for (const { partition, high, low } of offsets) {
        const done = group.find((p) => p.partition === partition)?.offset;
        const from = done === undefined || done === '-1' ? BigInt(low) : BigInt(done);
        const lag = BigInt(high) - from;
        lags.push({ topic, partition, lag: Number(lag > 0n ? lag : 0n) });
      }
    }
    return lags;
  }

  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    generation += 1;
    isJoined = true;
    // kafkajs resumes every partition from its committed offset after a join: what is buffered comes again.
    if (buffer.length > 0) log.info({ discarded: buffer.length }, 'rebalanced: uncommitted records will be fetched again');
    buffer = [];
    paused = false;
    consumer.resume(allTopics());
    log.info({ assigned: event.payload.memberAssignment }, 'joined group');
    interruptBackoff();
    signal();
  });
  consumer.on(consumer.events.CRASH, (event) => {
    isJoined = false;
    log.error({ err: event.payload.error, restart: event.payload.restart }, 'consumer crashed');
  });

  await admin.connect();
  await consumer.connect();
  await consumer.subscribe({ topics: options.topics, fromBeginning: true });
  // eachBatch only buffers, so batches need no concurrency.
  await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch });
  loopDone = loop();

  let lagTimer: NodeJS.Timeout | undefined;
  if (options.onLag && lagIntervalMs > 0) {
    const report = options.onLag;
    lagTimer = setInterval(() => {
      measureLag()
        .then(report)
        .catch((error) => log.debug({ err: error }, 'measuring lag failed'));
    }, lagIntervalMs);
    lagTimer.unref();
  }

  return {
    joined: () => isJoined,
    failing: () => attempt,
    buffered: () => buffer.length,
    lag: measureLag,
    async stop() {
      if (lagTimer) clearInterval(lagTimer);
      stopping = true;
      signal();
      interruptBackoff();
      consumer.pause(allTopics());
      await loopDone;
      await Promise.allSettled([...measuring]);
      await consumer.disconnect().catch(() => {});
      await admin.disconnect().catch(() => {});
    },
  };
}
