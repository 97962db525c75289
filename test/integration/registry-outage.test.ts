/**
 * A registry outage pauses what needs the registry and retries; it never turns
 * good records into dead letters. The registry is frozen (SIGSTOP: it accepts
 * connections and never answers, the nastiest kind of outage) while a raw
 * event framed with a schema id validate has not seen yet arrives.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { framedEncoder } from '../../connectors/registry/registry.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import { envelopeBytes, generateSignups } from '../../pipelines/signup-risk/generator.ts';
import type { DecisionRecord } from '../../pipelines/signup-risk/types.ts';
import { producerEnvelopeSchema } from '../fixtures.ts';
import { uniqueName, waitFor } from '../helpers.ts';
import { PipelineInstance } from '../pipeline-harness.ts';

const registryPid = () => Number(readFileSync(join(stackPaths().run, 'registry.pid'), 'utf8'));

describe('schema registry outage', () => {
  let instance: PipelineInstance | undefined;
  let frozen = false;
  after(async () => {
    if (frozen) process.kill(registryPid(), 'SIGCONT');
    await instance?.stop();
  });

  it('pauses and retries a record that needs the registry, then decides it; nothing is dead-lettered', async () => {
    instance = await PipelineInstance.create('it-registry');
    const pipeline = instance;
    const decided = await pipeline.collect<DecisionRecord>('decided');
    const dlq = await pipeline.collect<Buffer>('dlq', 'bytes');
    // The collector decodes decisions with ids resolved now, while the registry answers.
    await pipeline.catalog.latest(`${pipeline.topic('decided')}-value`);
    await pipeline.start();

    const prefix = uniqueName('outage');
    const rawId = await pipeline.catalog.register(`${pipeline.topic('raw')}-value`, producerEnvelopeSchema('producer.outage'));
    const avroId = `${prefix}-avro`;
    const avroValue = framedEncoder(rawId, (await pipeline.catalog.typeOf(rawId))!)({
      event_id: avroId,
      event_type: 'user_signed_up',
      occurred_at: Date.now(),
      source: 'avro-producer',
      payload: { user_id: 'u-avro', email: 'avro@example.com', country: 'FR', signup_channel: 'ios', plan: 'free' },
    });
    const json = [...generateSignups({ seed: 3, count: 60, startMs: Date.now(), idPrefix: prefix })];

    process.kill(registryPid(), 'SIGSTOP');
    frozen = true;
    await pipeline.produce([
      { key: avroId, value: avroValue },
      ...json.map((event) => ({ key: event.key, value: envelopeBytes(event.envelope) })),
    ]);
    // validate cannot resolve the id: its registry call times out and the chunk is retried.
    const log = join(stackPaths().logs, 'tests', `${pipeline.name}.validate.log`);
    await waitFor('validate to report the registry outage and retry', () => readFileSync(log, 'utf8').includes('REGISTRY_UNAVAILABLE'), {
      timeoutMs: 60_000,
      intervalMs: 250,
    });
    assert.equal(decided.messages.some((m) => m.value.event_id === avroId), false, 'not decided while the registry is down');
    assert.equal(dlq.messages.length, 0, 'nothing dead-lettered during the outage');

    process.kill(registryPid(), 'SIGCONT');
    frozen = false;
    const ids = new Set([avroId, ...json.map((e) => e.envelope.event_id)]);
    await decided.until('every event decided after the registry is back', (ms) => ms.filter((m) => ids.has(m.value.event_id)).length >= ids.size, 90_000);
    const decisions = decided.messages.filter((m) => ids.has(m.value.event_id));
    assert.equal(decisions.length, ids.size, 'exactly one decision per event');
    assert.equal(dlq.messages.length, 0, 'still nothing dead-lettered');
  });
});
