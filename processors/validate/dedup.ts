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
 * Memory: one Map entry per id: about 125 bytes (the entry and its boxed
 * timestamp) plus the id string (56 bytes for 36 characters), ~180 bytes in
 * all, measured on Node 24 (docs/ingest.md). Bounded
 * twice: ids older than the window are dropped (oldest first: a Map iterates
 * in insertion order, which is validation order), and at most `maxIds` are
 * kept across all partitions of the process; past the bound the oldest go
 * first and are counted (`evicted`), which shortens the window in effect.
 */

export interface DedupOptions {
  windowMs: number;
  /** Ids kept across every partition of the process. */
  maxIds: number;
}

export class DedupState {
  private readonly partitions = new Map<number, Map<string, number>>();
  private total = 0;
  /** Ids dropped by the bound before their window ended, since start. */
  evicted = 0;

  readonly options: DedupOptions;

  constructor(options: DedupOptions) {
    this.options = options;
  }

  /** Ids held, all partitions. */
  get size(): number {
    return this.total;
  }

  /** When `eventId` was first validated on `partition`, if within the window at `nowMs`. */
  seenAt(partition: number, eventId: string, nowMs: number): number | undefined {
    const ids = this.partitions.get(partition);
    const at = ids?.get(eventId);
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
    for (const [eventId, at] of entries) {
      // One hash lookup per id (set keeps an existing id's place, as has-then-set did); the size says whether it was new.
      const before = ids.size;
      ids.set(eventId, at);
      if (ids.size > before) this.total++;
    }
    this.bound(partition);
  }

  /**
   * Replaces a partition's ids with those restored from its changelog (in
   * changelog order); entries outside the window at `nowMs` are skipped.
   */
  restore(partition: number, entries: Iterable<readonly [string, number]>, nowMs: number): void {
    this.total -= this.partitions.get(partition)?.size ?? 0;
    const ids = new Map<string, number>();
    this.partitions.set(partition, ids);
    const oldest = nowMs - this.options.windowMs;
    for (const [eventId, at] of entries) {
      if (at <= oldest) continue;
      // A later entry for the same id (a duplicate's) keeps the first validation time, and its place.
      if (ids.has(eventId)) continue;
      ids.set(eventId, at);
      this.total++;
    }
    this.bound(partition);
  }

  /** Drops ids of `partition` older than the window. */
  expire(partition: number, nowMs: number): void {
    const ids = this.partitions.get(partition);
    if (ids === undefined) return;
    const oldest = nowMs - this.options.windowMs;
    for (const [eventId, at] of ids) {
      if (at > oldest) break;
      ids.delete(eventId);
      this.total--;
    }
  }

  private idsOf(partition: number): Map<string, number> {
    let ids = this.partitions.get(partition);
    if (ids === undefined) {
      ids = new Map();
      this.partitions.set(partition, ids);
    }
    return ids;
  }

  /** Over the bound: the oldest ids of `partition` go first (it is the one growing), then those of the largest partition. */
  private bound(partition: number): void {
    while (this.total > this.options.maxIds) {
      let ids = this.partitions.get(partition);
      if (ids === undefined || ids.size === 0) {
        ids = [...this.partitions.values()].reduce((largest, candidate) => (candidate.size > largest.size ? candidate : largest));
      }
      const oldest = ids.keys().next();
      if (oldest.done) return;
      ids.delete(oldest.value);
      this.total--;
      this.evicted++;
    }
  }
}
