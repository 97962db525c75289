/**
 * The runtime's broker-free parts: turning outcomes into a record's messages,
 * dead letters for oversized outputs, isolating poison records, the stage
 * handler (decode, process, encode) and packing records into transactions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { messageBytes, packByBytes } from '../../connectors/kafka/exactly-once.ts';
import type { FramedDecode, SchemaCodec } from '../../lib/codec.ts';
import { SluiceError } from '../../lib/errors.ts';
import { createLogger } from '../../lib/log.ts';
import { processIsolating, type StageDefinition, type StageInput } from '../../processors/runtime/runtime.ts';
import { createStageHandler, type Encoders, outputOf, oversizedOutput, type StageMessage } from '../../processors/runtime/stage.ts';
import { deadLetter, type Outcome, type SourceRecord, type TopicSuffix } from '../../processors/runtime/types.ts';

const logger = createLogger({}, 'silent');

const source = (offset: number, value: string | Buffer | null = `v${offset}`): SourceRecord => ({
  topic: 'p.raw',
  partition: 2,
  offset: String(offset),
  key: Buffer.from(`k${offset}`),
  value: typeof value === 'string' ? Buffer.from(value) : value,
  headers: {},
  timestampMs: 0,
});

const encoders: Encoders = new Map<TopicSuffix, (value: unknown) => Buffer>([
  ['validated', (value) => Buffer.from(JSON.stringify(value))],
  [
    'review',
    () => {
      throw new Error('field decision: not a string');
    },
  ],
]);

const emit = (eventId: string, value: unknown = eventId, to: TopicSuffix = 'validated'): Outcome => ({ kind: 'emit', eventId, outputs: [{ to, value }] });

describe('outputOf', () => {
  it('encodes each output to <pipeline>.<suffix> under the input key', () => {
    const output = outputOf({
      pipeline: 'p',
      stage: 'validate',
      source: source(7),
      outcome: { kind: 'emit', eventId: 'e7', outputs: [{ to: 'validated', value: { a: 1 } }] },
      encoders,
      now: 1_000,
    });
    assert.deepEqual(output, {
      messages: [{ topic: 'p.validated', key: Buffer.from('k7'), value: Buffer.from('{"a":1}') }],
      note: { eventId: 'e7' },
    });
  });

  it('dead-letters with the original bytes, the key and every contract header, the event id included', () => {
    const letter = deadLetter('SCHEMA_VIOLATION', 'payload.plan: not allowed', 'e9');
    const output = outputOf({ pipeline: 'p', stage: 'validate', source: source(9, '\u0000raw bytes'), outcome: letter, encoders, now: 1_234 });
    assert.equal(output.messages.length, 1);
    const [message] = output.messages;
    assert.equal(message!.topic, 'p.dlq');
    assert.deepEqual(message!.key, Buffer.from('k9'));
    assert.deepEqual(message!.value, Buffer.from('\u0000raw bytes'));
    assert.deepEqual(message!.headers, {
      'dlq.reason': 'SCHEMA_VIOLATION',
      'dlq.message': 'payload.plan: not allowed',
      'dlq.stage': 'validate',
      'dlq.source.topic': 'p.raw',
      'dlq.source.partition': '2',
      'dlq.source.offset': '9',
      'dlq.failed_at': '1234',
      'dlq.event_id': 'e9',
    });
    assert.deepEqual(output.note, { eventId: 'e9', deadLetter: letter });
  });

  it('writes no dlq.event_id when the event id is unknown, an empty value for a tombstone, and dlq.error.code for a stage failure', () => {
    const unknown = outputOf({ pipeline: 'p', stage: 'validate', source: source(3, null), outcome: deadLetter('MALFORMED_PAYLOAD', 'value is null'), encoders, now: 5 });
    const [message] = unknown.messages;
    assert.deepEqual(message!.value, Buffer.alloc(0));
    assert.equal(message!.headers?.['dlq.reason'], 'MALFORMED_PAYLOAD');
    assert.equal(Object.hasOwn(message!.headers!, 'dlq.event_id'), false);
    assert.equal(Object.hasOwn(message!.headers!, 'dlq.error.code'), false);

    const failed = outputOf({
      pipeline: 'p',
      stage: 'score',
      source: source(4),
      outcome: { ...deadLetter('PROCESSING_FAILED', 'stage failed on this record'), errorCode: 'TypeError' },
      encoders,
      now: 5,
    });
    assert.equal(failed.messages[0]!.headers?.['dlq.reason'], 'PROCESSING_FAILED');
    assert.equal(failed.messages[0]!.headers?.['dlq.error.code'], 'TypeError');
  });

  it('dead-letters an output that fails its encoder as OUTPUT_INVALID, with the event id, and writes none of its outputs', () => {
    const output = outputOf({
      pipeline: 'p',
      stage: 'decide',
      source: source(1),
      outcome: { kind: 'emit', eventId: 'e1', outputs: [{ to: 'validated', value: 1 }, { to: 'review', value: 2 }] },
      encoders,
      now: 0,
    });
    assert.equal(output.messages.length, 1, 'the valid output must not be written beside the dead letter');
    const [message] = output.messages;
    assert.equal(message!.topic, 'p.dlq');
    assert.deepEqual(message!.value, Buffer.from('v1'));
    assert.equal(message!.headers?.['dlq.reason'], 'OUTPUT_INVALID');
    assert.equal(message!.headers?.['dlq.event_id'], 'e1');
    assert.match(message!.headers?.['dlq.message'] ?? '', /review/);
    assert.equal(output.note.deadLetter?.reason, 'OUTPUT_INVALID');
    assert.equal(output.note.eventId, 'e1');
  });

  it('dead-letters an output to a topic the stage may not write as OUTPUT_INVALID', () => {
    const output = outputOf({ pipeline: 'p', stage: 'decide', source: source(2), outcome: emit('e2', 3, 'decided'), encoders, now: 0 });
    assert.deepEqual(
      output.messages.map((m) => [m.topic, m.headers?.['dlq.reason'], m.headers?.['dlq.event_id']]),
      [['p.dlq', 'OUTPUT_INVALID', 'e2']],
    );
  });
});

describe('oversizedOutput', () => {
  const oversized = (value: Buffer, limitBytes: number, eventId: string | null = 'e5') =>
    oversizedOutput({
      pipeline: 'p',
      stage: 'score',
      source: { ...source(5), value },
      note: eventId === null ? {} : { eventId },
      outputBytes: 2_000_000,
      limitBytes,
      now: 777,
      sizeOf: messageBytes,
    });
  const original = Buffer.from(Array.from({ length: 50_000 }, (_, i) => i % 251));
  /** The size of the untruncated dead letter of `original`. */
  const wholeBytes = messageBytes(oversized(original, Number.MAX_SAFE_INTEGER).messages[0]!);

  it('keeps the original bytes and every dead-letter header when they fit', () => {
    const output = oversized(original, 1_000_000);
    assert.equal(output.messages.length, 1);
    const [message] = output.messages;
    assert.equal(message!.topic, 'p.dlq');
    assert.deepEqual(message!.key, Buffer.from('k5'));
    assert.deepEqual(message!.value, original);
    const headers = message!.headers!;
    assert.equal(headers['dlq.reason'], 'OVERSIZED');
    assert.equal(headers['dlq.stage'], 'score');
    assert.equal(headers['dlq.source.topic'], 'p.raw');
    assert.equal(headers['dlq.source.partition'], '2');
    assert.equal(headers['dlq.source.offset'], '5');
    assert.equal(headers['dlq.failed_at'], '777');
    assert.equal(headers['dlq.event_id'], 'e5');
    assert.ok((headers['dlq.message'] ?? '').length > 0);
    assert.equal(Object.hasOwn(headers, 'dlq.truncated'), false);
    assert.equal(Object.hasOwn(headers, 'dlq.original_bytes'), false);
    assert.ok(messageBytes(message!) <= 1_000_000);
    assert.equal(output.note.eventId, 'e5');
    assert.equal(output.note.deadLetter?.reason, 'OVERSIZED');
    assert.equal(output.note.deadLetter?.eventId, 'e5');
  });

  it('keeps the whole value at exactly the limit, and truncates one byte below it', () => {
    const exact = oversized(original, wholeBytes).messages[0]!;
    assert.deepEqual(exact.value, original);
    assert.equal(Object.hasOwn(exact.headers!, 'dlq.truncated'), false);
    const below = oversized(original, wholeBytes - 1).messages[0]!;
    assert.equal(below.headers?.['dlq.truncated'], 'true');
    assert.ok(messageBytes(below) <= wholeBytes - 1);
  });

  it('truncates the original to fit the limit, saying so and how large it was', () => {
    for (const limit of [8_192, 10_000, 30_000, wholeBytes - 1]) {
      const output = oversized(original, limit);
      assert.equal(output.messages.length, 1);
      const [message] = output.messages;
      const headers = message!.headers!;
      assert.ok(messageBytes(message!) <= limit, `${messageBytes(message!)} bytes > limit ${limit}`);
      assert.ok(message!.value.length < original.length, `limit ${limit}`);
      assert.ok(message!.value.length > 0, `limit ${limit}: a preview of the value is kept`);
      assert.deepEqual(message!.value, original.subarray(0, message!.value.length), 'a prefix of the original');
      assert.equal(headers['dlq.truncated'], 'true');
      assert.equal(headers['dlq.original_bytes'], String(original.length));
      assert.equal(headers['dlq.reason'], 'OVERSIZED');
      assert.equal(headers['dlq.event_id'], 'e5');
      assert.equal(headers['dlq.source.offset'], '5');
      assert.equal(output.note.deadLetter?.reason, 'OVERSIZED');
    }
  });

  it('writes no dlq.event_id when the event id is unknown', () => {
    const [message] = oversized(original, 1_000_000, null).messages;
    assert.equal(message!.headers?.['dlq.reason'], 'OVERSIZED');
    assert.equal(Object.hasOwn(message!.headers!, 'dlq.event_id'), false);
  });
});

describe('packByBytes', () => {
  const sizes = new Map<string, number>();
  const item = (name: string, size: number) => {
    sizes.set(name, size);
    return name;
  };
  const bytesOf = (name: string) => sizes.get(name)!;

  it('splits records into groups within the byte budget, keeping order', () => {
    const items = [item('a', 3), item('b', 3), item('c', 3), item('d', 3), item('e', 4)];
    assert.deepEqual(packByBytes(items, bytesOf, 7, 100), [['a', 'b'], ['c', 'd'], ['e']]);
    assert.deepEqual(packByBytes([item('f', 5), item('g', 5)], bytesOf, 10, 100), [['f', 'g']], 'a group of exactly the budget');
  });

  it('caps the records per group', () => {
    const items = ['1', '2', '3', '4', '5'].map((name) => item(name, 1));
    assert.deepEqual(packByBytes(items, bytesOf, 1_000, 2), [['1', '2'], ['3', '4'], ['5']]);
    assert.deepEqual(packByBytes(items, bytesOf, 1_000, 1), [['1'], ['2'], ['3'], ['4'], ['5']]);
  });

  it('gives a record over the budget a group of its own, and never makes an empty group', () => {
    const items = [item('small', 2), item('huge', 50), item('tail', 2)];
    assert.deepEqual(packByBytes(items, bytesOf, 5, 10), [['small'], ['huge'], ['tail']]);
    assert.deepEqual(packByBytes([item('first-huge', 50), item('x', 1)], bytesOf, 5, 10), [['first-huge'], ['x']]);
    assert.deepEqual(packByBytes([], bytesOf, 5, 10), []);
  });

  it('holds for random inputs: order kept, no empty group, within budget and cap, each group as full as it can be', () => {
    let state = 0x9e3779b9;
    const random = () => {
      state = (Math.imul(state ^ (state >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
      return state / 4_294_967_296;
    };
    for (let round = 0; round < 300; round++) {
      const budget = 1 + Math.floor(random() * 200);
      const cap = 1 + Math.floor(random() * 8);
      const items = Array.from({ length: Math.floor(random() * 40) }, (_, i) => ({ i, size: Math.floor(random() * 60) }));
      const groups = packByBytes(items, (x) => x.size, budget, cap);
      const label = `round ${round}: budget ${budget}, cap ${cap}`;
      assert.deepEqual(groups.flat(), items, label);
      groups.forEach((group, g) => {
        assert.ok(group.length > 0, label);
        assert.ok(group.length <= cap, label);
        const bytes = group.reduce((sum, x) => sum + x.size, 0);
        if (group.length > 1) assert.ok(bytes <= budget, `${label}: group of ${bytes} bytes`);
        const next = groups[g + 1]?.[0];
        if (next !== undefined) assert.ok(group.length === cap || bytes + next.size > budget, `${label}: group ${g} could hold the next record`);
      });
    }
  });
});

describe('processIsolating', () => {
  const inputs: Array<StageInput<string>> = ['ok-1', 'poison', 'ok-2'].map((value, i) => ({ source: source(i), value }));

  it('dead-letters only the record that makes the stage throw, as a defect in sluice; its neighbours go through', async () => {
    const stage: StageDefinition<string> = {
      input: 'raw',
      inputFormat: 'bytes',
      outputs: ['validated'],
      process: (batch) =>
        batch.map(({ value }) => {
          if (value === 'poison') throw new TypeError('cannot read properties of undefined');
          return emit(value);
        }),
    };
    const outcomes = await processIsolating(stage, inputs, logger);
    assert.deepEqual(
      outcomes.map((o) => (o.kind === 'emit' ? o.eventId : o.reason)),
      ['ok-1', 'PROCESSING_FAILED', 'ok-2'],
    );
    const failed = outcomes[1]!;
    assert.ok(failed.kind === 'dead-letter');
    assert.equal(failed.errorCode, 'TypeError');
    assert.match(failed.message, /defect in sluice/);
    assert.match(failed.message, /cannot read properties of undefined/);
  });

  it('rethrows a transient failure so that the whole chunk is retried, never dead-lettered', async () => {
    const stage: StageDefinition<string> = {
      input: 'raw',
      inputFormat: 'bytes',
      outputs: ['validated'],
      process: () => {
        throw new SluiceError('REGISTRY_UNAVAILABLE', 'registry down');
      },
    };
    await assert.rejects(processIsolating(stage, inputs, logger), (error) => error instanceof SluiceError && error.code === 'REGISTRY_UNAVAILABLE');
  });

  it('rethrows a transient failure met while isolating records', async () => {
    const stage: StageDefinition<string> = {
      input: 'raw',
      inputFormat: 'bytes',
      outputs: ['validated'],
      process: (batch) => {
        if (batch.length > 1) throw new TypeError('chunk defect');
        throw new SluiceError('REGISTRY_UNAVAILABLE', 'registry down');
      },
    };
    await assert.rejects(processIsolating(stage, inputs, logger), (error) => error instanceof SluiceError && error.code === 'REGISTRY_UNAVAILABLE');
  });

  it('names a non-retriable SluiceError by its code', async () => {
    const stage: StageDefinition<string> = {
      input: 'raw',
      inputFormat: 'bytes',
      outputs: ['validated'],
      process: () => {
        throw new SluiceError('SCHEMA_NOT_REGISTERED', 'odd');
      },
    };
    const outcomes = await processIsolating(stage, inputs.slice(0, 1), logger);
    assert.ok(outcomes[0]!.kind === 'dead-letter');
    assert.equal(outcomes[0]!.reason, 'PROCESSING_FAILED');
    assert.equal(outcomes[0]!.errorCode, 'SCHEMA_NOT_REGISTERED');
  });
});

describe('createStageHandler', () => {
  /** Confluent framing: magic byte 0, 4-byte schema id, then (here) a JSON body. */
  const framed = (schemaId: number, value: unknown) => {
    const header = Buffer.alloc(5);
    header.writeUInt32BE(schemaId, 1);
    return Buffer.concat([header, Buffer.from(JSON.stringify(value))]);
  };
  const KNOWN_SCHEMA = 11;

  /** A codec that knows schema 11 only, and whose registry can be taken down. */
  function fakeCodec(options: { down?: boolean } = {}) {
    const prefetched: Array<Buffer | null> = [];
    const codec: SchemaCodec & { prefetched: Array<Buffer | null> } = {
      prefetched,
      async prefetch(values) {
        if (options.down) throw new SluiceError('REGISTRY_UNAVAILABLE', 'registry down');
        prefetched.push(...values);
      },
      decodeSync(value): FramedDecode {
        const schemaId = value.readUInt32BE(1);
        if (schemaId !== KNOWN_SCHEMA) return { kind: 'unknown-schema', schemaId };
        try {
          return { kind: 'decoded', value: JSON.parse(value.subarray(5).toString('utf8')), schemaId };
        } catch {
          return { kind: 'undecodable', message: 'truncated body' };
        }
      },
      async encoderFor() {
        return (value: unknown) => Buffer.from(JSON.stringify(value));
      },
    };
    return codec;
  }

  const handlerOf = <In>(definition: StageDefinition<In>, codec: SchemaCodec = fakeCodec()) =>
    createStageHandler({ pipeline: 'p', stage: 'score', definition, codec, encoders, logger, now: () => 4_242 });

  const summary = (outputs: Array<{ messages: StageMessage[] }>) =>
    outputs.map(({ messages }) => messages.map((m) => `${m.topic} ${m.headers?.['dlq.reason'] ?? m.value.toString('utf8')}`));

  it('bytes input: hands each raw value to the stage as is, after prefetching every value', async () => {
    const codec = fakeCodec();
    const seen: Array<Buffer | null> = [];
    const records = [source(1, 'one'), source(2, null), source(3, framed(99, { x: 1 }))];
    const handler = handlerOf<Buffer | null>(
      {
        input: 'raw',
        inputFormat: 'bytes',
        outputs: ['validated'],
        process: (inputs) => {
          assert.equal(codec.prefetched.length, records.length, 'schema ids are resolved before the stage runs');
          return inputs.map(({ source: s, value }) => {
            seen.push(value);
            return emit(`e${s.offset}`, value === null ? null : value.toString('hex'));
          });
        },
      },
      codec,
    );
    const outputs = await handler(records);
    assert.deepEqual(codec.prefetched, records.map((r) => r.value));
    assert.deepEqual(seen, records.map((r) => r.value));
    assert.equal(outputs.length, records.length);
    assert.deepEqual(summary(outputs), [
      [`p.validated ${JSON.stringify(Buffer.from('one').toString('hex'))}`],
      ['p.validated null'],
      [`p.validated ${JSON.stringify(framed(99, { x: 1 }).toString('hex'))}`],
    ]);
    assert.deepEqual(outputs[0]!.messages[0]!.key, Buffer.from('k1'));
    assert.deepEqual(outputs.map((o) => o.note.eventId), ['e1', 'e2', 'e3']);
  });

  it('avro input: decodes known schemas for the stage, dead-letters unknown schemas, bad framing and empty values, in order', async () => {
    const processed: unknown[] = [];
    const handler = handlerOf<{ n: number }>({
      input: 'validated',
      inputFormat: 'avro',
      outputs: ['validated'],
      process: (inputs) =>
        inputs.map(({ source: s, value }) => {
          processed.push(value);
          return emit(`e${s.offset}`, { doubled: value.n * 2 });
        }),
    });
    const unknown = framed(99, { n: 2 });
    const records = [
      source(1, framed(KNOWN_SCHEMA, { n: 1 })),
      source(2, unknown),
      source(3, null),
      source(4, Buffer.concat([framed(KNOWN_SCHEMA, { n: 4 }).subarray(0, 8)])),
      source(5, framed(KNOWN_SCHEMA, { n: 5 })),
    ];
    const outputs = await handler(records);
    assert.deepEqual(processed, [{ n: 1 }, { n: 5 }], 'only decoded values reach the stage, in order');
    assert.deepEqual(summary(outputs), [
      ['p.validated {"doubled":2}'],
      ['p.dlq UNKNOWN_SCHEMA'],
      ['p.dlq MALFORMED_PAYLOAD'],
      ['p.dlq MALFORMED_PAYLOAD'],
      ['p.validated {"doubled":10}'],
    ]);
    const letter = outputs[1]!.messages[0]!;
    assert.deepEqual(letter.value, unknown, 'the original bytes');
    assert.deepEqual(letter.key, Buffer.from('k2'));
    assert.match(letter.headers?.['dlq.message'] ?? '', /99/);
    assert.equal(letter.headers?.['dlq.stage'], 'score');
    assert.equal(letter.headers?.['dlq.source.offset'], '2');
    assert.equal(letter.headers?.['dlq.failed_at'], '4242');
    assert.equal(outputs[1]!.note.deadLetter?.reason, 'UNKNOWN_SCHEMA');
  });

  it('does not call the stage when no record decodes', async () => {
    const handler = handlerOf({
      input: 'validated',
      inputFormat: 'avro',
      outputs: ['validated'],
      process: () => assert.fail('stage called with nothing to process'),
    });
    assert.deepEqual(summary(await handler([source(1, framed(99, {}))])), [['p.dlq UNKNOWN_SCHEMA']]);
  });

  it('lets a registry outage in prefetch propagate, so that the chunk is retried and nothing is dead-lettered', async () => {
    let called = false;
    const handler = handlerOf(
      {
        input: 'validated',
        inputFormat: 'avro',
        outputs: ['validated'],
        process: (inputs) => {
          called = true;
          return inputs.map(({ source: s }) => emit(`e${s.offset}`));
        },
      },
      fakeCodec({ down: true }),
    );
    await assert.rejects(handler([source(1, framed(KNOWN_SCHEMA, { n: 1 }))]), (error) => error instanceof SluiceError && error.code === 'REGISTRY_UNAVAILABLE' && error.retriable);
    assert.equal(called, false);
  });

  it('dead-letters a record the stage throws a TypeError on as PROCESSING_FAILED with dlq.error.code, its neighbours going through', async () => {
    const handler = handlerOf<Buffer | null>({
      input: 'raw',
      inputFormat: 'bytes',
      outputs: ['validated'],
      process: (inputs) =>
        inputs.map(({ source: s, value }) => {
          if (value?.toString() === 'poison') throw new TypeError('x is undefined');
          return emit(`e${s.offset}`, value?.toString());
        }),
    });
    const outputs = await handler([source(1, 'ok'), source(2, 'poison'), source(3, 'fine')]);
    assert.deepEqual(summary(outputs), [['p.validated "ok"'], ['p.dlq PROCESSING_FAILED'], ['p.validated "fine"']]);
    const letter = outputs[1]!.messages[0]!;
    assert.equal(letter.headers?.['dlq.error.code'], 'TypeError');
    assert.match(letter.headers?.['dlq.message'] ?? '', /defect in sluice/);
    assert.deepEqual(letter.value, Buffer.from('poison'));
    assert.equal(outputs[1]!.note.deadLetter?.reason, 'PROCESSING_FAILED');
  });

  it('dead-letters a record the stage returns no outcome for', async () => {
    const handler = handlerOf<Buffer | null>({
      input: 'raw',
      inputFormat: 'bytes',
      outputs: ['validated'],
      process: (inputs) => inputs.slice(0, 1).map(({ source: s }) => emit(`e${s.offset}`)),
    });
    const outputs = await handler([source(1), source(2)]);
    assert.deepEqual(summary(outputs), [['p.validated "e1"'], ['p.dlq OUTPUT_INVALID']]);
  });
});
