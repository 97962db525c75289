/**
 * The framed encoder writes Confluent's wire format (magic byte, schema id,
 * Avro body) byte for byte as the registry client's own encoder does, for
 * values small and larger than its scratch buffer, and the decoder reads back
 * what it wrote.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { encode as wireEncode } from '@kafkajs/confluent-schema-registry/dist/wireEncoder.js';
import avsc from 'avsc';
import { decodeFramed, framedEncoder } from '../../connectors/registry/registry.ts';

const type = avsc.Type.forSchema({
  type: 'record',
  name: 'Sample',
  fields: [
    { name: 'text', type: 'string' },
    { name: 'count', type: ['null', 'long'], default: null },
  ],
});

it('writes what the registry client writes, growing its scratch buffer for large values', () => {
  const encode = framedEncoder(305_419_896, type);
  // Larger than the scratch buffer, then small again: a grown buffer must not leak old bytes.
  for (const length of [0, 7, 16_370, 16_400, 250_000, 3]) {
    const value = { text: 'é'.repeat(length), count: length % 2 === 0 ? length : null };
    const framed = encode(value);
    assert.deepEqual(framed, wireEncode(305_419_896, type.toBuffer(value)), `length ${length}`);
    const decoded = decodeFramed(framed, () => type);
    assert.equal(decoded.kind, 'decoded');
    assert.deepEqual({ ...(decoded as { value: object }).value }, value);
  }
});
