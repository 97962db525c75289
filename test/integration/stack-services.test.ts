/**
 * The foundation: the Kafka port, the registry client and the ClickHouse
 * client work against the real services of the local stack.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClickHouse, queryRows } from '../../connectors/clickhouse/client.ts';
import { kafkaSmoke, produceToMissingTopic } from '../../connectors/kafka/smoke.ts';
import { SchemaCatalog, framedEncoder } from '../../connectors/registry/registry.ts';
import { isSluiceError } from '../../lib/errors.ts';
import { connections, uniqueName } from '../helpers.ts';

describe('Kafka', () => {
  it('produces idempotently (acks=all) and in transactions, and consumes in a group: key and order kept, aborted records never read', async () => {
    const sent = Array.from({ length: 50 }, (_, i) => ({ key: `user-${i % 5}`, value: `event-${i}` }));
    // One key for both transactions: the aborted records sit before the committed ones in the same partition.
    const aborted = Array.from({ length: 5 }, (_, i) => ({ key: 'tx', value: `aborted-${i}` }));
    const committed = Array.from({ length: 5 }, (_, i) => ({ key: 'tx', value: `committed-${i}` }));
    const { topicCreated, received } = await kafkaSmoke({
      brokers: connections.kafkaBrokers,
      clientId: 'it-kafka',
      topic: uniqueName('it-kafka'),
      partitions: 2,
      groupId: uniqueName('it-group'),
      messages: sent,
      aborted,
      committed,
    });
    assert.equal(topicCreated, true);
    assert.equal(received.length, sent.length + committed.length, 'all 50 messages and the committed transaction consumed');
    const readable = [...sent, ...committed];
    for (const key of new Set(readable.map((m) => m.key))) {
      const inOrder = readable.filter((m) => m.key === key).map((m) => m.value);
      const got = received.filter((m) => m.key === key);
      assert.deepEqual(
        got.map((m) => m.value),
        inOrder,
        `order kept for ${key}`,
      );
      assert.equal(new Set(got.map((m) => m.partition)).size, 1, `one partition for key ${key}`);
    }
  });

  it('refuses to auto-create a topic on produce', async () => {
    const topic = uniqueName('it-nope');
    const { refused, topicExists } = await produceToMissingTopic(connections.kafkaBrokers, topic, 'it-kafka');
    assert.equal(refused, true, 'the send to a missing topic is refused');
    assert.equal(topicExists, false);
  });
});

describe('schema registry', () => {
  const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
  const v1 = {
    type: 'record',
    name: 'Probe',
    namespace: 'sluice.test',
    fields: [
      { name: 'id', type: 'string' },
      { name: 'at', type: { type: 'long', logicalType: 'timestamp-millis' } },
    ],
  };

  it('registers an Avro schema, then encodes and decodes in the wire format', async () => {
    const subject = `${uniqueName('it-registry')}-value`;
    const id = await catalog.register(subject, v1);
    assert.equal(await catalog.register(subject, v1), id, 're-registering the same schema returns the same id');
    const { id: latestId, type } = await catalog.latest(subject);
    assert.equal(latestId, id);
    const bytes = framedEncoder(id, type)({ id: 'e-1', at: 1_764_000_000_000 });
    assert.equal(bytes[0], 0, 'magic byte');
    assert.equal(bytes.readUInt32BE(1), id, 'schema id in the header');
    const decoded = catalog.decodeSync(bytes);
    assert.equal(decoded.kind, 'decoded');
    assert.deepEqual({ ...(decoded as { value: object }).value }, { id: 'e-1', at: 1_764_000_000_000 });
  });

  it('refuses an incompatible change under BACKWARD compatibility, and accepts a compatible one', async () => {
    const subject = `${uniqueName('it-registry')}-value`;
    await catalog.register(subject, v1);
    const breaking = { ...v1, fields: [...v1.fields, { name: 'country', type: 'string' }] };
    await assert.rejects(catalog.register(subject, breaking), (error) => {
      assert.ok(isSluiceError(error, 'SCHEMA_INCOMPATIBLE'), String(error));
      assert.match(error.message, new RegExp(subject));
      assert.match(error.message, /country/);
      return true;
    });
    const compatible = { ...v1, fields: [...v1.fields, { name: 'country', type: 'string', default: 'ZZ' }] };
    const id2 = await catalog.register(subject, compatible);
    assert.equal((await catalog.latest(subject)).id, id2);
  });

  it('picks up a schema registered after its id was found unknown', async () => {
    const fresh = new SchemaCatalog(connections.schemaRegistryUrl, { unknownIdTtlMs: 0 });
    // Content never registered before gets a new id; the registry hands them out in sequence.
    const unique = () => ({ ...v1, name: `Probe_${uniqueName('n').replaceAll('-', '_')}` });
    const first = await fresh.register(`${uniqueName('it-registry')}-value`, unique());
    assert.equal(await fresh.typeOf(first + 1), undefined, 'the next id is not taken yet');
    const next = await fresh.register(`${uniqueName('it-registry')}-value`, unique());
    assert.equal(next, first + 1, 'the registry handed out the next id');
    assert.ok(await fresh.typeOf(next), 'the id seen as unknown resolves once registered');
  });

  it('reports an id the registry does not know as unknown, not as an outage', async () => {
    const unknown = Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, 2, 0x41]);
    await catalog.prefetch([unknown]);
    assert.deepEqual(catalog.decodeSync(unknown), { kind: 'unknown-schema', schemaId: 0x7ffffff0 });
  });
});

describe('ClickHouse', () => {
  it('creates a table, inserts rows and reads them back', async () => {
    const client = createClickHouse({ url: connections.clickhouseUrl });
    const table = `default.${uniqueName('it_ch').replaceAll('-', '_')}`;
    try {
      await client.command({
        query: `CREATE TABLE ${table} (event_id String, score Float64, at DateTime) ENGINE = MergeTree ORDER BY event_id`,
      });
      await client.insert({
        table,
        format: 'JSONEachRow',
        values: [
          { event_id: 'b', score: 0.25, at: '2026-11-28 10:00:00' },
          { event_id: 'a', score: 0.75, at: '2026-11-28 10:00:01' },
        ],
      });
      const rows = await queryRows<{ event_id: string; score: number; at: string }>(
        client,
        `SELECT event_id, score, at FROM ${table} ORDER BY event_id`,
      );
      assert.deepEqual(rows, [
        { event_id: 'a', score: 0.75, at: '2026-11-28 10:00:01' },
        { event_id: 'b', score: 0.25, at: '2026-11-28 10:00:00' },
      ]);
    } finally {
      await client.command({ query: `DROP TABLE IF EXISTS ${table}` });
      await client.close();
    }
  });
});
