import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateSignups } from '../../pipelines/signup-risk/generator.ts';
import { FEATURE_NAMES, featuresOf, MISSING } from '../../pipelines/signup-risk/features.ts';
import type { SignupPayload } from '../../pipelines/signup-risk/types.ts';
import { lowRiskPayload } from '../fixtures.ts';

const base: SignupPayload = Object.freeze(lowRiskPayload({ signups_from_ip_24h: 2 }));

/** The features of `base` with `change` applied, by name. */
function named(change: Partial<SignupPayload> = {}): Record<string, number> {
  const values = featuresOf({ ...base, ...change });
  return Object.fromEntries(FEATURE_NAMES.map((name, i) => [name, values[i]!]));
}

describe('featuresOf', () => {
  it('returns one finite number per feature name, names unique', () => {
    assert.equal(new Set(FEATURE_NAMES).size, FEATURE_NAMES.length);
    for (const { payload } of generateSignups({ seed: 3, count: 2000, startMs: 0 })) {
      const values = featuresOf(payload);
      assert.equal(values.length, FEATURE_NAMES.length);
      assert.ok(values.every(Number.isFinite), JSON.stringify(payload));
    }
  });

  it('is pure: same input, same output, input untouched', () => {
    assert.deepEqual(featuresOf(base), featuresOf(base));
    assert.ok(Object.isFrozen(base));
  });

  it('one-hot encodes the channel and the plan', () => {
    for (const channel of ['web', 'ios', 'android', 'api'] as const) {
      const f = named({ signup_channel: channel });
      assert.deepEqual([f.channel_web, f.channel_ios, f.channel_android, f.channel_api], ['web', 'ios', 'android', 'api'].map((c) => (c === channel ? 1 : 0)));
    }
    for (const plan of ['free', 'pro', 'enterprise'] as const) {
      const f = named({ plan });
      assert.deepEqual([f.plan_free, f.plan_pro, f.plan_enterprise], ['free', 'pro', 'enterprise'].map((p) => (p === plan ? 1 : 0)));
    }
  });

  it('encodes absent counts explicitly, distinct from zero', () => {
    const absent = named({ email_domain_age_days: null, signups_from_ip_24h: null });
    assert.equal(absent.email_domain_age_days_log1p, MISSING);
    assert.equal(absent.email_domain_age_missing, 1);
    assert.equal(absent.signups_from_ip_24h_log1p, MISSING);
    assert.equal(absent.signups_from_ip_24h_missing, 1);

    const zero = named({ email_domain_age_days: 0, signups_from_ip_24h: 0 });
    assert.equal(zero.email_domain_age_days_log1p, 0);
    assert.equal(zero.email_domain_age_missing, 0);
    assert.equal(zero.signups_from_ip_24h_log1p, 0);
    assert.equal(zero.signups_from_ip_24h_missing, 0);

    const some = named({ email_domain_age_days: 29, signups_from_ip_24h: 7 });
    assert.equal(some.email_domain_age_days_log1p, Math.log1p(29));
    assert.equal(some.signups_from_ip_24h_log1p, Math.log1p(7));
  });

  it('tells an unknown IP country from a matching and a mismatching one', () => {
    assert.deepEqual(pick(named({ ip_country: null })), [1, 0]);
    assert.deepEqual(pick(named({ ip_country: 'DE' })), [0, 0]);
    assert.deepEqual(pick(named({ ip_country: 'BR' })), [0, 1]);
    function pick(f: Record<string, number>) {
      return [f.ip_country_missing, f.ip_country_mismatch];
    }
  });

  it('flags a referral code and counts digits in the local part only', () => {
    assert.equal(named({ referral_code: null }).has_referral_code, 0);
    assert.equal(named().has_referral_code, 1);
    assert.equal(named({ email: 'jonas1987@gmx.de' }).email_local_digits, 4);
    assert.equal(named({ email: 'a.b@1und1.de' }).email_local_digits, 0);
    assert.equal(named({ email: 'x7y8z9@mail.com' }).email_local_digits, 3);
  });
});
