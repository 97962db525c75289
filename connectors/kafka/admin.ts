/** Topic administration, start-up checks and one-off produces, for the CLI, the runtime and tests. */
import { errorMessage, SluiceError } from '../../lib/errors.ts';
import { createKafka } from './client.ts';

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
        waitForLeaders: true,
        topics: missing.map((spec) => ({
          topic: spec.topic,
          numPartitions: spec.partitions,
          replicationFactor: spec.replicationFactor,
          configEntries: Object.entries(spec.config).map(([name, value]) => ({ name, value })),
        })),
      });
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
}

/**
 * A producer for the CLI, tools and tests: idempotent, acks=all, batched sends.
 * `send` resolves once the broker has acknowledged every message.
 */
export async function openProducer(brokers: string[], clientId = 'sluice-producer') {
  const producer = createKafka({ brokers, clientId }).producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  return {
    async send(topic: string, messages: PlainMessage[]): Promise<void> {
      if (messages.length === 0) return;
      await producer.send({ topic, acks: -1, messages });
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
