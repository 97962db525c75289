/**
 * Restores validate's duplicate check from its changelog (changelog.ts).
 *
 * Restoring a partition (restore()) reads its changelog read-committed up to
 * a marker this reader writes first. The marker is an ordinary record after
 * everything committed before it, so reaching it proves the end was read; an
 * aborted transaction's entries are never returned, and a read-committed
 * consumer never reports the offset of the commit or abort marker at a
 * partition's end, which is why the high watermark alone cannot say "done".
 * The caller restores after its transactional producer for the partition was
 * initialized: that fenced any older owner and aborted what it left open, so
 * the read never waits for a transaction that will not end.
 */
import { randomUUID } from 'node:crypto';
import { createKafka } from '../../connectors/kafka/client.ts';
import type { SchemaCodec } from '../../lib/codec.ts';
import { errorMessage, SluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { MARKER_HEADER, MARKER_KEY, readEntry } from './changelog.ts';

export interface ChangelogReader {
  /** The (event id, first validated at) entries of one partition, in changelog order; throws a retriable SluiceError when Kafka does not answer in time. */
  restore(partition: number): Promise<Array<[string, number]>>;
  close(): Promise<void>;
}

export function openChangelogReader(options: {
  brokers: string[];
  topic: string;
  clientId: string;
  codec: SchemaCodec;
  logger: Logger;
  timeoutMs: number;
}): ChangelogReader {
  const { topic, logger } = options;
  const kafka = createKafka({ brokers: options.brokers, clientId: options.clientId, logger });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  const admin = kafka.admin();
  let connected: Promise<void> | undefined;
  const connect = () => {
    connected ??= Promise.all([producer.connect(), admin.connect()]).then(
      () => undefined,
      (error) => {
        connected = undefined;
        throw error;
      },
    );
    return connected;
  };

  async function readToMarker(partition: number, marker: string): Promise<Buffer[]> {
    // kafkajs has no manual assignment: a throw-away group of one member gets every partition; the others are paused.
    const groupId = `sluice.restore.${options.clientId}.${marker}`;
    const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false, readUncommitted: false, maxWaitTimeInMs: 100, sessionTimeout: 10_000, heartbeatInterval: 1_000 });
    const values: Buffer[] = [];
    let reached: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      reached = resolve;
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          if (batch.partition !== partition) {
            consumer.pause([{ topic, partitions: [batch.partition] }]);
            return;
          }
          for (const message of batch.messages) {
            if (message.headers?.[MARKER_HEADER]?.toString() === marker) {
              reached();
              return;
            }
            if (message.value !== null && message.value.length > 0) values.push(message.value);
          }
        },
      });
      await done;
      return values;
    } finally {
      await consumer.disconnect().catch(() => {});
      await admin.deleteGroups([groupId]).catch(() => {});
    }
  }

  return {
    async restore(partition) {
      const marker = randomUUID();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new SluiceError('KAFKA_UNAVAILABLE', `Restoring ${topic}[${partition}] took over ${options.timeoutMs} ms; the chunk is retried.`)),
          options.timeoutMs,
        );
      });
      const reading = (async () => {
        await connect();
        await producer.send({ topic, acks: -1, messages: [{ key: MARKER_KEY, value: null, partition, headers: { [MARKER_HEADER]: marker } }] });
        return readToMarker(partition, marker);
      })();
      reading.catch(() => {}); // settled by the race below; a late failure after the timeout is not unhandled
      let values: Buffer[];
      try {
        values = await Promise.race([reading, timeout]);
      } catch (error) {
        if (error instanceof SluiceError) throw error;
        throw new SluiceError('KAFKA_UNAVAILABLE', `Cannot restore ${topic}[${partition}] from Kafka: ${errorMessage(error)}; the chunk is retried.`, { cause: error });
      } finally {
        clearTimeout(timer);
      }
      // A registry outage throws here (retriable), like any decoding of the stage.
      await options.codec.prefetch(values);
      const entries: Array<[string, number]> = [];
      let unreadable = 0;
      for (const value of values) {
        const entry = readEntry(options.codec.decodeSync(value));
        if (entry === undefined) unreadable++;
        else entries.push([entry.event_id, entry.first_validated_at]);
      }
      if (unreadable > 0) logger.warn({ partition, unreadable }, `unreadable entries on ${topic}; skipped (their ids are not deduplicated)`);
      return entries;
    },
    async close() {
      if (connected === undefined) return;
      await producer.disconnect().catch(() => {});
      await admin.disconnect().catch(() => {});
    },
  };
}

