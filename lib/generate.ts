/**
 * Helpers of the pipelines' traffic generators (TrafficGenerator in
 * lib/pipeline.ts): random identifiers, timestamps spelled the ways producers
 * spell them, the options every generator takes, and the pieces of malformed
 * samples that do not depend on the pipeline. Everything random draws from
 * the Rng it is given, in a fixed order, so generated events stay a function
 * of (seed, index): changing what these draw changes every generated event.
 */
import type { GenerateOptions, MalformedSample } from './pipeline.ts';
import type { Rng } from './prng.ts';

/** `length` random lower-case hexadecimal digits. */
export function hex(rng: Rng, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += '0123456789abcdef'[rng.int(0, 15)];
  return out;
}

/** Deterministic shuffle of a copy (Fisher-Yates). */
export function shuffled<T>(rng: Rng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const pad = (value: number, width = 2): string => String(value).padStart(width, '0');

/** RFC 3339 with a numeric offset, denoting the same instant as `ms`. */
export function withOffset(ms: number, offsetMinutes: number): string {
  const local = new Date(ms + offsetMinutes * 60_000);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return (
    `${local.getUTCFullYear()}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())}` +
    `T${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())}` +
    `.${pad(local.getUTCMilliseconds(), 3)}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
  );
}

/** `occurred_at` as a producer might send it: RFC 3339 UTC (70 %), epoch ms (20 %) or RFC 3339 with an offset (10 %). */
export function spellTimestamp(rng: Rng, ms: number): string | number {
  const roll = rng.next();
  if (roll < 0.7) return new Date(ms).toISOString();
  if (roll < 0.9) return ms;
  return withOffset(ms, rng.pick([330, 60, 120, -180, -300, 540]));
}

/** GenerateOptions with its defaults filled in, after checking them; throws RangeError. */
export function generateRange(options: GenerateOptions): Required<GenerateOptions> {
  const { seed, count, startMs, spacingMs = 1_000, idPrefix = 'evt', firstIndex = 0 } = options;
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
  if (!Number.isSafeInteger(firstIndex) || firstIndex < 0) throw new RangeError(`firstIndex must be a non-negative integer, got ${firstIndex}`);
  if (!Number.isFinite(startMs) || !Number.isFinite(spacingMs)) throw new RangeError('startMs and spacingMs must be finite');
  return { seed, count, startMs, spacingMs, idPrefix, firstIndex };
}

/**
 * Well-formed JSON text but for one invalid UTF-8 sequence (0xC3 0x28) right
 * after the first `marker`: lenient decoding would silently turn it into
 * U+FFFD and let it through.
 */
export function withInvalidUtf8(json: string, marker: string): Buffer {
  const [before, after] = json.split(marker);
  return Buffer.concat([Buffer.from(`${before}${marker}`, 'utf8'), Buffer.from([0xc3, 0x28]), Buffer.from(after!, 'utf8')]);
}

/**
 * The `oversized` sample, the last of a pipeline's malformed samples:
 * `envelope` (valid in every other respect) with an unknown payload field
 * `padding` bringing it to one byte over `maxMessageBytes`. Throws RangeError
 * when the limit is below one of the other `samples`, which must not be
 * oversized themselves.
 */
export function oversizedSample<E extends { payload: object }>(
  samples: readonly MalformedSample[],
  maxMessageBytes: number,
  envelope: E,
  key: string,
): MalformedSample & { value: Buffer } {
  const largest = Math.max(...samples.map((sample) => sample.value?.length ?? 0));
  if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < largest) {
    throw new RangeError(`maxMessageBytes must be an integer >= ${largest} (the largest non-oversized sample), got ${maxMessageBytes}`);
  }
  const unpadded = Buffer.byteLength(JSON.stringify({ ...envelope, payload: { ...envelope.payload, padding: '' } }));
  const padding = 'x'.repeat(maxMessageBytes + 1 - unpadded);
  return {
    name: 'oversized',
    reason: 'OVERSIZED',
    field: null,
    eventId: key,
    key,
    value: Buffer.from(JSON.stringify({ ...envelope, payload: { ...envelope.payload, padding } }), 'utf8'),
  };
}
