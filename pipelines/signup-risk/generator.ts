/**
 * Synthetic `user_signed_up` events for the signup-risk pipeline: the demo, the
 * integration tests, the benchmark and model training all draw from here.
 *
 * Every event is a function of (seed, index) alone, through its own PRNG stream,
 * so the first N events of a run are the same whatever the count, and two runs
 * with the same options produce identical events. The raw envelopes look like
 * what real producers send (mixed-case countries, emails with stray spaces and
 * capitals, optional fields absent, unknown extra fields, epoch-ms or offset
 * timestamps); each comes with the payload validation must turn it into and a
 * ground-truth label drawn from `groundTruthRisk`.
 */
import type { DeadLetterReason } from '../../lib/contracts.ts';
import { generateRange, hex, oversizedSample, spellTimestamp, withInvalidUtf8 } from '../../lib/generate.ts';
import type { GenerateOptions, MalformedOptions, MalformedSample as AnySample } from '../../lib/pipeline.ts';
import { createRng, type Rng } from '../../lib/prng.ts';
import { localPartDigits } from './features.ts';
import { EVENT_TYPE, type Plan, type SignupChannel, type SignupPayload } from './types.ts';

export type { GenerateOptions, MalformedOptions };

/** The payload as a producer sends it, before validation. */
export interface RawSignupPayload {
  user_id: string;
  email: string;
  country: string;
  ip_country?: string;
  signup_channel: SignupChannel;
  plan: Plan;
  email_domain_age_days?: number;
  signups_from_ip_24h?: number;
  referral_code?: string;
  /** Fields outside the contract, which validation drops. */
  [extra: string]: unknown;
}

export interface RawSignupEnvelope {
  event_id: string;
  event_type: typeof EVENT_TYPE;
  /** RFC 3339 (UTC or with an offset) or epoch milliseconds. */
  occurred_at: string | number;
  source: string;
  payload: RawSignupPayload;
}

export interface GeneratedSignup {
  index: number;
  /** The Kafka message key a producer would use: the user id. */
  key: string;
  /** What goes on `signup-risk.raw`, as JSON. */
  envelope: RawSignupEnvelope;
  /** `occurred_at` as epoch ms UTC, whatever form the envelope uses. */
  occurredAtMs: number;
  /** The validated, normalized payload that validation must produce from `envelope.payload`. */
  payload: SignupPayload;
  /** Unknown payload fields that validation must drop, sorted. */
  droppedFields: string[];
  /** Ground-truth P(risky) of this payload: `groundTruthRisk(payload)`. */
  risk: number;
  /** 1 when the signup turned out risky, drawn as Bernoulli(risk). */
  label: 0 | 1;
}

/** The disposable-address domains the generator draws from (the demo's block list should cover them). */
export const DISPOSABLE_DOMAINS = [
  'mailinator.com',
  'guerrillamail.com',
  'yopmail.com',
  '10minutemail.com',
  'trashmail.com',
] as const;

const FREE_MAIL = [
  ['gmail.com', 10_000],
  ['outlook.com', 9_500],
  ['yahoo.com', 10_500],
  ['icloud.com', 8_800],
  ['proton.me', 3_100],
  ['gmx.de', 9_900],
] as const;

const COMPANY_NAMES = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark', 'wayne', 'wonka', 'soylent', 'tyrell'];
const COMPANY_SUFFIXES = ['', '-labs', '-corp', '-group', 'works'];
const COMPANY_TLDS = ['com', 'io', 'de', 'co.uk', 'fr', 'com.br'];
const FRESH_TLDS = ['xyz', 'top', 'online', 'site', 'click', 'shop'];
const FIRST_NAMES = ['anna', 'ben', 'chloe', 'david', 'elif', 'farid', 'grace', 'hiro', 'ines', 'jonas', 'kofi', 'lena', 'mateo', 'nadia', 'omar', 'priya', 'quinn', 'rosa', 'sven', 'tariq', 'uma', 'viktor', 'wen', 'yusuf', 'zoe'];
const LAST_NAMES = ['smith', 'garcia', 'mueller', 'rossi', 'kim', 'silva', 'okafor', 'tanaka', 'dubois', 'novak', 'haddad', 'larsen', 'patel', 'cohen', 'nowak'];

/** Real ISO 3166-1 alpha-2 codes, weighted roughly like a global consumer product's signups. */
const COUNTRY_WEIGHTS = {
  US: 24, IN: 12, BR: 8, GB: 7, DE: 7, FR: 5, NG: 4, ID: 4, MX: 4, JP: 3, CA: 3, ES: 3, IT: 3, NL: 2, PL: 2,
  TR: 2, PH: 2, VN: 2, PK: 1, RU: 1, UA: 1, KE: 1, EG: 1, ZA: 1, AU: 1, SE: 1, KR: 1, AR: 1, CO: 1, RO: 1,
} as const;
// Constants rather than literals at the draw: Rng#weighted reads each weights object once.
const DOMAIN_KIND_WEIGHTS = {
  suspicious: { free: 0.35, disposable: 0.2, fresh: 0.4, company: 0.05 },
  ordinary: { free: 0.55, company: 0.4, fresh: 0.05 },
} as const;
const CHANNEL_WEIGHTS = {
  suspicious: { web: 0.4, api: 0.35, android: 0.15, ios: 0.1 },
  ordinary: { web: 0.5, ios: 0.2, android: 0.22, api: 0.08 },
} as const;
const PLAN_WEIGHTS = {
  suspicious: { free: 0.9, pro: 0.08, enterprise: 0.02 },
  ordinary: { free: 0.7, pro: 0.24, enterprise: 0.06 },
} as const;
const EXTRA_FIELDS: ReadonlyArray<[string, (rng: Rng) => unknown]> = [
  ['utm_source', (rng) => rng.pick(['newsletter', 'google', 'partner', 'tiktok'])],
  ['device_fingerprint', (rng) => hex(rng, 16)],
  ['marketing_opt_in', (rng) => rng.chance(0.5)],
  ['locale', (rng) => rng.pick(['en-US', 'de-DE', 'pt-BR', 'fr-FR', 'ja-JP'])],
  ['client', (rng) => ({ app_version: `${rng.int(3, 5)}.${rng.int(0, 20)}.${rng.int(0, 9)}`, build: rng.int(1000, 9999) })],
];

const SOURCE_BY_CHANNEL: Record<SignupChannel, string> = {
  web: 'web-signup',
  ios: 'mobile-backend',
  android: 'mobile-backend',
  api: 'partner-api',
};

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

/**
 * The ground truth: P(a signup turns out risky) as a function of the normalized
 * payload alone. Labels are drawn as Bernoulli(risk), so no model can be perfect;
 * the AUC of this function itself is the ceiling a model can reach.
 *
 * risk = sigmoid(z), z = -4.0 plus:
 * - email domain age: unknown +0.8; < 7 days +2.6; < 30 days +1.8; < 180 days +0.8
 * - signups from the same IP in 24 h: unknown +0.5; >= 20 +2.2; >= 5 +1.4; >= 2 +0.4
 * - IP country: unknown +0.4; different from the declared country +1.2
 * - channel: api +1.0; ios or android -0.3; web 0
 * - no referral code +0.7
 * - plan: pro -0.5; enterprise -1.0
 * - 4 or more digits in the address's local part +0.6
 * - api channel together with >= 5 signups from the IP: a further +0.8
 *
 * A disposable email domain is deliberately not a term: the pipeline's rule
 * blocks those before the model matters (they do come mostly with risky profiles).
 */
export function groundTruthRisk(payload: SignupPayload): number {
  let z = -4.0;
  const age = payload.email_domain_age_days;
  if (age === null) z += 0.8;
  else if (age < 7) z += 2.6;
  else if (age < 30) z += 1.8;
  else if (age < 180) z += 0.8;

  const fromIp = payload.signups_from_ip_24h;
  if (fromIp === null) z += 0.5;
  else if (fromIp >= 20) z += 2.2;
  else if (fromIp >= 5) z += 1.4;
  else if (fromIp >= 2) z += 0.4;

  if (payload.ip_country === null) z += 0.4;
  else if (payload.ip_country !== payload.country) z += 1.2;

  if (payload.signup_channel === 'api') z += 1.0;
  else if (payload.signup_channel !== 'web') z -= 0.3;

  if (payload.referral_code === null) z += 0.7;
  if (payload.plan === 'pro') z -= 0.5;
  else if (payload.plan === 'enterprise') z -= 1.0;
  if (localPartDigits(payload.email) >= 4) z += 0.6;
  if (payload.signup_channel === 'api' && fromIp !== null && fromIp >= 5) z += 0.8;
  return sigmoid(z);
}

function letters(rng: Rng, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += String.fromCharCode(97 + rng.int(0, 25));
  return out;
}

function digits(rng: Rng, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += String(rng.int(0, 9));
  return out;
}

/** How a producer might spell a country code: mostly upper case, sometimes not. */
function spellCountry(rng: Rng, code: string): string {
  const roll = rng.next();
  if (roll < 0.65) return code;
  if (roll < 0.9) return code.toLowerCase();
  return code[0] + code[1]!.toLowerCase();
}

/** How a producer might spell an address: sometimes with capitals or stray whitespace. */
function spellEmail(rng: Rng, email: string): string {
  let out = email;
  const roll = rng.next();
  if (roll < 0.08) out = out.toUpperCase();
  else if (roll < 0.2) out = out[0]!.toUpperCase() + out.slice(1);
  if (rng.chance(0.08)) out = rng.pick([' ', '  ', '\t']) + out + rng.pick(['', ' ', '\n']);
  return out;
}

interface Domain {
  name: string;
  ageDays: number;
}

function drawDomain(rng: Rng, suspicious: boolean): Domain {
  const kind = suspicious
    ? rng.weighted(DOMAIN_KIND_WEIGHTS.suspicious)
    : rng.weighted(DOMAIN_KIND_WEIGHTS.ordinary);
  switch (kind) {
    case 'free': {
      const [name, age] = rng.pick(FREE_MAIL);
      return { name, ageDays: age + rng.int(0, 400) };
    }
    case 'disposable':
      return { name: rng.pick(DISPOSABLE_DOMAINS), ageDays: rng.int(2_500, 7_000) };
    case 'fresh':
      return { name: `${letters(rng, rng.int(5, 9))}.${rng.pick(FRESH_TLDS)}`, ageDays: rng.int(0, suspicious ? 60 : 400) };
    default:
      return {
        name: `${rng.pick(COMPANY_NAMES)}${rng.pick(COMPANY_SUFFIXES)}.${rng.pick(COMPANY_TLDS)}`,
        ageDays: rng.int(365, 9_000),
      };
  }
}

function drawLocalPart(rng: Rng, suspicious: boolean): string {
  const first = rng.pick(FIRST_NAMES);
  const last = rng.pick(LAST_NAMES);
  const base = rng.pick([`${first}.${last}`, `${first}${last}`, `${first[0]}${last}`, first, `${first}_${last}`]);
  if (suspicious && rng.chance(0.6)) return `${rng.chance(0.5) ? base : letters(rng, rng.int(4, 8))}${digits(rng, rng.int(4, 8))}`;
  if (rng.chance(0.2)) return `${base}${rng.chance(0.5) ? digits(rng, 2) : String(rng.int(1960, 2008))}`;
  return base;
}

function drawIpSignups(rng: Rng, suspicious: boolean): number {
  if (suspicious && rng.chance(0.6)) return Math.round(Math.exp(rng.next() * Math.log(80 / 3)) * 3);
  const roll = rng.next();
  if (roll < 0.6) return 0;
  if (roll < 0.85) return 1;
  return rng.int(2, 4);
}

function otherCountry(rng: Rng, country: string): string {
  for (;;) {
    const candidate = rng.weighted(COUNTRY_WEIGHTS);
    if (candidate !== country) return candidate;
  }
}

/** One event, a function of (seed, index) and the options alone. */
function makeSignup(seed: number, index: number, startMs: number, spacingMs: number, idPrefix: string): GeneratedSignup {
  const rng = createRng(seed, index);
  const suspicious = rng.chance(0.15);
  const country = rng.weighted(COUNTRY_WEIGHTS);
  const channel: SignupChannel = suspicious
    ? rng.weighted(CHANNEL_WEIGHTS.suspicious)
    : rng.weighted(CHANNEL_WEIGHTS.ordinary);
  const plan: Plan = suspicious
    ? rng.weighted(PLAN_WEIGHTS.suspicious)
    : rng.weighted(PLAN_WEIGHTS.ordinary);
  const domain = drawDomain(rng, suspicious);
  const email = `${drawLocalPart(rng, suspicious)}@${domain.name}`;
  const ageDays = rng.chance(suspicious ? 0.25 : 0.12) ? null : domain.ageDays;
  const ipCountry = rng.chance(suspicious ? 0.2 : 0.1)
    ? null
    : rng.chance(suspicious ? 0.55 : 0.07)
      ? otherCountry(rng, country)
      : country;
  const ipSignups = rng.chance(suspicious ? 0.05 : 0.1) ? null : drawIpSignups(rng, suspicious);
  const referral = rng.chance(suspicious ? 0.08 : 0.35) ? `REF-${letters(rng, 6).toUpperCase()}` : null;
  const userId = `usr_${hex(rng, 12)}`;
  const occurredAtMs = startMs + index * spacingMs;

  const raw: RawSignupPayload = {
    user_id: userId,
    email: spellEmail(rng, email),
    country: spellCountry(rng, country),
    signup_channel: channel,
    plan,
  };
  if (ipCountry !== null) raw.ip_country = spellCountry(rng, ipCountry);
  if (ageDays !== null) raw.email_domain_age_days = ageDays;
  if (ipSignups !== null) raw.signups_from_ip_24h = ipSignups;
  if (referral !== null) raw.referral_code = referral;
  const droppedFields: string[] = [];
  if (rng.chance(0.15)) {
    for (const [name, value] of EXTRA_FIELDS) {
      if (rng.chance(0.4)) {
        raw[name] = value(rng);
        droppedFields.push(name);
      }
    }
  }
  droppedFields.sort();

  const payload: SignupPayload = {
    user_id: userId,
    email,
    email_domain: domain.name,
    country,
    ip_country: ipCountry,
    signup_channel: channel,
    plan,
    email_domain_age_days: ageDays,
    signups_from_ip_24h: ipSignups,
    referral_code: referral,
  };
  const risk = groundTruthRisk(payload);
  return {
    index,
    key: userId,
    envelope: {
      event_id: `${idPrefix}-${seed}-${index}`,
      event_type: EVENT_TYPE,
      occurred_at: spellTimestamp(rng, occurredAtMs),
      source: SOURCE_BY_CHANNEL[channel],
      payload: raw,
    },
    occurredAtMs,
    payload,
    droppedFields,
    risk,
    label: rng.next() < risk ? 1 : 0,
  };
}

/**
 * Yields `count` events for `seed`, indexes `firstIndex` … `firstIndex + count - 1`,
 * with occurred_at = startMs + index × spacingMs. Lazy, so large runs stream.
 */
export function* generateSignups(options: GenerateOptions): Generator<GeneratedSignup> {
  const { seed, count, startMs, spacingMs, idPrefix, firstIndex } = generateRange(options);
  for (let index = firstIndex; index < firstIndex + count; index++) {
    yield makeSignup(seed, index, startMs, spacingMs, idPrefix);
  }
}

/** The JSON bytes a producer puts on `signup-risk.raw` for an envelope. */
export const envelopeBytes = (envelope: RawSignupEnvelope): Buffer => Buffer.from(JSON.stringify(envelope), 'utf8');

/** A malformed sample of signup-risk: never a tombstone. */
export interface MalformedSample extends AnySample {
  value: Buffer;
}

type Mutation = (envelope: Record<string, unknown>, payload: Record<string, unknown>) => void;

/**
 * One message per class of bad input, each with the dead-letter reason it must
 * get. Apart from its one defect each is a valid event, so a validator that
 * routes it anywhere but the dead-letter topic with that reason has a bug.
 */
export function malformedSamples(options: MalformedOptions): MalformedSample[] {
  const { maxMessageBytes, idPrefix = 'evt', seed = 0, occurredAtMs = Date.UTC(2026, 10, 1) } = options;
  const samples: MalformedSample[] = [];
  let index = 0;
  const base = () => {
    const signup = makeSignup(seed, index++, occurredAtMs, 1_000, idPrefix);
    return signup.envelope;
  };
  const keyOf = (name: string) => `${idPrefix}-bad-${name}`;
  const raw = (name: string, reason: DeadLetterReason, value: Buffer, eventId: string | null = null) => {
    samples.push({ name, reason, field: null, eventId, key: keyOf(name), value });
  };
  const mutated = (name: string, reason: DeadLetterReason, field: string, mutate: Mutation) => {
    const envelope = structuredClone(base()) as unknown as Record<string, unknown>;
    envelope['event_id'] = keyOf(name);
    mutate(envelope, envelope['payload'] as Record<string, unknown>);
    const eventId = typeof envelope['event_id'] === 'string' && envelope['event_id'] !== '' ? envelope['event_id'] : null;
    samples.push({ name, reason, field, eventId, key: keyOf(name), value: Buffer.from(JSON.stringify(envelope), 'utf8') });
  };
  const validJson = (name: string) => JSON.stringify({ ...base(), event_id: keyOf(name) });

  const truncated = validJson('invalid-json');
  raw('invalid-json', 'MALFORMED_PAYLOAD', Buffer.from(truncated.slice(0, Math.floor(truncated.length / 2)), 'utf8'));

  // An invalid UTF-8 sequence inside the user id string.
  raw('invalid-utf8', 'MALFORMED_PAYLOAD', withInvalidUtf8(validJson('invalid-utf8'), '"usr_'));
  raw('json-array', 'MALFORMED_PAYLOAD', Buffer.from(`[${validJson('json-array')}]`, 'utf8'));
  raw('json-scalar', 'MALFORMED_PAYLOAD', Buffer.from('42', 'utf8'));
  raw('json-null', 'MALFORMED_PAYLOAD', Buffer.from('null', 'utf8'));
  raw('empty', 'MALFORMED_PAYLOAD', Buffer.alloc(0));

  mutated('missing-email', 'SCHEMA_VIOLATION', 'payload.email', (_, p) => {
    delete p['email'];
  });
  mutated('missing-payload', 'SCHEMA_VIOLATION', 'payload', (e) => {
    delete e['payload'];
  });
  mutated('missing-occurred-at', 'SCHEMA_VIOLATION', 'occurred_at', (e) => {
    delete e['occurred_at'];
  });
  mutated('payload-not-object', 'SCHEMA_VIOLATION', 'payload', (e) => {
    e['payload'] = 'user signed up';
  });
  mutated('count-wrong-type', 'SCHEMA_VIOLATION', 'payload.signups_from_ip_24h', (_, p) => {
    p['signups_from_ip_24h'] = '12';
  });
  mutated('plan-wrong-type', 'SCHEMA_VIOLATION', 'payload.plan', (_, p) => {
    p['plan'] = 2;
  });
  mutated('plan-out-of-domain', 'SCHEMA_VIOLATION', 'payload.plan', (_, p) => {
    p['plan'] = 'gold';
  });
  mutated('channel-out-of-domain', 'SCHEMA_VIOLATION', 'payload.signup_channel', (_, p) => {
    p['signup_channel'] = 'fax';
  });
  mutated('country-not-iso', 'SCHEMA_VIOLATION', 'payload.country', (_, p) => {
    p['country'] = 'XX';
  });
  mutated('ip-country-not-iso', 'SCHEMA_VIOLATION', 'payload.ip_country', (_, p) => {
    p['ip_country'] = 'Germany';
  });
  mutated('negative-count', 'SCHEMA_VIOLATION', 'payload.signups_from_ip_24h', (_, p) => {
    p['signups_from_ip_24h'] = -3;
  });
  mutated('fractional-age', 'SCHEMA_VIOLATION', 'payload.email_domain_age_days', (_, p) => {
    p['email_domain_age_days'] = 12.5;
  });
  mutated('invalid-email', 'SCHEMA_VIOLATION', 'payload.email', (_, p) => {
    p['email'] = 'not-an-email';
  });
  mutated('empty-user-id', 'SCHEMA_VIOLATION', 'payload.user_id', (_, p) => {
    p['user_id'] = '';
  });
  mutated('unparseable-occurred-at', 'SCHEMA_VIOLATION', 'occurred_at', (e) => {
    e['occurred_at'] = 'yesterday at noon';
  });
  // Date.parse accepts this and rolls it over to 2 March; it is not a real instant.
  mutated('impossible-occurred-at', 'SCHEMA_VIOLATION', 'occurred_at', (e) => {
    e['occurred_at'] = '2026-02-30T12:00:00Z';
  });
  mutated('empty-event-id', 'SCHEMA_VIOLATION', 'event_id', (e) => {
    e['event_id'] = '';
  });
  mutated('long-event-id', 'SCHEMA_VIOLATION', 'event_id', (e) => {
    e['event_id'] = `${keyOf('long-event-id')}-${'x'.repeat(128)}`;
  });
  mutated('unexpected-event-type', 'UNEXPECTED_EVENT_TYPE', 'event_type', (e) => {
    e['event_type'] = 'user_logged_in';
  });

  samples.push(oversizedSample(samples, maxMessageBytes, { ...base(), event_id: keyOf('oversized') }, keyOf('oversized')));
  return samples;
}
