/**
 * The stage core, free of any broker: records in, one output per record out
 * (its messages, already encoded with the real contracts, or a dead letter
 * with the contract's headers). The exactly-once runtime (runtime.ts) feeds it
 * from Kafka; the test driver (test/driver.ts) feeds it by hand with an
 * in-memory codec, as Kafka Streams' TopologyTestDriver does.
 *
 * Failure routing lives here, once: data errors come back from the stage as
 * dead letters; a retriable SluiceError (registry down) is rethrown so the
 * whole chunk is retried and nothing is dead-lettered; anything else thrown is
 * a defect in sluice's own code, isolated to the record that triggers it and
 * dead-lettered as PROCESSING_FAILED, never blamed on the producer.
 */
import type { SchemaCodec, SkippedFields } from '../../lib/codec.ts';
import { type DeadLetter, deadLetter, type Outcome, type SourceRecord, type TopicSuffix, topicName } from '../../lib/contracts.ts';
import { errorMessage, isSluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';

export type StageName = 'validate' | 'score' | 'decide';
export const STAGE_NAMES: readonly StageName[] = ['validate', 'score', 'decide'];
/** What a stage process runs: one stage, or (co-located mode) every stage of the pipeline in one transaction per chunk. */
export type ProcessName = StageName | 'all';

/** A record handed to a stage: its source and, for Avro input topics, the decoded value. */
export interface StageInput<In> {
  source: SourceRecord;
  value: In;
}

/**
 * A stage: which topic it reads, in which format, where it may write, and how
 * a batch of inputs becomes outcomes (one per input, same order). Return data
 * errors as dead letters; throw a retriable SluiceError for an outage (the
 * chunk is retried); anything else thrown is a defect, isolated per record.
 */
export interface StageDefinition<In = unknown> {
  input: TopicSuffix;
  /** `bytes`: the raw value as consumed; `avro`: decoded with the codec (bad framing is dead-lettered). */
  inputFormat: 'bytes' | 'avro';
  /** Avro input only: top-level fields the stage never reads, skipped while decoding instead of built (SchemaCodec.decodeSync). */
  inputSkips?: SkippedFields;
  outputs: readonly TopicSuffix[];
  process(inputs: Array<StageInput<In>>): Promise<Outcome[]> | Outcome[];
  /**
   * Why the stage must not consume now (the decide stage under the kill
   * switch's `park` mode), or null. Asked again whenever the control topic
   * changes; while it answers, every input partition waits in Kafka.
   */
  holds?(): string | null;
  close?(): Promise<void>;
}

/** One message to write, in the runtime's terms (connectors/kafka/exactly-once.ts has the same shape). */
export interface StageMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer;
  headers?: Record<string, string>;
  /** Set only by an output that names its partition (a changelog: its input's partition number). */
  partition?: number;
}

/** What the runtime learns about a record once its transaction is committed: for logs and metrics. */
export interface StageNote {
  eventId?: string;
  deadLetter?: DeadLetter;
}

export interface StageOutput {
  messages: StageMessage[];
  note: StageNote;
}

/** The headers of a dead letter (PRODUCT.md), plus the event id when it is known. */
export function dlqHeaders(stage: string, source: SourceRecord, letter: DeadLetter, now: number): Record<string, string> {
  const headers: Record<string, string> = {
    'dlq.reason': letter.reason,
    'dlq.message': letter.message,
    'dlq.stage': stage,
    'dlq.source.topic': source.topic,
    'dlq.source.partition': String(source.partition),
    'dlq.source.offset': source.offset,
    'dlq.failed_at': String(now),
  };
  if (letter.eventId !== undefined) headers['dlq.event_id'] = letter.eventId;
  // A record a re-drive sent back (sluice dlq redrive) that fails again names that re-drive, and is never re-driven again.
  const redrive = source.headers['sluice.redrive.id'];
  if (redrive !== undefined) headers['dlq.redrive.id'] = redrive;
  if (letter.errorCode !== undefined) headers['dlq.error.code'] = letter.errorCode;
  return headers;
}

export type Encoders = ReadonlyMap<TopicSuffix, (value: unknown) => Buffer>;

/** A dead letter of `source`: the original bytes, exactly as received, under the original key. */
export function deadLetterOutput(pipeline: string, stage: StageName, source: SourceRecord, letter: DeadLetter, now: number): StageOutput {
  return {
    messages: [{ topic: topicName(pipeline, 'dlq'), key: source.key, value: source.value ?? Buffer.alloc(0), headers: dlqHeaders(stage, source, letter, now) }],
    note: { eventId: letter.eventId, deadLetter: letter },
  };
}

/** Turns one outcome into its messages; an output that fails its contract is dead-lettered. */
export function outputOf(args: { pipeline: string; stage: StageName; source: SourceRecord; outcome: Outcome; encoders: Encoders; now: number }): StageOutput {
  return outputWith(targetsOf(args.pipeline, args.encoders), args.pipeline, args.stage, args.source, args.outcome, args.now);
}

/** Where a stage may write: per topic suffix, the topic's name and its encoder, resolved once per stage rather than per message. */
type Targets = ReadonlyMap<TopicSuffix, { topic: string; encode: (value: unknown) => Buffer }>;

function targetsOf(pipeline: string, encoders: Encoders): Targets {
  return new Map([...encoders].map(([suffix, encode]) => [suffix, { topic: topicName(pipeline, suffix), encode }]));
}

/** outputOf, on the hot path: the topic names already resolved. */
function outputWith(targets: Targets, pipeline: string, stage: StageName, source: SourceRecord, outcome: Outcome, now: number): StageOutput {
  if (outcome.kind === 'dead-letter') return deadLetterOutput(pipeline, stage, source, outcome, now);
  const outputs = outcome.outputs;
  const messages: StageMessage[] = new Array(outputs.length);
  for (let i = 0; i < outputs.length; i++) {
    const output = outputs[i]!;
    const target = targets.get(output.to);
    if (target === undefined) {
      return deadLetterOutput(pipeline, stage, source, deadLetter('OUTPUT_INVALID', `stage ${stage} may not write to ${output.to}`, outcome.eventId), now);
    }
    let value: Buffer;
    try {
      value = target.encode(output.value);
    } catch (error) {
      const letter = deadLetter('OUTPUT_INVALID', `output to ${output.to} does not match its contract: ${errorMessage(error)}`, outcome.eventId);
      return deadLetterOutput(pipeline, stage, source, letter, now);
    }
    messages[i] = output.partition === undefined
      ? { topic: target.topic, key: output.key ?? source.key, value }
      : { topic: target.topic, key: output.key ?? source.key, value, partition: output.partition };
  }
  return { messages, note: { eventId: outcome.eventId } };
}

/** Bytes kept of an original value that cannot fit in a dead letter whole. */
const PREVIEW_HEADROOM_BYTES = 2_048;

/**
 * The dead letter written instead of an output too large for one transaction:
 * OVERSIZED, with the original bytes, or when even those cannot fit, the first
 * bytes as a preview (`dlq.truncated`, `dlq.original_bytes`); the source
 * coordinates always say where the whole record is.
 */
export function oversizedOutput(args: {
  pipeline: string;
  stage: StageName;
  source: SourceRecord;
  note: StageNote;
  outputBytes: number;
  limitBytes: number;
  now: number;
  sizeOf(message: StageMessage): number;
}): StageOutput {
  const { source, limitBytes } = args;
  const letter = deadLetter(
    'OVERSIZED',
    `output of ${args.outputBytes} bytes is more than its topic accepts (max.message.bytes); ` +
      `the input record ${source.topic}/${source.partition}/${source.offset} is kept here`,
    args.note.eventId,
  );
  const output = deadLetterOutput(args.pipeline, args.stage, source, letter, args.now);
  const message = output.messages[0]!;
  if (args.sizeOf(message) > limitBytes) {
    const original = message.value;
    const room = Math.max(0, limitBytes - args.sizeOf({ ...message, value: Buffer.alloc(0) }) - PREVIEW_HEADROOM_BYTES);
    message.value = original.subarray(0, room);
    message.headers = { ...message.headers, 'dlq.truncated': 'true', 'dlq.original_bytes': String(original.length) };
  }
  return output;
}

/** Transient: the whole chunk is retried later. Anything else thrown is a defect tied to some record. */
const isTransient = (error: unknown) => isSluiceError(error) && error.retriable;

/** The message of anything thrown, even a value whose toString throws: isolation must never fail itself. */
function printable(error: unknown): string {
  try {
    return errorMessage(error).slice(0, 500);
  } catch {
    return 'unprintable error';
  }
}

const errorCodeOf = (error: unknown): string => (isSluiceError(error) ? error.code : error instanceof Error ? error.name : 'Error');

/**
 * Runs the stage on a chunk. If it throws something that is not transient,
 * the chunk is run again record by record, and each record that still throws
 * is dead-lettered as PROCESSING_FAILED: one poison record must not wedge its
 * partition in an endless retry, nor take its neighbours down with it.
 */
export async function processIsolating<In>(definition: StageDefinition<In>, inputs: Array<StageInput<In>>, logger: Logger): Promise<Outcome[]> {
  try {
    return await definition.process(inputs);
  } catch (error) {
    if (isTransient(error)) throw error;
    logger.error({ err: printable(error), records: inputs.length }, 'stage failed on a chunk; isolating the failing records');
  }
  const outcomes: Outcome[] = [];
  for (const input of inputs) {
    try {
      outcomes.push((await definition.process([input]))[0] ?? deadLetter('OUTPUT_INVALID', 'stage returned no outcome'));
    } catch (error) {
      if (isTransient(error)) throw error;
      outcomes.push({ ...deadLetter('PROCESSING_FAILED', `stage failed on this record (a defect in sluice, not in the data): ${printable(error)}`), errorCode: errorCodeOf(error) });
    }
  }
  return outcomes;
}

/** A stage as a function of records: decode, isolate, process, encode, dead-letter. */
export type StageHandler = (records: SourceRecord[]) => Promise<StageOutput[]>;

export function createStageHandler<In>(args: {
  pipeline: string;
  stage: StageName;
  definition: StageDefinition<In>;
  codec: SchemaCodec;
  encoders: Encoders;
  logger: Logger;
  now(): number;
}): StageHandler {
  const { pipeline, stage, definition, codec, logger } = args;
  const targets = targetsOf(pipeline, args.encoders);
  const avro = definition.inputFormat === 'avro';
  return async (records) => {
    const count = records.length;
    const values: Array<Buffer | null> = new Array(count);
    for (let i = 0; i < count; i++) values[i] = records[i]!.value;
    // A registry outage throws here (retriable): the chunk is retried, never dead-lettered.
    await codec.prefetch(values);
    const outcomes: Array<Outcome | undefined> = new Array(count);
    const inputs: Array<StageInput<In>> = [];
    const positions: number[] = [];
    for (let i = 0; i < count; i++) {
      const source = records[i]!;
      const value = values[i]!;
      if (!avro) {
        inputs.push({ source, value: value as In });
        positions.push(i);
        continue;
      }
      if (value === null || value.length === 0) {
        outcomes[i] = deadLetter('MALFORMED_PAYLOAD', 'empty value on an Avro topic');
        continue;
      }
      const decoded = codec.decodeSync(value, definition.inputSkips);
      if (decoded.kind === 'decoded') {
        inputs.push({ source, value: decoded.value as In });
        positions.push(i);
      } else if (decoded.kind === 'unknown-schema') {
        outcomes[i] = deadLetter('UNKNOWN_SCHEMA', `schema id ${decoded.schemaId} is not in the registry`);
      } else {
        outcomes[i] = deadLetter('MALFORMED_PAYLOAD', decoded.message);
      }
    }
    if (inputs.length > 0) {
      const produced = await processIsolating(definition, inputs, logger);
      for (let j = 0; j < positions.length; j++) outcomes[positions[j]!] = produced[j] ?? deadLetter('OUTPUT_INVALID', 'stage returned no outcome');
    }
    const now = args.now();
    const outputs: StageOutput[] = new Array(count);
    for (let i = 0; i < count; i++) outputs[i] = outputWith(targets, pipeline, stage, records[i]!, outcomes[i]!, now);
    return outputs;
  };
}
