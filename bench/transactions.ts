/**
 * How long one Kafka transaction takes (20 records, sendOffsets, commit, as a
 * stage's chunk does) when N transactional producers share the broker. Each
 * stage process has one (KIP-447): three for independent stages, one for
 * co-located mode.
 *
 *   node bench/transactions.ts [--producers 3] [--transactions 80]
 */
import { parseArgs } from 'node:util';
import { deleteTopics, ensureTopics } from '../connectors/kafka/admin.ts';
import { openTransactionalProducer } from '../connectors/kafka/tx.ts';
import { percentile } from '../cli/traffic.ts';
import { connectionsFromEnv } from '../lib/settings.ts';

const { values } = parseArgs({ options: { producers: { type: 'string', default: '3' }, transactions: { type: 'string', default: '80' } } });
const producers = Number(values.producers);
const transactions = Number(values.transactions);
const WARM_UP = 10;
const brokers = connectionsFromEnv().kafkaBrokers;
const topic = `sluice-bench-tx-${Date.now().toString(36)}`;
await ensureTopics(brokers, [{ topic, partitions: 3, replicationFactor: 1, config: {} }]);
const durations: number[] = [];
try {
  await Promise.all(
    Array.from({ length: producers }, async (_, w) => {
      const producer = await openTransactionalProducer({
        brokers,
        clientId: 'sluice-bench-tx',
        transactionalId: `${topic}-${w}`,
        retry: { initialMs: 10, maxMs: 2_000, retries: 30 },
      });
      try {
        for (let i = 0; i < transactions; i++) {
          const started = performance.now();
          const transaction = await producer.begin();
          const messages = Array.from({ length: 20 }, (_, j) => ({ key: `k${j}`, value: 'x'.repeat(300) }));
          await transaction.send(topic, messages);
          await transaction.sendOffsets(`${topic}-group`, [{ topic, partition: w % 3, offset: String(i + 1) }]);
          await transaction.commit();
          if (i >= WARM_UP) durations.push(performance.now() - started);
        }
      } finally {
        await producer.close();
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
