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
import type { Admin, EachBatchPayload, KafkaMessage, Producer } from 'kafkajs';
import type { SourceRecord } from '../../lib/contracts.ts';
import { errorMessage, isSluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { backoffMs as backoff, interruptibleSleep, throttledLog } from '../../lib/retry.ts';
import { createKafka, type KafkaClient, kafkaErrorType } from './client.ts';

export interface OutgoingMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer;
  headers?: Record<string, string>;
  /** Unset: kafkajs's partitioner picks by key. Set by a stage's changelog, which goes to its input's partition number. */
  partition?: number;
}

/**
 * Per input partition, a number that changes whenever work on it that may not
 * have been committed is thrown away: on a rewind after a failed or aborted
 * transaction (that partition), and on every group rebalance (all of them). A
 * stage that keeps state beside its outputs (validate's duplicate check) reads
 * it before each chunk and reloads its state from Kafka when it has changed.
 */
export class PartitionEpochs {
  private rebalances = 0;
  private readonly rewinds = new Map<number, number>();
  of(partition: number): number {
    return this.rebalances + (this.rewinds.get(partition) ?? 0);
  }
  rewound(partition: number): void {
    this.rewinds.set(partition, (this.rewinds.get(partition) ?? 0) + 1);
  }
  rebalanced(): void {
    this.rebalances++;
  }
}

/** What one input record produced, and a note handed back once it is committed (for logs and metrics). */
export interface RecordOutput<Note = unknown> {
  messages: OutgoingMessage[];
  note?: Note;
}

export interface ExactlyOnceOptions<Note = unknown> {
  brokers: string[];
  clientId: string;
  groupId: string;
  topic: string;
  /** `<prefix>.<topic>.<partition>` is each partition's transactional id. */
  transactionalIdPrefix: string;
  /** The most records one transaction holds; bounds the slow tail of a batch. */
  maxBatchRecords: number;
  /**
   * The most bytes one transaction produces. kafkajs sends a transaction's
   * messages for a partition as one record batch, which the broker refuses
   * (MESSAGE_TOO_LARGE, not retriable) above the topic's max.message.bytes; the
   * effective budget is the smaller of this and the output topics' limits.
   */
  maxBatchBytes: number;
  /** Every topic the stage writes: their max.message.bytes bound the budget. */
  outputTopics: readonly string[];
  /** Must exceed the slowest chunk (inference included), below the broker's transaction.max.timeout.ms. */
  transactionTimeoutMs: number;
  /** How long an idle fetch waits for data; bounds the latency added per hop. */
  maxWaitTimeMs: number;
  /** How long the group waits for a silent member before moving its partitions. */
  sessionTimeoutMs: number;
  /** Partitions handled at the same time, each with its transaction in flight; 0 or unset: every partition of the topic. */
  concurrentPartitions?: number;
  logger: Logger;
  /**
   * Turns a chunk into one output per record, in order. Throwing means
   * "transient: retry the chunk later"; bad data must come back as dead letters.
   */
  handle(records: SourceRecord[], partition: number): Promise<Array<RecordOutput<Note>>>;
  /**
   * What to write instead of a record's output that cannot fit in one record
   * batch of its topic (a dead letter that fits `roomFor` its own topic:
   * truncated if it must be).
   */
  oversized(record: SourceRecord, output: RecordOutput<Note>, roomFor: (topic: string) => number): RecordOutput<Note>;
  onCommitted?(info: { partition: number; records: SourceRecord[]; outputs: Array<RecordOutput<Note>>; durationMs: number }): void;
  onFailure?(info: { partition: number; cause: string; code: string }): void;
  /** Every request sent to Kafka, by API name (`Produce`, `EndTxn`, `FindCoordinator`, …): for the round trips per transaction. */
  onRequest?(info: { api: string; client: 'producer' | 'consumer'; durationMs: number }): void;
  /** The consumer crashed for good (kafkajs will not restart it): the process should exit and be restarted. */
  onFatal?(error: unknown): void;
  /** Bumped on every rewind and rebalance (see PartitionEpochs). */
  epochs?: PartitionEpochs;
  /**
   * Which input partitions to hold (not consume): every one (`all`), or the
   * listed ones. Held records wait in Kafka; a batch being handled stops after
   * its current transaction, and what it had not committed is fetched again
   * once released. Consulted before every batch and transaction.
   */
  held?(): { all: boolean; partitions: ReadonlySet<number> };
}

export interface ExactlyOnceHandle {
  /** True once the consumer has joined its group and holds an assignment (possibly empty). */
  joined(): boolean;
  /** Consecutive failed attempts on any partition; 0 when healthy. */
  failing(): number;
  /** The input partitions assigned to this member at its last rebalance. */
  assigned(): readonly number[];
  /** Reads `options.held()` again and pauses or resumes fetching to match; call it whenever what it returns changes. */
  holdsChanged(): void;
  /** Stops consuming, interrupts any backoff, aborts nothing committed; bounded by the client timeouts. */
  stop(): Promise<void>;
}

const BACKOFF_INITIAL_MS = 200;
const BACKOFF_MAX_MS = 10_000;
/** Per message, what a record batch adds to key, value and headers (varints, attributes, deltas), rounded up. */
const RECORD_OVERHEAD_BYTES = 32;
const HEADER_OVERHEAD_BYTES = 8;
/** Room left below max.message.bytes for the record batch header (61 bytes) and estimation slack. */
const BATCH_MARGIN_BYTES = 4_096;
/** The budget never shrinks below this after MESSAGE_TOO_LARGE: a dead letter's headers and a short preview fit. */
const MIN_BUDGET_BYTES = 8_192;
/** The broker's default message.max.bytes, assumed when a topic's config cannot be read. */
const BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;
const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

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

const byteLength = (value: string | Buffer | null | undefined): number => (value == null ? 0 : typeof value === 'string' ? Buffer.byteLength(value) : value.length);

/** A message's size in a record batch, estimated from above (keys and values as bytes or strings). */
export function messageBytes(message: { key?: string | Buffer | null; value: string | Buffer | null; headers?: Record<string, string> }): number {
  let bytes = RECORD_OVERHEAD_BYTES + byteLength(message.key) + byteLength(message.value);
  const headers = message.headers;
  if (headers === undefined) return bytes;
  for (const name in headers) bytes += HEADER_OVERHEAD_BYTES + Buffer.byteLength(name) + Buffer.byteLength(headers[name]!);
  return bytes;
}

export const outputBytes = (output: RecordOutput): number => output.messages.reduce((sum, m) => sum + messageBytes(m), 0);

/**
 * Splits records and their outputs into consecutive groups whose produced bytes
 * stay within `budgetBytes`, and at most `maxRecords` records each. A record
 * whose output alone exceeds the budget must have been replaced before.
 */
export function packByBytes<T>(items: readonly T[], bytesOf: (item: T) => number, budgetBytes: number, maxRecords: number): T[][] {
  const groups: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = bytesOf(item);
    if (current.length > 0 && (bytes + size > budgetBytes || current.length >= maxRecords)) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

const nextOffset = (offset: string) => (BigInt(offset) + 1n).toString();

/** Each topic's max.message.bytes (its own setting, or the broker default it inherits). */
async function maxMessageBytes(admin: Admin, topics: readonly string[]): Promise<Map<string, number>> {
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: topics.map((name) => ({ type: 2 /* TOPIC */, name, configNames: ['max.message.bytes'] })),
  });
  const limits = new Map<string, number>();
  for (const resource of described.resources) {
    const value = Number(resource.configEntries.find((entry) => entry.configName === 'max.message.bytes')?.configValue);
    if (Number.isInteger(value) && value > 0) limits.set(resource.resourceName, value);
  }
  return limits;
}

export async function startExactlyOnce<Note>(options: ExactlyOnceOptions<Note>): Promise<ExactlyOnceHandle> {
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

  if (options.onRequest) {
    const onRequest = options.onRequest;
    consumer.on(consumer.events.REQUEST, (event) => onRequest({ api: event.payload.apiName, client: 'consumer', durationMs: event.payload.duration }));
  }

  const producers = new Map<number, Producer>();
  const attempts = new Map<number, number>();
  /** Per partition: the byte budget in force, halved after the broker refused a transaction as too large. */
  const budgets = new Map<number, number>();
  /** Per partition: offsets whose output alone the broker refused; written as `oversized` replacements next time. */
  const refused = new Map<number, Set<string>>();
  const stopController = new AbortController();
  const failureLog = throttledLog(log, 5_000);
  let isJoined = false;
  let assignment: number[] = [];
  const isHeld = (partition: number) => {
    const held = options.held?.();
    return held !== undefined && (held.all || held.partitions.has(partition));
  };
  /** Pauses fetching of the held partitions; kafkajs keeps pauses per topic-partition across rebalances, so they are set from scratch. */
  const applyHolds = () => {
    const held = options.held?.();
    consumer.resume([{ topic: options.topic }]);
    if (held?.all) consumer.pause([{ topic: options.topic }]);
    else if (held && held.partitions.size > 0) consumer.pause([{ topic: options.topic, partitions: [...held.partitions] }]);
  };
  let topicLimits = new Map<string, number>();
  /** The most bytes a record batch for `topic` may carry, with room for the batch header. */
  const topicRoom = (topic: string) => (topicLimits.get(topic) ?? BROKER_DEFAULT_MAX_MESSAGE_BYTES) - BATCH_MARGIN_BYTES;
  const smallestRoom = () => Math.min(...options.outputTopics.map(topicRoom));

  const transactionalId = (partition: number) => `${options.transactionalIdPrefix}.${options.topic}.${partition}`;
  const budgetOf = (partition: number) => budgets.get(partition) ?? Math.max(MIN_BUDGET_BYTES, Math.min(options.maxBatchBytes, smallestRoom()));
  /**
   * The most bytes a record's messages for `topic` may take: the topic's own
   * room, or less once the broker refused this partition's transactions.
   */
  const roomFor = (partition: number) => (topic: string) => Math.min(topicRoom(topic), budgets.get(partition) ?? Number.POSITIVE_INFINITY);
  /** True when a record's own messages for some topic exceed what one record batch of that topic may hold. */
  const overflows = (output: RecordOutput<Note>, room: (topic: string) => number): boolean => {
    const perTopic = new Map<string, number>();
    for (const message of output.messages) perTopic.set(message.topic, (perTopic.get(message.topic) ?? 0) + messageBytes(message));
    for (const [topic, bytes] of perTopic) if (bytes > room(topic)) return true;
    return false;
  };

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
    if (options.onRequest) {
      const onRequest = options.onRequest;
      producer.on(producer.events.REQUEST, (event) => onRequest({ api: event.payload.apiName, client: 'producer', durationMs: event.payload.duration }));
    }
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
    // First, whatever happens next: what the stage handled since the last commit is void.
    options.epochs?.rewound(partition);
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

  /** One transaction: the group's messages and the offset after its last record. */
  async function commitGroup(partition: number, group: Array<{ record: SourceRecord; output: RecordOutput<Note> }>, producer: Producer, startedAt: number): Promise<void> {
    const handledAt = performance.now();
    const transaction = await producer.transaction();
    let messageCount = 0;
    try {
      const byTopic = new Map<string, OutgoingMessage[]>();
      for (const { output } of group) {
        for (const message of output.messages) {
          messageCount++;
          const list = byTopic.get(message.topic);
          if (list) list.push(message);
          else byTopic.set(message.topic, [message]);
        }
      }
      if (byTopic.size > 0) {
        await transaction.sendBatch({
          acks: -1,
          topicMessages: [...byTopic].map(([topic, list]) => ({
            topic,
            messages: list.map((m) => ({ key: m.key, value: m.value, headers: m.headers, partition: m.partition })),
          })),
        });
      }
      const last = group[group.length - 1]!.record;
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
        records: group.length,
        first: group[0]!.record.offset,
        messages: messageCount,
        handleMs: Math.round((handledAt - startedAt) * 10) / 10,
        transactionMs: Math.round((committedAt - handledAt) * 10) / 10,
      },
      'committed',
    );
    options.onCommitted?.({
      partition,
      records: group.map((g) => g.record),
      outputs: group.map((g) => g.output),
      durationMs: committedAt - startedAt,
    });
  }

  /**
   * Handles one chunk of records: one output per record, a record whose output
   * cannot fit in its topic replaced by its `oversized` dead letter, each with
   * its size in bytes for packing into transactions.
   */
  async function handleChunk(partition: number, records: SourceRecord[]): Promise<Array<{ record: SourceRecord; output: RecordOutput<Note>; bytes: number }>> {
    const outputs = await options.handle(records, partition);
    const room = roomFor(partition);
    const refusedHere = refused.get(partition);
    // The common case costs one sum per record: only a record larger than the
    // smallest room needs its bytes per topic checked.
    const smallest = Math.min(budgetOf(partition), smallestRoom());
    return records.map((record, i) => {
      let output = outputs[i]!;
      let bytes = outputBytes(output);
      if ((bytes > smallest && overflows(output, room)) || refusedHere?.has(record.offset)) {
        output = options.oversized(record, output, room);
        refusedHere?.delete(record.offset);
        bytes = outputBytes(output);
      }
      return { record, output, bytes };
    });
  }

  async function eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
    const partition = batch.partition;
    // A batch fetched before its partition was held: left unresolved, fetched again once released.
    if (batch.messages.length === 0 || isHeld(partition)) return;
    let messages = batch.messages;
    /** The transaction being written, to know which record the broker refused. */
    let inFlight: Array<{ record: SourceRecord }> = [];
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
      const afterCommit = async (lastOffset: string): Promise<boolean> => {
        resolveOffset(lastOffset);
        attempts.delete(partition);
        // A budget shrunk after a refusal grows back with each success, so one
        // oversized record does not cap this partition's transactions for good.
        const shrunk = budgets.get(partition);
        if (shrunk !== undefined) {
          budgets.delete(partition);
          if (shrunk * 2 < budgetOf(partition)) budgets.set(partition, shrunk * 2);
        }
        try {
          await heartbeat();
        } catch (error) {
          // The transaction is committed; a failed heartbeat only means the group is rebalancing.
          log.info({ partition, code: kafkaErrorType(error) ?? 'heartbeat' }, 'group rebalancing; handing the batch back');
          return false;
        }
        return isRunning() && !isStale() && !stopController.signal.aborted && !isHeld(partition);
      };
      // Input chunks bounded by records and by bytes: what the stage adds is packed into transactions of bounded size.
      const records = messages.map((m) => toSourceRecord(batch.topic, partition, m));
      const chunks = packByBytes(records, (r) => RECORD_OVERHEAD_BYTES + (r.key?.length ?? 0) + (r.value?.length ?? 0), budgetOf(partition), options.maxBatchRecords);
      for (const chunk of chunks) {
        if (!isRunning() || isStale() || stopController.signal.aborted) return;
        const startedAt = performance.now();
        const items = await handleChunk(partition, chunk);
        // As many transactions as the chunk's output bytes need.
        for (const group of packByBytes(items, (item) => item.bytes, budgetOf(partition), options.maxBatchRecords)) {
          inFlight = group;
          await commitGroup(partition, group, producer, startedAt);
          if (!(await afterCommit(group[group.length - 1]!.record.offset))) {
            // The chunk's later groups were handled but are not committed: they come again, so stage state is void.
            options.epochs?.rewound(partition);
            return;
          }
        }
      }
    } catch (error) {
      // Any failure: the transaction's outcome is unknown or aborted. Throw the
      // producer away (a kafkajs producer is wedged after a failed commit), rewind
      // to the committed offset, back off, and let the next fetch redeliver.
      await dropProducer(partition);
      const type = kafkaErrorType(error);
      if (type !== undefined && TOO_LARGE.has(type)) {
        // Not retriable as it is. A topic's limit may have been lowered since start:
        // read the limits again; and shrink this partition's transactions. A lone
        // record the broker still refuses is written as its `oversized` replacement.
        topicLimits = await maxMessageBytes(admin, options.outputTopics).catch(() => topicLimits);
        const budget = Math.min(budgetOf(partition), Math.max(MIN_BUDGET_BYTES, smallestRoom()));
        if (inFlight.length === 1) {
          const set = refused.get(partition) ?? new Set<string>();
          set.add(inFlight[0]!.record.offset);
          refused.set(partition, set);
        }
        budgets.set(partition, Math.max(MIN_BUDGET_BYTES, Math.floor(budget / 2)));
        options.onFailure?.({ partition, cause: errorMessage(error), code: type });
        log.warn({ partition, code: type, records: inFlight.length, budgetBytes: budgets.get(partition) }, 'the broker refused a transaction as too large; splitting it');
        if (!stopController.signal.aborted) await rewind(partition).catch((rewindError) => log.warn({ err: rewindError }, 'rewind failed'));
        return;
      }
      const attempt = (attempts.get(partition) ?? 0) + 1;
      attempts.set(partition, attempt);
      const code = isSluiceError(error) ? error.code : (type ?? (error as Error).name ?? 'Error');
      options.onFailure?.({ partition, cause: errorMessage(error), code });
      const backoffMs = backoff(attempt, BACKOFF_INITIAL_MS, BACKOFF_MAX_MS);
      failureLog.warn({ partition, attempt, backoffMs, code, err: error }, 'chunk failed; nothing of it was committed; rewinding to the committed offset');
      if (stopController.signal.aborted) return;
      await rewind(partition).catch((rewindError) => failureLog.warn({ err: rewindError }, 'rewind failed'));
      await interruptibleSleep(backoffMs, stopController.signal);
    }
  }

  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    isJoined = true;
    options.epochs?.rebalanced();
    assignment = [...(event.payload.memberAssignment[options.topic] ?? [])];
    log.info({ assigned: assignment }, 'joined group');
    // Eager rebalancing revokes everything, and a partition may have had another
    // owner in between: every producer is re-initialised (fencing) and the
    // committed offset re-read on first use.
    for (const partition of [...producers.keys()]) void dropProducer(partition);
  });
  consumer.on(consumer.events.CRASH, (event) => {
    isJoined = false;
    log.error({ err: event.payload.error, restart: event.payload.restart }, 'consumer crashed');
    if (!event.payload.restart && !stopController.signal.aborted) options.onFatal?.(event.payload.error);
  });

  await admin.connect();
  try {
    topicLimits = await maxMessageBytes(admin, options.outputTopics);
  } catch (error) {
    log.warn({ err: error, assumedBytes: BROKER_DEFAULT_MAX_MESSAGE_BYTES }, 'could not read max.message.bytes of the output topics');
  }
  await consumer.connect();
  await consumer.subscribe({ topic: options.topic, fromBeginning: true });
  const partitions = (await admin.fetchTopicMetadata({ topics: [options.topic] })).topics[0]?.partitions.length ?? 1;
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: options.concurrentPartitions ? Math.min(options.concurrentPartitions, partitions) : partitions,
    eachBatch,
  });
  // Only now can kafkajs pause (it needs the running group); until then, eachBatch itself skips held partitions.
  applyHolds();
  log.debug({ limits: Object.fromEntries(topicLimits), budgetBytes: budgetOf(0) }, 'transaction byte budget');

  return {
    joined: () => isJoined,
    failing: () => Math.max(0, ...attempts.values()),
    assigned: () => assignment,
    holdsChanged: applyHolds,
    async stop() {
      stopController.abort();
      await consumer.disconnect().catch(() => {});
      await Promise.all([...producers.keys()].map(dropProducer));
      await admin.disconnect().catch(() => {});
    },
  };
}

