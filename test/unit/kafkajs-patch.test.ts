/**
 * sluice patches kafkajs 2.2.4 at install (patches/kafkajs+2.2.4.patch): a
 * transactional producer remembers its coordinators instead of sending a
 * FindCoordinator request before each of a transaction's four coordinator
 * requests, and forgets them when a request to one fails; it sends a
 * transaction's adds one at a time, retrying CONCURRENT_TRANSACTIONS itself,
 * and adds offsets after the partitions of a send announced before them;
 * where the cluster has KIP-890's transactions v2, it sends no adds at all
 * (Produce v12 and TxnOffsetCommit v5 add their partitions), retries a
 * TxnOffsetCommit's error 14 in turn as it retries CONCURRENT_TRANSACTIONS
 * (the group coordinator's answer for its add's), and takes the epoch each
 * EndTxn v5 bumps; and
 * a batch is grouped per partition in one pass; murmur2 (the partitioner)
 * runs in 32-bit integers, and the partitioner looks for partitions with a
 * leader only for a message without a key or a partition; record batches' CRC-32C is native; and records
 * are encoded without a buffer per varint, a Long per timestamp delta or an
 * encoder per header (an uncompressed batch in one pass, into one buffer of
 * its size), and decoded without a Long per offset or timestamp; a
 * request's large buffers (its record batches) are kept by reference and
 * copied once, when the request is written, instead of at every level; a
 * consumer whose coordinator is loading the group joins again instead of
 * fetching as a member that never synced; a connection's request queue arms
 * a timer only while requests wait. These tests drive the patched modules
 * themselves; test/integration/kafkajs-patch.test.ts counts the requests on
 * the real broker, and checks there that a new admin client reads the
 * cluster's metadata before its first coordinator lookup.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { createRng } from '../../lib/prng.ts';

const require = createRequire(import.meta.url);
const createEosManager = require('kafkajs/src/producer/eosManager');
const groupMessagesPerPartition = require('kafkajs/src/producer/groupMessagesPerPartition');
const murmur2: (key: Buffer | string) => number = require('kafkajs/src/producer/partitioners/default/murmur2');
const Encoder = require('kafkajs/src/protocol/encoder');
const Decoder = require('kafkajs/src/protocol/decoder');
const Record = require('kafkajs/src/protocol/recordBatch/record/v0');
const { RecordBatch, encodeRecordBatch } = require('kafkajs/src/protocol/recordBatch/v0');
const decodeRecordBatch = require('kafkajs/src/protocol/recordBatch/v0/decoder');
const crc32C: ((buffer: Buffer) => number) & { javascript: (buffer: Buffer) => number; native: boolean } = require('kafkajs/src/protocol/recordBatch/crc32C');
const ConsumerGroup = require('kafkajs/src/consumer/consumerGroup');
const { MemberAssignment } = require('kafkajs/src/consumer/assignerProtocol');
const InstrumentationEventEmitter = require('kafkajs/src/instrumentation/emitter');
const { KafkaJSProtocolError } = require('kafkajs/src/errors');
const { createErrorFromCode } = require('kafkajs/src/protocol/error');
const RequestQueue = require('kafkajs/src/network/requestQueue');

const TRANSACTION = 1;
const GROUP = 0;
const notCoordinator = () => Object.assign(new Error('This is not the correct coordinator for this group'), { type: 'NOT_COORDINATOR', retriable: true });

const protocolError = (type: string) => Object.assign(new Error(type), { type, retriable: true });

/**
 * A cluster of one broker whose requests are recorded; `failNext` makes the
 * next request of an API fail once with NOT_COORDINATOR, `answers` queues
 * other protocol errors per API, and `holds` keeps an API's requests
 * unanswered until released. `inFlight` records, at each request, how many
 * adds (AddPartitionsToTxn, AddOffsetsToTxn) were unanswered with it, and
 * `calls` each request's arguments. With `transactionsV2`, the broker says the
 * cluster has KIP-890's transactions v2, and each EndTxn answers with the
 * producer's next epoch.
 */
function fakeCluster({ transactionsV2 = false } = {}) {
  const lookups: Array<{ groupId: string; coordinatorType: number }> = [];
  const requests: string[] = [];
  const failNext = new Set<string>();
  const answers = new Map<string, string[]>();
  const holds = new Map<string, Promise<void>>();
  const addsInFlight = { now: 0, most: 0 };
  const calls: Array<{ api: string; args: Record<string, unknown> }> = [];
  const request = (api: string, response: unknown | ((args: Record<string, unknown>) => unknown) = {}) => async (args: Record<string, unknown> = {}) => {
    requests.push(api);
    calls.push({ api, args });
    const add = api === 'AddPartitionsToTxn' || api === 'AddOffsetsToTxn';
    if (add) addsInFlight.most = Math.max(addsInFlight.most, ++addsInFlight.now);
    try {
      await holds.get(api);
      if (failNext.delete(api)) throw notCoordinator();
      const type = answers.get(api)?.shift();
      if (type !== undefined) throw protocolError(type);
      return typeof response === 'function' ? response(args) : response;
    } finally {
      if (add) addsInFlight.now--;
    }
  };
  const broker = {
    nodeId: 1,
    initProducerId: request('InitProducerId', { producerId: 7, producerEpoch: 0 }),
    addPartitionsToTxn: request('AddPartitionsToTxn'),
    addOffsetsToTxn: request('AddOffsetsToTxn'),
    txnOffsetCommit: request('TxnOffsetCommit'),
    endTxn: request('EndTxn', (args: Record<string, unknown>) => (transactionsV2 ? { producerId: '7', producerEpoch: Number(args['producerEpoch']) + 1 } : {})),
    supportsTransactionsV2: () => transactionsV2,
  };
  const cluster = {
    retry: { retries: 2, initialRetryTime: 1, maxRetryTime: 2 },
    refreshMetadataIfNecessary: async () => {},
    findGroupCoordinator: async (args: { groupId: string; coordinatorType: number }) => {
      lookups.push(args);
      return broker;
    },
    findBroker: async ({ nodeId }: { nodeId: number }) => {
      assert.equal(nodeId, 1);
      return broker;
    },
  };
  return { cluster, lookups, requests, calls, failNext, answers, holds, addsInFlight };
}

const silent = { debug() {}, info() {}, warn() {}, error() {}, namespace: () => silent };

async function transaction(eos: ReturnType<typeof createEosManager>): Promise<void> {
  eos.beginTransaction();
  await eos.addPartitionsToTransaction([{ topic: 'out', partitions: [{ partition: 0 }] }]);
  await eos.sendOffsets({ consumerGroupId: 'group', topics: [{ topic: 'in', partitions: [{ partition: 0, offset: '1' }] }] });
  await eos.commit();
}

describe('kafkajs patch: coordinators remembered per transactional producer', () => {
  it('looks each coordinator up once for any number of transactions', async () => {
    const { cluster, lookups, requests } = fakeCluster();
    const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
    await eos.initProducerId();
    for (let i = 0; i < 3; i++) await transaction(eos);
    assert.deepEqual(lookups, [
      { groupId: 'tx', coordinatorType: TRANSACTION },
      { groupId: 'group', coordinatorType: GROUP },
    ]);
    assert.equal(requests.filter((r) => r === 'EndTxn').length, 3);
  });

  it('looks the transaction coordinator up again after a request to it fails with NOT_COORDINATOR', async () => {
    const { cluster, lookups, failNext } = fakeCluster();
    const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
    await eos.initProducerId();
    await transaction(eos);
    const transactionLookups = () => lookups.filter((l) => l.coordinatorType === TRANSACTION).length;
    eos.beginTransaction();
    const partitions = [{ topic: 'out', partitions: [{ partition: 1 }] }];
    failNext.add('AddPartitionsToTxn');
    await assert.rejects(eos.addPartitionsToTransaction(partitions), /not the correct coordinator/);
    await eos.addPartitionsToTransaction(partitions); // the producer's retry
    assert.equal(transactionLookups(), 2, 'looked up again after AddPartitionsToTxn failed');
    failNext.add('AddOffsetsToTxn');
    const offsets = { consumerGroupId: 'group', topics: [{ topic: 'in', partitions: [{ partition: 0, offset: '2' }] }] };
    await assert.rejects(eos.sendOffsets(offsets), /not the correct coordinator/);
    await eos.sendOffsets(offsets);
    assert.equal(transactionLookups(), 3, 'looked up again after AddOffsetsToTxn failed');
    await eos.commit();
  });

  it('retries TxnOffsetCommit on NOT_COORDINATOR with a fresh lookup of the group coordinator', async () => {
    const { cluster, lookups, failNext } = fakeCluster();
    const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
    await eos.initProducerId();
    await transaction(eos);
    failNext.add('TxnOffsetCommit');
    await transaction(eos);
    assert.equal(lookups.filter((l) => l.coordinatorType === GROUP).length, 2, 'the group coordinator looked up again, once');
  });
});

/** A promise and the function that resolves it. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe('kafkajs patch: a transaction\'s adds, one at a time', () => {
  const offsets = (offset: string) => ({ consumerGroupId: 'group', topics: [{ topic: 'in', partitions: [{ partition: 0, offset }] }] });
  const partitions = [{ topic: 'out', partitions: [{ partition: 0 }] }];

  it('adds the offsets after the partitions of a send announced before them, and never two adds at once', async () => {
    const { cluster, requests, holds, addsInFlight } = fakeCluster();
    const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
    await eos.initProducerId();
    eos.beginTransaction();
    const partitionsAnswered = gate();
    holds.set('AddPartitionsToTxn', partitionsAnswered.promise);
    // As a transaction's sendBatch then sendOffsets do: the send announces itself, then reaches its add later.
    eos.announceSend();
    const offsetsSent = eos.sendOffsets(offsets('1'));
    await new Promise((resolve) => setImmediate(resolve));
    const partitionsAdded = eos.addPartitionsToTransaction(partitions);
    // A second add meanwhile (another broker's share of the batch, say) waits for the first's answer.
    const morePartitionsAdded = eos.addPartitionsToTransaction([{ topic: 'out', partitions: [{ partition: 1 }] }]);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(requests.slice(1), ['AddPartitionsToTxn'], 'the offsets wait for the announced send, the second add for the first');
    partitionsAnswered.open();
    await Promise.all([partitionsAdded, morePartitionsAdded, offsetsSent]);
    await eos.commit();
    assert.deepEqual(requests.slice(1), ['AddPartitionsToTxn', 'AddPartitionsToTxn', 'AddOffsetsToTxn', 'TxnOffsetCommit', 'EndTxn']);
    assert.equal(addsInFlight.most, 1);
  });

  it('sends the offsets at once when the announced send ended without adding partitions', async () => {
    const { cluster, requests } = fakeCluster();
    const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
    await eos.initProducerId();
    eos.beginTransaction();
    const settle = eos.announceSend();
    const offsetsSent = eos.sendOffsets(offsets('1'));
    settle(); // the send failed before its add, say on metadata
    await offsetsSent;
    await eos.commit();
    assert.deepEqual(requests.slice(1), ['AddOffsetsToTxn', 'TxnOffsetCommit', 'EndTxn']);
  });

  it('retries an add answered CONCURRENT_TRANSACTIONS itself, while the previous commit\'s markers are written', async () => {
    const { cluster, requests, answers } = fakeCluster();
    const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
    await eos.initProducerId();
    eos.beginTransaction();
    answers.set('AddPartitionsToTxn', ['CONCURRENT_TRANSACTIONS', 'CONCURRENT_TRANSACTIONS']);
    answers.set('AddOffsetsToTxn', ['CONCURRENT_TRANSACTIONS']);
    await eos.addPartitionsToTransaction(partitions);
    await eos.sendOffsets(offsets('1'));
    await eos.commit();
    assert.deepEqual(requests.slice(1), ['AddPartitionsToTxn', 'AddPartitionsToTxn', 'AddPartitionsToTxn', 'AddOffsetsToTxn', 'AddOffsetsToTxn', 'TxnOffsetCommit', 'EndTxn']);
  });

  it('hands CONCURRENT_TRANSACTIONS to the caller after ten retries of one add', async () => {
    const { cluster, requests, answers } = fakeCluster();
    const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
    await eos.initProducerId();
    eos.beginTransaction();
    answers.set('AddPartitionsToTxn', Array.from({ length: 12 }, () => 'CONCURRENT_TRANSACTIONS'));
    await assert.rejects(eos.addPartitionsToTransaction(partitions), (error: { type?: string }) => error.type === 'CONCURRENT_TRANSACTIONS');
    assert.equal(requests.filter((r) => r === 'AddPartitionsToTxn').length, 11);
    // The next add is not stuck behind the failed one.
    await eos.addPartitionsToTransaction(partitions);
    await eos.abort();
  });

  it('retries TxnOffsetCommit while the group coordinator is still loading the group (error code 14)', async () => {
    const { cluster, requests, answers } = fakeCluster();
    const eos = createEosManager({ logger: silent, cluster, transactional: true, transactionalId: 'tx', idempotent: true });
    await eos.initProducerId();
    eos.beginTransaction();
    answers.set('TxnOffsetCommit', ['GROUP_LOAD_IN_PROGRESS']);
    await eos.sendOffsets(offsets('1'));
    await eos.commit();
    assert.equal(requests.filter((r) => r === 'TxnOffsetCommit').length, 2);
  });
});

describe('kafkajs patch: transactions v2 (KIP-890) when the cluster has them', () => {
  const offsets = (offset: string) => ({ consumerGroupId: 'group', topics: [{ topic: 'in', partitions: [{ partition: 0, offset }] }] });
  const open = async (options: { cluster: boolean; producer: boolean }) => {
    const fake = fakeCluster({ transactionsV2: options.cluster });
    const eos = createEosManager({ logger: silent, cluster: fake.cluster, transactional: true, transactionalId: 'tx', idempotent: true, transactionsV2: options.producer });
    await eos.initProducerId();
    return { ...fake, eos };
  };

  it('sends no adds, asks for the v2 requests, and begins each transaction at the epoch the last EndTxn gave, sequences from 0', async () => {
    const { eos, requests, calls } = await open({ cluster: true, producer: true });
    assert.equal(eos.isTransactionsV2(), true);
    for (let i = 0; i < 3; i++) {
      assert.equal(eos.getProducerEpoch(), i);
      eos.beginTransaction();
      await eos.addPartitionsToTransaction([{ topic: 'out', partitions: [{ partition: 0 }] }]);
      assert.equal(eos.getSequence('out', 0), 0, 'a new epoch starts the sequences again');
      eos.updateSequence('out', 0, 5); // what a Produce of five records does
      await eos.sendOffsets(offsets(String(i + 1)));
      await eos.commit();
    }
    assert.deepEqual(requests.slice(1), ['TxnOffsetCommit', 'EndTxn', 'TxnOffsetCommit', 'EndTxn', 'TxnOffsetCommit', 'EndTxn']);
    assert.ok(calls.filter((c) => c.api === 'TxnOffsetCommit' || c.api === 'EndTxn').every((c) => c.args['transactionsV2'] === true));
    assert.deepEqual(calls.filter((c) => c.api === 'EndTxn').map((c) => c.args['producerEpoch']), [0, 1, 2]);
    assert.equal(eos.getProducerEpoch(), 3);
  });

  it('ends an aborted transaction with EndTxn v5 too, and takes its epoch', async () => {
    const { eos, calls } = await open({ cluster: true, producer: true });
    eos.beginTransaction();
    await eos.addPartitionsToTransaction([{ topic: 'out', partitions: [{ partition: 0 }] }]);
    await eos.abort();
    assert.deepEqual(calls.filter((c) => c.api === 'EndTxn').map((c) => [c.args['transactionResult'], c.args['transactionsV2']]), [[false, true]]);
    assert.equal(eos.getProducerEpoch(), 1);
  });

  it('retries a TxnOffsetCommit answered CONCURRENT_TRANSACTIONS itself: under v2 it is the add', async () => {
    const { eos, requests, answers } = await open({ cluster: true, producer: true });
    eos.beginTransaction();
    answers.set('TxnOffsetCommit', ['CONCURRENT_TRANSACTIONS', 'CONCURRENT_TRANSACTIONS']);
    await eos.sendOffsets(offsets('1'));
    await eos.commit();
    assert.deepEqual(requests.slice(1), ['TxnOffsetCommit', 'TxnOffsetCommit', 'TxnOffsetCommit', 'EndTxn']);
  });

  it('retries a TxnOffsetCommit answered error 14 in turn as well (under v2, the group coordinator\'s answer for its add\'s CONCURRENT_TRANSACTIONS), then leaves a coordinator still loading to the caller\'s retrier', async () => {
    const refused = async (refusals: number) => {
      const { eos, requests, answers } = await open({ cluster: true, producer: true });
      eos.beginTransaction();
      answers.set('TxnOffsetCommit', Array(refusals).fill('GROUP_LOAD_IN_PROGRESS'));
      return { eos, requests };
    };
    // Four refusals: more than the caller's retrier (two retries here) would take, fewer than the add's own eleven attempts.
    const brief = await refused(4);
    await brief.eos.sendOffsets(offsets('1'));
    await brief.eos.commit();
    assert.deepEqual(brief.requests.slice(1), [...Array(5).fill('TxnOffsetCommit'), 'EndTxn']);
    // A coordinator that keeps refusing: eleven attempts in turn at each of the retrier's three tries, then the caller hears of it.
    const loading = await refused(40);
    await assert.rejects(loading.eos.sendOffsets(offsets('1')), (error: { cause?: { type?: string } }) => error.cause?.type === 'GROUP_LOAD_IN_PROGRESS');
    assert.deepEqual(loading.requests.slice(1), Array(33).fill('TxnOffsetCommit'));
  });

  it('keeps to v1 when the cluster lacks them or the producer opts out', async () => {
    for (const options of [{ cluster: false, producer: true }, { cluster: true, producer: false }]) {
      const { eos, requests } = await open(options);
      assert.equal(eos.isTransactionsV2(), false);
      await transaction(eos);
      assert.deepEqual(requests.slice(1), ['AddPartitionsToTxn', 'AddOffsetsToTxn', 'TxnOffsetCommit', 'EndTxn'], JSON.stringify(options));
      assert.equal(eos.getProducerEpoch(), 0);
    }
  });
});

describe('kafkajs patch: joining a group whose coordinator is loading it', () => {
  /** A consumer group of one follower member; its coordinator refuses the first `refusals` SyncGroups with `code`. */
  function joiningGroup(code: number, refusals: number) {
    const requests: Array<{ api: string; memberId: string }> = [];
    const coordinator = {
      joinGroup: async ({ memberId }: { memberId: string }) => {
        requests.push({ api: 'JoinGroup', memberId });
        return { generationId: 3, leaderId: 'leader', memberId: 'member-1', members: [], groupProtocol: 'RoundRobinAssigner' };
      },
      syncGroup: async ({ memberId }: { memberId: string }) => {
        requests.push({ api: 'SyncGroup', memberId });
        if (requests.filter((r) => r.api === 'SyncGroup').length <= refusals) throw new KafkaJSProtocolError(createErrorFromCode(code));
        return { memberAssignment: MemberAssignment.encode({ version: 0, assignment: { in: [0, 1] } }) };
      },
    };
    const cluster = {
      findGroupCoordinator: async () => coordinator,
      refreshMetadata: async () => {},
      findTopicPartitionMetadata: () => [{ partitionId: 0 }, { partitionId: 1 }, { partitionId: 2 }],
      committedOffsets: () => ({}),
    };
    const emitter = new InstrumentationEventEmitter();
    const joins: Array<{ generationId: number; memberAssignment: Record<string, number[]> }> = [];
    emitter.addListener('consumer.group_join', (event: { payload: (typeof joins)[number] }) => joins.push(event.payload));
    const group = new ConsumerGroup({
      retry: { retries: 3, initialRetryTime: 1, maxRetryTime: 2 },
      cluster,
      groupId: 'group',
      topics: ['in'],
      topicConfigurations: {},
      logger: silent,
      instrumentationEmitter: emitter,
      assigners: [{ name: 'RoundRobinAssigner', protocol: () => ({ name: 'RoundRobinAssigner', metadata: Buffer.alloc(0) }) }],
      sessionTimeout: 6_000,
      rebalanceTimeout: 60_000,
    });
    return { group, requests, joins };
  }

  it('joins again as the same member after SyncGroup is refused with COORDINATOR_LOAD_IN_PROGRESS, and only then reports the join', async () => {
    const { group, requests, joins } = joiningGroup(14, 2);
    await group.joinAndSync();
    assert.deepEqual(
      requests.map((r) => r.api),
      ['JoinGroup', 'SyncGroup', 'JoinGroup', 'SyncGroup', 'JoinGroup', 'SyncGroup'],
    );
    assert.deepEqual(requests.slice(2).map((r) => r.memberId), ['member-1', 'member-1', 'member-1', 'member-1']);
    assert.equal(joins.length, 1);
    assert.deepEqual(joins[0]?.memberAssignment, { in: [0, 1] });
  });

  it('joins again after COORDINATOR_NOT_AVAILABLE, and still gives up on an error that retrying cannot fix', async () => {
    const unavailable = joiningGroup(15, 1);
    await unavailable.group.joinAndSync();
    assert.deepEqual(unavailable.requests.map((r) => r.api), ['JoinGroup', 'SyncGroup', 'JoinGroup', 'SyncGroup']);
    assert.equal(unavailable.joins.length, 1);
    const refused = joiningGroup(30, 1); // GROUP_AUTHORIZATION_FAILED
    await assert.rejects(refused.group.joinAndSync(), (error: { type?: string }) => error.type === 'GROUP_AUTHORIZATION_FAILED');
    assert.deepEqual(refused.requests.map((r) => r.api), ['JoinGroup', 'SyncGroup']);
    assert.equal(refused.joins.length, 0);
  });
});

describe('kafkajs patch: grouping a batch per partition', () => {
  it('keeps every message, in order, under the partition the partitioner chose', () => {
    const messages = Array.from({ length: 20_000 }, (_, i) => ({ key: `k${i}`, value: String(i) }));
    const partitioner = ({ message }: { message: { value: string } }) => Number(message.value) % 7;
    const grouped = groupMessagesPerPartition({ topic: 't', partitionMetadata: [{}], messages, partitioner }) as Record<string, Array<{ value: string }>>;
    assert.deepEqual(Object.keys(grouped).map(Number).sort(), [0, 1, 2, 3, 4, 5, 6]);
    for (const [partition, list] of Object.entries(grouped)) {
      assert.ok(list.every((m) => Number(m.value) % 7 === Number(partition)));
      assert.deepEqual(list.map((m) => Number(m.value)), [...list.map((m) => Number(m.value))].sort((a, b) => a - b));
    }
    assert.equal(Object.values(grouped).reduce((n, list) => n + list.length, 0), messages.length);
  });
});

/** Kafka's murmur2 (Utils.murmur2, Java int arithmetic) spelled out in BigInt: the reference the patched partitioner must match. */
function javaMurmur2(data: Buffer): number {
  const mask = 0xffffffffn;
  const m = 0x5bd1e995n;
  const mul = (a: bigint, b: bigint) => (a * b) & mask;
  let h = (0x9747b28cn ^ BigInt(data.length)) & mask;
  const whole = data.length - (data.length % 4);
  for (let i = 0; i < whole; i += 4) {
    let k = BigInt(data.readUInt32LE(i));
    k = mul(k, m);
    k ^= k >> 24n;
    k = mul(k, m);
    h = mul(h, m) ^ k;
  }
  const tail = data.length % 4;
  if (tail >= 3) h ^= BigInt(data[whole + 2]!) << 16n;
  if (tail >= 2) h ^= BigInt(data[whole + 1]!) << 8n;
  if (tail >= 1) h = mul(h ^ BigInt(data[whole]!), m);
  h ^= h >> 13n;
  h = mul(h, m);
  h ^= h >> 15n;
  return Number(BigInt.asIntN(32, h));
}

describe('kafkajs patch: the partitioner and the batch checksum', () => {
  it('hashes keys to the values of Kafka\'s own murmur2 tests', () => {
    // Apache Kafka's UtilsTest.testMurmur2: the partition of a key must not depend on the client.
    const cases: Array<[string, number]> = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [key, hash] of cases) assert.equal(murmur2(Buffer.from(key)), hash, key);
  });

  it('hashes any key as Java int arithmetic does', () => {
    const rng = createRng(1);
    for (let i = 0; i < 5_000; i++) {
      const key = Buffer.alloc(i % 67);
      for (let j = 0; j < key.length; j++) key[j] = rng.int(0, 255);
      assert.equal(murmur2(key), javaMurmur2(key), key.toString('hex'));
    }
    assert.equal(murmur2('héllo'), javaMurmur2(Buffer.from('héllo')), 'a string key is hashed as its UTF-8 bytes');
  });

  it('partitions by key as Kafka does, keeps a message\'s own partition, and spreads keyless messages over partitions with a leader', () => {
    const createPartitioner = require('kafkajs/src/producer/partitioners/default');
    const partition = createPartitioner();
    const partitionMetadata = [0, 1, 2, 3].map((partitionId) => ({ partitionId, leader: partitionId === 2 ? -1 : 1 }));
    for (const key of ['21', 'foobar', 'abc']) {
      assert.equal(partition({ topic: 't', partitionMetadata, message: { key: Buffer.from(key) } }), (murmur2(Buffer.from(key)) & 0x7fffffff) % 4, key);
    }
    assert.equal(partition({ topic: 't', partitionMetadata, message: { key: Buffer.from('abc'), partition: 2 } }), 2, 'a message\'s own partition wins');
    const keyless = new Set(Array.from({ length: 30 }, () => partition({ topic: 't', partitionMetadata, message: { key: null } })));
    assert.deepEqual([...keyless].sort(), [0, 1, 3], 'keyless messages go round the partitions that have a leader');
  });

  it('checksums record batches with the native CRC-32C, equal to the JavaScript one', () => {
    assert.equal(crc32C.native, true, '@node-rs/crc32 is installed and loaded');
    assert.equal(crc32C(Buffer.from('123456789')), 0xe3069283, 'the CRC-32C check value');
    const rng = createRng(7);
    for (let i = 0; i < 500; i++) {
      const buffer = Buffer.alloc((i * 37) % 4_099);
      for (let j = 0; j < buffer.length; j++) buffer[j] = rng.int(0, 255);
      assert.equal(crc32C(buffer), crc32C.javascript(buffer));
    }
  });
});

/** Zigzag LEB128 of a 64-bit integer, spelled out in BigInt: the bytes Kafka's varint and varlong fields must hold. */
function zigzagVarint(value: bigint): string {
  let zigzag = BigInt.asUintN(64, (value << 1n) ^ (value >> 63n));
  const bytes: number[] = [];
  while (zigzag >= 0x80n) {
    bytes.push(Number(zigzag & 0x7fn) | 0x80);
    zigzag >>= 7n;
  }
  bytes.push(Number(zigzag));
  return Buffer.from(bytes).toString('hex');
}

describe('kafkajs patch: encoding records', () => {
  const int32Edges = [0, 1, -1, 63, -64, 64, -65, 8191, 8192, 2 ** 31 - 1, -(2 ** 31)];

  it('writes varints and varlongs as zigzag LEB128, in 32 bits and beyond', () => {
    for (const value of int32Edges) {
      assert.equal(new Encoder().writeVarInt(value).buffer.toString('hex'), zigzagVarint(BigInt(value)), `varint ${value}`);
      assert.equal(new Encoder().writeVarLong(value).buffer.toString('hex'), zigzagVarint(BigInt(value)), `varlong ${value}`);
      assert.equal(Encoder.sizeOfVarLong(value), zigzagVarint(BigInt(value)).length / 2, `size of varlong ${value}`);
    }
    for (const value of [2 ** 31, -(2 ** 31) - 1, 2 ** 40, -(2 ** 45), Number.MAX_SAFE_INTEGER]) {
      assert.equal(new Encoder().writeVarLong(value).buffer.toString('hex'), zigzagVarint(BigInt(value)), `varlong ${value}`);
      assert.equal(Encoder.sizeOfVarLong(value), zigzagVarint(BigInt(value)).length / 2, `size of varlong ${value}`);
    }
  });

  it('encodes a batch that decodes to the same records: keys and values of every varint length, headers, timestamps far apart', async () => {
    const firstTimestamp = 1_764_590_000_000;
    const deltas = [0, 1, -5, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 40];
    const sizes = [0, 1, 127, 128, 16_383, 16_384, 600];
    const messages = sizes.flatMap((size, i) => [
      { key: Buffer.alloc(size, i + 1), value: Buffer.alloc(sizes[(i + 3) % sizes.length]!, 0xa0 + i), headers: {}, timestamp: firstTimestamp + deltas[i]! },
      { key: null, value: `ünïcode ${i}`, headers: { trace: `t${i}`, many: [Buffer.from([i]), 'zwei'] }, timestamp: firstTimestamp + deltas[(i + 1) % deltas.length]! },
    ]);
    const records = messages.map((message, offsetDelta) => Record({ ...message, offsetDelta, timestampDelta: message.timestamp - firstTimestamp }));
    const batch = await RecordBatch({ records, firstTimestamp, maxTimestamp: firstTimestamp + 2 ** 40, lastOffsetDelta: records.length - 1 });
    const decoded = await decodeRecordBatch(new Decoder(batch.buffer));
    assert.equal(decoded.records.length, messages.length);
    messages.forEach((message, i) => {
      const record = decoded.records[i];
      assert.equal(record.offset, String(i));
      assert.equal(record.timestamp, String(message.timestamp));
      assert.deepEqual(record.key, message.key === null ? null : message.key);
      assert.deepEqual(record.value, Buffer.from(message.value));
      const headers = Object.fromEntries(Object.entries(record.headers as Record<string, Buffer | Buffer[]>).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : String(v)]));
      const expected = Object.fromEntries(Object.entries(message.headers).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : String(v)]));
      assert.deepEqual(headers, expected);
    });
  });
});

describe('kafkajs patch: a record batch written in one pass', () => {
  const Long = require('kafkajs/src/utils/long');
  const { Types: Compression } = require('kafkajs/src/protocol/message/compression');
  type Message = { key: Buffer | string | null; value: Buffer | string | null; headers?: Record<string, string | Buffer | Array<string | Buffer>>; timestamp?: number | string };
  const batchFields = { producerId: Long.fromInt(42), producerEpoch: 7, firstSequence: 12, transactional: true };

  /** The batch as RecordBatch writes it from a Record encoder per message (as kafkajs's produce requests built it). */
  async function recordByRecord(messages: Message[], firstTimestamp: number | string, maxTimestamp: number | string, defaultTimestamp: number): Promise<Buffer> {
    const records = messages.map(({ timestamp, ...message }, offsetDelta) =>
      Record({ ...message, offsetDelta, timestampDelta: Number(timestamp || defaultTimestamp) - Number(firstTimestamp) }),
    );
    return (await RecordBatch({ ...batchFields, records, firstTimestamp, maxTimestamp, lastOffsetDelta: records.length - 1 })).buffer;
  }

  it('writes the bytes of a Record encoder per message: every varint length, values large enough to be kept by reference, headers, missing and string timestamps', async () => {
    const rng = createRng(5);
    const bytes = (size: number) => Buffer.from(Array.from({ length: size }, () => rng.int(0, 255)));
    const sizes = [0, 1, 63, 64, 127, 128, 8191, 8192, 4095, 4096, 20_000, 300];
    const firstTimestamp = 1_764_590_000_000;
    const messages = sizes.flatMap((size, i): Message[] => [
      { key: bytes(sizes[(i + 5) % sizes.length]!), value: bytes(size), headers: {}, timestamp: firstTimestamp + i * 2 ** 33 },
      { key: null, value: `ünïcode ${'x'.repeat(size % 300)}`, headers: { trace: `t${i}`, many: [bytes(3), 'zwei'], big: bytes(size) }, timestamp: String(firstTimestamp + i) },
      { key: `k${i}`, value: null },
    ]);
    const defaultTimestamp = firstTimestamp + 5;
    const maxTimestamp = firstTimestamp + 11 * 2 ** 33;
    const expected = await recordByRecord(messages, firstTimestamp, maxTimestamp, defaultTimestamp);
    const encoder = encodeRecordBatch({ ...batchFields, compression: Compression.None, messages, firstTimestamp, maxTimestamp, defaultTimestamp });
    assert.equal(encoder.chunks, null, 'one buffer: the checksum read it whole');
    assert.equal(encoder.size(), expected.length);
    assert.ok(encoder.buffer.equals(expected), 'the same bytes');
    // Record shares writeRecord with the one-pass batch: the decoder (code of its own) checks every field too.
    const decoded = await decodeRecordBatch(new Decoder(encoder.buffer));
    assert.equal(decoded.records.length, messages.length);
    const asBytes = (value: Buffer | string | null) => (value === null ? null : Buffer.from(value));
    const asText = (headers: object) => Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v.map((one) => Buffer.from(one).toString('hex')) : Buffer.from(v).toString('hex')]);
    messages.forEach((message, i) => {
      const record = decoded.records[i];
      assert.equal(record.offset, String(i), `offset of ${i}`);
      assert.equal(record.timestamp, String(message.timestamp ?? defaultTimestamp), `timestamp of ${i}`);
      assert.deepEqual(record.key, asBytes(message.key), `key of ${i}`);
      assert.deepEqual(record.value, asBytes(message.value), `value of ${i}`);
      assert.deepEqual(asText(record.headers), asText(message.headers ?? {}), `headers of ${i}`);
    });
  });

  it('writes an empty batch and a batch of one as RecordBatch does, and leaves a compressed batch to it', async () => {
    for (const messages of [[], [{ key: 'k', value: 'v', timestamp: 1_764_590_000_000 }]] as Message[][]) {
      const expected = await recordByRecord(messages, 1_764_590_000_000, 1_764_590_000_000, 1_764_590_000_000);
      const encoder = encodeRecordBatch({ ...batchFields, messages, firstTimestamp: 1_764_590_000_000, maxTimestamp: 1_764_590_000_000, defaultTimestamp: 1 });
      assert.ok(encoder.buffer.equals(expected), `${messages.length} message(s)`);
    }
    const messages: Message[] = Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: 'a fairly compressible value '.repeat(4), headers: { h: 'x' } }));
    const compressed = await encodeRecordBatch({ ...batchFields, compression: Compression.GZIP, messages, firstTimestamp: 1_764_590_000_000, maxTimestamp: 1_764_590_000_000, defaultTimestamp: 1_764_590_000_000 });
    const decoded = await decodeRecordBatch(new Decoder(compressed.buffer));
    assert.ok(compressed.size() < 50 * 100, 'compressed');
    assert.deepEqual(decoded.records.map((r: { key: Buffer; value: Buffer }) => [String(r.key), String(r.value)]), messages.map((m) => [m.key, m.value]));
  });
});

describe('kafkajs patch: records without a Long per varlong or an encoder per header', () => {
  const Long = require('kafkajs/src/utils/long');
  const varint = (value: number) => Buffer.from(zigzagVarint(BigInt(value)), 'hex');
  const lengthPrefixed = (bytes: Buffer) => Buffer.concat([varint(bytes.length), bytes]);

  it('writes a record\'s headers, arrays of values included, as the protocol lays them out', () => {
    const record = Record({ offsetDelta: 3, timestampDelta: -7, key: Buffer.from('k'), value: 'v', headers: { a: 'x', many: [Buffer.from([1, 2]), 'zwei'], é: '' } });
    const header = (key: string, value: Buffer | string) => Buffer.concat([lengthPrefixed(Buffer.from(key)), lengthPrefixed(Buffer.from(value))]);
    const body = Buffer.concat([
      Buffer.from([0]), // attributes
      varint(-7),
      varint(3),
      lengthPrefixed(Buffer.from('k')),
      lengthPrefixed(Buffer.from('v')),
      varint(4),
      header('a', 'x'),
      header('many', Buffer.from([1, 2])),
      header('many', 'zwei'),
      header('é', ''),
    ]);
    assert.equal(record.buffer.toString('hex'), Buffer.concat([varint(body.length), body]).toString('hex'));
  });

  it('writes a header without a value as length -1, which reads back as null, in a record and in a batch written in one pass', async () => {
    const record = Record({ offsetDelta: 0, timestampDelta: 0, key: null, value: 'v', headers: { gone: null, kept: 'x' } });
    const body = Buffer.concat([
      Buffer.from([0]), // attributes
      varint(0),
      varint(0),
      varint(-1), // no key
      lengthPrefixed(Buffer.from('v')),
      varint(2),
      lengthPrefixed(Buffer.from('gone')),
      varint(-1),
      lengthPrefixed(Buffer.from('kept')),
      lengthPrefixed(Buffer.from('x')),
    ]);
    assert.equal(record.buffer.toString('hex'), Buffer.concat([varint(body.length), body]).toString('hex'));

    const at = 1_764_590_000_000;
    const messages = [{ key: 'k', value: 'v', headers: { gone: null, kept: 'x' } }];
    const batch = await encodeRecordBatch({ messages, firstTimestamp: at, maxTimestamp: at, defaultTimestamp: at });
    const [read] = (await decodeRecordBatch(new Decoder(batch.buffer))).records;
    assert.equal(read.headers.gone, null);
    assert.equal(String(read.headers.kept), 'x');
  });

  it('decodes offsets and timestamps exactly, in numbers where they fit and in Longs beyond', async () => {
    const cases = [
      { firstOffset: '0', firstTimestamp: 1_764_590_000_000, deltas: [0, 1, -1, 2 ** 40, -(2 ** 48) + 1] },
      // Deltas of eight and nine varlong bytes, and a first offset past 2^53: the Long path, exactly.
      { firstOffset: '1152921504606846976', firstTimestamp: 1_764_590_000_000, deltas: [2 ** 49, -(2 ** 55), 2 ** 62] },
    ];
    for (const { firstOffset, firstTimestamp, deltas } of cases) {
      const records = deltas.map((delta, offsetDelta) => Record({ offsetDelta, timestampDelta: delta, key: null, value: `r${offsetDelta}` }));
      const batch = await RecordBatch({ records, firstOffset: Long.fromValue(firstOffset), firstTimestamp, maxTimestamp: firstTimestamp, lastOffsetDelta: records.length - 1 });
      const decoded = await decodeRecordBatch(new Decoder(batch.buffer));
      assert.deepEqual(
        decoded.records.map((r: { offset: string; timestamp: string }) => [r.offset, r.timestamp]),
        deltas.map((delta, i) => [String(BigInt(firstOffset) + BigInt(i)), String(BigInt(firstTimestamp) + BigInt(delta))]),
      );
    }
  });

  it('collects a repeated header\'s values in order, whatever the header is called', async () => {
    // Object.fromEntries defines each key, __proto__ included, as an own property (a literal would set the prototype).
    const entries = [['trace', ['t1', 't2', 't3']], ['toString', 'not inherited'], ['__proto__', 'a header'], ['constructor', ['c1', 'c2']]];
    const headers = Object.fromEntries(entries);
    const batch = await RecordBatch({ records: [Record({ key: null, value: 'v', headers })], lastOffsetDelta: 0 });
    const [record] = (await decodeRecordBatch(new Decoder(batch.buffer))).records;
    const read = Object.fromEntries(Object.entries(record.headers as Record<string, Buffer | Buffer[]>).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : String(v)]));
    assert.deepEqual(read, Object.fromEntries(entries));
    assert.equal(Object.getPrototypeOf(record.headers), Object.prototype);
  });
});

describe('kafkajs patch: large buffers written by reference', () => {
  const createRequest = require('kafkajs/src/protocol/request');
  const { Types: Compression } = require('kafkajs/src/protocol/message/compression');
  const ProduceV12 = require('kafkajs/src/protocol/requests/produce/v12/request');
  const Long = require('kafkajs/src/utils/long');
  /** The bytes of one Produce request of two topics' batches, as the connection writes them, with buffers of `referenceFrom` bytes and more kept by reference. */
  async function produceRequestBytes(referenceFrom: number): Promise<{ bytes: Buffer; chunked: boolean }> {
    const before = Encoder.referenceFrom;
    Encoder.referenceFrom = referenceFrom;
    try {
      const rng = createRng(11);
      const messages = (count: number, size: number) =>
        Array.from({ length: count }, (_, i) => ({
          key: Buffer.from(`k${i}`),
          value: Buffer.from(Array.from({ length: size + (i % 7) * 900 }, () => rng.int(0, 255))),
          headers: { 'sluice-trace': `t${i}` },
          timestamp: 1_764_590_000_000 + i,
        }));
      const request = ProduceV12({
        acks: -1,
        timeout: 30_000,
        transactionalId: 'tx',
        producerId: Long.fromInt(7),
        producerEpoch: 3,
        compression: Compression.None,
        topicData: [
          { topic: 'a', partitions: [{ partition: 0, firstSequence: 0, messages: messages(40, 300) }, { partition: 2, firstSequence: 5, messages: messages(1, 9_000) }] },
          { topic: 'b', partitions: [{ partition: 1, firstSequence: 0, messages: messages(3, 10) }] },
        ],
      });
      const encoder = await createRequest({ correlationId: 9, clientId: 'c', request });
      const chunked = encoder.chunks !== null;
      const size = encoder.size();
      const bytes = encoder.buffer;
      assert.equal(bytes.length, size, 'size() counts every byte, referenced or copied');
      assert.equal(bytes.readInt32BE(0), size - 4, 'the request\'s length prefix');
      assert.ok(encoder.buffer.equals(bytes), 'reading the buffer again gives the same bytes');
      return { bytes, chunked };
    } finally {
      Encoder.referenceFrom = before;
    }
  }
  it('writes a produce request byte for byte as when every buffer is copied', async () => {
    const copied = await produceRequestBytes(Infinity);
    const referenced = await produceRequestBytes(Encoder.referenceFrom);
    const everything = await produceRequestBytes(1);
    assert.equal(copied.chunked, false);
    assert.equal(referenced.chunked, true, 'the batches are large enough to be kept by reference');
    assert.ok(referenced.bytes.equals(copied.bytes));
    assert.ok(everything.bytes.equals(copied.bytes));
  });

  it('keeps writing after a referenced buffer, and never into it', () => {
    const large = Buffer.alloc(Encoder.referenceFrom, 0xab);
    const inner = new Encoder().writeInt8(1).writeBuffer(large).writeInt16(2);
    const outer = new Encoder().writeInt32(3).writeEncoder(inner).writeBytes(large).writeVarIntBytes(large).writeString('end');
    const expected = Buffer.concat([
      Buffer.from([0, 0, 0, 3, 1]),
      large,
      Buffer.from([0, 2, 0, 0, (large.length >> 8) & 0xff, large.length & 0xff]),
      large,
      Buffer.from(zigzagVarint(BigInt(large.length)), 'hex'),
      large,
      Buffer.from([0, 3]),
      Buffer.from('end'),
    ]);
    assert.ok(outer.buffer.equals(expected));
    assert.equal(outer.size(), expected.length);
    assert.ok(large.every((byte) => byte === 0xab), 'the referenced buffer is unchanged');
    assert.ok(inner.buffer.equals(Buffer.concat([Buffer.from([1]), large, Buffer.from([0, 2])])), 'the inner encoder still reads whole');
  });
});

describe('kafkajs patch: a connection\'s request queue', () => {
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  /**
   * A queue of one connection; `push(id)` queues a request, `sent` lists the
   * ids written to the socket, and `written()` resolves once the queue is done
   * with the next write (the rest of that call included).
   */
  function requestQueue(maxInFlightRequests: number) {
    const queue = new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 'test', broker: 'b:9092', logger: silent });
    const sent: number[] = [];
    const waiting: Array<() => void> = [];
    const push = (correlationId: number) =>
      queue.push({
        entry: { apiKey: 3, apiName: 'Metadata', apiVersion: 6, correlationId, resolve() {}, reject() {} },
        expectResponse: true,
        sendRequest: () => {
          sent.push(correlationId);
          const resolve = waiting.shift();
          if (resolve) setImmediate(resolve);
        },
      });
    const answer = (correlationId: number) => queue.fulfillRequest({ correlationId, payload: Buffer.alloc(0), size: 0 });
    const written = () => new Promise<void>((resolve) => waiting.push(resolve));
    return { queue, sent, push, answer, written };
  }
  /** Runs `body` on a fresh queue and destroys it after, so that a looping timer cannot keep the test process alive. */
  async function withQueue(maxInFlightRequests: number, body: (q: ReturnType<typeof requestQueue>) => void | Promise<void>) {
    const q = requestQueue(maxInFlightRequests);
    try {
      await body(q);
    } finally {
      q.queue.destroy();
    }
  }

  it('arms no timer once nothing waits (kafkajs kept a 1 ms timer looping per connection for the life of the process)', async () => {
    await withQueue(1, ({ queue, sent, push, answer }) => {
      push(1);
      answer(1);
      assert.deepEqual(sent, [1]);
      assert.equal(queue.throttleCheckTimeoutId, null, 'a timer is armed with no request waiting');
    });
  });

  it('still sends a request held back by the in-flight limit when the one before it is answered', async () => {
    await withQueue(1, ({ sent, push, answer }) => {
      push(1);
      push(2);
      assert.deepEqual(sent, [1]);
      answer(1);
      assert.deepEqual(sent, [1, 2]);
    });
  });

  it('still sends a request held back by the broker\'s throttle once the throttle ends, and then arms no timer', async () => {
    await withQueue(5, async ({ queue, sent, push, written }) => {
      const throttledAt = Date.now();
      queue.maybeThrottle(20);
      const firstWrite = written();
      push(1);
      assert.deepEqual(sent, []);
      await firstWrite;
      assert.deepEqual(sent, [1]);
      assert.ok(Date.now() - throttledAt >= 20, 'sent before the throttle ended');
      assert.equal(queue.throttleCheckTimeoutId, null, 'the timer re-armed itself after the queue emptied');
    });
  });
});
