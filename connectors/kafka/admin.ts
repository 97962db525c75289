/** Topic administration and one-off produces, for the CLI and tests. */
import { SluiceError } from '../../lib/errors.ts';
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
