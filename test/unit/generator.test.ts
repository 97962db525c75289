import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  DISPOSABLE_DOMAINS,
  type GeneratedSignup,
  generateSignups,
  groundTruthRisk,
  malformedSamples,
} from '../../pipelines/signup-risk/generator.ts';
import { createRng } from '../../lib/prng.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import type { SignupPayload } from '../../pipelines/signup-risk/types.ts';
import { type ValidateContext, validateRecord } from '../../processors/validate/transform.ts';
import { lowRiskPayload } from '../fixtures.ts';
import type { SourceRecord } from '../../processors/runtime/types.ts';

const START_MS = Date.UTC(2026, 10, 1);
const take = (seed: number, count: number, extra: { idPrefix?: string; firstIndex?: number; spacingMs?: number } = {}) => [
  ...generateSignups({ seed, count, startMs: START_MS, ...extra }),
];

const CONTRACT_FIELDS = new Set([
  'user_id',
  'email',
  'country',
  'ip_country',
  'signup_channel',
  'plan',
  'email_domain_age_days',
  'signups_from_ip_24h',
  'referral_code',
]);

describe('prng', () => {
  it('is reproducible per (seed, stream) and stays in [0, 1)', () => {
    const draw = (seed: number, stream: number) => {
      const rng = createRng(seed, stream);
      return Array.from({ length: 1000 }, () => rng.next());
    };
    assert.deepEqual(draw(7, 3), draw(7, 3));
    assert.notDeepEqual(draw(7, 3), draw(7, 4));
    assert.notDeepEqual(draw(7, 3), draw(8, 3));
    const values = draw(1, 0);
    assert.ok(values.every((v) => v >= 0 && v < 1));
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
  });

  it('picks by weight exactly as a walk over the object\'s entries does, drawing from the same stream', () => {
    // The reference: the weights read afresh on every draw, in key order.
    const reference = (roll: number, weights: Record<string, number>) => {
      const entries = Object.entries(weights);
      let left = roll * entries.reduce((sum, [, weight]) => sum + weight, 0);
      for (const [key, weight] of entries) {
        left -= weight;
        if (left < 0) return key;
      }
      return entries[entries.length - 1]![0];
    };
    const tables: Array<Record<string, number>> = [
      { only: 1 },
      { a: 0.1, b: 0.2, c: 0.7 },
      { free: 0.35, disposable: 0.2, fresh: 0.4, company: 0.05 },
      { zero: 0, a: 3, also_zero: 0, b: 1 },
      Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, (i % 7) + 0.5])),
    ];
    const picked = createRng(5, 1);
    const rolls = createRng(5, 1);
    const counts = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const weights = tables[i % tables.length]!;
      const key = picked.weighted(weights);
      assert.equal(key, reference(rolls.next(), weights));
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    assert.equal(counts.get('zero'), undefined, 'a zero weight is never picked');
    // 4,000 draws of { a: 0.1, b: 0.2, c: 0.7 }: c about 2,800 times.
    assert.ok(Math.abs(counts.get('c')! - 2_800) < 200, `c picked ${counts.get('c')} times`);
  });
});

describe('generateSignups', () => {
  it('gives identical events for the same seed and different ones for another seed', () => {
    const a = take(11, 300);
    assert.deepEqual(take(11, 300), a);
    const b = take(12, 300);
    const samePayloads = a.filter((event, i) => JSON.stringify(event.envelope.payload) === JSON.stringify(b[i]!.envelope.payload));
    assert.equal(samePayloads.length, 0);
  });

  it('still generates the events it did (a pinned digest: training data and benchmark inputs depend on them)', () => {
    const digest = createHash('sha256');
    for (const event of generateSignups({ seed: 11, count: 2_000, startMs: 1_700_000_000_000, spacingMs: 7, idPrefix: 'x' })) digest.update(JSON.stringify(event));
    assert.equal(digest.digest('hex'), 'b78f76cec6691fd72fcb6dd663a6f05d19c4eb3edf868c5a4b6c8e8b5cd4634d');
  });

  it('makes each event a function of (seed, index): counts and starting points do not change earlier events', () => {
    const all = take(5, 100);
    assert.deepEqual(take(5, 40), all.slice(0, 40));
    assert.deepEqual(take(5, 30, { firstIndex: 70 }), all.slice(70));
  });

  it('numbers event ids by seed and index, with an optional prefix, and spaces occurred_at', () => {
    const events = take(3, 50, { spacingMs: 250 });
    assert.deepEqual(
      events.map((e) => e.envelope.event_id),
      events.map((_, i) => `evt-3-${i}`),
    );
    assert.deepEqual(
      events.map((e) => e.occurredAtMs),
      events.map((_, i) => START_MS + i * 250),
    );
    const prefixed = take(3, 5, { idPrefix: 'run-42' });
    assert.deepEqual(
      prefixed.map((e) => e.envelope.event_id),
      ['run-42-3-0', 'run-42-3-1', 'run-42-3-2', 'run-42-3-3', 'run-42-3-4'],
    );
  });

  it('produces envelopes per the contract, with occurred_at in every accepted form', () => {
    const events = take(21, 2000);
    const forms = { iso: 0, epoch: 0, offset: 0 };
    for (const { envelope, occurredAtMs } of events) {
      assert.deepEqual(Object.keys(envelope).sort(), ['event_id', 'event_type', 'occurred_at', 'payload', 'source']);
      assert.equal(envelope.event_type, 'user_signed_up');
      assert.equal(typeof envelope.source, 'string');
      if (typeof envelope.occurred_at === 'number') {
        forms.epoch++;
        assert.equal(envelope.occurred_at, occurredAtMs);
      } else {
        forms[envelope.occurred_at.endsWith('Z') ? 'iso' : 'offset']++;
        assert.equal(Date.parse(envelope.occurred_at), occurredAtMs);
      }
    }
    assert.ok(forms.iso > 0 && forms.epoch > 0 && forms.offset > 0, JSON.stringify(forms));
  });

  it('varies the raw input the way producers do, and says what validation must make of it', () => {
    const events = take(8, 3000);
    const count = (predicate: (e: GeneratedSignup) => boolean) => events.filter(predicate).length;
    const raw = (e: GeneratedSignup) => e.envelope.payload;

    assert.ok(count((e) => raw(e).country !== raw(e).country.toUpperCase()) > 100, 'lower- or mixed-case countries');
    assert.ok(count((e) => raw(e).email !== raw(e).email.trim()) > 50, 'emails with surrounding whitespace');
    assert.ok(count((e) => /[A-Z]/.test(raw(e).email)) > 100, 'emails with capitals');
    for (const field of ['ip_country', 'email_domain_age_days', 'signups_from_ip_24h', 'referral_code']) {
      const absent = count((e) => !(field in raw(e)));
      assert.ok(absent > 50 && absent < events.length - 50, `${field} sometimes absent (${absent})`);
    }
    assert.ok(count((e) => e.droppedFields.length > 0) > 100, 'unknown extra fields');
    assert.ok(count((e) => (DISPOSABLE_DOMAINS as readonly string[]).includes(e.payload.email_domain)) > 20, 'disposable domains');
    assert.ok(count((e) => e.payload.plan === 'enterprise') > 50, 'enterprise plans');
    for (const channel of ['web', 'ios', 'android', 'api']) assert.ok(count((e) => e.payload.signup_channel === channel) > 100);

    for (const e of events) {
      const p = raw(e);
      assert.equal(e.key, p.user_id);
      assert.equal(e.payload.email, p.email.trim().toLowerCase());
      assert.equal(e.payload.email_domain, e.payload.email.split('@')[1]);
      assert.equal(e.payload.country, p.country.toUpperCase());
      assert.equal(e.payload.ip_country, p.ip_country === undefined ? null : p.ip_country.toUpperCase());
      assert.equal(e.payload.email_domain_age_days, p.email_domain_age_days ?? null);
      assert.equal(e.payload.signups_from_ip_24h, p.signups_from_ip_24h ?? null);
      assert.equal(e.payload.referral_code, p.referral_code ?? null);
      assert.deepEqual(e.droppedFields, Object.keys(p).filter((k) => !CONTRACT_FIELDS.has(k)).sort());
    }
  });

  it('labels with Bernoulli(groundTruthRisk(payload))', () => {
    const events = take(99, 20_000);
    for (const e of events.slice(0, 500)) assert.equal(e.risk, groundTruthRisk(e.payload));
    const labelRate = events.reduce((sum, e) => sum + e.label, 0) / events.length;
    const meanRisk = events.reduce((sum, e) => sum + e.risk, 0) / events.length;
    // Binomial standard error at ~10 % over 20 000 draws is ~0.002.
    assert.ok(Math.abs(labelRate - meanRisk) < 0.01, `label rate ${labelRate} vs mean risk ${meanRisk}`);
    assert.ok(labelRate > 0.03 && labelRate < 0.3, `label rate ${labelRate}`);
    const risky = events.filter((e) => e.risk > 0.8);
    const safe = events.filter((e) => e.risk < 0.05);
    assert.ok(risky.length > 100 && safe.length > 1000);
    assert.ok(risky.filter((e) => e.label === 1).length / risky.length > 0.75);
    assert.ok(safe.filter((e) => e.label === 1).length / safe.length < 0.06);
  });
});

describe('groundTruthRisk', () => {
  const base = lowRiskPayload();

  it('rises with each documented risk signal', () => {
    const baseline = groundTruthRisk(base);
    const riskier: Array<Partial<SignupPayload>> = [
      { email_domain_age_days: 3 },
      { email_domain_age_days: null },
      { signups_from_ip_24h: 25 },
      { ip_country: 'NG' },
      { signup_channel: 'api' },
      { referral_code: null },
      { plan: 'free' },
      { email: 'anna48213@acme.com' },
    ];
    for (const change of riskier) {
      assert.ok(groundTruthRisk({ ...base, ...change }) > baseline, JSON.stringify(change));
    }
    assert.ok(groundTruthRisk({ ...base, plan: 'enterprise' }) < baseline);
    const worst = groundTruthRisk({ ...base, email_domain_age_days: 2, signups_from_ip_24h: 40, ip_country: 'RU', signup_channel: 'api', referral_code: null, plan: 'free', email: 'xk99231@fresh.top' });
    assert.ok(worst > 0.95 && baseline < 0.02, `${worst} ${baseline}`);
  });
});

describe('malformedSamples', () => {
  const LIMIT = 8_192;
  const samples = malformedSamples({ maxMessageBytes: LIMIT, idPrefix: 'mal' });
  const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

  it('covers every class of bad input once, with unique keys', () => {
    const names = samples.map((s) => s.name);
    assert.equal(new Set(names).size, names.length);
    assert.equal(new Set(samples.map((s) => s.key)).size, samples.length);
    for (const name of ['invalid-json', 'invalid-utf8', 'json-array', 'json-scalar', 'empty', 'missing-email', 'count-wrong-type', 'plan-out-of-domain', 'country-not-iso', 'negative-count', 'unparseable-occurred-at', 'unexpected-event-type', 'oversized']) {
      assert.ok(names.includes(name), name);
    }
    assert.deepEqual(new Set(samples.map((s) => s.reason)), new Set(['MALFORMED_PAYLOAD', 'SCHEMA_VIOLATION', 'UNEXPECTED_EVENT_TYPE', 'OVERSIZED']));
  });

  it('makes MALFORMED_PAYLOAD samples that are not a UTF-8 JSON object', () => {
    for (const sample of samples.filter((s) => s.reason === 'MALFORMED_PAYLOAD')) {
      let problem = 'none';
      if (sample.value.length === 0) problem = 'empty';
      else {
        let text: string | undefined;
        try {
          text = strictUtf8.decode(sample.value);
        } catch {
          problem = 'not utf-8';
        }
        if (text !== undefined) {
          try {
            const parsed: unknown = JSON.parse(text);
            if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) problem = 'not an object';
          } catch {
            problem = 'not json';
          }
        }
      }
      assert.notEqual(problem, 'none', sample.name);
      assert.equal(sample.eventId, null, sample.name);
    }
    // The invalid UTF-8 sample is a JSON object but for its bytes: only a strict decoder catches it.
    const utf8 = samples.find((s) => s.name === 'invalid-utf8')!;
    assert.equal(typeof JSON.parse(utf8.value.toString('utf8')), 'object');
  });

  it('makes every other sample a JSON object within the size limit, except the oversized one', () => {
    for (const sample of samples.filter((s) => s.reason !== 'MALFORMED_PAYLOAD')) {
      const parsed = JSON.parse(strictUtf8.decode(sample.value)) as Record<string, unknown>;
      assert.equal(typeof parsed, 'object', sample.name);
      if (sample.reason === 'OVERSIZED') assert.equal(sample.value.length, LIMIT + 1);
      else assert.ok(sample.value.length <= LIMIT, sample.name);
    }
    assert.throws(() => malformedSamples({ maxMessageBytes: 100 }), RangeError);
  });

  it('gets exactly the claimed reason, naming the claimed field, from the validate stage', () => {
    const ctx = validateContext(LIMIT);
    for (const sample of samples) {
      const outcome = validateRecord(sourceRecord(sample.value, sample.key), ctx);
      assert.equal(outcome.kind, 'dead-letter', sample.name);
      if (outcome.kind !== 'dead-letter') continue;
      assert.equal(outcome.reason, sample.reason, `${sample.name}: ${outcome.message}`);
      if (sample.field !== null) assert.ok(outcome.message.startsWith(`${sample.field}:`), `${sample.name}: ${outcome.message}`);
    }
  });
});

describe('generated events and the validate stage', () => {
  it('agree: every generated event passes, normalized exactly as the generator says', () => {
    const ctx = validateContext(1_000_000);
    for (const event of take(31, 2000, { idPrefix: 'agree' })) {
      const outcome = validateRecord(sourceRecord(Buffer.from(JSON.stringify(event.envelope)), event.key), ctx);
      assert.equal(outcome.kind, 'emit', JSON.stringify(outcome));
      if (outcome.kind !== 'emit') continue;
      const validated = outcome.outputs[0]!.value;
      assert.deepEqual(validated.payload, event.payload);
      assert.deepEqual(validated.dropped_fields, event.droppedFields);
      assert.equal(validated.occurred_at, event.occurredAtMs);
      assert.equal(validated.event_id, event.envelope.event_id);
    }
  });
});

describe('the signup-risk plugin\'s traffic generator', () => {
  it('yields the generated signups as a producer sends them', () => {
    const options = { seed: 17, count: 50, startMs: START_MS, spacingMs: 10, idPrefix: 'plug', firstIndex: 3 };
    const events = [...signupRisk.generator.events(options)];
    const signups = [...generateSignups(options)];
    assert.equal(events.length, signups.length);
    events.forEach((event, i) => {
      const signup = signups[i]!;
      assert.equal(event.index, 3 + i);
      assert.equal(event.eventId, signup.envelope.event_id);
      assert.equal(event.eventType, 'user_signed_up');
      assert.equal(event.key, signup.key);
      assert.equal(event.occurredAtMs, signup.occurredAtMs);
      assert.deepEqual(event.value, Buffer.from(JSON.stringify(signup.envelope)));
    });
  });

  it('gives the malformed samples, with the limit asked for', () => {
    const options = { maxMessageBytes: 8_192, idPrefix: 'plug', seed: 3, occurredAtMs: START_MS };
    assert.deepEqual(signupRisk.generator.malformed(options), malformedSamples(options));
  });
});

function validateContext(maxMessageBytes: number): ValidateContext<SignupPayload> {
  return {
    pipeline: 'signup-risk',
    eventTypes: signupRisk.eventTypes,
    maxMessageBytes,
    parsePayload: signupRisk.payload,
    decodeFramed: () => ({ kind: 'undecodable', message: 'no registry in unit tests' }),
    now: () => START_MS,
  };
}

function sourceRecord(value: Buffer, key: string): SourceRecord {
  return { topic: 'signup-risk.raw', partition: 0, offset: '0', key: Buffer.from(key), value, headers: {}, timestampMs: START_MS };
}
