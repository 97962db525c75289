/**
 * How long one Kafka transaction takes (20 records, sendOffsets, commit, as a
 * stage's chunk does) when N transactional producers share the broker. The
 * pipeline runs one producer per input partition per stage: 3 × 3 = 9.
 *
 *   node bench/transactions.ts [--producers 9] [--transactions 80]
 */
import { parseArgs } from 'node:util';
import { deleteTopics, ensureTopics } from '../connectors/kafka/admin.ts';
import { createKafka } from '../connectors/kafka/client.ts';
import { percentile } from '../cli/traffic.ts';
import { connectionsFromEnv } from '../lib/settings.ts';

const { values } = parseArgs({ options: { producers: { type: 'string', default: '9' }, transactions: { type: 'string', default: '80' } } });
const producers = Number(values.producers);
const transactions = Number(values.transactions);
const WARM_UP = 10;
const brokers = connectionsFromEnv().kafkaBrokers;
const topic = `sluice-bench-tx-${Date.now().toString(36)}`;
await ensureTopics(brokers, [{ topic, partitions: 3, replicationFactor: 1, config: {} }]);
const kafka = createKafka({ brokers, clientId: 'sluice-bench-tx' });
const durations: number[] = [];
try {
  await Promise.all(
    Array.from({ length: producers }, async (_, w) => {
      const producer = kafka.producer({
        transactionalId: `${topic}-${w}`,
        idempotent: true,
        maxInFlightRequests: 1,
        retry: { initialRetryTime: 10, maxRetryTime: 2_000, retries: 30 },
      });
      await producer.connect();
      try {
        for (let i = 0; i < transactions; i++) {
          const started = performance.now();
          const transaction = await producer.transaction();
          const messages = Array.from({ length: 20 }, (_, j) => ({ key: `k${j}`, value: 'x'.repeat(300) }));
          await transaction.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] });
          await transaction.sendOffsets({
            consumerGroupId: `${topic}-group`,
            topics: [{ topic, partitions: [{ partition: w % 3, offset: String(i + 1) }] }],
          });
          await transaction.commit();
          if (i >= WARM_UP) durations.push(performance.now() - started);
        }
      } finally {
        await producer.disconnect();
      }
    }),
  );
} finally {
  await deleteTopics(brokers, [topic]);
}
const fixed = (ms: number) => ms.toFixed(1);
process.stdout.write(
  `${producers} transactional producer(s), ${durations.length} transactions: p50 ${fixed(percentile(durations, 50))} ms, p90 ${fixed(percentile(durations, 90))} ms\n`,
);
