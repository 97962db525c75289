/**
 * CPU per record of encoding one Produce request (v12, as a stage's
 * transaction sends it) through the patched kafkajs, with its large buffers
 * kept by reference (as sluice runs) and, in the same process, with every
 * buffer copied at every level (as kafkajs did). Rounds alternate between the
 * two; medians of the rounds after a warm-up, and their ratio. Prints figures;
 * asserts nothing. Then, for the same records, the CPU per record of decoding
 * one partition's record batch as a consumer's fetch does.
 *
 *   node bench/encode.ts [--records 500] [--value-bytes 300] [--partitions 3] [--rounds 12] [--json]
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { positiveInteger } from './args.ts';
import { percentile } from '../cli/traffic.ts';

const require = createRequire(import.meta.url);
const Encoder = require('kafkajs/src/protocol/encoder');
const createRequest = require('kafkajs/src/protocol/request');
const ProduceV12 = require('kafkajs/src/protocol/requests/produce/v12/request');
const Long = require('kafkajs/src/utils/long');
const Record = require('kafkajs/src/protocol/recordBatch/record/v0');
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0');
const decodeRecordBatch = require('kafkajs/src/protocol/recordBatch/v0/decoder');
const Decoder = require('kafkajs/src/protocol/decoder');

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '500' },
    'value-bytes': { type: 'string', default: '300' },
    partitions: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '12' },
    json: { type: 'boolean', default: false },
  },
});
const records = positiveInteger('records', values.records);
const valueBytes = positiveInteger('value-bytes', values['value-bytes']);
const partitions = positiveInteger('partitions', values.partitions);
const rounds = positiveInteger('rounds', values.rounds);
const WARMUP_ROUNDS = 2;
/** Requests per round: enough for a round to take tens of milliseconds. */
const REQUESTS = Math.max(20, Math.ceil(150_000 / records));

const topicData = [
  {
    topic: 'bench.validated',
    partitions: Array.from({ length: partitions }, (_, partition) => ({
      partition,
      firstSequence: 0,
      messages: Array.from({ length: Math.ceil(records / partitions) }, (_, i) => ({
        key: Buffer.from(`signup-${partition}-${i}`),
        value: Buffer.alloc(valueBytes, i),
        headers: { 'sluice-trace': `trace-${i}` },
      })),
    })),
  },
];

async function encodeOnce(): Promise<number> {
  const request = ProduceV12({ acks: -1, timeout: 30_000, transactionalId: 'bench', producerId: Long.fromInt(1), producerEpoch: 0, compression: 0, topicData });
  const encoder = await createRequest({ correlationId: 1, clientId: 'bench', request });
  return encoder.buffer.length;
}

const modes = { referenced: Encoder.referenceFrom as number, copied: Infinity };
const perRecordUs: Record<keyof typeof modes, number[]> = { referenced: [], copied: [] };
let requestBytes = 0;
for (let round = 0; round < WARMUP_ROUNDS + rounds; round++) {
  for (const mode of Object.keys(modes) as Array<keyof typeof modes>) {
    Encoder.referenceFrom = modes[mode];
    const start = performance.now();
    for (let i = 0; i < REQUESTS; i++) requestBytes = await encodeOnce();
    if (round >= WARMUP_ROUNDS) perRecordUs[mode].push(((performance.now() - start) * 1000) / (REQUESTS * records));
  }
}
Encoder.referenceFrom = modes.referenced;

const median = (list: number[]): number => percentile(list, 50);

/** One partition's messages as a record batch, as the broker hands it to a consumer. */
const partitionMessages = topicData[0]!.partitions[0]!.messages;
const now = Date.now();
const batchRecords = partitionMessages.map((message, offsetDelta) => Record({ ...message, offsetDelta, timestampDelta: offsetDelta }));
const batchBytes: Buffer = (await RecordBatch({ records: batchRecords, firstTimestamp: now, maxTimestamp: now + batchRecords.length, lastOffsetDelta: batchRecords.length - 1 })).buffer;
const decodeUs: number[] = [];
for (let round = 0; round < WARMUP_ROUNDS + rounds; round++) {
  const start = performance.now();
  for (let i = 0; i < REQUESTS; i++) await decodeRecordBatch(new Decoder(batchBytes));
  if (round >= WARMUP_ROUNDS) decodeUs.push(((performance.now() - start) * 1000) / (REQUESTS * batchRecords.length));
}
const report = {
  node: process.version,
  records,
  valueBytes,
  partitions,
  requestBytes,
  rounds,
  referencedUsPerRecord: median(perRecordUs.referenced),
  copiedUsPerRecord: median(perRecordUs.copied),
  ratio: median(perRecordUs.referenced.map((us, i) => us / perRecordUs.copied[i]!)),
  decodeUsPerRecord: median(decodeUs),
};
if (values.json) {
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
} else {
  process.stdout.write(
    `Produce v12 of ${records} records (${valueBytes}-byte values, ${partitions} partitions, ${requestBytes} bytes), node ${report.node}, median of ${rounds} rounds\n` +
      `  large buffers by reference  ${report.referencedUsPerRecord.toFixed(2)} µs/record\n` +
      `  every buffer copied         ${report.copiedUsPerRecord.toFixed(2)} µs/record\n` +
      `  ratio (same round)          ${report.ratio.toFixed(2)}\n` +
      `decoding one partition's record batch of ${batchRecords.length}: ${report.decodeUsPerRecord.toFixed(2)} µs/record\n`,
  );
}
