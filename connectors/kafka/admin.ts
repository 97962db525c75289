/** Topic administration, start-up checks and one-off produces, for the CLI, the runtime and tests. */
import { errorMessage, SluiceError } from '../../lib/errors.ts';
import { createLogger, type Logger } from '../../lib/log.ts';
import { retry } from '../../lib/retry.ts';
import { createKafka } from './client.ts';
import { messageBytes, packByBytes } from './exactly-once.ts';
import type { SourceRecord } from '../../lib/contracts.ts';

const quiet = createLogger({ component: 'kafka-admin' }, 'error');

export interface TopicSpec {
  topic: string;
  partitions: number;
  replicationFactor: number;
  config: Record<string, string>;
}

/** Creates the topics that do not exist; returns the names created. Idempotent. */
export async function ensureTopics(brokers: string[], specs: TopicSpec[]): Promise<string[]> {
  const admin = createKafka({ brokers, clientId: 'sluice-admin' }).admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = specs.filter((spec) => !existing.has(spec.topic));
    if (missing.length > 0) {
      await admin.createTopics({
        waitForLeaders: false,
        topics: missing.map((spec) => ({
          topic: spec.topic,
          numPartitions: spec.partitions,
          replicationFactor: spec.replicationFactor,
          configEntries: Object.entries(spec.config).map(([name, value]) => ({ name, value })),
        })),
      });
      // kafkajs's own wait for leaders gives up on the first UNKNOWN_TOPIC_OR_PARTITION
      // from a broker whose metadata is a moment behind; wait for them here instead.
      // A leader named in the metadata may still answer NOT_LEADER_FOR_PARTITION for a
      // moment (it has not taken the partition on yet), and kafkajs's admin does not
      // retry that: the topics are ready once every partition's offsets can be read.
      await retry(
        async () => {
          const metadata = await admin.fetchTopicMetadata({ topics: missing.map((spec) => spec.topic) });
          const leaderless = metadata.topics.flatMap((topic) => topic.partitions.filter((p) => p.leader < 0).map(() => topic.name));
          if (leaderless.length > 0) throw new Error(`no leader yet for ${[...new Set(leaderless)].join(', ')}`);
          await Promise.all(missing.map((spec) => admin.fetchTopicOffsets(spec.topic)));
        },
        { what: 'waiting for the new topics to have leaders that answer', logger: quiet, deadlineMs: 30_000, initialMs: 50, maxMs: 1_000 },
      );
    }
    return missing.map((spec) => spec.topic);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Start-up check: the cluster answers within `deadlineMs` and every topic in
 * `topics` exists. Throws KAFKA_UNAVAILABLE (naming KAFKA_BROKERS) or
 * TOPIC_MISSING (naming the topics and `fix`, the command that creates them).
 */
export async function checkTopics(brokers: string[], topics: readonly string[], options: { deadlineMs: number; fix: string }): Promise<void> {
  // About deadlineMs in all: connection timeouts of 3 s, retries capped at 2 s apart.
  const retries = Math.max(1, Math.floor(options.deadlineMs / 5_000));
  const admin = createKafka({ brokers, clientId: 'sluice-preflight', retry: { retries, initialRetryTime: 500, maxRetryTime: 2_000 }, requestTimeoutMs: 5_000 }).admin();
  let existing: Set<string>;
  try {
    await admin.connect();
    existing = new Set(await admin.listTopics());
  } catch (error) {
    throw new SluiceError(
      'KAFKA_UNAVAILABLE',
      `Cannot reach Kafka at ${brokers.join(',')} (KAFKA_BROKERS): ${errorMessage(error)}. Start it (local stack: npx sluice stack up) or fix KAFKA_BROKERS.`,
      { cause: error, retriable: false },
    );
  } finally {
    await admin.disconnect().catch(() => {});
  }
  const missing = topics.filter((topic) => !existing.has(topic));
  if (missing.length > 0) {
    throw new SluiceError('TOPIC_MISSING', `Topic${missing.length > 1 ? 's' : ''} ${missing.join(', ')} missing on ${brokers.join(',')}. Run: ${options.fix}`);
  }
}

export async function topicPartitions(brokers: string[], topic: string): Promise<number> {
  const admin = createKafka({ brokers, clientId: 'sluice-admin' }).admin();
  await admin.connect();
  try {
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => null);
    const count = metadata?.topics[0]?.partitions.length ?? 0;
    if (count === 0) throw new SluiceError('TOPIC_MISSING', `Topic ${topic} does not exist. Run: npx sluice topics create --pipeline <pipeline>`);
    return count;
  } finally {
    await admin.disconnect();
  }
}

export async function deleteTopics(brokers: string[], topics: string[]): Promise<void> {
  const admin = createKafka({ brokers, clientId: 'sluice-admin' }).admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const present = topics.filter((t) => existing.has(t));
    if (present.length > 0) await admin.deleteTopics({ topics: present });
  } finally {
    await admin.disconnect();
  }
}

export interface PlainMessage {
  key: string | Buffer | null;
  value: Buffer | string | null;
  headers?: Record<string, string>;
  /** Written to this partition instead of the key's. */
  partition?: number;
}

/** Bytes per produce request of `openProducer().send`, below the broker's default 1 MiB limit. */
const SEND_CHUNK_BYTES = 512 * 1_024;

/**
 * A producer for the CLI, tools and tests: idempotent, acks=all, batched sends.
 * `send` resolves once the broker has acknowledged every message.
 */
export async function openProducer(brokers: string[], clientId = 'sluice-producer') {
  const producer = createKafka({ brokers, clientId }).producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  return {
    async send(topic: string, messages: PlainMessage[]): Promise<void> {
      // kafkajs sends a partition's messages as one record batch, which the broker
      // refuses above max.message.bytes: send in requests of bounded size.
      for (const chunk of packByBytes(messages, messageBytes, SEND_CHUNK_BYTES, Number.POSITIVE_INFINITY)) {
        await producer.send({ topic, acks: -1, messages: chunk });
      }
    },
    close: () => producer.disconnect(),
  };
}

export interface PartitionLag {
  partition: number;
  /** The group's committed offset: the next record it will read (-1: nothing committed). */
  committed: bigint;
  /** The partition's high watermark. */
  end: bigint;
}

/**
 * Committed offset against the end of each partition. On topics written in
 * transactions the end sits one past the last commit marker, so a fully caught
 * up transactional reader can trail the end by that marker.
 */
export async function groupLag(brokers: string[], groupId: string, topic: string): Promise<PartitionLag[]> {
  const admin = createKafka({ brokers, clientId: 'sluice-admin' }).admin();
  await admin.connect();
  try {
    const [ends, [committed]] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId, topics: [topic] })]);
    return ends.map((end) => ({
      partition: end.partition,
      end: BigInt(end.high),
      committed: BigInt(committed?.partitions.find((p) => p.partition === end.partition)?.offset ?? '-1'),
    }));
  } finally {
    await admin.disconnect();
  }
}

/** Sets topic-level configs (e.g. `max.message.bytes`) on an existing topic. */
export async function setTopicConfig(brokers: string[], topic: string, entries: Record<string, string>): Promise<void> {
  const admin = createKafka({ brokers, clientId: 'sluice-admin' }).admin();
  await admin.connect();
  try {
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: 2 /* TOPIC */, name: topic, configEntries: Object.entries(entries).map(([name, value]) => ({ name, value })) }],
    });
  } finally {
    await admin.disconnect();
  }
}

/** A position in one partition: the offset a group reads next, or the offset a transaction commits for it. */
export interface TopicPartitionOffset {
  topic: string;
  partition: number;
  /** A Kafka offset in decimal; '-1' where a group has committed nothing. */
  offset: string;
}

/** The first offset still held in a partition (low) and the offset the next record will get (high). */
export interface PartitionWatermarks {
  partition: number;
  low: string;
  high: string;
}

/**
 * One admin connection kept open across calls, for tools that poll (a
 * benchmark sampling lag every second). Close it when done.
 */
export interface AdminSession {
  /** The group's committed offset of every partition of `topics` ('-1': nothing committed). */
  committedOffsets(groupId: string, topics: readonly string[]): Promise<TopicPartitionOffset[]>;
  partitionWatermarks(topic: string): Promise<PartitionWatermarks[]>;
  /** The group's state as the coordinator reports it (`Stable`, `PreparingRebalance`, `Empty`, `Dead`, …); undefined if it reports none. */
  groupState(groupId: string): Promise<string | undefined>;
  /** The group's state and how many members it has now (the running instances of a stage). */
  groupMembers(groupId: string): Promise<{ state: string | undefined; members: number }>;
  /** Per partition, the offset of the first record at or after `timestampMs` (the high watermark when there is none). */
  offsetsAt(topic: string, timestampMs: number): Promise<TopicPartitionOffset[]>;
  /** Rewinds the group to the start of every partition of `topics`; the group must have no active members. */
  resetOffsetsToEarliest(groupId: string, topics: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

export async function openAdmin(brokers: string[], clientId = 'sluice-admin'): Promise<AdminSession> {
  const admin = createKafka({ brokers, clientId }).admin();
  await admin.connect();
  return {
    async committedOffsets(groupId, topics) {
      const offsets = await admin.fetchOffsets({ groupId, topics: [...topics] });
      return offsets.flatMap(({ topic, partitions }) => partitions.map(({ partition, offset }) => ({ topic, partition, offset })));
    },
    async partitionWatermarks(topic) {
      const offsets = await admin.fetchTopicOffsets(topic);
      return offsets.map(({ partition, low, high }) => ({ partition, low, high }));
    },
    async groupState(groupId) {
      const { groups } = await admin.describeGroups([groupId]);
      return groups[0]?.state;
    },
    async groupMembers(groupId) {
      const { groups } = await admin.describeGroups([groupId]);
      return { state: groups[0]?.state, members: groups[0]?.members.length ?? 0 };
    },
    async offsetsAt(topic, timestampMs) {
      const offsets = await admin.fetchTopicOffsetsByTimestamp(topic, timestampMs);
      return offsets.map(({ partition, offset }) => ({ topic, partition, offset }));
    },
    async resetOffsetsToEarliest(groupId, topics) {
      for (const topic of topics) await admin.resetOffsets({ groupId, topic, earliest: true });
    },
    close: () => admin.disconnect(),
  };
}

/** One-off {@link AdminSession.committedOffsets}: the group's committed offset of every partition of `topics`. */
export async function committedOffsets(brokers: string[], groupId: string, topics: readonly string[], clientId = 'sluice-admin'): Promise<TopicPartitionOffset[]> {
  const admin = await openAdmin(brokers, clientId);
  try {
    return await admin.committedOffsets(groupId, topics);
  } finally {
    await admin.close();
  }
}

/** One-off {@link AdminSession.resetOffsetsToEarliest}: rewinds an idle group to the start of `topics`. */
export async function resetOffsetsToEarliest(brokers: string[], groupId: string, topics: readonly string[], clientId = 'sluice-admin'): Promise<void> {
  const admin = await openAdmin(brokers, clientId);
  try {
    await admin.resetOffsetsToEarliest(groupId, topics);
  } finally {
    await admin.close();
  }
}

/** For deploy/local: the broker check, imported from this module rather than from the client module. */
export { probeKafka } from './client.ts';

/** The partition of an internal topic Kafka keeps a group or transactional id in: Utils.abs(id.hashCode()) % partitions, with Java's String.hashCode. */
function internalPartitionOf(id: string, partitions: number): number {
  let hash = 0;
  for (let i = 0; i < id.length; i++) hash = (Math.imul(31, hash) + id.charCodeAt(i)) | 0;
  return (hash === -2147483648 ? 0 : Math.abs(hash)) % partitions;
}

/** Ids `<prefix>.0`, `<prefix>.1`, … until one falls in each of an internal topic's `partitions` partitions. */
function idPerPartition(prefix: string, partitions: number): string[] {
  const byPartition = new Map<number, string>();
  for (let i = 0; byPartition.size < partitions && i < partitions * 1_000; i++) {
    const id = `${prefix}.${i}`;
    const partition = internalPartitionOf(id, partitions);
    if (!byPartition.has(partition)) byPartition.set(partition, id);
  }
  return [...byPartition.values()];
}

/**
 * For deploy/local, once the broker answers: waits until every partition of
 * `__consumer_offsets` and `__transaction_state` has a coordinator that
 * answers. A new broker creates those topics on the first request for a
 * coordinator and loads each partition after that; until then it answers
 * COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS, which kafkajs
 * logs as errors before it retries ~300 ms later. This way the first stage,
 * test or demo after `stack up` meets neither. It asks for the coordinator of
 * one group and one transactional id per partition (ids that stay the same
 * from one `stack up` to the next): tens of milliseconds once they are ready.
 */
export async function readyCoordinators(brokers: string[]): Promise<void> {
  const kafka = createKafka({ brokers, clientId: 'sluice-stack' });
  const admin = kafka.admin();
  const initialise = async (transactionalId: string) => {
    // A transaction begun (and ended) initialises the transactional id: an answer from that id's transaction coordinator.
    const producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
    try {
      await producer.connect();
      await (await producer.transaction()).abort();
    } finally {
      await producer.disconnect().catch(() => {});
    }
  };
  await admin.connect();
  try {
    // The first requests make the broker create the two topics.
    await Promise.all([admin.describeGroups(['sluice.stack-ready']), initialise('sluice.stack-ready')]);
    const { topics } = await admin.fetchTopicMetadata({ topics: ['__consumer_offsets', '__transaction_state'] });
    const partitionsOf = (topic: string) => topics.find((t) => t.name === topic)?.partitions.length ?? 1;
    await Promise.all([
      admin.describeGroups(idPerPartition('sluice.stack-ready', partitionsOf('__consumer_offsets'))),
      ...idPerPartition('sluice.stack-ready', partitionsOf('__transaction_state')).map(initialise),
    ]);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

// ---------------------------------------------------------------- windows of a topic (replay)

/**
 * Per partition of `topic`, the offset of the first record whose timestamp is
 * at or after `timestampMs`; the end of the partition (its high watermark)
 * where no record is that late. `kafka-consumer-groups --to-datetime` in code.
 */
export async function offsetsForTimestamp(brokers: string[], topic: string, timestampMs: number, clientId = 'sluice-admin'): Promise<Array<{ partition: number; offset: string }>> {
  const admin = createKafka({ brokers, clientId }).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsetsByTimestamp(topic, timestampMs);
    return offsets.map(({ partition, offset }) => ({ partition, offset })).sort((a, b) => a.partition - b.partition);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Sets a group's position on the partitions of `topic` where it has none yet
 * (a new group), leaving every committed position as it is: a job that starts
 * a window records where it starts, and a job resumed keeps its progress.
 * The group must have no active members.
 */
export async function seedGroupOffsets(brokers: string[], groupId: string, topic: string, offsets: ReadonlyArray<{ partition: number; offset: string }>, clientId = 'sluice-admin'): Promise<void> {
  const admin = createKafka({ brokers, clientId }).admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const missing = offsets.filter(({ partition }) => (committed?.partitions.find((p) => p.partition === partition)?.offset ?? '-1') === '-1');
    if (missing.length > 0) await admin.setOffsets({ groupId, topic, partitions: missing.map(({ partition, offset }) => ({ partition, offset })) });
  } finally {
    await admin.disconnect();
  }
}

/** One fetched batch of a window: its records below the window's end, and where the partition stands after it. */
export interface WindowBatch {
  partition: number;
  records: SourceRecord[];
  /**
   * The offset after everything this batch covered, transaction markers
   * included, capped at the window's end: the position to commit with the
   * batch's outputs.
   */
  next: string;
}

export interface WindowReader {
  /** Resolves when every partition has reached its end; rejects with the first error of `handle`. */
  done: Promise<void>;
  stop(): Promise<void>;
}

/**
 * Reads a window of a topic, read-committed, in group `groupId` from the
 * group's committed positions (set them first, e.g. with seedGroupOffsets) to
 * `ends` (exclusive, per partition), one batch at a time, in offset order per
 * partition. `handle` commits what it makes of a batch (a transaction with the
 * group's offsets, for exactly-once); the reader commits nothing itself.
 *
 * A window may end in transaction markers, which a consumer never sees as
 * records: a batch that holds only markers still moves the partition on (the
 * consumer's batch-processed event), so a window always finishes.
 */
export async function readWindow(options: {
  brokers: string[];
  clientId: string;
  groupId: string;
  topic: string;
  /** Exclusive end per partition; partitions absent here are not read. */
  ends: ReadonlyMap<number, bigint>;
  /**
   * Where to start per partition instead of the group's committed position
   * (a throw-away group that commits nothing). Committing a position first
   * costs kafkajs a whole group join (admin.setOffsets); a seek costs nothing.
   */
  starts?: ReadonlyMap<number, bigint>;
  /** Partitions already at their end (nothing to read). */
  finished?: ReadonlySet<number>;
  sessionTimeoutMs?: number;
  /** How many partitions' batches `handle` may work on at once (default 1); batches of one partition always come in order. */
  concurrency?: number;
  logger?: Logger;
  handle(batch: WindowBatch, heartbeat: () => Promise<void>): Promise<void>;
}): Promise<WindowReader> {
  const kafka = createKafka({ brokers: options.brokers, clientId: options.clientId, logger: options.logger });
  const sessionTimeoutMs = options.sessionTimeoutMs ?? 10_000;
  const consumer = kafka.consumer({
    groupId: options.groupId,
    allowAutoTopicCreation: false,
    readUncommitted: false,
    maxWaitTimeInMs: 100,
    sessionTimeout: sessionTimeoutMs,
    heartbeatInterval: Math.max(500, Math.floor(sessionTimeoutMs / 10)),
    maxBytesPerPartition: 1_048_576,
  });
  const pending = new Set([...options.ends.keys()].filter((p) => !options.finished?.has(p)));
  let settle: { resolve(): void; reject(error: unknown): void } = { resolve: () => {}, reject: () => {} };
  const done = new Promise<void>((resolve, reject) => {
    settle = { resolve, reject };
  });
  let failed = false;
  const finish = (partition: number) => {
    if (!pending.delete(partition)) return;
    consumer.pause([{ topic: options.topic, partitions: [partition] }]);
    if (pending.size === 0) settle.resolve();
  };
  if (pending.size === 0) {
    settle.resolve();
    return { done, stop: async () => {} };
  }
  // Batches of markers only never reach eachBatch: their end still counts.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    const end = options.ends.get(payload.partition);
    if (payload.batchSize === 0 && end !== undefined && BigInt(payload.lastOffset) + 1n >= end) finish(payload.partition);
  });
  await consumer.connect();
  await consumer.subscribe({ topic: options.topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    partitionsConsumedConcurrently: options.concurrency ?? 1,
    eachBatch: async ({ batch, heartbeat, isRunning, isStale }) => {
      const end = options.ends.get(batch.partition);
      if (failed || end === undefined || !pending.has(batch.partition) || !isRunning() || isStale()) return;
      const records: SourceRecord[] = [];
      const start = options.starts?.get(batch.partition) ?? -1n;
      for (const message of batch.messages) {
        const offset = BigInt(message.offset);
        if (offset >= end) break;
        if (offset < start) continue;
        const headers: Record<string, string | undefined> = {};
        for (const [name, value] of Object.entries(message.headers ?? {})) {
          const first = Array.isArray(value) ? value[0] : value;
          headers[name] = first === undefined ? undefined : String(first);
        }
        records.push({ topic: batch.topic, partition: batch.partition, offset: message.offset, key: message.key, value: message.value, headers, timestampMs: Number(message.timestamp) });
      }
      const covered = BigInt(batch.lastOffset()) + 1n;
      const next = covered < end ? covered : end;
      try {
        await options.handle({ partition: batch.partition, records, next: next.toString() }, heartbeat);
      } catch (error) {
        failed = true;
        settle.reject(error);
        return;
      }
      if (next >= end) finish(batch.partition);
    },
  });
  // Applied by kafkajs at the first fetch after the group is joined.
  for (const [partition, offset] of options.starts ?? []) if (pending.has(partition)) consumer.seek({ topic: options.topic, partition, offset: offset.toString() });
  return {
    done,
    async stop() {
      await consumer.disconnect().catch(() => {});
    },
  };
}

/** Deletes consumer groups that have no members (a throw-away reader's, once done); missing groups are ignored. */
export async function deleteGroups(brokers: string[], groupIds: readonly string[], clientId = 'sluice-admin'): Promise<void> {
  const admin = createKafka({ brokers, clientId }).admin();
  await admin.connect();
  try {
    await admin.deleteGroups([...groupIds]).catch(() => {});
  } finally {
    await admin.disconnect();
  }
}
