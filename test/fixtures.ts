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

/**
 * A producer's own Avro schema for the raw envelope: validate accepts any
 * registered record of the envelope's shape. Its payload holds the required
 * signup fields as strings.
 */
export function producerEnvelopeSchema(namespace: string) {
  return {
    type: 'record',
    name: 'SignupEnvelope',
    namespace,
    fields: [
      { name: 'event_id', type: 'string' },
      { name: 'event_type', type: 'string' },
      { name: 'occurred_at', type: 'long' },
      { name: 'source', type: 'string' },
      {
        name: 'payload',
        type: {
          type: 'record',
          name: 'Payload',
          fields: ['user_id', 'email', 'country', 'signup_channel', 'plan'].map((name) => ({ name, type: 'string' })),
        },
      },
    ],
  };
}
