/**
 * The validate stage's duplicate check, pure: which event ids each input
 * partition validated within the window. No Kafka here; the changelog that
 * makes it survive restarts and rebalances is in changelog.ts.
 *
 * Per partition, because Kafka orders and assigns by partition: a retry of an
 * event carries its key, so it lands on the partition the first copy did, and
 * the instance that owns that partition holds its ids. A duplicate under a
 * different key (another partition) is not caught: docs/ingest.md says so.
 *
 * Memory: the ids live outside the V8 heap, in typed arrays and a byte arena
 * per partition (IdLog below), nothing for the garbage collector to trace:
 * about 70 bytes per 36-character id (52 of them the id's bytes, its time,
 * offset and hash; the rest room to grow), 35 MB at the default bound,
 * measured on Node 24 with `bench/dedup-memory.ts` (arrays it outgrows are
 * freed at once, see release()); the Map of strings it
 * replaced held about 116 bytes per id on the heap in the same run. Exact: an
 * id is found by comparing its bytes, never by a hash alone, since taking a
 * distinct event for a duplicate would drop it. Bounded twice: ids older than
 * the window are dropped (oldest first: the log is in validation order), and
 * at most `maxIds` are kept across all partitions of the process; past the
 * bound the oldest go first and are counted (`evicted`), which shortens the
 * window in effect.
 */
import { SluiceError } from '../../lib/errors.ts';

export interface DedupOptions {
  windowMs: number;
  /** Ids kept across every partition of the process. */
  maxIds: number;
  /** The 32-bit hash that places ids in the index (hashOf); tests pass a poor one to make ids share slots. */
  hash?: (id: string) => number;
}

export class DedupState {
  private readonly partitions = new Map<number, IdLog>();
  private total = 0;
  /** Ids dropped by the bound before their window ended, since start. */
  evicted = 0;

  readonly options: DedupOptions;
  private readonly hash: (id: string) => number;

  constructor(options: DedupOptions) {
    this.options = options;
    this.hash = options.hash ?? hashOf;
  }

  /** Ids held, all partitions. */
  get size(): number {
    return this.total;
  }

  /** Bytes of typed arrays and arenas held for the ids, all partitions (outside the V8 heap). */
  get bytes(): number {
    let bytes = 0;
    for (const ids of this.partitions.values()) bytes += ids.bytes;
    return bytes;
  }

  /** When `eventId` was first validated on `partition`, if within the window at `nowMs`. */
  seenAt(partition: number, eventId: string, nowMs: number): number | undefined {
    const at = this.partitions.get(partition)?.get(eventId);
    if (at === undefined) return undefined;
    return at > nowMs - this.options.windowMs ? at : undefined;
  }

  /**
   * Records ids first validated by a chunk, once the whole chunk was handled
   * (a chunk that throws half way records nothing: it is run again).
   */
  record(partition: number, entries: Iterable<readonly [string, number]>, nowMs: number): void {
    const ids = this.idsOf(partition);
    this.expire(partition, nowMs);
    // An id already held takes the new time and keeps its place (as a Map's set did).
    for (const [eventId, at] of entries) if (ids.set(eventId, at)) this.total++;
    this.bound(partition);
  }

  /**
   * Replaces a partition's ids with those restored from its changelog (in
   * changelog order); entries outside the window at `nowMs` are skipped.
   */
  restore(partition: number, entries: Iterable<readonly [string, number]>, nowMs: number): void {
    this.total -= this.partitions.get(partition)?.count ?? 0;
    const ids = new IdLog(this.hash);
    this.partitions.set(partition, ids);
    const oldest = nowMs - this.options.windowMs;
    for (const [eventId, at] of entries) {
      if (at <= oldest) continue;
      // A later entry for the same id (a duplicate's) keeps the first validation time, and its place.
      if (ids.add(eventId, at)) this.total++;
    }
    this.bound(partition);
  }

  /** Drops ids of `partition` older than the window. */
  expire(partition: number, nowMs: number): void {
    const ids = this.partitions.get(partition);
    if (ids === undefined) return;
    const oldest = nowMs - this.options.windowMs;
    // Not `<= oldest`: a NaN time goes too, as it did from the Map.
    while (ids.count > 0 && !(ids.oldestAt() > oldest)) {
      ids.dropOldest();
      this.total--;
    }
  }

  private idsOf(partition: number): IdLog {
    let ids = this.partitions.get(partition);
    if (ids === undefined) {
      ids = new IdLog(this.hash);
      this.partitions.set(partition, ids);
    }
    return ids;
  }

  /** Over the bound: the oldest ids of `partition` go first (it is the one growing), then those of the largest partition. */
  private bound(partition: number): void {
    while (this.total > this.options.maxIds) {
      let ids = this.partitions.get(partition);
      if (ids === undefined || ids.count === 0) {
        ids = [...this.partitions.values()].reduce((largest, candidate) => (candidate.count > largest.count ? candidate : largest));
      }
      if (ids.count === 0) return;
      ids.dropOldest();
      this.total--;
      this.evicted++;
    }
  }
}

/**
 * Ring entries and arena bytes a partition starts with (about 56 KB with the
 * index). Each grows by half when full (doubling left up to half of a large
 * log unused) and shrinks by a third when two thirds empty.
 */
const INITIAL_ENTRIES = 1_024;
const INITIAL_ARENA_BYTES = 32_768;
/**
 * Arena offsets are 32-bit and wrap around (a partition appends 4 GiB of ids
 * in a few hours at 10,000 ids/s); only the bytes held at once must stay under this.
 */
const MAX_ARENA_BYTES = 2 ** 32 - 1;
/** Where a log's logical offsets start: 4 KiB short of the wrap, so every log crosses it within its first ids, in tests too. */
const WRAP_SOON = 2 ** 32 - 4_096;
/**
 * First byte of an id that is not well-formed UTF-16 (a lone surrogate, which
 * JSON's `\ud800` can carry), stored as this byte and its UTF-16LE code units:
 * UTF-8 would turn every lone surrogate into U+FFFD and confuse distinct ids.
 * 0xFF never occurs in UTF-8, so the two encodings cannot meet.
 */
const UTF16_MARK = 0xff;
/** Where an id is encoded to compare it with a stored one; grows for a longer id, never shrinks (ids are at most 128 characters). */
let scratch = Buffer.allocUnsafeSlow(1_024);

/**
 * 32-bit hash of an id's UTF-16 code units (FNV-1a, then murmur3's finalizer
 * so the low bits that pick a slot depend on every unit). Over code units, not
 * bytes: a lookup that finds no candidate never encodes the id.
 */
export function hashOf(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The most bytes `id` takes encoded (UTF-8: 3 per code unit at most; marked UTF-16LE: 1 + 2 per unit). */
const maxBytesOf = (id: string): number => id.length * 3 + 1;

/** Encodes `id` into `into` at `offset` (room for maxBytesOf(id) checked by the caller); returns the byte count. */
function encodeInto(id: string, into: Buffer, offset: number): number {
  if (id.isWellFormed()) return into.write(id, offset, 'utf8');
  into[offset] = UTF16_MARK;
  return 1 + into.write(id, offset + 1, 'utf16le');
}

/**
 * Frees a replaced array's memory now (detaching its buffer), rather than when
 * the collector next finds it: a growing log's old arrays would otherwise stay
 * resident beside the new ones, up to a full collection later. Only an array
 * that owns its whole buffer (every one here: typed arrays of their own and
 * unpooled Buffers), never a view into memory something else uses.
 */
function release(replaced: Uint8Array | Uint32Array | Int32Array | Float64Array): void {
  const buffer = replaced.buffer;
  if (buffer instanceof ArrayBuffer && replaced.byteOffset === 0 && replaced.byteLength === buffer.byteLength) buffer.transfer(0);
}

/** The index's slots for a ring of `capacity` entries: a power of two, at least twice as many, so it is at most half full. */
function slotsFor(capacity: number): number {
  let slots = 1_024;
  while (slots < capacity * 2) slots *= 2;
  return slots;
}

/**
 * One partition's ids, oldest first, outside the V8 heap:
 * - a ring of entries (oldest at `head`): where the id's bytes start in the
 *   arena, its hash and its first validation time;
 * - an arena holding the ids' bytes in ring order, back to back, so an entry's
 *   length is where the next one starts, and dropping the oldest only moves
 *   where the live bytes start; when the arena is full, the live bytes move to
 *   its front if that leaves a third of it free, else to a larger one;
 * - an open-addressing index (linear probing, at most half full, backward-shift
 *   deletion, no tombstones): slot → ring position + 1, 0 when empty; rebuilt
 *   from the entries' hashes when the ring is resized.
 * Entry offsets are logical (arena[0] is logical offset `base`) modulo 2^32,
 * so moving the live bytes rewrites no entry.
 */
class IdLog {
  count = 0;
  private head = 0;
  private capacity = INITIAL_ENTRIES;
  private start = new Uint32Array(INITIAL_ENTRIES);
  private hash = new Uint32Array(INITIAL_ENTRIES);
  private at = new Float64Array(INITIAL_ENTRIES);
  private slotMask = slotsFor(INITIAL_ENTRIES) - 1;
  private slots = new Int32Array(slotsFor(INITIAL_ENTRIES));
  private arena = Buffer.allocUnsafeSlow(INITIAL_ARENA_BYTES);
  /** Logical offsets: of arena[0], of the oldest entry's bytes, and past the newest's. */
  private base = WRAP_SOON;
  private first = WRAP_SOON;
  private end = WRAP_SOON;
  private readonly hashId: (id: string) => number;

  constructor(hash: (id: string) => number) {
    this.hashId = hash;
  }

  get bytes(): number {
    return this.start.byteLength + this.hash.byteLength + this.at.byteLength + this.slots.byteLength + this.arena.byteLength;
  }

  /** Time of the oldest entry; only when count > 0. */
  oldestAt(): number {
    return this.at[this.head]!;
  }

  get(id: string): number | undefined {
    const position = this.find(id, this.hashId(id) >>> 0);
    return position < 0 ? undefined : this.at[position];
  }

  /** Sets an id's time, appending it if new; true if it was new. */
  set(id: string, at: number): boolean {
    const h = this.hashId(id) >>> 0;
    const position = this.find(id, h);
    if (position >= 0) {
      this.at[position] = at;
      return false;
    }
    this.append(id, h, at);
    return true;
  }

  /** Appends an id unless held (which keeps its time); true if it was new. */
  add(id: string, at: number): boolean {
    const h = this.hashId(id) >>> 0;
    if (this.find(id, h) >= 0) return false;
    this.append(id, h, at);
    return true;
  }

  dropOldest(): void {
    const position = this.head;
    let slot = this.hash[position]! & this.slotMask;
    while (this.slots[slot] !== position + 1) slot = (slot + 1) & this.slotMask;
    this.removeSlot(slot);
    this.head = position + 1 === this.capacity ? 0 : position + 1;
    this.count--;
    if (this.count === 0) {
      // Empty: the next id goes to the arena's front, for free.
      this.first = this.end;
      this.base = this.end;
    } else {
      this.first = this.start[this.head]!;
    }
    if (this.capacity > INITIAL_ENTRIES && this.count * 3 < this.capacity) this.resizeRing(Math.max(INITIAL_ENTRIES, Math.ceil(this.capacity / 1.5)));
    if (this.arena.length > INITIAL_ARENA_BYTES && this.liveBytes() * 3 < this.arena.length) {
      this.moveArena(Math.max(INITIAL_ARENA_BYTES, Math.ceil(this.arena.length / 1.5)));
    }
  }

  /** Ring position of `id` (hash `h`), or -1. */
  private find(id: string, h: number): number {
    for (let slot = h & this.slotMask; ; slot = (slot + 1) & this.slotMask) {
      const entry = this.slots[slot]!;
      if (entry === 0) return -1;
      if (this.hash[entry - 1] === h && this.holds(entry - 1, id)) return entry - 1;
    }
  }

  /** Whether the entry at `position` is `id`, byte for byte. */
  private holds(position: number, id: string): boolean {
    const length = this.lengthOf(position);
    const units = id.length;
    // An encoding has at least one byte per code unit.
    if (length < units) return false;
    const offset = (this.start[position]! - this.base) >>> 0;
    const arena = this.arena;
    if (length === units) {
      // Equal lengths: equal only if the id is ASCII (any other unit takes more than a byte, so "é", C3 A9, is not "Ã©").
      for (let i = 0; i < units; i++) {
        const unit = id.charCodeAt(i);
        if (unit >= 0x80 || arena[offset + i] !== unit) return false;
      }
      return true;
    }
    if (scratch.length < maxBytesOf(id)) scratch = Buffer.allocUnsafeSlow(maxBytesOf(id) * 2);
    const written = encodeInto(id, scratch, 0);
    return written === length && arena.compare(scratch, 0, written, offset, offset + length) === 0;
  }

  private lengthOf(position: number): number {
    const next = position + 1 === this.capacity ? 0 : position + 1;
    const newest = next === this.positionAt(this.count);
    return ((newest ? this.end : this.start[next]!) - this.start[position]!) >>> 0;
  }

  /** Ring position of the entry `i` places after the oldest (i ≤ count). */
  private positionAt(i: number): number {
    const position = this.head + i;
    return position >= this.capacity ? position - this.capacity : position;
  }

  private liveBytes(): number {
    return (this.end - this.first) >>> 0;
  }

  private append(id: string, h: number, at: number): void {
    if (this.count === this.capacity) this.resizeRing(Math.ceil(this.capacity * 1.5));
    this.makeRoom(maxBytesOf(id));
    const written = encodeInto(id, this.arena, (this.end - this.base) >>> 0);
    const position = this.positionAt(this.count);
    this.start[position] = this.end;
    this.hash[position] = h;
    this.at[position] = at;
    this.end = (this.end + written) >>> 0;
    this.count++;
    let slot = h & this.slotMask;
    while (this.slots[slot] !== 0) slot = (slot + 1) & this.slotMask;
    this.slots[slot] = position + 1;
  }

  /**
   * Room for `need` more bytes past the newest id: move the live bytes to the
   * front if that leaves at least a third of the arena free (so moving them
   * costs at most two bytes per byte appended since), else to an arena half
   * as large again (or more, for a third free).
   */
  private makeRoom(need: number): void {
    if (((this.end - this.base) >>> 0) + need <= this.arena.length) return;
    const wanted = this.liveBytes() + need;
    if (wanted > MAX_ARENA_BYTES) {
      throw new SluiceError('CONFIG_INVALID', "a partition's duplicate check would hold more than 4 GiB of event ids: lower SLUICE_DEDUP_MAX_IDS.");
    }
    let size = this.arena.length;
    if (wanted * 3 > size * 2) size = Math.max(Math.ceil(size * 1.5), Math.ceil(wanted * 1.5));
    this.moveArena(size);
  }

  /** Moves the live bytes to the front of an arena of `size` bytes (this one if the size is unchanged). */
  private moveArena(size: number): void {
    const from = (this.first - this.base) >>> 0;
    const to = (this.end - this.base) >>> 0;
    if (size === this.arena.length) {
      this.arena.copyWithin(0, from, to);
    } else {
      const arena = Buffer.allocUnsafeSlow(size);
      this.arena.copy(arena, 0, from, to);
      release(this.arena);
      this.arena = arena;
    }
    this.base = this.first;
  }

  /** Copies the entries, oldest first, to a ring of `capacity` and rebuilds the index from their hashes. */
  private resizeRing(capacity: number): void {
    const start = new Uint32Array(capacity);
    const hash = new Uint32Array(capacity);
    const at = new Float64Array(capacity);
    for (let i = 0; i < this.count; i++) {
      const from = this.positionAt(i);
      start[i] = this.start[from]!;
      hash[i] = this.hash[from]!;
      at[i] = this.at[from]!;
    }
    release(this.start);
    release(this.hash);
    release(this.at);
    this.start = start;
    this.hash = hash;
    this.at = at;
    this.head = 0;
    this.capacity = capacity;
    const slots = slotsFor(capacity);
    if (slots === this.slots.length) this.slots.fill(0);
    else {
      release(this.slots);
      this.slots = new Int32Array(slots);
    }
    this.slotMask = slots - 1;
    for (let position = 0; position < this.count; position++) {
      let slot = hash[position]! & this.slotMask;
      while (this.slots[slot] !== 0) slot = (slot + 1) & this.slotMask;
      this.slots[slot] = position + 1;
    }
  }

  /** Backward-shift deletion: later entries of the probe run move up, so lookups never meet a tombstone. */
  private removeSlot(slot: number): void {
    const slots = this.slots;
    const mask = this.slotMask;
    let hole = slot;
    slots[hole] = 0;
    for (let next = (hole + 1) & mask; slots[next] !== 0; next = (next + 1) & mask) {
      const home = this.hash[slots[next]! - 1]! & mask;
      const stays = hole <= next ? home > hole && home <= next : home > hole || home <= next;
      if (stays) continue;
      slots[hole] = slots[next]!;
      slots[next] = 0;
      hole = next;
    }
  }
}
