/**
 * Reads a (small, compacted) topic from the beginning and keeps following it:
 * the control topic. kafkajs has no manual assignment, so each follower uses
 * its own throw-away group and deletes it on stop. The group commits nothing:
 * when it joins again (after a broker outage outlasts its session), kafkajs
 * starts over from the beginning, and the follower skips what it has already
 * delivered, so each record reaches `onMessage` once, in order.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../lib/log.ts';
import { retry } from '../../lib/retry.ts';
import { CONSUMER_RETRY, createKafka } from './client.ts';

export interface FollowedMessage {
  key: string | null;
  value: Buffer | null;
  offset: string;
  partition: number;
  headers: Record<string, string>;
  /** The record's timestamp, epoch ms: its producer's (CreateTime, when it sent it) unless the topic stamps append time. */
  timestampMs: number;
}

export interface Follower {
  /** Resolves once everything present at start has been read. */
  caughtUp: Promise<void>;
  stop(): Promise<void>;
}

export async function followTopic(options: {
  brokers: string[];
  topic: string;
  clientId: string;
  logger: Logger;
  onMessage(message: FollowedMessage): void;
}): Promise<Follower> {
  const kafka = createKafka({ brokers: options.brokers, clientId: options.clientId, logger: options.logger });
  const admin = kafka.admin();
  const groupId = `sluice.follow.${options.clientId}.${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false, maxWaitTimeInMs: 100, sessionTimeout: 10_000, heartbeatInterval: 1_000, retry: CONSUMER_RETRY });
  await admin.connect();
  // A topic created a moment ago may not have its leaders ready on the broker yet (NOT_LEADER_FOR_PARTITION).
  const ends = await retry(() => admin.fetchTopicOffsets(options.topic), {
    what: `reading the ends of ${options.topic}`,
    logger: options.logger,
    deadlineMs: 30_000,
    initialMs: 50,
    maxMs: 1_000,
    retriable: (error) => (error as { retriable?: boolean }).retriable === true,
  });
  const remaining = new Map(ends.filter((p) => BigInt(p.high) > BigInt(p.low)).map((p) => [p.partition, BigInt(p.high)]));
  let markCaughtUp: () => void = () => {};
  const caughtUp = new Promise<void>((resolve) => {
    markCaughtUp = resolve;
  });
  if (remaining.size === 0) markCaughtUp();

  // Caught up once a partition's fetches reach where it ended at start. Counted from the
  // batches kafkajs has handled, not from the records delivered: a topic written in
  // transactions ends with a commit marker, which is never delivered, and a fetch of
  // nothing but markers never reaches eachBatch; both still end a batch.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    const end = remaining.get(payload.partition);
    if (end === undefined || BigInt(payload.lastOffset) + 1n < end) return;
    remaining.delete(payload.partition);
    if (remaining.size === 0) markCaughtUp();
  });
  await consumer.connect();
  await consumer.subscribe({ topic: options.topic, fromBeginning: true });
  /** Per partition: the offset after the last record delivered. */
  const delivered = new Map<number, bigint>();
  await consumer.run({
    autoCommit: false,
    // A fetch's records in one synchronous pass: kafkajs's per-message path
    // (a promise, an offset resolved and a heartbeat check per record) cost the
    // benchmark's and the demo's decision reader more than decoding did.
    eachBatch: async ({ batch }) => {
      const { partition } = batch;
      // Per batch, not per record: where delivery stands.
      let next = delivered.get(partition) ?? 0n;
      for (const message of batch.messages) {
        const offset = BigInt(message.offset);
        if (offset < next) continue;
        next = offset + 1n;
        try {
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(message.headers ?? {})) {
            if (value !== undefined) headers[name] = String(Array.isArray(value) ? value[0] : value);
          }
          options.onMessage({ key: message.key?.toString('utf8') ?? null, value: message.value, offset: message.offset, partition, headers, timestampMs: Number(message.timestamp) });
        } catch (error) {
          options.logger.error({ err: error, offset: message.offset }, `unreadable message on ${options.topic}; ignored`);
        }
      }
      delivered.set(partition, next);
    },
  });
  return {
    caughtUp,
    async stop() {
      await consumer.disconnect().catch(() => {});
      await admin.deleteGroups([groupId]).catch(() => {});
      await admin.disconnect().catch(() => {});
    },
  };
}
