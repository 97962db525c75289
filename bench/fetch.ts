/**
 * CPU per record of a consumer reading a backlog, over sluice's sockets
 * (connectors/kafka/socket.ts: reads into one reused buffer, each response
 * copied once) and over kafkajs's own (a fresh 64 KiB buffer per read, then
 * one concatenation per response). Fills a topic once, then reads it all in
 * a fresh process per round, alternating the two, with the stage processes'
 * Node flags and malloc setting; prints the medians, their ratio and each
 * round's peak RSS. Needs the local stack (`npx sluice stack up`).
 *
 *   node bench/fetch.ts [--records 600000] [--value-bytes 300] [--rounds 5] [--json FILE]
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deleteTopics, ensureTopics } from '../connectors/kafka/admin.ts';
import { createKafka } from '../connectors/kafka/client.ts';
import { framedSocketFactory, kafkajsSocketFactory } from '../connectors/kafka/socket.ts';
import { NODE_FLAGS, stageProcessEnv } from '../cli/processes.ts';
import { percentile } from '../cli/traffic.ts';
import { connectionsFromEnv } from '../lib/settings.ts';
import { positiveInteger } from './args.ts';

const SOCKETS = ['sluice', 'kafkajs'] as const;
type SocketKind = (typeof SOCKETS)[number];
interface Round {
  socket: SocketKind;
  us_per_record: number;
  peak_rss_mib: number;
}

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '600000' },
    'value-bytes': { type: 'string', default: '300' },
    rounds: { type: 'string', default: '5' },
    json: { type: 'string' },
    // Internal: one round, in a process of its own.
    read: { type: 'string' },
    socket: { type: 'string' },
  },
});
const records = positiveInteger('records', values.records);
const brokers = connectionsFromEnv().kafkaBrokers;

if (values.read !== undefined) {
  const socket = values.socket as SocketKind;
  if (!SOCKETS.includes(socket)) throw new Error(`--socket must be one of ${SOCKETS.join(', ')}, got ${values.socket}`);
  console.log(JSON.stringify(await readAll(values.read, socket)));
} else {
  await compare();
}

/** Reads the topic from its start through `socket`, from the first batch on: CPU per record and peak RSS. */
async function readAll(topic: string, socket: SocketKind): Promise<Round> {
  const kafka = createKafka({ brokers, clientId: 'sluice-bench-fetch', socketFactory: socket === 'sluice' ? framedSocketFactory : kafkajsSocketFactory });
  const consumer = kafka.consumer({ groupId: `${topic}-${socket}-${process.pid}`, maxBytesPerPartition: 1_048_576 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  let peak = 0;
  let cpuFrom: NodeJS.CpuUsage | undefined;
  await new Promise<void>((resolve, reject) => {
    consumer
      .run({
        eachBatch: async ({ batch }) => {
          cpuFrom ??= process.cpuUsage();
          seen += batch.messages.length;
          peak = Math.max(peak, process.memoryUsage.rss());
          if (seen >= records) resolve();
        },
      })
      .catch(reject);
  });
  const cpu = process.cpuUsage(cpuFrom);
  await consumer.disconnect();
  return { socket, us_per_record: (cpu.user + cpu.system) / seen, peak_rss_mib: Math.round(peak / 1_048_576) };
}

async function compare(): Promise<void> {
  const rounds = positiveInteger('rounds', values.rounds);
  const valueBytes = positiveInteger('value-bytes', values['value-bytes']);
  const topic = `sluice-bench-fetch-${Date.now().toString(36)}`;
  await ensureTopics(brokers, [{ topic, partitions: 3, replicationFactor: 1, config: {} }]);
  try {
    const producer = createKafka({ brokers, clientId: 'sluice-bench-fetch' }).producer();
    await producer.connect();
    const value = Buffer.alloc(valueBytes, 'x');
    for (let sent = 0; sent < records; sent += 5_000) {
      const messages = Array.from({ length: Math.min(5_000, records - sent) }, (_, i) => ({ key: String(sent + i), value }));
      await producer.send({ topic, messages });
    }
    await producer.disconnect();
    const results: Round[] = [];
    const script = fileURLToPath(import.meta.url);
    for (let round = 0; round < rounds; round++) {
      // Alternating which goes first spreads a drift of the machine's speed over both.
      const order = round % 2 === 0 ? SOCKETS : [...SOCKETS].reverse();
      for (const socket of order) {
        const output = execFileSync(process.execPath, [...NODE_FLAGS, script, '--read', topic, '--socket', socket, '--records', String(records)], {
          env: stageProcessEnv(),
          encoding: 'utf8',
        });
        const result = JSON.parse(output.trim().split('\n').at(-1)!) as Round;
        results.push(result);
        console.log(`round ${round + 1}, ${socket} sockets: ${result.us_per_record.toFixed(2)} µs per record, peak RSS ${result.peak_rss_mib} MiB`);
      }
    }
    const median = (socket: SocketKind, field: 'us_per_record' | 'peak_rss_mib') =>
      percentile(
        results.filter((result) => result.socket === socket).map((result) => result[field]),
        50,
      );
    const summary = {
      records,
      value_bytes: valueBytes,
      rounds,
      us_per_record: { sluice: median('sluice', 'us_per_record'), kafkajs: median('kafkajs', 'us_per_record') },
      peak_rss_mib: { sluice: median('sluice', 'peak_rss_mib'), kafkajs: median('kafkajs', 'peak_rss_mib') },
      per_round: results,
    };
    console.log(
      `\nreading ${records} records of ${valueBytes} bytes, medians of ${rounds} rounds: sluice's sockets ${summary.us_per_record.sluice.toFixed(2)} µs per record, ` +
        `kafkajs's ${summary.us_per_record.kafkajs.toFixed(2)} (ratio ${(summary.us_per_record.sluice / summary.us_per_record.kafkajs).toFixed(2)}); ` +
        `peak RSS ${summary.peak_rss_mib.sluice} and ${summary.peak_rss_mib.kafkajs} MiB`,
    );
    if (values.json !== undefined) writeFileSync(values.json, `${JSON.stringify(summary, null, 2)}\n`);
  } finally {
    await deleteTopics(brokers, [topic]).catch(() => {});
  }
}
