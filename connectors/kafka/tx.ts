/**
 * A plain transactional producer for tests and benchmarks: messages and
 * consumer offsets committed together, or aborted together. The stages use
 * the exactly-once runtime (exactly-once.ts) instead, which adds the fencing
 * and producer-per-partition rules a processor needs.
 */
import type { PlainMessage, TopicPartitionOffset } from './admin.ts';
import { createKafka } from './client.ts';

/** One open transaction. Exactly one of commit() or abort() ends it. */
export interface Transaction {
  /** Sends within the transaction (acks=all); read_committed consumers see them only after commit(). */
  send(topic: string, messages: PlainMessage[]): Promise<void>;
  /** Commits these offsets (the next record to read) for `groupId` with the transaction, as a consume-transform-produce stage does. */
  sendOffsets(groupId: string, offsets: TopicPartitionOffset[]): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface TransactionalProducer {
  /** Begins a transaction; one at a time per producer. */
  begin(): Promise<Transaction>;
  close(): Promise<void>;
}

export interface TransactionalProducerOptions {
  brokers: string[];
  clientId: string;
  /** A producer that starts with the same id fences this one off. */
  transactionalId: string;
  /** Retries of each request: a first delay doubling up to a cap; defaults to the client's (KAFKA_RETRY). */
  retry?: { initialMs?: number; maxMs?: number; retries?: number };
  /** Requests in flight per connection: 1, or 2 for a send and its offsets side by side, as a stage sends them. */
  maxInFlightRequests?: 1 | 2;
}

/** Connects an idempotent transactional producer (one request in flight unless told, no topic auto-creation). */
export async function openTransactionalProducer(options: TransactionalProducerOptions): Promise<TransactionalProducer> {
  const { initialMs, maxMs, retries } = options.retry ?? {};
  const producer = createKafka({ brokers: options.brokers, clientId: options.clientId }).producer({
    transactionalId: options.transactionalId,
    idempotent: true,
    maxInFlightRequests: options.maxInFlightRequests ?? 1,
    allowAutoTopicCreation: false,
    // Only what is given: the client's own retry settings fill in the rest.
    retry: {
      ...(initialMs !== undefined && { initialRetryTime: initialMs }),
      ...(maxMs !== undefined && { maxRetryTime: maxMs }),
      ...(retries !== undefined && { retries }),
    },
  });
  await producer.connect();
  return {
    async begin() {
      const transaction = await producer.transaction();
      return {
        async send(topic, messages) {
          await transaction.send({ topic, acks: -1, messages });
        },
        async sendOffsets(groupId, offsets) {
          const byTopic = new Map<string, Array<{ partition: number; offset: string }>>();
          for (const { topic, partition, offset } of offsets) byTopic.set(topic, [...(byTopic.get(topic) ?? []), { partition, offset }]);
          await transaction.sendOffsets({ consumerGroupId: groupId, topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) });
        },
        commit: () => transaction.commit(),
        abort: () => transaction.abort(),
      };
    },
    close: () => producer.disconnect(),
  };
}
