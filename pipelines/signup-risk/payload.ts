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
import {
  INT32_MAX,
  normalizeEmail,
  oneOf,
  optionalString,
  readPayload,
  Reject,
  requiredString,
  unknownFields,
} from '../../lib/fields.ts';
import { ownField, typeName } from '../../lib/json.ts';
import type { PayloadResult } from '../../lib/pipeline.ts';
import { normalizeCountryCode } from './countries.ts';
import type { Plan, SignupChannel, SignupPayload } from './types.ts';

export { type EmailNormalization, isValidDomain, MAX_EMAIL_CHARS, MAX_EMAIL_LOCAL_PART_CHARS, normalizeEmail } from '../../lib/fields.ts';

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
/** Enum symbols are given exactly as listed; the message says so. */
const LOWER_CASE = ' (lower case)';

/** The signup-risk PayloadRules: see the module comment for the rules. */
export function parseSignupPayload(payload: object): PayloadResult<SignupPayload> {
  return readPayload(() => ({ ok: true, value: pick(payload), droppedFields: unknownFields(payload, known) }));
}

const known: ReadonlySet<string> = new Set(PAYLOAD_FIELDS);

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
    signup_channel: oneOf('signup_channel', requiredString(payload, 'signup_channel'), SIGNUP_CHANNELS, LOWER_CASE),
    plan: oneOf('plan', requiredString(payload, 'plan'), PLANS, LOWER_CASE),
    email_domain_age_days: optionalInt32(payload, 'email_domain_age_days'),
    signups_from_ip_24h: optionalInt32(payload, 'signups_from_ip_24h'),
    referral_code: optionalString(payload, 'referral_code'),
  };
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
