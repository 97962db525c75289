/**
 * The benchmark's baseline stage: consume → produce with exactly the same
 * exactly-once machinery, batch and transaction settings as the real stages,
 * and no decoding and no work. Run as its own process:
 *   node bench/passthrough.ts <from-topic> <to-topic> <group>
 */
import { startExactlyOnce } from '../connectors/kafka/exactly-once.ts';
import { createLogger } from '../lib/log.ts';
import { connectionsFromEnv } from '../lib/settings.ts';
import { runtimeConfigFromEnv } from '../processors/runtime/runtime.ts';

const [from, to, group] = process.argv.slice(2);
if (!from || !to || !group) {
  process.stderr.write('usage: node bench/passthrough.ts <from-topic> <to-topic> <group>\n');
  process.exit(2);
}
const config = runtimeConfigFromEnv('validate');
const logger = createLogger({ stage: 'passthrough', from, to });
const running = await startExactlyOnce({
  brokers: connectionsFromEnv().kafkaBrokers,
  clientId: group,
  groupId: group,
  topic: from,
  transactionalIdPrefix: group,
  maxBatchRecords: config.maxBatchRecords,
  maxBatchBytes: config.maxBatchBytes,
  outputTopics: [to],
  transactionTimeoutMs: config.transactionTimeoutMs,
  maxWaitTimeMs: config.fetchMaxWaitMs,
  sessionTimeoutMs: config.sessionTimeoutMs,
  concurrentPartitions: config.concurrentPartitions,
  logger,
  // One output per record, as the real stages make.
  handle: async (records) => records.map((r) => ({ messages: [{ topic: to, key: r.key, value: r.value ?? Buffer.alloc(0) }] })),
  // Passthrough records are small events and no dead-letter topic is involved: a record is written as it is.
  oversized: (_record, output) => output,
});
logger.info('stage running');
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void running.stop().then(() => process.exit(0));
  });
}
