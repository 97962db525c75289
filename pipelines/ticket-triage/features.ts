/**
 * The ticket-triage model input: hashed bag-of-words features of the ticket's
 * or document's text. `ticketTriageModel.features` (hashText of featureText)
 * is the single definition: the score stage calls it online and
 * training/ticket-triage/export-data.ts calls it to write the training data
 * (Python never recomputes features), so training and serving cannot drift
 * apart. Changing anything here (dims, tokens, hash,
 * weights) changes FEATURE_SPEC, which the model card records; a model trained
 * on another spec must be retrained, and the tests say so.
 *
 * The recipe:
 * - text: a ticket's summary, labels and description; a document's file name
 *   and extracted text; at most MAX_FEATURE_CHARS of it (long documents repeat
 *   themselves, and the cost per event stays bounded);
 * - lower case, every run of digits → `0` (order numbers, dates and versions
 *   are noise to a topic model; "cve 0 0" still says CVE);
 * - word tokens: runs of letters, marks and digits; features are word
 *   unigrams, word bigrams and character 3-grams (UTF-16 code units) of each
 *   word padded with a space on both sides (so a misspelled "refnud" still
 *   shares most of "refund"'s 3-grams); the 3-grams are weighted CHAR_WEIGHT;
 * - each distinct feature string is hashed with FNV-1a 32-bit over its UTF-8
 *   bytes, namespaced by a prefix (`w:`, `b:`, `c:`); the low bits pick the
 *   bucket, the top bit the sign (signed hashing makes collisions cancel out
 *   on average instead of piling up);
 * - value = sign × weight × log(1 + count); buckets add up; the vector is
 *   L2-normalized (long and short texts are comparable).
 */
import type { ModelAdapter } from '../../lib/pipeline.ts';
import { CATEGORIES, type TicketTriagePayload } from './types.ts';

/** 2^12 buckets: see training/ticket-triage/README.md for the measured F1 against 2^10…2^14. */
export const FEATURE_DIMS = 4_096;
/** UTF-16 code units of text read for features; longer text is cut (never inside a surrogate pair). */
export const MAX_FEATURE_CHARS = 16_384;
export const CHAR_WEIGHT = 0.5;
/** Bump when the recipe changes in a way the constants above do not show. */
export const FEATURE_REVISION = 1;

export interface FeatureConfig {
  dims: number;
  maxChars: number;
  charWeight: number;
}

export const FEATURE_CONFIG: Readonly<FeatureConfig> = { dims: FEATURE_DIMS, maxChars: MAX_FEATURE_CHARS, charWeight: CHAR_WEIGHT };

/** Names the recipe; the model card records the spec its model was trained on. */
export const featureSpec = (config: FeatureConfig = FEATURE_CONFIG): string =>
  `hashed-text-v${FEATURE_REVISION};fnv1a32-utf8;w1+w2+c3;log1p-tf;signed;l2;dims=${config.dims};max_chars=${config.maxChars};char_weight=${config.charWeight}`;
export const FEATURE_SPEC = featureSpec();

export const featureNames = (dims: number): string[] => Array.from({ length: dims }, (_, i) => `h${String(i).padStart(4, '0')}`);
export const FEATURE_NAMES: readonly string[] = featureNames(FEATURE_DIMS);

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * Continues an FNV-1a 32-bit hash over the UTF-8 bytes of `text` (or of its
 * code units `start` to `end`, as if sliced), encoding as it goes: no string
 * or buffer per n-gram. A lone surrogate is hashed as U+FFFD, as TextEncoder
 * would encode it. Returns an int32; `>>> 0` gives the uint32.
 */
export function fnv1aUpdate(hash: number, text: string, start = 0, end = text.length): number {
  let h = hash;
  for (let i = start; i < end; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < end ? text.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        h = Math.imul(h ^ (0xf0 | (cp >> 18)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((cp >> 12) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((cp >> 6) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | (cp & 0x3f)), FNV_PRIME);
        continue;
      }
      c = 0xfffd;
    }
    h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return h;
}

/** FNV-1a 32-bit of the UTF-8 bytes of `text`, as an unsigned integer. */
export const fnv1a32 = (text: string): number => fnv1aUpdate(FNV_OFFSET, text) >>> 0;

const WORD_SEED = fnv1aUpdate(FNV_OFFSET, 'w:');
const BIGRAM_SEED = fnv1aUpdate(FNV_OFFSET, 'b:');
const CHAR_SEED = fnv1aUpdate(FNV_OFFSET, 'c:');

const WORD = /[\p{L}\p{M}\p{N}]+/gu;

/** The text the model reads, before the MAX_FEATURE_CHARS cut. */
export function featureText(payload: TicketTriagePayload): string {
  if (payload.ticket !== null) {
    const { summary, labels, description } = payload.ticket;
    return `${summary}\n${labels.join(' ')}\n${description ?? ''}`;
  }
  return `${payload.document.filename}\n${payload.document.text}`;
}

/** `text` cut to at most `maxChars` code units, never between the halves of a surrogate pair. */
export function clipText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const code = text.charCodeAt(maxChars - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? maxChars - 1 : maxChars);
}

/** The word tokens of `text` as the features see them: lower case, digit runs → `0`. */
export function tokenize(text: string): string[] {
  return text.toLowerCase().replace(/\p{Nd}+/gu, '0').match(WORD) ?? [];
}

export interface HashedText {
  vector: Float32Array;
  /** word tokens read */
  tokens: number;
}

/** The hashed, weighted, L2-normalized vector of `text` (see the module comment). Pure and total. */
export function hashText(text: string, config: FeatureConfig = FEATURE_CONFIG): HashedText {
  const { dims, maxChars, charWeight } = config;
  if (!Number.isInteger(Math.log2(dims))) throw new RangeError(`dims must be a power of two, got ${dims}`);
  const tokens = tokenize(clipText(text, maxChars));
  // Occurrences per distinct feature, keyed by its 32-bit hash (a collision of full hashes is negligible).
  const words = new Map<number, number>();
  const chars = new Map<number, number>();
  const count = (map: Map<number, number>, hash: number) => map.set(hash, (map.get(hash) ?? 0) + 1);
  let previous: string | null = null;
  for (const token of tokens) {
    count(words, fnv1aUpdate(WORD_SEED, token));
    if (previous !== null) count(words, fnv1aUpdate(fnv1aUpdate(fnv1aUpdate(BIGRAM_SEED, previous), ' '), token));
    previous = token;
    if (charWeight > 0) {
      const padded = ` ${token} `;
      for (let i = 0; i + 3 <= padded.length; i++) count(chars, fnv1aUpdate(CHAR_SEED, padded, i, i + 3));
    }
  }
  // Summed in float64 and rounded to float32 once, at the end.
  const buckets = new Float64Array(dims);
  const mask = dims - 1;
  const add = (map: Map<number, number>, weight: number) => {
    for (const [hash, n] of map) buckets[hash & mask]! += (hash < 0 ? -weight : weight) * Math.log1p(n);
  };
  add(words, 1);
  add(chars, charWeight);
  let sumSquares = 0;
  for (let i = 0; i < dims; i++) sumSquares += buckets[i]! * buckets[i]!;
  const vector = new Float32Array(dims);
  if (sumSquares > 0) {
    const scale = 1 / Math.sqrt(sumSquares);
    for (let i = 0; i < dims; i++) vector[i] = buckets[i]! * scale;
  }
  return { vector, tokens: tokens.length };
}

/** The model input row of a validated payload, in FEATURE_NAMES order. */
export function featuresOf(payload: TicketTriagePayload, config: FeatureConfig = FEATURE_CONFIG): Float32Array {
  return hashText(featureText(payload), config).vector;
}

/**
 * The numbers kept with every scored record for drift and data-quality checks:
 * 1 for a document; log(1 + length) of the text the model reads (featureText,
 * before the cut); log(1 + word tokens) the features read; the ticket's label
 * count; 1 when a ticket has a description; CVE identifiers in the text.
 */
export const MONITORED_NAMES = ['is_document', 'text_chars_log1p', 'token_count_log1p', 'label_count', 'has_description', 'cve_count'] as const;

/** A CVE identifier (CVE-YYYY-NNNN…), any case, as a whole word; the policy's security rule uses it too. */
export const CVE_PATTERN = /(?<![\p{L}\p{N}])CVE-\d{4}-\d{4,}(?![\p{L}\p{N}])/iu;
const CVE_IDS = new RegExp(CVE_PATTERN.source, 'giu');

/** MONITORED_NAMES values; `tokens` is the word-token count the features read (hashText's). */
export function monitoredOf(payload: TicketTriagePayload, tokens: number): number[] {
  const text = featureText(payload);
  const ticket = payload.ticket;
  return [
    ticket === null ? 1 : 0,
    Math.log1p(text.length),
    Math.log1p(tokens),
    ticket === null ? 0 : ticket.labels.length,
    ticket !== null && ticket.description !== null ? 1 : 0,
    text.match(CVE_IDS)?.length ?? 0,
  ];
}

/**
 * Token counts of vectors `features` returned, so `monitored` does not tokenize
 * the text a second time; keyed weakly by the vector, so nothing is retained.
 */
const tokenCounts = new WeakMap<object, number>();

export const ticketTriageModel: ModelAdapter<TicketTriagePayload> = {
  featureNames: FEATURE_NAMES,
  features(_eventType, payload) {
    const { vector, tokens } = hashText(featureText(payload));
    tokenCounts.set(vector, tokens);
    return vector;
  },
  output: { kind: 'multiclass', classes: CATEGORIES },
  monitoredNames: MONITORED_NAMES,
  monitored(_eventType, payload, features) {
    const tokens = (typeof features === 'object' ? tokenCounts.get(features) : undefined) ?? hashText(featureText(payload)).tokens;
    return monitoredOf(payload, tokens);
  },
};
