/**
 * Which event ids a pipeline has accepted within the window, and where each
 * went. Every accepted event is also written, in the same Kafka transaction as
 * the event itself, to the idempotency topic (one record per transaction and
 * pipeline, see encodeAcceptedBatch); each
 * gateway instance reads that topic from the start before it reports ready and
 * keeps following it, so a duplicate is recognized after a restart and across
 * instances. Memory is bounded: at most `maxEntries` ids, the oldest dropped
 * first (counted), whatever the window.
 *
 * Two requests with the same id at the same instant on two instances can both
 * be produced (neither has seen the other's commit yet); the validate stage's
 * own duplicate check on the Kafka path is the backstop for that race, since
 * both copies carry the same key.
 */

import { createHash } from 'node:crypto';

/** Where an accepted event went; for a document, what the first upload reported. */
export interface Accepted {
  partition: number;
  offset: string;
  /** When it was accepted, epoch ms. */
  at: number;
  document?: { pages: number | null; textTruncated: boolean };
}

export const idempotencyKey = (pipeline: string, eventId: string): string => `${pipeline}/${eventId}`;

function fingerprint(key: string): Uint32Array {
  const digest = createHash('sha256').update(key, 'utf8').digest();
  return new Uint32Array(digest.buffer.slice(digest.byteOffset, digest.byteOffset + FP_WORDS * 4));
}

/** Events per record of the idempotency topic: about 80 bytes each, far below a record's size limit. */
export const BATCH_ENTRIES = 1_000;

/**
 * One record of the idempotency topic: the events one transaction accepted
 * for one pipeline (`p`), accepted at `t`, each as `[event_id, partition,
 * offset]`, or `[event_id, partition, offset, pages, text_truncated]` for a
 * document. One record per transaction rather than per event halves what the
 * gateway asks of Kafka per event. The key (`<pipeline>/<first event_id>`)
 * only spreads records over partitions: they are never updated, and expire
 * with the window (`retention.ms`).
 */
export function encodeAcceptedBatch(pipeline: string, at: number, entries: ReadonlyArray<{ eventId: string; accepted: Accepted }>): Buffer {
  const e = entries.map(({ eventId, accepted }) =>
    accepted.document
      ? [eventId, accepted.partition, accepted.offset, accepted.document.pages, accepted.document.textTruncated]
      : [eventId, accepted.partition, accepted.offset],
  );
  return Buffer.from(JSON.stringify({ p: pipeline, t: at, e }), 'utf8');
}

export function decodeAcceptedBatch(value: Buffer): Array<{ key: string; accepted: Accepted }> {
  const v = JSON.parse(value.toString('utf8')) as { p?: unknown; t?: unknown; e?: unknown };
  if (typeof v.p !== 'string' || typeof v.t !== 'number' || !Array.isArray(v.e)) throw new Error('not an idempotency record');
  const pipeline = v.p;
  const at = v.t;
  return v.e.map((entry: unknown) => {
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'number' || typeof entry[2] !== 'string') throw new Error('not an idempotency entry');
    const accepted: Accepted = { partition: entry[1], offset: entry[2], at };
    if (entry.length >= 5) accepted.document = { pages: typeof entry[3] === 'number' ? entry[3] : null, textTruncated: entry[4] === true };
    return { key: idempotencyKey(pipeline, entry[0]), accepted };
  });
}

/**
 * The index is an open-addressing hash table in typed arrays, keyed by a
 * 128-bit fingerprint of `<pipeline>/<event_id>` (the first half of its
 * SHA-256: two different ids collide with a probability near 2^-128 × n², nil
 * at any n this holds), with the entries' insertion order in a ring: about 60
 * bytes per id instead of the few hundred a Map of strings and objects costs,
 * and nothing for the garbage collector to trace. Load at most one half,
 * linear probing, backward-shift deletion.
 *
 * The table and the ring start small and double as ids arrive, up to twice
 * `maxEntries` slots and `maxEntries` ring entries: memory follows the ids
 * held, not the bound. Preallocated for the bound (500,000), the table's
 * pages became resident as soon as a burst had scattered a few thousand ids
 * over them: about 55 MB of a gateway's RSS after a minute's burst, whatever
 * it held.
 */
const FP_WORDS = 4;
/** Slots and ring entries an index starts with (about 700 KB); each doubles when needed. */
const INITIAL_SLOTS = 16_384;
const INITIAL_RING = 8_192;
/** `pages` column: no document details / a document without a page count. */
const NO_DOCUMENT = -1;
const PAGES_NULL = -2;

export class IdempotencyIndex {
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** The most slots the table grows to: twice maxEntries, a power of two. */
  private readonly maxSlots: number;
  private mask = 0;
  private used = new Uint8Array(0);
  private fp = new Uint32Array(0);
  private partition = new Int32Array(0);
  private offset = new Float64Array(0);
  private at = new Float64Array(0);
  private pages = new Int32Array(0);
  private truncated = new Uint8Array(0);
  /** Insertion order: fingerprint and time of each recorded entry, oldest at `head`; a circle of ringFp.length / FP_WORDS entries. */
  private ringFp: Uint32Array;
  private ringAt: Float64Array;
  private head = 0;
  private ringCount = 0;
  private live = 0;
  private readonly inflight = new Map<string, Promise<void>>();
  /** Ids forgotten before their window ended, to keep memory bounded. */
  evictedEarly = 0;

  constructor(options: { windowMs: number; maxEntries: number; now?: () => number }) {
    this.windowMs = options.windowMs;
    this.maxEntries = options.maxEntries;
    this.now = options.now ?? Date.now;
    let capacity = 16;
    while (capacity < options.maxEntries * 2) capacity *= 2;
    this.maxSlots = capacity;
    this.allocate(Math.min(capacity, INITIAL_SLOTS));
    const ring = Math.min(options.maxEntries, INITIAL_RING);
    this.ringFp = new Uint32Array(ring * FP_WORDS);
    this.ringAt = new Float64Array(ring);
  }

  /** Fresh, empty slot arrays of `slots` slots. */
  private allocate(slots: number): void {
    this.mask = slots - 1;
    this.used = new Uint8Array(slots);
    this.fp = new Uint32Array(slots * FP_WORDS);
    this.partition = new Int32Array(slots);
    this.offset = new Float64Array(slots);
    this.at = new Float64Array(slots);
    this.pages = new Int32Array(slots);
    this.truncated = new Uint8Array(slots);
  }

  /** Doubles the table, placing every entry again. */
  private grow(): void {
    const { used, fp, partition, offset, at, pages, truncated } = this;
    this.allocate(used.length * 2);
    for (let from = 0; from < used.length; from++) {
      if (!used[from]) continue;
      let slot = fp[from * FP_WORDS]! & this.mask;
      while (this.used[slot]) slot = (slot + 1) & this.mask;
      this.used[slot] = 1;
      this.fp.set(fp.subarray(from * FP_WORDS, from * FP_WORDS + FP_WORDS), slot * FP_WORDS);
      this.partition[slot] = partition[from]!;
      this.offset[slot] = offset[from]!;
      this.at[slot] = at[from]!;
      this.pages[slot] = pages[from]!;
      this.truncated[slot] = truncated[from]!;
    }
  }

  /** Doubles the ring (up to maxEntries), oldest entry first. */
  private growRing(): void {
    const size = this.ringAt.length;
    const next = Math.min(this.maxEntries, size * 2);
    const ringFp = new Uint32Array(next * FP_WORDS);
    const ringAt = new Float64Array(next);
    for (let i = 0; i < this.ringCount; i++) {
      const from = (this.head + i) % size;
      ringFp.set(this.ringFp.subarray(from * FP_WORDS, from * FP_WORDS + FP_WORDS), i * FP_WORDS);
      ringAt[i] = this.ringAt[from]!;
    }
    this.ringFp = ringFp;
    this.ringAt = ringAt;
    this.head = 0;
  }

  get size(): number {
    return this.live;
  }

  /** The first acceptance of this id within the window, if any. */
  get(key: string): Accepted | undefined {
    const slot = this.find(fingerprint(key));
    if (slot < 0 || this.at[slot]! < this.now() - this.windowMs) return undefined;
    const accepted: Accepted = { partition: this.partition[slot]!, offset: String(this.offset[slot]!), at: this.at[slot]! };
    const pages = this.pages[slot]!;
    if (pages !== NO_DOCUMENT) accepted.document = { pages: pages === PAGES_NULL ? null : pages, textTruncated: this.truncated[slot] === 1 };
    return accepted;
  }

  /** Records an acceptance; the first one of an id within the window stands (a later copy from a racing instance does not replace it). */
  record(key: string, accepted: Accepted): void {
    const cutoff = this.now() - this.windowMs;
    if (accepted.at < cutoff) return;
    const f = fingerprint(key);
    const existing = this.find(f);
    if (existing >= 0 && this.at[existing]! >= cutoff) return;
    // Expire from the front, and make room: the ring never holds more than maxEntries.
    while (this.ringCount > 0 && (this.ringCount >= this.maxEntries || this.ringAt[this.head]! < cutoff)) this.evictOldest(cutoff);
    let slot = this.find(f);
    if (slot < 0) {
      if ((this.live + 1) * 2 > this.used.length && this.used.length < this.maxSlots) this.grow();
      slot = f[0]! & this.mask;
      while (this.used[slot]) slot = (slot + 1) & this.mask;
      this.used[slot] = 1;
      this.fp.set(f, slot * FP_WORDS);
      this.live++;
    }
    this.partition[slot] = accepted.partition;
    this.offset[slot] = Number(accepted.offset);
    this.at[slot] = accepted.at;
    this.pages[slot] = accepted.document ? (accepted.document.pages ?? PAGES_NULL) : NO_DOCUMENT;
    this.truncated[slot] = accepted.document?.textTruncated ? 1 : 0;
    if (this.ringCount === this.ringAt.length) this.growRing();
    const tail = (this.head + this.ringCount) % this.ringAt.length;
    this.ringFp.set(f, tail * FP_WORDS);
    this.ringAt[tail] = accepted.at;
    this.ringCount++;
  }

  /** Applies one record of the idempotency topic (a tombstone is ignored: the window expires entries). */
  apply(value: Buffer | null): void {
    if (value === null) return;
    for (const { key, accepted } of decodeAcceptedBatch(value)) this.record(key, accepted);
  }

  private evictOldest(cutoff: number): void {
    const f = this.ringFp.subarray(this.head * FP_WORDS, this.head * FP_WORDS + FP_WORDS);
    const slot = this.find(f);
    // The slot may since have been recorded again (after its window): only the entry of this time goes.
    if (slot >= 0 && this.at[slot] === this.ringAt[this.head]) {
      if (this.at[slot]! >= cutoff) this.evictedEarly++;
      this.remove(slot);
    }
    this.head = (this.head + 1) % this.ringAt.length;
    this.ringCount--;
  }

  private find(f: ArrayLike<number>): number {
    for (let slot = f[0]! & this.mask; this.used[slot]; slot = (slot + 1) & this.mask) {
      const base = slot * FP_WORDS;
      if (this.fp[base] === f[0] && this.fp[base + 1] === f[1] && this.fp[base + 2] === f[2] && this.fp[base + 3] === f[3]) return slot;
    }
    return -1;
  }

  /** Backward-shift deletion: later entries of the probe run move up, so lookups never need tombstones. */
  private remove(slot: number): void {
    let hole = slot;
    this.used[hole] = 0;
    this.live--;
    for (let next = (hole + 1) & this.mask; this.used[next]; next = (next + 1) & this.mask) {
      const home = this.fp[next * FP_WORDS]! & this.mask;
      const stays = hole <= next ? home > hole && home <= next : home > hole || home <= next;
      if (stays) continue;
      this.used[hole] = 1;
      this.fp.copyWithin(hole * FP_WORDS, next * FP_WORDS, next * FP_WORDS + FP_WORDS);
      this.partition[hole] = this.partition[next]!;
      this.offset[hole] = this.offset[next]!;
      this.at[hole] = this.at[next]!;
      this.pages[hole] = this.pages[next]!;
      this.truncated[hole] = this.truncated[next]!;
      this.used[next] = 0;
      hole = next;
    }
  }

  /**
   * Claims ids about to be produced, so a concurrent request with one of them
   * waits for this one's outcome instead of producing it again. Returns the
   * claims to release once the outcome is known, and the waits for ids another
   * request holds.
   */
  claim(keys: readonly string[]): { release: () => void; busy: Array<Promise<void>> } {
    const busy: Array<Promise<void>> = [];
    const mine: string[] = [];
    let release: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    for (const key of keys) {
      const holder = this.inflight.get(key);
      if (holder) busy.push(holder);
      else {
        this.inflight.set(key, done);
        mine.push(key);
      }
    }
    return {
      busy,
      release: () => {
        for (const key of mine) if (this.inflight.get(key) === done) this.inflight.delete(key);
        release();
      },
    };
  }

  isClaimed(key: string): boolean {
    return this.inflight.has(key);
  }
}
