/**
 * The gateway's pieces on their own: the partitioner agrees with Kafka's
 * default partitioner, keys authenticate only as issued, the rate limiter's
 * budget, the bounded idempotency window, and the hand-written PDF fixtures
 * are real PDFs (the encrypted one opens with its password).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import { getDocument } from 'pdfjs-dist/legacy/build/pdf.mjs';
import { normalizeAndTruncate } from '../../ingest/documents.ts';
import { decodeAcceptedBatch, encodeAcceptedBatch, IdempotencyIndex } from '../../ingest/idempotency.ts';
import { encodeKeyRecord, keyIdOf, KeyRing, newApiKey, RateLimiter } from '../../ingest/keys.ts';
import { partitionFor } from '../../ingest/partitioner.ts';
import { createRng } from '../../lib/prng.ts';
import { buildPdf } from '../fixtures/ingest/pdf.ts';

describe('partitioner', () => {
  it('puts every key where kafkajs\'s Java-compatible default partitioner does', () => {
    const partitioner = kafkajs.Partitioners.DefaultPartitioner();
    for (const partitions of [1, 3, 7, 12]) {
      const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
      for (let i = 0; i < 2_000; i++) {
        const key = i % 3 === 0 ? `user-${i}` : i % 3 === 1 ? `é-${'x'.repeat(i % 17)}-${i}` : String(i * 7919);
        const expected = partitioner({ topic: 't', partitionMetadata, message: { key, value: null } });
        assert.equal(partitionFor(key, partitions), expected, `${key} over ${partitions}`);
      }
    }
  });
});

describe('API keys', () => {
  it('authenticates the issued key only; the record holds its hash, never the key', () => {
    const ring = new KeyRing();
    const { key, record } = newApiKey('signup-risk', 50, 'ops');
    assert.equal(keyIdOf(key), record.key_id);
    const secret = key.slice(`sk_${record.key_id}_`.length);
    assert.equal(secret.length, 43);
    assert.ok(!encodeKeyRecord(record).toString().includes(secret));
    ring.apply(record.key_id, encodeKeyRecord(record));
    assert.equal(ring.authenticate(key)?.pipeline, 'signup-risk');
    assert.equal(ring.authenticate(`${key}x`), undefined);
    assert.equal(ring.authenticate(newApiKey('signup-risk', 50, 'ops').key), undefined);
    ring.apply(record.key_id, null);
    assert.equal(ring.authenticate(key), undefined);
  });

  it('rate limiter: the key\'s rate per second, a batch larger than a second\'s budget passes once and is paid back', () => {
    let now = 0;
    const limiter = new RateLimiter(() => now);
    assert.deepEqual(limiter.take('k', 100, 100), { ok: true });
    assert.equal(limiter.take('k', 100, 1).ok, false);
    now += 500;
    assert.equal(limiter.take('k', 100, 50).ok, true);
    now += 1_000;
    assert.equal(limiter.take('k', 100, 500).ok, true, 'a full bucket lets a large batch through');
    const refused = limiter.take('k', 100, 1);
    assert.deepEqual(refused, { ok: false, retryAfterSeconds: 5 }, 'then the debt is waited out');
    now += 5_000;
    assert.equal(limiter.take('k', 100, 1).ok, true);
  });
});

describe('idempotency window', () => {
  it('keeps the first acceptance, forgets after the window, and never holds more than its bound', () => {
    let now = 1_000_000;
    const index = new IdempotencyIndex({ windowMs: 10_000, maxEntries: 1_000, now: () => now });
    index.record('p/a', { partition: 1, offset: '5', at: now });
    index.record('p/a', { partition: 2, offset: '9', at: now });
    assert.deepEqual(index.get('p/a'), { partition: 1, offset: '5', at: now });
    now += 10_001;
    assert.equal(index.get('p/a'), undefined);
    for (let i = 0; i < 1_500; i++) index.record(`p/${i}`, { partition: 0, offset: String(i), at: now });
    assert.equal(index.size, 1_000);
    assert.equal(index.evictedEarly, 500);
    assert.equal(index.get('p/0'), undefined);
    assert.equal(index.get('p/1499')?.offset, '1499');
  });

  it('answers exactly as a reference model (a Map and an insertion ring) through 20,000 inserts, repeats, expiries and evictions', () => {
    checkAgainstModel({ maxEntries: 1_000, windowMs: 5_000, keys: 3_000, inserts: 20_000, checkEvery: 199 });
  });

  it('grows its table and ring as ids arrive (not preallocated for the bound), and still answers as the model', () => {
    // 20,000 ids held: the table doubles twice from 16,384 slots and the ring from 8,192 entries, then wraps at the bound.
    checkAgainstModel({ maxEntries: 20_000, windowMs: 1_000_000, keys: 50_000, inserts: 60_000, checkEvery: 9_999 });
  });

  function checkAgainstModel(options: { maxEntries: number; windowMs: number; keys: number; inserts: number; checkEvery: number }): void {
    const { maxEntries, windowMs, keys, inserts, checkEvery } = options;
    let now = 0;
    const index = new IdempotencyIndex({ windowMs, maxEntries, now: () => now });
    type Entry = { partition: number; offset: string; at: number };
    const map = new Map<string, Entry>();
    const ring: Array<{ key: string; at: number }> = [];
    const modelRecord = (key: string, entry: Entry) => {
      const cutoff = now - windowMs;
      if (entry.at < cutoff) return;
      const existing = map.get(key);
      if (existing && existing.at >= cutoff) return;
      while (ring.length > 0 && (ring.length >= maxEntries || ring[0]!.at < cutoff)) {
        const old = ring.shift()!;
        if (map.get(old.key)?.at === old.at) map.delete(old.key);
      }
      map.set(key, entry);
      ring.push({ key, at: entry.at });
    };
    const modelGet = (key: string) => {
      const entry = map.get(key);
      return entry && entry.at >= now - windowMs ? entry : undefined;
    };
    const random = createRng(7).next;
    for (let i = 0; i < inserts; i++) {
      now += Math.floor(random() * 3);
      const key = `p/${Math.floor(random() * keys)}`;
      const entry = { partition: i % 5, offset: String(i), at: now };
      modelRecord(key, entry);
      index.record(key, entry);
      if (i % checkEvery === 0 || i === inserts - 1) {
        for (let k = 0; k < keys; k++) assert.deepEqual(index.get(`p/${k}`), modelGet(`p/${k}`), `p/${k} after ${i} records`);
      }
    }
    assert.ok(index.size <= maxEntries);
    assert.equal(index.size, map.size);
    assert.ok(index.evictedEarly > 0, 'the bound was reached');
  }

  it('round-trips its topic records (one per transaction and pipeline), documents included; an instance applies them', () => {
    const at = 1_733_000_000_000;
    const entries = [
      { eventId: 'a/b c', accepted: { partition: 2, offset: '123456789012', at } },
      { eventId: 'doc-1', accepted: { partition: 0, offset: '7', at, document: { pages: 3, textTruncated: true } } },
      { eventId: 'doc-2', accepted: { partition: 1, offset: '8', at, document: { pages: null, textTruncated: false } } },
    ];
    const value = encodeAcceptedBatch('ticket-triage', at, entries);
    assert.deepEqual(
      decodeAcceptedBatch(value),
      entries.map(({ eventId, accepted }) => ({ key: `ticket-triage/${eventId}`, accepted })),
    );
    const index = new IdempotencyIndex({ windowMs: 86_400_000, maxEntries: 1_000, now: () => at });
    index.apply(value);
    assert.deepEqual(index.get('ticket-triage/doc-1'), entries[1]!.accepted);
    assert.deepEqual(index.get('ticket-triage/a/b c'), entries[0]!.accepted);
    assert.equal(index.get('signup-risk/doc-1'), undefined, 'ids are per pipeline');
    assert.throws(() => index.apply(Buffer.from('{"p":1}')));
  });
});

describe('document text', () => {
  it('normalizes like the pipelines do and cuts at the byte limit on a character boundary', () => {
    assert.deepEqual(normalizeAndTruncate('  a\r\nb\rc\u0007 ', 100), { text: 'a\nb\nc', truncated: false });
    const cut = normalizeAndTruncate('€'.repeat(10), 10);
    assert.equal(cut.text, '€€€');
    assert.equal(cut.truncated, true);
  });
});

describe('PDF fixtures', () => {
  const open = async (bytes: Buffer, password?: string) => {
    const task = getDocument({ data: new Uint8Array(bytes), verbosity: 0, ...(password !== undefined && { password }) });
    try {
      const document = await task.promise;
      const page = await document.getPage(1);
      const content = await page.getTextContent();
      return { pages: document.numPages, text: content.items.map((item) => ('str' in item ? item.str : '')).join(' ') };
    } finally {
      await task.destroy();
    }
  };

  it('a text PDF reads back its text and pages', async () => {
    const read = await open(buildPdf({ pages: [['Hello (PDF) \\ world'], ['two']] }));
    assert.equal(read.pages, 2);
    assert.match(read.text, /Hello \(PDF\) \\ world/);
  });

  it('the encrypted PDF is really encrypted: it opens with its password only', async () => {
    const bytes = buildPdf({ pages: [['classified numbers']], userPassword: 'hunter2', ownerPassword: 'owner' });
    assert.ok(!bytes.toString('latin1').includes('classified'), 'the text is not in the clear');
    await assert.rejects(open(bytes), { name: 'PasswordException' });
    await assert.rejects(open(bytes, 'wrong'), { name: 'PasswordException' });
    assert.match((await open(bytes, 'hunter2')).text, /classified numbers/);
  });
});
