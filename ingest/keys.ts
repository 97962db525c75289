/**
 * API keys. A key is `sk_<id>_<secret>`; only the id and the SHA-256 of the
 * whole key are stored, as one record per key on a compacted Kafka topic that
 * every gateway instance follows (a tombstone revokes it), so a key added or
 * revoked on one instance holds on all of them within a second or two. The
 * secret is 256 random bits, so a plain hash is enough (no password stretching:
 * nothing to guess).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

const KEY_FORMAT = /^sk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface KeyRecord {
  key_id: string;
  pipeline: string;
  /** SHA-256 of the whole key, hex. */
  sha256: string;
  /** Events per second this key may send (per gateway instance). */
  rate_per_second: number;
  created_at: number;
  created_by: string;
}

const keyRecordSchema = z.object({
  key_id: z.string().regex(/^[0-9a-f]{16}$/),
  pipeline: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  rate_per_second: z.number().positive(),
  created_at: z.number().int(),
  created_by: z.string(),
});

const sha256Hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** A new key for `pipeline`: the secret (shown once) and the record to store. */
export function newApiKey(pipeline: string, ratePerSecond: number, createdBy: string, now = Date.now()): { key: string; record: KeyRecord } {
  const id = randomBytes(8).toString('hex');
  const key = `sk_${id}_${randomBytes(32).toString('base64url')}`;
  return { key, record: { key_id: id, pipeline, sha256: sha256Hex(key), rate_per_second: ratePerSecond, created_at: now, created_by: createdBy } };
}

/** The id of a key as written (`sk_<id>_…`), or undefined if it is not shaped like one. */
export const keyIdOf = (key: string): string | undefined => KEY_FORMAT.exec(key)?.[1];

export const encodeKeyRecord = (record: KeyRecord): Buffer => Buffer.from(JSON.stringify(record), 'utf8');

export function decodeKeyRecord(value: Buffer): KeyRecord {
  return keyRecordSchema.parse(JSON.parse(value.toString('utf8')));
}

/** The keys in force, as this instance has read them from the keys topic. */
export class KeyRing {
  private readonly keys = new Map<string, KeyRecord>();

  /** Applies one record of the keys topic: a value adds or replaces the key, a tombstone revokes it. */
  apply(keyId: string, value: Buffer | null): void {
    if (value === null) this.keys.delete(keyId);
    else this.keys.set(keyId, decodeKeyRecord(value));
  }

  /** The record of a presented key, or undefined when the key is unknown, revoked or wrong. */
  authenticate(presented: string): KeyRecord | undefined {
    const id = keyIdOf(presented);
    const record = id === undefined ? undefined : this.keys.get(id);
    if (!record) return undefined;
    const expected = Buffer.from(record.sha256, 'hex');
    const actual = createHash('sha256').update(presented, 'utf8').digest();
    return timingSafeEqual(expected, actual) ? record : undefined;
  }

  list(): KeyRecord[] {
    return [...this.keys.values()];
  }

  get size(): number {
    return this.keys.size;
  }
}

/**
 * Events per second per key: a token bucket holding one second of the key's
 * rate. A request takes one token per event; one larger than the bucket may
 * still pass when the bucket is full, leaving a debt that later requests wait
 * out, so a key's average never exceeds its rate and any batch up to the
 * request limit can get through.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** Takes `events` tokens, or answers how many seconds to wait before trying again. */
  take(keyId: string, ratePerSecond: number, events: number): { ok: true } | { ok: false; retryAfterSeconds: number } {
    const now = this.now();
    const bucket = this.buckets.get(keyId) ?? { tokens: ratePerSecond, at: now };
    bucket.tokens = Math.min(ratePerSecond, bucket.tokens + ((now - bucket.at) / 1_000) * ratePerSecond);
    bucket.at = now;
    this.buckets.set(keyId, bucket);
    const full = bucket.tokens >= ratePerSecond;
    if (bucket.tokens >= events || (full && events > ratePerSecond)) {
      bucket.tokens -= events;
      return { ok: true };
    }
    const missing = Math.min(events, ratePerSecond) - bucket.tokens;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(missing / ratePerSecond)) };
  }

  /**
   * Seconds to wait when not even one event of this key would pass now, else 0.
   * Takes nothing: the events route asks it before reading a body, so a key far
   * over its rate costs the gateway a header, not a parsed batch (a burst at ten
   * times a key's rate is mostly such requests).
   */
  waitBeforeAny(keyId: string, ratePerSecond: number): number {
    const bucket = this.buckets.get(keyId);
    if (bucket === undefined) return 0;
    const tokens = Math.min(ratePerSecond, bucket.tokens + ((this.now() - bucket.at) / 1_000) * ratePerSecond);
    return tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - tokens) / ratePerSecond));
  }

  forget(keyId: string): void {
    this.buckets.delete(keyId);
  }
}
