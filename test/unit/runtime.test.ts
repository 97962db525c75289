/** The runtime's pure parts: turning outcomes into a transaction's messages, and isolating poison records. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../lib/log.ts';
import { SluiceError } from '../../lib/errors.ts';
import { outgoingMessages, processIsolating, type StageDefinition, type StageInput } from '../../processors/runtime/runtime.ts';
import { deadLetter, type Outcome, type SourceRecord, type TopicSuffix } from '../../processors/runtime/types.ts';

const logger = createLogger({}, 'silent');

const source = (offset: number, value = `v${offset}`): SourceRecord => ({
  topic: 'p.raw',
  partition: 2,
  offset: String(offset),
  key: Buffer.from(`k${offset}`),
  value: Buffer.from(value),
  headers: {},
  timestampMs: 0,
});

const encoders = new Map<TopicSuffix, (value: unknown) => Buffer>([
  ['validated', (value) => Buffer.from(JSON.stringify(value))],
  [
    'review',
    () => {
      throw new Error('field decision: not a string');
    },
  ],
]);

describe('outgoingMessages', () => {
  it('encodes each output to <pipeline>.<suffix> under the input key', () => {
    const messages = outgoingMessages({
      pipeline: 'p',
      stage: 'validate',
      outcomes: [{ source: source(7), outcome: { kind: 'emit', eventId: 'e7', outputs: [{ to: 'validated', value: { a: 1 } }] } }],
      encoders,
      now: 1_000,
      logger,
    });
    assert.deepEqual(messages, [{ topic: 'p.validated', key: Buffer.from('k7'), value: Buffer.from('{"a":1}') }]);
  });

  it('dead-letters with the original bytes, the key and every contract header', () => {
    const [message] = outgoingMessages({
      pipeline: 'p',
      stage: 'validate',
      outcomes: [{ source: source(9, '\u0000raw bytes'), outcome: deadLetter('SCHEMA_VIOLATION', 'payload.plan: not allowed', 'e9') }],
      encoders,
      now: 1_234,
      logger,
    });
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
    });
  });

  it('dead-letters an output that breaks its contract, or goes where the stage may not write, and writes none of its outputs', () => {
    const messages = outgoingMessages({
      pipeline: 'p',
      stage: 'decide',
      outcomes: [
        {
          source: source(1),
          outcome: { kind: 'emit', eventId: 'e1', outputs: [{ to: 'validated', value: 1 }, { to: 'review', value: 2 }] },
        },
        { source: source(2), outcome: { kind: 'emit', eventId: 'e2', outputs: [{ to: 'decided', value: 3 }] } },
      ],
      encoders,
      now: 0,
      logger,
    });
    assert.deepEqual(
      messages.map((m) => [m.topic, m.headers?.['dlq.reason']]),
      [
        ['p.dlq', 'OUTPUT_INVALID'],
        ['p.dlq', 'OUTPUT_INVALID'],
      ],
    );
  });
});

describe('processIsolating', () => {
  const inputs: Array<StageInput<string>> = ['ok-1', 'poison', 'ok-2'].map((value, i) => ({ source: source(i), value }));
  const emit = (value: string): Outcome => ({ kind: 'emit', eventId: value, outputs: [{ to: 'validated', value }] });

  it('dead-letters only the record that makes the stage throw; its neighbours go through', async () => {
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
});
