/**
 * Round trips through the broker for the local stack's own checks
 * (test/integration/stack-services.test.ts): each Kafka feature sluice stands
 * on, exercised once and reported as plain data for the caller to judge.
 */
import { createKafka } from './client.ts';

export interface SmokeMessage {
  key: string;
  value: string;
}

export interface ReceivedMessage extends SmokeMessage {
  partition: number;
}

export interface KafkaSmokeOptions {
  brokers: string[];
  clientId: string;
  /** A topic that does not exist yet: created with `partitions` partitions, deleted at the end. */
  topic: string;
  partitions: number;
  groupId: string;
  /** Sent first, by an idempotent producer (acks=all, one request in flight). */
  messages: SmokeMessage[];
  /** Sent next in a transaction that is aborted: a read_committed consumer must never see them. */
  aborted: SmokeMessage[];
  /** Sent last in a transaction that is committed. */
  committed: SmokeMessage[];
  /** How long the group may take to read `messages` and `committed`; default one minute. */
  timeoutMs?: number;
}

export interface KafkaSmokeReport {
  /** The admin API answered that it created the topic (and its partitions have leaders). */
  topicCreated: boolean;
  /**
   * What a read_committed consumer in `groupId` read from the beginning, in
   * the order it read it: everything readable, or what it had at the timeout.
   */
  received: ReceivedMessage[];
}

/**
 * Creates a topic (admin), produces to it idempotently and in two
 * transactions (one aborted, one committed), reads it in a consumer group, and
 * deletes it. Failures to produce are thrown; what was read is reported.
 */
export async function kafkaSmoke(options: KafkaSmokeOptions): Promise<KafkaSmokeReport> {
  const { topic } = options;
  const kafka = createKafka({ brokers: options.brokers, clientId: options.clientId });
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  const transactional = kafka.producer({ transactionalId: `${options.clientId}.${topic}`, idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  const consumer = kafka.consumer({ groupId: options.groupId, allowAutoTopicCreation: false, readUncommitted: false });
  const received: ReceivedMessage[] = [];
  const readable = options.messages.length + options.committed.length;
  let timer: NodeJS.Timeout | undefined;
  try {
    await admin.connect();
    const topicCreated = await admin.createTopics({ topics: [{ topic, numPartitions: options.partitions }], waitForLeaders: true });

    await producer.connect();
    await producer.send({ topic, acks: -1, messages: options.messages });
    await transactional.connect();
    const aborted = await transactional.transaction();
    await aborted.send({ topic, acks: -1, messages: options.aborted });
    await aborted.abort();
    const committed = await transactional.transaction();
    await committed.send({ topic, acks: -1, messages: options.committed });
    await committed.commit();

    let allRead: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      allRead = resolve;
      timer = setTimeout(resolve, options.timeoutMs ?? 60_000);
    });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message, partition }) => {
        received.push({ key: String(message.key), value: String(message.value), partition });
        if (received.length >= readable) allRead();
      },
    });
    if (readable === 0) allRead();
    await done;
    return { topicCreated, received: [...received] };
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
    await transactional.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect().catch(() => {});
  }
}

/**
 * Sends one message to `topic`, which should not exist, with topic
 * auto-creation off and a single retry; reports whether the send was refused
 * and whether the topic exists afterwards.
 */
export async function produceToMissingTopic(brokers: string[], topic: string, clientId = 'sluice-smoke'): Promise<{ refused: boolean; topicExists: boolean }> {
  const kafka = createKafka({ brokers, clientId, retry: { retries: 1 } });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  const admin = kafka.admin();
  try {
    await producer.connect();
    await admin.connect();
    const refused = await producer.send({ topic, messages: [{ value: 'x' }] }).then(
      () => false,
      () => true,
    );
    return { refused, topicExists: (await admin.listTopics()).includes(topic) };
  } finally {
    await producer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
  }
}
