/**
 * The co-located chain (`sluice run all`) writes, record for record, what the
 * three independent stages write, for every pipeline; a later stage's dead
 * letter names the raw record the process consumed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deadLetter, type SourceRecord, topicName } from '../../lib/contracts.ts';
import { listPipelines } from '../../pipelines/registry.ts';
import { chainHandlers } from '../../processors/runtime/colocated.ts';
import type { StageHandler } from '../../processors/runtime/stage.ts';
import { PipelineDriver } from '../driver.ts';

const TOPICS = ['validated', 'scored', 'decided', 'review', 'dlq'] as const;

describe('co-located chain', () => {
  for (const plugin of listPipelines()) {
    it(`${plugin.kind}: the same messages on every topic as the independent stages`, async () => {
      const driver = await PipelineDriver.create(plugin.kind);
      try {
        const events = [...plugin.generator.events({ seed: 11, count: 120, startMs: driver.clockMs, idPrefix: 'colo' })];
        const bad = plugin.generator.malformed({ maxMessageBytes: plugin.maxMessageBytes, idPrefix: 'colo' });
        const raw = [...events.slice(0, 60), ...bad, ...events.slice(60)].map(({ key, value }) => ({ key, value }));
        const independent = await driver.pipe(raw);
        const colocated = await driver.pipeColocated(raw);
        for (const topic of TOPICS) {
          const strip = (messages: typeof independent.dlq) => messages.map(({ key, value, headers }) => ({ key, value, headers: { ...headers, 'dlq.source.offset': undefined } }));
          assert.deepEqual(strip(colocated[topic]), strip(independent[topic]), `${topic}: same messages`);
        }
        assert.equal(colocated.decided.length, events.length);
        assert.equal(colocated.dlq.length, bad.length);
      } finally {
        await driver.close();
      }
    });
  }

  it('dead-letters a record a later stage refuses under the raw record it came from, and stops its chain there', async () => {
    const pipeline = 'p';
    const passOn = (to: 'validated' | 'scored' | 'decided'): StageHandler => async (records) =>
      records.map((r) => ({ messages: [{ topic: topicName(pipeline, to), key: r.key, value: Buffer.concat([r.value!, Buffer.from(`>${to}`)]) }], note: { eventId: r.key?.toString() } }));
    const refuseSecond: StageHandler = async (records) =>
      records.map((r, i) =>
        i === 1
          ? { messages: [{ topic: topicName(pipeline, 'dlq'), key: r.key, value: r.value! }], note: { deadLetter: deadLetter('OUTPUT_INVALID', 'no') } }
          : { messages: [{ topic: topicName(pipeline, 'scored'), key: r.key, value: r.value! }], note: {} },
      );
    let decideSaw = 0;
    const decide: StageHandler = async (records) => {
      decideSaw += records.length;
      return passOn('decided')(records);
    };
    const chain = chainHandlers(
      pipeline,
      [
        { stage: 'validate', input: 'raw', handler: passOn('validated') },
        { stage: 'score', input: 'validated', handler: refuseSecond },
        { stage: 'decide', input: 'scored', handler: decide },
      ],
      () => 1_000,
    );
    const raw: SourceRecord[] = ['a', 'b', 'c'].map((key, i) => ({
      topic: topicName(pipeline, 'raw'),
      partition: 2,
      offset: String(40 + i),
      key: Buffer.from(key),
      value: Buffer.from(key),
      headers: {},
      timestampMs: 0,
    }));
    const outputs = await chain(raw);
    assert.equal(decideSaw, 2, 'the refused record goes no further');
    assert.deepEqual(
      outputs.map((o) => o.messages.map((m) => m.topic.slice(2))),
      [['validated', 'scored', 'decided'], ['validated', 'dlq'], ['validated', 'scored', 'decided']],
    );
    const letter = outputs[1]!.messages[1]!;
    assert.equal(letter.value.toString(), 'b', 'the raw bytes, as consumed');
    assert.equal(letter.headers?.['dlq.stage'], 'score');
    assert.equal(letter.headers?.['dlq.source.topic'], 'p.raw');
    assert.equal(letter.headers?.['dlq.source.offset'], '41');
    assert.equal(outputs[1]!.note.deadLetter?.reason, 'OUTPUT_INVALID');
  });
});
