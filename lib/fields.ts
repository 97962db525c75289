/**
 * Defensive field readers for a pipeline's PayloadRules (lib/pipeline.ts):
 * read one field of an untrusted payload (parsed JSON or a decoded Avro record)
 * through `ownField`, check it, and either return the value or throw a
 * `Reject` naming the field at fault. A PayloadRules function runs its picking
 * inside `readPayload`, which turns the first Reject into the failed
 * PayloadResult, so the rules never throw for bad data.
 *
 * Shared conventions (every pipeline's contract states them):
 * - `null` for an optional field means absent; for a required field it is a
 *   wrong type.
 * - Every string must be well-formed Unicode (no lone surrogates): Avro writes
 *   UTF-8, which cannot carry them.
 * - Integers are Avro `int`: at most 2^31 - 1.
 */
import { fieldNames, ownField, typeName } from './json.ts';
import type { PayloadResult } from './pipeline.ts';

export const INT32_MAX = 2_147_483_647;

/** Thrown by the readers: the payload field at fault (without `payload.`) and what is wrong with it. */
export class Reject {
  readonly field: string;
  readonly message: string;
  constructor(field: string, message: string) {
    this.field = field;
    this.message = message;
  }
}

/**
 * Runs a pipeline's picking: its result, or the failed PayloadResult of the
 * first Reject it throws. Any other exception is a defect and propagates.
 */
export function readPayload<P>(pick: () => PayloadResult<P>): PayloadResult<P> {
  try {
    return pick();
  } catch (error) {
    if (error instanceof Reject) return { ok: false, field: error.field, message: error.message };
    throw error;
  }
}

/** The payload's field names outside `known`, sorted: what the rules drop (PayloadResult.droppedFields). */
export function unknownFields(payload: object, known: ReadonlySet<string>): string[] {
  // Per record on the validate path: no intermediate array when, as usual, every field is known.
  let unknown: string[] | undefined;
  for (const name of fieldNames(payload)) {
    if (known.has(name)) continue;
    if (unknown === undefined) unknown = [name];
    else unknown.push(name);
  }
  return unknown === undefined ? [] : unknown.sort();
}

/** A required string field: absent is `required`; null or another type is a wrong type. */
export function requiredString(payload: object, field: string): string {
  const value = ownField(payload, field);
  if (value === undefined) throw new Reject(field, 'required');
  return asString(field, value);
}

/** An optional string field: absent or null is null. */
export function optionalString(payload: object, field: string): string | null {
  const value = ownField(payload, field);
  return value === undefined || value === null ? null : asString(field, value);
}

/** `value` if it is a well-formed string. */
export function asString(field: string, value: unknown): string {
  if (typeof value !== 'string') throw new Reject(field, `expected a string, got ${typeName(value)}`);
  if (!value.isWellFormed()) throw new Reject(field, 'contains a lone UTF-16 surrogate');
  return value;
}

/**
 * `value` if it is exactly one of `allowed` (case-sensitive, as Avro enum
 * symbols are). The message lists the allowed values, followed by `hint` when
 * given (signup-risk says ` (lower case)`).
 */
export function oneOf<T extends string>(field: string, value: string, allowed: readonly T[], hint = ''): T {
  const found = allowed.find((candidate) => candidate === value);
  if (found === undefined) throw new Reject(field, `expected one of ${allowed.join(', ')}${hint}`);
  return found;
}

/** Code points in `text`, counting no further than `limit` (so a huge string costs little). */
export function codePointCount(text: string, limit = Number.POSITIVE_INFINITY): number {
  let count = 0;
  for (const _ of text) {
    count += 1;
    if (count >= limit) break;
  }
  return count;
}

export const MAX_EMAIL_CHARS = 254;
export const MAX_EMAIL_LOCAL_PART_CHARS = 64;
const MAX_DOMAIN_CHARS = 253;
const MAX_DOMAIN_LABEL_CHARS = 63;

/**
 * RFC 5322 atext (lower case, as addresses are checked after folding), and
 * the characters of a domain label: per character code, checked in a loop
 * rather than with a regular expression per part (this runs per record).
 */
const ATEXT = charTable("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-");
const LABEL_CHARS = charTable('abcdefghijklmnopqrstuvwxyz0123456789-');
const HYPHEN = 0x2d;
const DOT = 0x2e;

function charTable(chars: string): Uint8Array {
  const table = new Uint8Array(128);
  for (let i = 0; i < chars.length; i++) table[chars.charCodeAt(i)] = 1;
  return table;
}

/** RFC 5322 dot-atom: atext runs separated by single dots. Quoted local parts are not accepted. */
function isDotAtom(text: string): boolean {
  if (text.length === 0) return false;
  let runStart = true;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === DOT) {
      if (runStart) return false; // leading or doubled dot
      runStart = true;
    } else if (code < 128 && ATEXT[code] === 1) {
      runStart = false;
    } else {
      return false;
    }
  }
  return !runStart; // no trailing dot
}

/**
 * A host name as mail uses it: at least two dot-separated labels of ASCII
 * letters, digits and inner hyphens, each 1–63 characters, 253 in all, the last
 * not all digits (so an IPv4 address is not a domain). Internationalized
 * domains must arrive in their punycode (`xn--`) form. Expects lower case.
 */
export function isValidDomain(domain: string): boolean {
  if (domain.length > MAX_DOMAIN_CHARS) return false;
  let labels = 0;
  let start = 0;
  let allDigits = true;
  for (let i = 0; i <= domain.length; i++) {
    const code = i === domain.length ? DOT : domain.charCodeAt(i);
    if (code === DOT) {
      const length = i - start;
      if (length === 0 || length > MAX_DOMAIN_LABEL_CHARS) return false;
      if (domain.charCodeAt(start) === HYPHEN || domain.charCodeAt(i - 1) === HYPHEN) return false;
      labels++;
      start = i + 1;
      if (i < domain.length) allDigits = true; // a new label begins; the last one's digits decide
      continue;
    }
    if (code >= 128 || LABEL_CHARS[code] !== 1) return false;
    if (code < 0x30 || code > 0x39) allDigits = false;
  }
  return labels >= 2 && !allDigits;
}

export type EmailNormalization = { ok: true; email: string; domain: string } | { ok: false; message: string };

/**
 * Trims and lower-cases an address, then checks it: ASCII only (checked before
 * case folding, so e.g. the Kelvin sign cannot fold into `k`), at most 254
 * characters, exactly one `@`, a dot-atom local part of 1–64 characters, and a
 * valid domain (isValidDomain). This is a syntax check, not deliverability:
 * quoted local parts, IP-literal domains and SMTPUTF8 addresses are rejected
 * because they are vanishingly rare in real traffic and mostly abuse.
 */
export function normalizeEmail(raw: string): EmailNormalization {
  const trimmed = raw.trim();
  if (trimmed.length === 0) return { ok: false, message: 'must not be empty' };
  for (let i = 0; i < trimmed.length; i++) {
    const code = trimmed.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) return { ok: false, message: 'must be printable ASCII without spaces' };
  }
  const email = trimmed.toLowerCase();
  if (email.length > MAX_EMAIL_CHARS) return { ok: false, message: `longer than ${MAX_EMAIL_CHARS} characters` };
  const at = email.indexOf('@');
  if (at < 0 || email.indexOf('@', at + 1) >= 0) return { ok: false, message: 'must contain exactly one @' };
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  if (local.length === 0 || local.length > MAX_EMAIL_LOCAL_PART_CHARS || !isDotAtom(local)) {
    return { ok: false, message: `local part must be 1-${MAX_EMAIL_LOCAL_PART_CHARS} characters of dot-atom text` };
  }
  if (!isValidDomain(domain)) return { ok: false, message: 'domain is not a valid host name' };
  return { ok: true, email, domain };
}
