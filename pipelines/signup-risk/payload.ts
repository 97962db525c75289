/**
 * The signup-risk payload rules (PRODUCT.md, reference pipeline 1): parse and
 * normalize the payload of a `user_signed_up` event, parsed JSON or a decoded
 * Avro record alike.
 *
 * Decisions the contract leaves open:
 * - `null` for an optional field means absent; for a required field it is a
 *   wrong type.
 * - `country` and `ip_country` accept any case (the contract says so) and are
 *   upper-cased; `signup_channel` and `plan` must be given exactly as listed,
 *   lower case: they are Avro enum symbols, which are case-sensitive, and a
 *   producer sending `Web` has a bug worth surfacing rather than hiding.
 * - No string is trimmed except `email` (the contract says so).
 * - Every string must be well-formed Unicode (no lone surrogates): Avro writes
 *   UTF-8, which cannot carry them.
 * - Integers are Avro `int`: 0 ≤ n ≤ 2^31 - 1.
 */
import type { PayloadResult } from '../../lib/pipeline.ts';
import { fieldNames, ownField, typeName } from '../../lib/json.ts';
import { normalizeCountryCode } from './countries.ts';
import type { Plan, SignupChannel, SignupPayload } from './types.ts';

export const SIGNUP_CHANNELS: readonly SignupChannel[] = ['web', 'ios', 'android', 'api'];
export const PLANS: readonly Plan[] = ['free', 'pro', 'enterprise'];
export const PAYLOAD_FIELDS = [
  'user_id',
  'email',
  'country',
  'ip_country',
  'signup_channel',
  'plan',
  'email_domain_age_days',
  'signups_from_ip_24h',
  'referral_code',
] as const;

const INT32_MAX = 2_147_483_647;
export const MAX_EMAIL_CHARS = 254;
export const MAX_EMAIL_LOCAL_PART_CHARS = 64;
const MAX_DOMAIN_CHARS = 253;
const MAX_DOMAIN_LABEL_CHARS = 63;

/** RFC 5322 dot-atom: atext runs separated by single dots. Quoted local parts are not accepted. */
const DOT_ATOM = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/**
 * A host name as mail uses it: at least two dot-separated labels of ASCII
 * letters, digits and inner hyphens, each 1–63 characters, 253 in all, the last
 * not all digits (so an IPv4 address is not a domain). Internationalized
 * domains must arrive in their punycode (`xn--`) form. Expects lower case.
 */
export function isValidDomain(domain: string): boolean {
  if (domain.length > MAX_DOMAIN_CHARS) return false;
  const labels = domain.split('.');
  if (labels.length < 2) return false;
  for (const label of labels) {
    if (label.length > MAX_DOMAIN_LABEL_CHARS || !DOMAIN_LABEL.test(label)) return false;
  }
  return !/^\d+$/.test(labels[labels.length - 1]!);
}

export type EmailNormalization = { ok: true; email: string; domain: string } | { ok: false; message: string };

/**
 * Trims and lower-cases an address, then checks it: ASCII only (checked before
 * case folding, so e.g. the Kelvin sign cannot fold into `k`), at most 254
 * characters, exactly one `@`, a dot-atom local part of 1–64 characters, and a
 * valid domain (isValidDomain). This is a syntax check, not deliverability:
 * quoted local parts, IP-literal domains and SMTPUTF8 addresses are rejected
 * because signups with them are vanishingly rare and mostly abuse.
 */
export function normalizeEmail(raw: string): EmailNormalization {
  const trimmed = raw.trim();
  if (trimmed.length === 0) return { ok: false, message: 'must not be empty' };
  if (!/^[\x21-\x7e]+$/.test(trimmed)) return { ok: false, message: 'must be printable ASCII without spaces' };
  const email = trimmed.toLowerCase();
  if (email.length > MAX_EMAIL_CHARS) return { ok: false, message: `longer than ${MAX_EMAIL_CHARS} characters` };
  const parts = email.split('@');
  if (parts.length !== 2) return { ok: false, message: 'must contain exactly one @' };
  const [local, domain] = parts as [string, string];
  if (local.length === 0 || local.length > MAX_EMAIL_LOCAL_PART_CHARS || !DOT_ATOM.test(local)) {
    return { ok: false, message: `local part must be 1-${MAX_EMAIL_LOCAL_PART_CHARS} characters of dot-atom text` };
  }
  if (!isValidDomain(domain)) return { ok: false, message: 'domain is not a valid host name' };
  return { ok: true, email, domain };
}

type Problem = { field: string; message: string };
class Reject {
  readonly problem: Problem;
  constructor(field: string, message: string) {
    this.problem = { field, message };
  }
}

/** The signup-risk PayloadRules: see the module comment for the rules. */
export function parseSignupPayload(payload: object): PayloadResult<SignupPayload> {
  try {
    return { ok: true, value: pick(payload), droppedFields: droppedFields(payload) };
  } catch (error) {
    if (error instanceof Reject) return { ok: false, ...error.problem };
    throw error;
  }
}

const known: ReadonlySet<string> = new Set(PAYLOAD_FIELDS);

function droppedFields(payload: object): string[] {
  return fieldNames(payload)
    .filter((name) => !known.has(name))
    .sort();
}

function pick(payload: object): SignupPayload {
  const user_id = requiredString(payload, 'user_id');
  if (user_id.length === 0) throw new Reject('user_id', 'must not be empty');

  const email = normalizeEmail(requiredString(payload, 'email'));
  if (!email.ok) throw new Reject('email', email.message);

  const country = countryCode('country', requiredString(payload, 'country'));
  const rawIpCountry = optionalString(payload, 'ip_country');
  const ip_country = rawIpCountry === null ? null : countryCode('ip_country', rawIpCountry);

  return {
    user_id,
    email: email.email,
    email_domain: email.domain,
    country,
    ip_country,
    signup_channel: oneOf('signup_channel', requiredString(payload, 'signup_channel'), SIGNUP_CHANNELS),
    plan: oneOf('plan', requiredString(payload, 'plan'), PLANS),
    email_domain_age_days: optionalInt32(payload, 'email_domain_age_days'),
    signups_from_ip_24h: optionalInt32(payload, 'signups_from_ip_24h'),
    referral_code: optionalString(payload, 'referral_code'),
  };
}

function requiredString(payload: object, field: string): string {
  const value = ownField(payload, field);
  if (value === undefined) throw new Reject(field, 'required');
  return asString(field, value);
}

function optionalString(payload: object, field: string): string | null {
  const value = ownField(payload, field);
  return value === undefined || value === null ? null : asString(field, value);
}

function asString(field: string, value: unknown): string {
  if (typeof value !== 'string') throw new Reject(field, `expected a string, got ${typeName(value)}`);
  if (!value.isWellFormed()) throw new Reject(field, 'contains a lone UTF-16 surrogate');
  return value;
}

function optionalInt32(payload: object, field: string): number | null {
  const value = ownField(payload, field);
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number') throw new Reject(field, `expected an integer, got ${typeName(value)}`);
  if (!Number.isInteger(value) || value < 0 || value > INT32_MAX) {
    throw new Reject(field, `expected an integer from 0 to ${INT32_MAX}`);
  }
  return value === 0 ? 0 : value; // no -0
}

function countryCode(field: string, value: string): string {
  const code = normalizeCountryCode(value);
  if (code === null) throw new Reject(field, 'not an ISO 3166-1 alpha-2 country code');
  return code;
}

function oneOf<T extends string>(field: string, value: string, allowed: readonly T[]): T {
  const found = allowed.find((candidate) => candidate === value);
  if (found === undefined) throw new Reject(field, `expected one of ${allowed.join(', ')} (lower case)`);
  return found;
}
