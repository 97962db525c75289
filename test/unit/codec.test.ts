/**
 * The framed encoder writes Confluent's wire format (magic byte, schema id,
 * Avro body) byte for byte as the registry client's own encoder does, for
 * values small and larger than its scratch buffer, and the decoder reads back
 * what it wrote, skipping the fields a reader never uses when asked to.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encode as wireEncode } from '@kafkajs/confluent-schema-registry/dist/wireEncoder.js';
import avsc from 'avsc';
import { avroType, decodeFramed, framedEncoder } from '../../connectors/registry/registry.ts';

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

describe('reading a record without the fields a reader skips', () => {
  const writer = avsc.Type.forSchema({
    type: 'record',
    name: 'Scored',
    namespace: 'sluice.test',
    fields: [
      { name: 'event_id', type: 'string' },
      { name: 'feature_names', type: { type: 'array', items: 'string' }, default: [] },
      { name: 'score', type: ['null', 'double'], default: null },
      { name: 'feature_values', type: { type: 'array', items: 'double' }, default: [] },
      { name: 'scored_at', type: 'long' },
    ],
  });
  const record = { event_id: 'evt-7', feature_names: ['age', 'ünïcode', ''], score: 0.25, feature_values: [1.5, -2, 3e300], scored_at: 1_767_225_200_000 };
  const framed = framedEncoder(12, writer)(record);
  const skipped = ['feature_names', 'feature_values'] as const;

  it('steps over the skipped fields\' bytes and reads every field after them as a whole decode does', () => {
    const decoded = decodeFramed(framed, () => writer, skipped);
    assert.equal(decoded.kind, 'decoded');
    assert.deepEqual({ ...(decoded as { value: object }).value }, { event_id: 'evt-7', score: 0.25, scored_at: 1_767_225_200_000 });
    const whole = decodeFramed(framed, () => writer);
    assert.deepEqual({ ...(whole as { value: object }).value }, record);
  });

  it('reads a writer that has none of the skipped fields whole', () => {
    const plain = avsc.Type.forSchema({ type: 'record', name: 'Plain', fields: [{ name: 'event_id', type: 'string' }] });
    const decoded = decodeFramed(framedEncoder(13, plain)({ event_id: 'evt-8' }), () => plain, skipped);
    assert.deepEqual({ ...(decoded as { value: object }).value }, { event_id: 'evt-8' });
  });

  it('reads whole a writer whose other fields use a type defined only inside a skipped field', () => {
    const nested = avsc.Type.forSchema({
      type: 'record',
      name: 'Outer',
      fields: [
        { name: 'feature_names', type: { type: 'record', name: 'Inner', fields: [{ name: 'n', type: 'int' }] } },
        { name: 'other', type: 'Inner' },
      ],
    });
    const value = { feature_names: { n: 1 }, other: { n: 2 } };
    const decoded = decodeFramed(framedEncoder(14, nested)(value), () => nested, skipped);
    assert.equal(decoded.kind, 'decoded');
    assert.deepEqual(JSON.parse(JSON.stringify((decoded as { value: object }).value)), value);
  });

  it('still refuses a truncated record as undecodable', () => {
    for (const cut of [1, 9, framed.length - 6]) {
      const decoded = decodeFramed(framed.subarray(0, framed.length - cut), () => writer, skipped);
      assert.equal(decoded.kind, 'undecodable', `${cut} bytes cut`);
    }
  });
});

describe('a frozen array of strings, written once and copied after', () => {
  const scoredLike = avroType({
    type: 'record',
    name: 'ScoredLike',
    fields: [
      { name: 'id', type: 'string' },
      { name: 'feature_names', type: { type: 'array', items: 'string' } },
      { name: 'class_names', type: { type: 'array', items: { type: 'string' } } },
      { name: 'n', type: 'int' },
    ],
  });
  const plain = avsc.Type.forSchema(scoredLike.schema() as avsc.Schema);

  it('writes the bytes avsc writes for the same array unfrozen, the first time and every time after, in every way a value is encoded', () => {
    for (const names of [[], ['a'], ['bé', 'c'.repeat(300), ''], Array.from({ length: 500 }, (_, i) => `feature_${i}`)]) {
      const frozen = Object.freeze([...names]);
      const value = (n: number) => ({ id: `e-${n}`, feature_names: frozen, class_names: frozen, n });
      const expected = (n: number) => plain.toBuffer({ id: `e-${n}`, feature_names: [...names], class_names: [...names], n });
      // toBuffer first: the first write of a frozen array must not disturb the buffer avsc is writing the record into.
      assert.deepEqual(scoredLike.toBuffer(value(1)), expected(1), `${names.length} names, toBuffer`);
      assert.deepEqual(scoredLike.toBuffer(value(2)), expected(2), `${names.length} names, toBuffer again`);
      const encode = framedEncoder(9, scoredLike);
      assert.deepEqual(encode(value(3)), wireEncode(9, expected(3)), `${names.length} names, framed`);
      const decoded = decodeFramed(encode(value(4)), () => scoredLike);
      assert.equal(decoded.kind, 'decoded');
      assert.deepEqual((decoded as { value: { feature_names: string[] } }).value.feature_names, names);
    }
  });

  it('reads a frozen array\'s items once, however many records carry it; an unfrozen one every time', () => {
    const counted = (names: string[]) => {
      const reads = { count: 0 };
      const proxy = new Proxy(names, {
        get(target, key, receiver) {
          if (typeof key === 'string' && /^\d+$/.test(key)) reads.count++;
          return Reflect.get(target, key, receiver);
        },
      });
      return { proxy, reads };
    };
    const frozen = counted(Object.freeze(['a', 'b', 'c']) as string[]);
    const unfrozen = counted(['a', 'b', 'c']);
    for (let n = 0; n < 10; n++) {
      scoredLike.toBuffer({ id: 'e', feature_names: frozen.proxy, class_names: [], n });
      scoredLike.toBuffer({ id: 'e', feature_names: unfrozen.proxy, class_names: [], n });
    }
    assert.equal(frozen.reads.count, 3, 'the frozen array\'s three items, read for its first record only');
    assert.equal(unfrozen.reads.count, 30);
  });

  it('refuses a frozen array that is not all strings, as it refuses any other', () => {
    for (const bad of [Object.freeze([1, 2]), Object.freeze(['a', null])]) {
      assert.throws(() => scoredLike.toBuffer({ id: 'e', feature_names: bad, class_names: [], n: 1 }), /invalid "string"/);
    }
  });
});
