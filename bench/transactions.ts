/**
 * How long one Kafka transaction takes (20 records, sendOffsets, commit, as a
 * stage's chunk does) when N transactional producers share the broker. Each
 * stage process has one (KIP-447): three for independent stages, one for
 * co-located mode.
 *
 * `--side-by-side` sends the records and the offsets at once, as a stage
 * does; `--offsets-apart` then sends the offsets on a connection of their
 * own, as they go when the group coordinator is another broker than the
 * records' partitions' leader (the local stack has one broker).
 *
 *   node bench/transactions.ts [--producers 3] [--transactions 80] [--side-by-side [--offsets-apart]]
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { deleteTopics, ensureTopics } from '../connectors/kafka/admin.ts';
import { openTransactionalProducer } from '../connectors/kafka/tx.ts';
import { percentile } from '../cli/traffic.ts';
import { connectionsFromEnv } from '../lib/settings.ts';

const { values } = parseArgs({
  options: {
    producers: { type: 'string', default: '3' },
    transactions: { type: 'string', default: '80' },
    'side-by-side': { type: 'boolean', default: false },
    'offsets-apart': { type: 'boolean', default: false },
  },
});
const producers = Number(values.producers);
const transactions = Number(values.transactions);
const sideBySide = values['side-by-side'];
if (values['offsets-apart']) {
  if (!sideBySide) throw new Error('--offsets-apart needs --side-by-side: sent one after the other, the records and offsets never meet, whichever connection carries them');
  // kafkajs keeps two connections per broker, the second for Fetch, which a producer never sends: there the offsets go alone.
  const TXN_OFFSET_COMMIT = 28;
  const ConnectionPool = createRequire(import.meta.url)('kafkajs/src/network/connectionPool');
  const ownChoice = ConnectionPool.prototype.getConnectionByRequest;
  ConnectionPool.prototype.getConnectionByRequest = function (this: { getConnection(index: number): unknown }, protocolRequest: { request: { apiKey: number } }) {
    return protocolRequest.request.apiKey === TXN_OFFSET_COMMIT ? this.getConnection(1) : ownChoice.call(this, protocolRequest);
  };
}
const WARM_UP = 10;
const brokers = connectionsFromEnv().kafkaBrokers;
const topic = `sluice-bench-tx-${Date.now().toString(36)}`;
await ensureTopics(brokers, [{ topic, partitions: 3, replicationFactor: 1, config: {} }]);
const durations: number[] = [];
let measuredFrom = Number.POSITIVE_INFINITY;
let measuredTo = 0;
try {
  await Promise.all(
    Array.from({ length: producers }, async (_, w) => {
      const producer = await openTransactionalProducer({
        brokers,
        clientId: 'sluice-bench-tx',
        transactionalId: `${topic}-${w}`,
        retry: { initialMs: 10, maxMs: 2_000, retries: 30 },
        maxInFlightRequests: sideBySide ? 2 : 1,
      });
      try {
        for (let i = 0; i < transactions; i++) {
          const started = performance.now();
          const transaction = await producer.begin();
          const messages = Array.from({ length: 20 }, (_, j) => ({ key: `k${j}`, value: 'x'.repeat(300) }));
          const send = () => transaction.send(topic, messages);
          const sendOffsets = () => transaction.sendOffsets(`${topic}-group`, [{ topic, partition: w % 3, offset: String(i + 1) }]);
          if (sideBySide) await Promise.all([send(), sendOffsets()]);
          else await send().then(sendOffsets);
          await transaction.commit();
          if (i >= WARM_UP) {
            const ended = performance.now();
            durations.push(ended - started);
            measuredFrom = Math.min(measuredFrom, started);
            measuredTo = Math.max(measuredTo, ended);
          }
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
const how = sideBySide ? `records and offsets side by side${values['offsets-apart'] ? ', on two connections' : ''}` : 'records, then offsets';
const perSecond = Math.round((durations.length * 1000) / (measuredTo - measuredFrom));
process.stdout.write(
  `${producers} transactional producer(s), ${how}, ${durations.length} transactions: p50 ${fixed(percentile(durations, 50))} ms, p90 ${fixed(percentile(durations, 90))} ms, ${perSecond} a second\n`,
);
