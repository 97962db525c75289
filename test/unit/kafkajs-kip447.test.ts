/**
 * KIP-447 in sluice's kafkajs patch (patches/kafkajs+2.2.4.patch): a
 * transaction's offsets carry the consuming member's generation
 * (TxnOffsetCommit v3), and a fetch of committed offsets can wait for open
 * transactions (OffsetFetch v7 with require_stable). Both are flexible
 * versions, so these tests read and write the bytes with their own small
 * reader and writer of the Kafka protocol's types, independent of kafkajs's
 * Encoder and Decoder. test/integration/kafkajs-kip447.test.ts runs the same
 * on the real broker.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';

const require = createRequire(import.meta.url);
const createEosManager = require('kafkajs/src/producer/eosManager');
const { requests, lookup } = require('kafkajs/src/protocol/requests');
const apiKeys = require('kafkajs/src/protocol/requests/apiKeys');
const createRequest = require('kafkajs/src/protocol/request');
const txnOffsetCommitV3 = require('kafkajs/src/protocol/requests/txnOffsetCommit/v3/request');
const txnOffsetCommitV3Response = require('kafkajs/src/protocol/requests/txnOffsetCommit/v3/response');
const offsetFetchV7Response = require('kafkajs/src/protocol/requests/offsetFetch/v7/response');

/** Reads the Kafka protocol's types (https://kafka.apache.org/protocol#protocol_types) off a buffer. */
class Reader {
  buffer: Buffer;
  offset = 0;
  constructor(buffer: Buffer) {
    this.buffer = buffer;
  }
  int8(): number {
    return this.buffer.readInt8(this.offset++);
  }
  int16(): number {
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }
  int32(): number {
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  int64(): bigint {
    const value = this.buffer.readBigInt64BE(this.offset);
    this.offset += 8;
    return value;
  }
  uvarint(): number {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = this.buffer[this.offset++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  }
  /** STRING: an INT16 length, then the UTF-8 bytes. */
  string(): string {
    const length = this.int16();
    const value = this.buffer.toString('utf8', this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
  /** COMPACT_NULLABLE_STRING: length + 1 as an unsigned varint, 0 for null. */
  compactString(): string | null {
    const lengthPlusOne = this.uvarint();
    if (lengthPlusOne === 0) return null;
    const value = this.buffer.toString('utf8', this.offset, this.offset + lengthPlusOne - 1);
    this.offset += lengthPlusOne - 1;
    return value;
  }
  /** COMPACT_ARRAY: length + 1 as an unsigned varint, 0 for null. */
  compactArray<T>(item: () => T): T[] | null {
    const lengthPlusOne = this.uvarint();
    if (lengthPlusOne === 0) return null;
    return Array.from({ length: lengthPlusOne - 1 }, item);
  }
  /** A tagged-field section: the number of fields, then each field's tag, size and bytes. */
  taggedFields(): Array<{ tag: number; bytes: Buffer }> {
    return Array.from({ length: this.uvarint() }, () => {
      const tag = this.uvarint();
      const size = this.uvarint();
      const bytes = this.buffer.subarray(this.offset, this.offset + size);
      this.offset += size;
      return { tag, bytes };
    });
  }
  get remaining(): number {
    return this.buffer.length - this.offset;
  }
}

/** Writes the same types, to build the broker's responses. */
class Writer {
  chunks: Buffer[] = [];
  int16(value: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(value);
    this.chunks.push(b);
    return this;
  }
  int32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(value);
    this.chunks.push(b);
    return this;
  }
  int64(value: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(value);
    this.chunks.push(b);
    return this;
  }
  uvarint(value: number): this {
    const bytes: number[] = [];
    while (value >= 0x80) {
      bytes.push((value % 0x80) | 0x80);
      value = Math.floor(value / 0x80);
    }
    bytes.push(value);
    this.chunks.push(Buffer.from(bytes));
    return this;
  }
  compactString(value: string | null): this {
    if (value === null) return this.uvarint(0);
    const bytes = Buffer.from(value, 'utf8');
    this.uvarint(bytes.length + 1);
    this.chunks.push(bytes);
    return this;
  }
  compactArray<T>(items: T[], write: (writer: this, item: T) => void): this {
    this.uvarint(items.length + 1);
    for (const item of items) write(this, item);
    return this;
  }
  /** A tagged-field section with the given fields (a broker may add fields this client does not know). */
  taggedFields(fields: Array<{ tag: number; bytes: Buffer }> = []): this {
    this.uvarint(fields.length);
    for (const { tag, bytes } of fields) {
      this.uvarint(tag).uvarint(bytes.length);
      this.chunks.push(bytes);
    }
    return this;
  }
  get buffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** An unknown tagged field of 300 bytes: its size takes two varint bytes. */
const unknownField = { tag: 7, bytes: Buffer.alloc(300, 0xab) };

/** The versions the local broker (Apache Kafka 4.1) answers in ApiVersions. */
const KAFKA_4_VERSIONS = {
  [apiKeys.TxnOffsetCommit]: { minVersion: 0, maxVersion: 5 },
  [apiKeys.OffsetFetch]: { minVersion: 1, maxVersion: 9 },
};
/** Kafka 2.4: before KIP-447. */
const KAFKA_2_4_VERSIONS = {
  [apiKeys.TxnOffsetCommit]: { minVersion: 0, maxVersion: 2 },
  [apiKeys.OffsetFetch]: { minVersion: 0, maxVersion: 6 },
};

const offsets = [
  { topic: 'orders', partitions: [{ partition: 0, offset: '42' }, { partition: 3, offset: '9007199254740993', metadata: 'm' }] },
  { topic: 'refunds', partitions: [{ partition: 1, offset: '0' }] },
];
const commit = {
  transactionalId: 'sluice.tx',
  groupId: 'sluice.group',
  producerId: 4321,
  producerEpoch: 7,
  topics: offsets,
};

/** Reads a TxnOffsetCommit v3 request body as the spec lays it out (TxnOffsetCommitRequest.json, flexible from v3). */
function readTxnOffsetCommitV3(body: Buffer) {
  const r = new Reader(body);
  const headerTags = r.taggedFields(); // the end of request header v2
  const request = {
    transactionalId: r.compactString(),
    groupId: r.compactString(),
    producerId: r.int64(),
    producerEpoch: r.int16(),
    generationId: r.int32(),
    memberId: r.compactString(),
    groupInstanceId: r.compactString(),
    topics: r.compactArray(() => {
      const name = r.compactString();
      const partitions = r.compactArray(() => {
        const partition = { index: r.int32(), offset: r.int64(), leaderEpoch: r.int32(), metadata: r.compactString() };
        assert.deepEqual(r.taggedFields(), []);
        return partition;
      });
      assert.deepEqual(r.taggedFields(), []);
      return { name, partitions };
    }),
  };
  assert.deepEqual(r.taggedFields(), []);
  assert.equal(r.remaining, 0, 'nothing after the last tagged-field section');
  return { headerTags, request };
}

describe('kafkajs patch: TxnOffsetCommit v3 (KIP-447)', () => {
  it('is the version used with a Kafka 4 broker', () => {
    const { request } = lookup(KAFKA_4_VERSIONS)(apiKeys.TxnOffsetCommit, requests.TxnOffsetCommit)(commit);
    assert.equal(request.apiVersion, 3);
  });

  it('writes request header v2: v1 then an empty tagged-field section', async () => {
    const request = txnOffsetCommitV3({ ...commit, generationId: 5, memberId: 'member-1' });
    const framed = (await createRequest({ correlationId: 99, clientId: 'sluice', request })).buffer as Buffer;
    const r = new Reader(framed);
    assert.equal(r.int32(), framed.length - 4, 'size');
    assert.equal(r.int16(), 28, 'api key');
    assert.equal(r.int16(), 3, 'api version');
    assert.equal(r.int32(), 99, 'correlation id');
    assert.equal(r.string(), 'sluice', 'client id (a non-compact STRING even in header v2)');
    const { headerTags, request: body } = readTxnOffsetCommitV3(framed.subarray(r.offset));
    assert.deepEqual(headerTags, []);
    assert.equal(body.transactionalId, 'sluice.tx');
  });

  it('writes every field of the request in the order and types of the spec', async () => {
    const request = txnOffsetCommitV3({ ...commit, generationId: 300, memberId: 'consumer-1-ab', groupInstanceId: 'pod-0' });
    const { request: body } = readTxnOffsetCommitV3((await request.encode()).buffer);
    assert.deepEqual(body, {
      transactionalId: 'sluice.tx',
      groupId: 'sluice.group',
      producerId: 4321n,
      producerEpoch: 7,
      generationId: 300,
      memberId: 'consumer-1-ab',
      groupInstanceId: 'pod-0',
      topics: [
        {
          name: 'orders',
          partitions: [
            { index: 0, offset: 42n, leaderEpoch: -1, metadata: null },
            { index: 3, offset: 9007199254740993n, leaderEpoch: -1, metadata: 'm' },
          ],
        },
        { name: 'refunds', partitions: [{ index: 1, offset: 0n, leaderEpoch: -1, metadata: null }] },
      ],
    });
  });

  it('without group metadata sends generation -1, member "" and no instance id, which skip the generation check', async () => {
    const { request } = requests.TxnOffsetCommit.protocol({ version: 3 })(commit);
    const { request: body } = readTxnOffsetCommitV3((await request.encode()).buffer);
    assert.equal(body.generationId, -1);
    assert.equal(body.memberId, '');
    assert.equal(body.groupInstanceId, null);
  });

  it('decodes the response after skipping the tagged fields of response header v1, and throws the partition error', async () => {
    const partitions = [
      { index: 0, errorCode: 0 },
      { index: 3, errorCode: 22 }, // ILLEGAL_GENERATION
    ];
    const raw = new Writer()
      .taggedFields([unknownField]) // response header v1
      .int32(25) // throttle_time_ms
      .compactArray(['orders'], (w, name) =>
        w
          .compactString(name)
          .compactArray(partitions, (pw, p) => pw.int32(p.index).int16(p.errorCode).taggedFields())
          .taggedFields([unknownField]),
      )
      .taggedFields().buffer;
    const decoded = await txnOffsetCommitV3Response.decode(raw);
    assert.deepEqual(decoded, {
      throttleTime: 0,
      clientSideThrottleTime: 25,
      topics: [{ topic: 'orders', partitions: [{ partition: 0, errorCode: 0 }, { partition: 3, errorCode: 22 }] }],
    });
    await assert.rejects(txnOffsetCommitV3Response.parse(decoded), { type: 'ILLEGAL_GENERATION', retriable: false });
  });

  it('with a broker before Kafka 2.5 falls back to v1, and refuses group metadata it could not send', () => {
    const txnOffsetCommit = lookup(KAFKA_2_4_VERSIONS)(apiKeys.TxnOffsetCommit, requests.TxnOffsetCommit);
    assert.equal(txnOffsetCommit(commit).request.apiVersion, 1);
    assert.throws(() => txnOffsetCommit({ ...commit, generationId: 5, memberId: 'member-1' }), /needs TxnOffsetCommit v3/);
  });
});

describe('kafkajs patch: OffsetFetch v7 with require_stable (KIP-447)', () => {
  it('is used only when requireStable is asked for', () => {
    const plain = lookup(KAFKA_4_VERSIONS)(apiKeys.OffsetFetch, requests.OffsetFetch)({ groupId: 'g', topics: [] });
    assert.equal(plain.request.apiVersion, 4, 'every other fetch keeps the version kafkajs always used');
    const stable = lookup(KAFKA_4_VERSIONS)(apiKeys.OffsetFetch, requests.OffsetFetch.requireStable)({ groupId: 'g', topics: [] });
    assert.equal(stable.request.apiVersion, 7);
    assert.throws(() => lookup(KAFKA_2_4_VERSIONS)(apiKeys.OffsetFetch, requests.OffsetFetch.requireStable), /requireStable needs OffsetFetch v7/);
  });

  it('writes group, topics, partitions and require_stable in the order and types of the spec', async () => {
    const topics = [
      { topic: 'orders', partitions: [{ partition: 0 }, { partition: 2 }] },
      { topic: 'refunds', partitions: [{ partition: 1 }] },
    ];
    const { request } = requests.OffsetFetch.requireStable.protocol({ version: 9 })({ groupId: 'sluice.group', topics });
    const r = new Reader((await request.encode()).buffer);
    assert.deepEqual(r.taggedFields(), [], 'request header v2');
    assert.equal(r.compactString(), 'sluice.group');
    const decodedTopics = r.compactArray(() => {
      const name = r.compactString();
      const partitionIndexes = r.compactArray(() => r.int32());
      assert.deepEqual(r.taggedFields(), []);
      return { name, partitionIndexes };
    });
    assert.deepEqual(decodedTopics, [
      { name: 'orders', partitionIndexes: [0, 2] },
      { name: 'refunds', partitionIndexes: [1] },
    ]);
    assert.equal(r.int8(), 1, 'require_stable');
    assert.deepEqual(r.taggedFields(), []);
    assert.equal(r.remaining, 0);
  });

  it('asks for every topic of the group (a null array) when given none, as v3 and v4 do', async () => {
    const { request } = requests.OffsetFetch.requireStable.protocol({ version: 7 })({ groupId: 'g', topics: [] });
    const r = new Reader((await request.encode()).buffer);
    r.taggedFields();
    r.compactString();
    assert.equal(r.compactArray(() => r.int32()), null);
  });

  const fetchResponse = (partitionErrorCode: number, topErrorCode: number) =>
    new Writer()
      .taggedFields([unknownField]) // response header v1
      .int32(0)
      .compactArray(['orders'], (w, name) =>
        w
          .compactString(name)
          .compactArray([0, 1], (pw, index) =>
            pw
              .int32(index)
              .int64(index === 0 ? 9007199254740993n : -1n)
              .int32(index === 0 ? 4 : -1) // committed_leader_epoch
              .compactString(index === 0 ? 'meta' : null)
              .int16(index === 1 ? partitionErrorCode : 0)
              .taggedFields(index === 0 ? [unknownField] : []),
          )
          .taggedFields(),
      )
      .int16(topErrorCode)
      .taggedFields([unknownField]).buffer;

  it('decodes the response: offsets as strings, metadata, error codes', async () => {
    const decoded = await offsetFetchV7Response.decode(fetchResponse(0, 0));
    assert.deepEqual(decoded, {
      throttleTime: 0,
      clientSideThrottleTime: 0,
      errorCode: 0,
      responses: [
        {
          topic: 'orders',
          partitions: [
            { partition: 0, offset: '9007199254740993', metadata: 'meta', errorCode: 0 },
            { partition: 1, offset: '-1', metadata: null, errorCode: 0 },
          ],
        },
      ],
    });
    assert.deepEqual(await offsetFetchV7Response.parse(decoded), decoded);
  });

  it('throws UNSTABLE_OFFSET_COMMIT (88, retriable) at partition or top level', async () => {
    for (const [partitionError, topError] of [
      [88, 0],
      [0, 88],
    ] as const) {
      const decoded = await offsetFetchV7Response.decode(fetchResponse(partitionError, topError));
      await assert.rejects(offsetFetchV7Response.parse(decoded), { type: 'UNSTABLE_OFFSET_COMMIT', code: 88, retriable: true });
    }
  });
});

describe('kafkajs patch: sendOffsets with the consumer group metadata', () => {
  const TRANSACTION = 1;
  const GROUP = 0;
  const silent = { debug() {}, info() {}, warn() {}, error() {}, namespace: () => silent };
  const protocolError = (type: string) => Object.assign(new Error(type), { type, retriable: false });

  /** A one-broker cluster that records each TxnOffsetCommit and can answer the next one with an error. */
  function fakeCluster() {
    const lookups: Array<{ groupId: string; coordinatorType: number }> = [];
    const commits: Array<Record<string, unknown>> = [];
    const failNext: string[] = [];
    const ok = async () => ({});
    const broker = {
      nodeId: 1,
      initProducerId: async () => ({ producerId: 7, producerEpoch: 2 }),
      addPartitionsToTxn: ok,
      addOffsetsToTxn: ok,
      endTxn: ok,
      txnOffsetCommit: async (request: Record<string, unknown>) => {
        commits.push(request);
        const error = failNext.shift();
        if (error) throw protocolError(error);
        return {};
      },
    };
    const cluster = {
      retry: { retries: 5, initialRetryTime: 1, maxRetryTime: 2 },
      refreshMetadataIfNecessary: async () => {},
      findGroupCoordinator: async (args: { groupId: string; coordinatorType: number }) => {
        lookups.push(args);
        return broker;
      },
      findBroker: async () => broker,
    };
    return { cluster, lookups, commits, failNext };
  }

  const topics = [{ topic: 'in', partitions: [{ partition: 0, offset: '11' }] }];

  it('passes generation, member and instance id through to TxnOffsetCommit, and -1/""/null without them', async () => {
    const { cluster, commits } = fakeCluster();
    const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
    await eos.initProducerId();
    eos.beginTransaction();
    await eos.sendOffsets({ consumerGroupId: 'group', topics, consumerGroupMetadata: { generationId: 12, memberId: 'consumer-1-ab', groupInstanceId: 'pod-0' } });
    await eos.sendOffsets({ consumerGroupId: 'group', topics, consumerGroupMetadata: { generationId: 13, memberId: 'consumer-1-cd' } });
    await eos.sendOffsets({ consumerGroupId: 'group', topics });
    await eos.commit();
    assert.deepEqual(
      commits.map(({ generationId, memberId, groupInstanceId, groupId, producerId, producerEpoch }) => ({ generationId, memberId, groupInstanceId, groupId, producerId, producerEpoch })),
      [
        { generationId: 12, memberId: 'consumer-1-ab', groupInstanceId: 'pod-0', groupId: 'group', producerId: 7, producerEpoch: 2 },
        { generationId: 13, memberId: 'consumer-1-cd', groupInstanceId: null, groupId: 'group', producerId: 7, producerEpoch: 2 },
        { generationId: -1, memberId: '', groupInstanceId: null, groupId: 'group', producerId: 7, producerEpoch: 2 },
      ],
    );
  });

  for (const type of ['ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'FENCED_INSTANCE_ID', 'REBALANCE_IN_PROGRESS']) {
    it(`rejects at once with ${type}, the transaction can be aborted, and the coordinators stay known`, async () => {
      const { cluster, lookups, commits, failNext } = fakeCluster();
      const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
      await eos.initProducerId();
      eos.beginTransaction();
      failNext.push(type);
      const metadata = { generationId: 3, memberId: 'consumer-1-ab' };
      await assert.rejects(eos.sendOffsets({ consumerGroupId: 'group', topics, consumerGroupMetadata: metadata }), { type });
      assert.equal(commits.length, 1, 'not retried');
      await eos.abort();
      eos.beginTransaction();
      await eos.sendOffsets({ consumerGroupId: 'group', topics, consumerGroupMetadata: { ...metadata, generationId: 4 } });
      await eos.commit();
      assert.deepEqual(
        lookups.map((l) => l.coordinatorType),
        [TRANSACTION, GROUP],
        'a group error came from the right coordinator: no new lookup',
      );
    });
  }
});
