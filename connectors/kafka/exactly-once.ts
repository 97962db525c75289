/**
 * Exactly-once consume → transform → produce over kafkajs.
 *
 * For every chunk of a fetched batch, one Kafka transaction holds the chunk's
 * outputs, its dead letters and the consumer offset (last offset + 1), so a
 * crash at any moment either commits all of it or none of it.
 *
 * One transactional producer per process, not per input partition (KIP-447,
 * the Java client's "exactly-once v2"): the partitions' chunks that are ready
 * while a transaction is in flight are committed together in the next one, so
 * a process keeps one transaction open at a time, whatever its partition count.
 * Fetching and handling overlap with committing: a batch hands its chunks to
 * the transaction lane and returns, so kafkajs fetches the next records while
 * they commit; a partition's next chunk waits for its previous one to commit
 * (chunks commit in order, at most one outstanding per partition), and a failed
 * commit rewinds the partition to its committed offset.
 * What fences a zombie (a member that lost a partition but does not know yet):
 * - every transaction's offsets carry the group generation and member id its
 *   records were fetched under (TxnOffsetCommit v3, added by sluice's kafkajs
 *   patch), and the group coordinator refuses them once the group has moved
 *   on, so the zombie's transaction aborts, outputs included;
 * - a new owner reads its committed offsets with `require_stable` (OffsetFetch
 *   v7, same patch), which waits for any transaction still holding offsets for
 *   them, and skips what a zombie committed after the group's own offset fetch;
 * - the transactional id is `<prefix>.<topic>.<lowest assigned partition>`:
 *   unique among current members, and the same after a restart with the same
 *   assignment, so the restarted process's initialisation aborts at once what
 *   the crashed one left open instead of waiting for the transaction timeout.
 *
 * A transaction sends three requests where the cluster has KIP-890's
 * transactions v2 (Kafka 4.0 and later finalize `transaction.version` 2):
 * Produce and TxnOffsetCommit, side by side, each adding its partitions to the
 * transaction itself, then EndTxn, which also bumps the producer's epoch. On
 * older clusters, five: AddPartitionsToTxn before the Produce and
 * AddOffsetsToTxn before the TxnOffsetCommit (sluice's kafkajs patch decides
 * from the cluster's finalized features).
 *
 * kafkajs also leaves these duties to us (KAFKA-NOTES.md):
 * - A failed commit or abort wedges a kafkajs producer: it is thrown away, a new
 *   one is made (which ends what the old one left open), and the partitions
 *   of the failed transaction are rewound to their committed offsets.
 * - Errors never escape eachBatch (kafkajs would crash or wedge the consumer):
 *   a transient failure rewinds and backs off; the handler itself must turn bad
 *   data into dead letters. The one exception is the coordinator refusing our
 *   offsets because the group moved on, which kafkajs answers by joining again.
 */
import type { Admin, EachBatchPayload, KafkaMessage, Producer } from 'kafkajs';
import type { SourceRecord } from '../../lib/contracts.ts';
import { errorMessage, isSluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { backoffMs as backoff, interruptibleSleep, throttledLog } from '../../lib/retry.ts';
import { CONSUMER_RETRY, createKafka, type KafkaClient, kafkaErrorType } from './client.ts';

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
  /** `<prefix>.<topic>.<lowest assigned partition>` is the process's transactional id. */
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
  /** Partitions handled at the same time (their chunks share the process's transactions); 0 or unset: every partition of the topic. */
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
/** The longest a transaction waits for the other partitions of the same fetch to hand over their chunks. */
const GATHER_MAX_MS = 5;
/** The group coordinator's answers to offsets sent under a generation that is over. */
const MOVED_ON = new Set(['ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'FENCED_INSTANCE_ID', 'REBALANCE_IN_PROGRESS']);

function toSourceRecord(topic: string, partition: number, message: KafkaMessage): SourceRecord {
  const headers: Record<string, string | undefined> = {};
  const raw = message.headers;
  for (const name in raw) {
    const value = raw[name];
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

/** A group's chunk waiting for the process's next transaction. */
interface Pending<Note> {
  partition: number;
  /** The group membership (our count of joins) its records were fetched under. */
  join: number;
  group: Array<{ record: SourceRecord; output: RecordOutput<Note> }>;
  bytes: number;
  resolve(): void;
  reject(error: unknown): void;
}

/** A chunk fetched before the latest rebalance: not committed, the group hands its records out again. */
class Rebalanced extends Error {
  constructor() {
    super('the group rebalanced since these records were fetched');
  }
}

export async function startExactlyOnce<Note>(options: ExactlyOnceOptions<Note>): Promise<ExactlyOnceHandle> {
  const log = options.logger;
  const kafka: KafkaClient = createKafka({ brokers: options.brokers, clientId: options.clientId, logger: log });
  const admin = kafka.admin();
  const heartbeatIntervalMs = Math.max(500, Math.floor(options.sessionTimeoutMs / 10));
  const consumer = kafka.consumer({
    groupId: options.groupId,
    allowAutoTopicCreation: false,
    readUncommitted: false,
    maxWaitTimeInMs: options.maxWaitTimeMs,
    // A crashed member holds its partitions until its session times out: keep it short.
    sessionTimeout: options.sessionTimeoutMs,
    heartbeatInterval: heartbeatIntervalMs,
    maxBytesPerPartition: 1_048_576,
    retry: CONSUMER_RETRY,
  });

  if (options.onRequest) {
    const onRequest = options.onRequest;
    consumer.on(consumer.events.REQUEST, (event) => onRequest({ api: event.payload.apiName, client: 'consumer', durationMs: event.payload.duration }));
  }

  const attempts = new Map<number, number>();
  /** Per partition: the byte budget in force, halved after the broker refused a transaction as too large. */
  const budgets = new Map<number, number>();
  /** Per partition: offsets whose output alone the broker refused; written as `oversized` replacements next time. */
  const refused = new Map<number, Set<string>>();
  const stopController = new AbortController();
  const failureLog = throttledLog(log, 5_000);
  let isJoined = false;
  /** Our count of group joins; `membership` is the latest one's generation, as the coordinator checks it. */
  let joins = 0;
  let membership = { generationId: -1, memberId: '', assignment: [] as number[] };
  const isHeld = (partition: number) => {
    const held = options.held?.();
    return held !== undefined && (held.all || held.partitions.has(partition));
  };
  /** Pauses fetching of the held partitions; kafkajs keeps pauses per topic-partition across rebalances, so they are set from scratch. */
  const applyHolds = () => {
    const held = options.held?.();
    try {
      consumer.resume([{ topic: options.topic }]);
      if (held?.all) consumer.pause([{ topic: options.topic }]);
      else if (held && held.partitions.size > 0) consumer.pause([{ topic: options.topic, partitions: [...held.partitions] }]);
    } catch (error) {
      // kafkajs has no group right now (it is restarting the consumer after a
      // crash): the next join applies the holds; eachBatch skips held partitions meanwhile.
      log.debug({ err: error }, 'holds not applied yet');
    }
  };
  let topicLimits = new Map<string, number>();
  /** The most bytes a record batch for `topic` may carry, with room for the batch header. */
  const topicRoom = (topic: string) => (topicLimits.get(topic) ?? BROKER_DEFAULT_MAX_MESSAGE_BYTES) - BATCH_MARGIN_BYTES;
  const smallestRoom = () => Math.min(...options.outputTopics.map(topicRoom));

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

  /** The committed offsets of the assigned partitions, once every transaction holding offsets for them has ended. */
  async function stableOffsets(partitions: readonly number[]): Promise<Map<number, string | null>> {
    const [offsets] = await admin.fetchOffsets({ groupId: options.groupId, topics: [options.topic], requireStable: true });
    const committed = new Map<number, string | null>();
    for (const partition of partitions) {
      const offset = offsets?.partitions.find((p) => p.partition === partition)?.offset ?? '-1';
      committed.set(partition, offset === '-1' ? null : offset);
    }
    return committed;
  }

  // The producer and everything done with it (its initialisation, transactions,
  // replacement) run one at a time, in this lane.
  let lane: Promise<unknown> = Promise.resolve();
  const inLane = <T>(work: () => Promise<T>): Promise<T> => {
    const result = lane.then(work);
    lane = result.catch(() => {});
    return result;
  };
  let current: { producer: Producer; join: number } | null = null;
  const transactionalId = (partition: number) => `${options.transactionalIdPrefix}.${options.topic}.${partition}`;
  /**
   * InitProducerId with the transactional id, which fences its previous holder
   * and ends what that one left open. kafkajs sends it on a producer's first
   * transaction, not on connect: an empty transaction begun and aborted sends
   * nothing else.
   */
  const initTransactions = async (producer: Producer) => {
    const transaction = await producer.transaction();
    await transaction.abort();
  };

  async function dropProducer(): Promise<void> {
    const dropped = current;
    current = null;
    await dropped?.producer.disconnect().catch(() => {});
  }

  /**
   * The producer for membership `join`: after a rebalance, a new one with the
   * id of the new assignment, whose initialisation fences any other holder of
   * that id and ends what it left open. Runs in the lane.
   */
  async function producerFor(join: number): Promise<Producer> {
    if (current?.join === join) return current.producer;
    await dropProducer();
    if (join !== joins) throw new Rebalanced();
    const [lowest = 0, ...others] = [...membership.assignment].sort((a, b) => a - b);
    // The other assigned partitions' ids are initialised once too: a crashed
    // member whose id was one of them (its lowest partition is ours now) had
    // its open transaction aborted now, not at its timeout, which the stable
    // offset read would otherwise wait for.
    await Promise.all(
      others.map(async (partition) => {
        const fencer = kafka.producer({ transactionalId: transactionalId(partition), idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
        try {
          await fencer.connect();
          await initTransactions(fencer);
        } finally {
          await fencer.disconnect().catch(() => {});
        }
      }),
    );
    const producer = kafka.producer({
      transactionalId: transactionalId(lowest),
      idempotent: true,
      // A transaction's Produce and its offsets' requests side by side (one
      // Produce at a time all the same: kafkajs locks each broker for it).
      maxInFlightRequests: 2,
      transactionTimeout: options.transactionTimeoutMs,
      allowAutoTopicCreation: false,
      // The broker answers CONCURRENT_TRANSACTIONS while it writes the previous
      // commit's markers, for a few milliseconds, and the lane begins the next
      // transaction as soon as one commits. The patched kafkajs retries that
      // answer to an add (under transactions v2, to the TxnOffsetCommit, which
      // is the add, and the error 14 the group coordinator answers in its
      // place) within 1-20 ms itself; anything else retriable comes
      // here: kafkajs's default first retry comes after ~300 ms, which would add
      // that much latency to a transaction; here, 3 ms, doubling. Bounded: after
      // the last retry the chunk fails, the producer is replaced and the records
      // are redelivered, so exactly-once holds.
      retry: { initialRetryTime: 3, maxRetryTime: 2_000, retries: 30 },
    });
    if (options.onRequest) {
      const onRequest = options.onRequest;
      producer.on(producer.events.REQUEST, (event) => onRequest({ api: event.payload.apiName, client: 'producer', durationMs: event.payload.duration }));
    }
    try {
      await producer.connect();
      await initTransactions(producer);
    } catch (error) {
      await producer.disconnect().catch(() => {});
      throw error;
    }
    current = { producer, join };
    return producer;
  }

  /**
   * Per membership, done once before its first chunk: the producer is made
   * (so a crashed predecessor's open transaction is aborted now, not at its
   * timeout), then the committed offsets are read once stable.
   */
  let prepared: { join: number; committed: Promise<Map<number, string | null>> } | null = null;
  function prepare(join: number): Promise<Map<number, string | null>> {
    if (prepared?.join === join) return prepared.committed;
    const assignment = membership.assignment;
    const committed = inLane(async () => {
      await producerFor(join);
      return stableOffsets(assignment);
    });
    const entry = { join, committed };
    prepared = entry;
    committed.catch(() => {
      if (prepared === entry) prepared = null;
    });
    return committed;
  }
  /** Per membership, the partitions whose committed offset was checked against their first batch. */
  const checked = new Set<number>();

  /** Chunks waiting for the next transaction; at most one per partition, since a partition waits for its commit. */
  const pendings: Array<Pending<Note>> = [];
  let draining = false;
  /**
   * Batches of the current fetch still handling their first chunk (from their
   * start until it is handled, or they end): the next transaction waits for
   * them a moment, so one fetch's partitions share one transaction.
   */
  let arriving = 0;
  let arrived: () => void = () => {};
  async function gather(): Promise<void> {
    if (arriving === 0) return;
    const deadline = performance.now() + GATHER_MAX_MS;
    for (let left = GATHER_MAX_MS; arriving > 0 && left > 0; left = deadline - performance.now()) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        arrived = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    arrived = () => {};
    // The last ones hand over after a few microtasks (their previous chunk's settled commit).
    await new Promise((resolve) => setImmediate(resolve));
  }

  function commit(partition: number, join: number, group: Array<{ record: SourceRecord; output: RecordOutput<Note>; bytes: number }>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      pendings.push({ partition, join, group, bytes: group.reduce((sum, item) => sum + item.bytes, 0), resolve, reject });
      if (!draining) void drain();
    });
  }

  async function drain(): Promise<void> {
    draining = true;
    try {
      while (pendings.length > 0) {
        await gather();
        // Whatever became ready while the previous transaction was in flight goes into the next one, within the byte budget.
        const first = pendings.shift()!;
        const together = [first];
        let bytes = first.bytes;
        let budget = budgetOf(first.partition);
        for (let i = 0; i < pendings.length; ) {
          const next = pendings[i]!;
          const room = Math.min(budget, budgetOf(next.partition));
          if (next.join === first.join && bytes + next.bytes <= room) {
            together.push(next);
            bytes += next.bytes;
            budget = room;
            pendings.splice(i, 1);
          } else i++;
        }
        await inLane(() => transact(together));
      }
    } finally {
      draining = false;
    }
  }

  /** One transaction: the chunks' messages and, per partition, the offset after its last record. Settles every chunk; never throws. */
  async function transact(together: Array<Pending<Note>>): Promise<void> {
    const join = together[0]!.join;
    const startedAt = performance.now();
    let producer: Producer | undefined;
    try {
      if (join !== joins) throw new Rebalanced();
      producer = await producerFor(join);
      const transaction = await producer.transaction();
      try {
        const byTopic = new Map<string, OutgoingMessage[]>();
        for (const { group } of together) {
          for (const { output } of group) {
            for (const message of output.messages) {
              const list = byTopic.get(message.topic);
              if (list) list.push(message);
              else byTopic.set(message.topic, [message]);
            }
          }
        }
        // Produce and the offsets run side by side: the patched kafkajs adds the
        // offsets to the transaction after the batch's partitions (one add at a
        // time, as the coordinator requires), so TxnOffsetCommit overlaps Produce.
        const sent = byTopic.size === 0 ? undefined : transaction.sendBatch({
          acks: -1,
          topicMessages: [...byTopic].map(([topic, list]) => ({
            topic,
            // The stage's own message objects: kafkajs reads key, value, headers and partition and ignores `topic`.
            messages: list,
          })),
        });
        const offsets = transaction.sendOffsets({
          consumerGroupId: options.groupId,
          consumerGroupMetadata: { generationId: membership.generationId, memberId: membership.memberId },
          topics: [
            {
              topic: options.topic,
              partitions: together.map(({ partition, group }) => ({ partition, offset: nextOffset(group[group.length - 1]!.record.offset) })),
            },
          ],
        });
        // Both settle before the transaction ends either way.
        const [batchSent, offsetsSent] = await Promise.allSettled([sent, offsets]);
        if (batchSent.status === 'rejected') throw batchSent.reason;
        if (offsetsSent.status === 'rejected') throw offsetsSent.reason;
        await transaction.commit();
      } catch (error) {
        await transaction.abort().catch(() => {});
        throw error;
      }
    } catch (error) {
      const lone = together.length === 1 ? together[0]! : undefined;
      if (lone !== undefined && lone.group.length === 1 && TOO_LARGE.has(kafkaErrorType(error) ?? '')) {
        // The broker refused one record's output on its own: next time it is written as its `oversized` replacement.
        const set = refused.get(lone.partition) ?? new Set<string>();
        set.add(lone.group[0]!.record.offset);
        refused.set(lone.partition, set);
      }
      if (producer !== undefined && current?.producer === producer) {
        // The transaction's outcome is unknown or aborted, and a kafkajs producer is
        // wedged after a failed commit: replace it now, so that what it left open
        // is ended before the partitions read their committed offsets again.
        await dropProducer();
        if (join === joins && !stopController.signal.aborted) await producerFor(join).catch(() => {});
      }
      for (const pending of together) pending.reject(error);
      return;
    }
    log.debug(
      {
        partitions: together.map((p) => p.partition),
        records: together.reduce((sum, p) => sum + p.group.length, 0),
        transactionMs: Math.round((performance.now() - startedAt) * 10) / 10,
      },
      'committed',
    );
    for (const pending of together) pending.resolve();
  }

  async function rewind(partition: number): Promise<void> {
    // First, whatever happens next: what the stage handled since the last commit is void.
    options.epochs?.rewound(partition);
    const committed = (await stableOffsets([partition]).catch(() => new Map<number, string | null>())).get(partition);
    if (committed !== undefined && committed !== null) {
      consumer.seek({ topic: options.topic, partition, offset: committed });
    } else {
      // Nothing committed yet: start of the partition, like a fresh group.
      const offsets = await admin.fetchTopicOffsets(options.topic).catch(() => []);
      const low = offsets.find((p) => p.partition === partition)?.low ?? '0';
      consumer.seek({ topic: options.topic, partition, offset: low });
    }
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

  /**
   * Per partition, the last chunk handed to the transaction lane: settles once
   * committed, or once its failure has been dealt with (rewound, backed off). A
   * partition's next chunk waits for it, so chunks commit in order, one behind
   * the other, while the next one is fetched and handled.
   */
  const outstanding = new Map<number, Promise<void>>();
  /** Per partition, bumped on every rewind: a chunk handled before one is void. */
  const rewinds = new Map<number, number>();
  /** Partitions between a failure and the end of its back-off (rewound meanwhile): nothing fetched for them is handled before. */
  const rewinding = new Map<number, Promise<void>>();
  /**
   * The coordinator refused the offsets of membership `join` (the group moved
   * on): thrown to kafkajs from the next batch, which then joins again, unless
   * it has joined since.
   */
  let movedOn: { error: unknown; join: number } | null = null;

  /**
   * What follows a failure of a partition's chunk (handling or committing):
   * nothing of it was committed. Rewind to the committed offset and back off,
   * so the next fetch redelivers; a refused oversized transaction is split.
   */
  async function failed(partition: number, join: number, error: unknown, records: number): Promise<void> {
    // A chunk fetched before a rebalance: the group hands its records out again from the committed offset.
    if (error instanceof Rebalanced) return;
    rewinds.set(partition, (rewinds.get(partition) ?? 0) + 1);
    const recovery = recover(partition, join, error, records).finally(() => {
      if (rewinding.get(partition) === recovery) rewinding.delete(partition);
    });
    rewinding.set(partition, recovery);
    await recovery;
  }

  async function recover(partition: number, join: number, error: unknown, records: number): Promise<void> {
    const type = kafkaErrorType(error);
    if (type !== undefined && MOVED_ON.has(type)) {
      // This member's generation is over (it may not know yet, after a long pause
      // or an outage): kafkajs joins again when the next batch throws this.
      options.epochs?.rewound(partition);
      options.onFailure?.({ partition, cause: errorMessage(error), code: type });
      log.warn({ partition, code: type }, 'the group has moved on; joining it again');
      movedOn = { error, join };
      return;
    }
    if (type !== undefined && TOO_LARGE.has(type)) {
      // Not retriable as it is. A topic's limit may have been lowered since start:
      // read the limits again; and shrink this partition's transactions. A lone
      // record the broker still refuses is written as its `oversized` replacement (see transact).
      topicLimits = await maxMessageBytes(admin, options.outputTopics).catch(() => topicLimits);
      const budget = Math.min(budgetOf(partition), Math.max(MIN_BUDGET_BYTES, smallestRoom()));
      budgets.set(partition, Math.max(MIN_BUDGET_BYTES, Math.floor(budget / 2)));
      options.onFailure?.({ partition, cause: errorMessage(error), code: type });
      log.warn({ partition, code: type, records, budgetBytes: budgets.get(partition) }, 'the broker refused a transaction as too large; splitting it');
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

  /** Commits a handled group of a partition in the lane; settles once committed, or once its failure is dealt with. Never rejects. */
  async function committed(partition: number, join: number, group: Array<{ record: SourceRecord; output: RecordOutput<Note>; bytes: number }>, startedAt: number): Promise<void> {
    try {
      await commit(partition, join, group);
    } catch (error) {
      await failed(partition, join, error, group.length).catch((recoveryError) => log.error({ partition, err: recoveryError }, 'recovering from a failed transaction failed'));
      return;
    }
    attempts.delete(partition);
    // A budget shrunk after a refusal grows back with each success, so one
    // oversized record does not cap this partition's transactions for good.
    const shrunk = budgets.get(partition);
    if (shrunk !== undefined) {
      budgets.delete(partition);
      if (shrunk * 2 < budgetOf(partition)) budgets.set(partition, shrunk * 2);
    }
    options.onCommitted?.({
      partition,
      records: group.map((g) => g.record),
      outputs: group.map((g) => g.output),
      durationMs: performance.now() - startedAt,
    });
  }

  async function eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, isRunning, isStale, heartbeat } = payload;
    const partition = batch.partition;
    if (movedOn !== null) {
      const { error, join } = movedOn;
      movedOn = null;
      if (join === joins) throw error;
    }
    // A batch fetched before its partition was held: left unresolved, fetched again once released.
    if (batch.messages.length === 0 || isHeld(partition)) return;
    // The partition is being rewound after a failure: wait for it (and its back-off); the next fetch starts where it put the partition.
    const recovery = rewinding.get(partition);
    if (recovery !== undefined) return recovery;
    const join = joins;
    const rewound = rewinds.get(partition) ?? 0;
    arriving++;
    let isArriving = true;
    const handedOver = () => {
      if (!isArriving) return;
      isArriving = false;
      if (--arriving === 0) arrived();
    };
    /** False once this batch must stop: what it did not hand over is fetched again (from the last resolved offset, or where a rewind put it). */
    const rewoundSince = () => rewound !== (rewinds.get(partition) ?? 0) || rewinding.has(partition);
    const goOn = () => isRunning() && !isStale() && !stopController.signal.aborted && !isHeld(partition) && join === joins && !rewoundSince();
    let messages = batch.messages;
    // kafkajs sends the group's heartbeats only between batches, and a chunk can take longer than the
    // session: after a broker outage, validate's restore waits until the transaction the outage
    // interrupted is aborted. Without heartbeats the group would drop this member meanwhile, and the
    // restore would be done again after the next join. A heartbeat that fails (the group rebalancing,
    // or it no longer knows this member) is left to kafkajs's own next one.
    const beating = setInterval(() => {
      heartbeat().catch(() => {});
    }, heartbeatIntervalMs);
    try {
      const committedAtJoin = await prepare(join);
      if (!goOn()) return;
      const since = committedAtJoin.get(partition);
      if (!checked.has(partition) && since != null) {
        // A zombie may have committed past what our group fetched: skip what it already did.
        const committedBig = BigInt(since);
        const skipped = messages.filter((m) => BigInt(m.offset) < committedBig);
        if (skipped.length > 0) {
          log.warn({ partition, committed: since, skipped: skipped.length }, 'skipping records a previous owner already committed');
          for (const m of skipped) resolveOffset(m.offset);
          messages = messages.filter((m) => BigInt(m.offset) >= committedBig);
        }
      }
      checked.add(partition);
      // Input chunks bounded by records and by bytes: what the stage adds is packed into transactions of bounded size.
      const records = messages.map((m) => toSourceRecord(batch.topic, partition, m));
      const chunks = packByBytes(records, (r) => RECORD_OVERHEAD_BYTES + (r.key?.length ?? 0) + (r.value?.length ?? 0), budgetOf(partition), options.maxBatchRecords);
      for (const chunk of chunks) {
        if (!goOn()) return;
        const startedAt = performance.now();
        // Handled while the partition's previous chunk is being committed.
        const items = await handleChunk(partition, chunk);
        // As many transactions as the chunk's output bytes need.
        for (const group of packByBytes(items, (item) => item.bytes, budgetOf(partition), options.maxBatchRecords)) {
          // The partition's previous chunk first: committed, or failed and rewound (and backed off).
          handedOver();
          await outstanding.get(partition);
          if (!goOn()) {
            // Handled but not handed over: it comes again, so stage state is void.
            options.epochs?.rewound(partition);
            return;
          }
          outstanding.set(partition, committed(partition, join, group, startedAt));
          // Fetching goes on from here; a failed commit rewinds (seeks) back to the committed offset.
          resolveOffset(group[group.length - 1]!.record.offset);
        }
      }
    } catch (error) {
      // Stopped before the failure path, not only in `finally`: the rewind and its backoff
      // wait without this batch's heartbeats, so a member that keeps failing is not kept alive by them.
      clearInterval(beating);
      // The handler failed (transient), or preparing the membership did: once the
      // partition's outstanding chunk is settled, rewind to what is committed.
      handedOver();
      await outstanding.get(partition);
      if (rewoundSince()) return;
      await failed(partition, join, error, 0);
    } finally {
      clearInterval(beating);
      handedOver();
    }
  }

  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    isJoined = true;
    joins++;
    checked.clear();
    options.epochs?.rebalanced();
    const assignment = [...(event.payload.memberAssignment[options.topic] ?? [])];
    membership = { generationId: event.payload.generationId, memberId: event.payload.memberId, assignment };
    log.info({ assigned: assignment, generation: event.payload.generationId }, 'joined group');
    // A consumer kafkajs restarted after a crash has a new group, without the pauses.
    applyHolds();
    // Eager rebalancing revokes everything: the previous membership's producer goes
    // (a new one, with the new assignment's id, is made before the first chunk).
    void inLane(async () => {
      if (current !== null && current.join !== joins) await dropProducer();
    });
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
    assigned: () => membership.assignment,
    holdsChanged: applyHolds,
    async stop() {
      stopController.abort();
      await consumer.disconnect().catch(() => {});
      // What was handed to the lane is committed (or fails) before the producer goes.
      await Promise.all(outstanding.values());
      await inLane(dropProducer);
      await admin.disconnect().catch(() => {});
    },
  };
}
