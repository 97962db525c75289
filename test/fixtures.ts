/** Shared test data: a validated signup payload with nothing risky about it. */
import type { SignupPayload } from '../pipelines/signup-risk/types.ts';

export function lowRiskPayload(overrides: Partial<SignupPayload> = {}): SignupPayload {
  return {
    user_id: 'usr_1',
    email: 'anna.kim@acme.com',
    email_domain: 'acme.com',
    country: 'DE',
    ip_country: 'DE',
    signup_channel: 'web',
    plan: 'pro',
    email_domain_age_days: 4000,
    signups_from_ip_24h: 0,
    referral_code: 'REF-ABCDEF',
    ...overrides,
  };
}
