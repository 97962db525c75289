/**
 * signup-risk, reference pipeline 1 (PRODUCT.md): `user_signed_up` events,
 * tabular features, a binary risk model, thresholds and rules.
 */
import { fileURLToPath } from 'node:url';
import type { PipelinePlugin } from '../../lib/pipeline.ts';
import { FEATURE_NAMES, featuresOf } from './features.ts';
import { envelopeBytes, generateSignups, malformedSamples } from './generator.ts';
import { parseSignupPayload } from './payload.ts';
import { type DecideConfig, signupRiskPolicy } from './policy-config.ts';
import { EVENT_TYPE, PIPELINE, type SignupPayload } from './types.ts';

export const signupRisk: PipelinePlugin<SignupPayload, DecideConfig> = {
  kind: PIPELINE,
  description: 'Scores new signups for fraud risk: approve, send to review, or block.',
  eventTypes: [EVENT_TYPE],
  owners: {
    team: 'trust-and-safety',
    data: 'identity-platform',
    model: 'risk-ml',
    infra: 'streaming-platform',
    oncall: 'trust-oncall',
    escalation: 'trust-and-safety-lead',
    runbook: 'docs/runbooks/signup-risk.md',
    runbookBase: 'docs/runbooks/',
  },
  // Over half of a partition's last 1,000 records dead-lettered: an upstream deploy broke the events; wait for the fix instead.
  circuitBreaker: { threshold: 0.5, window: 1_000, minRecords: 100, coolDownSeconds: 300 },
  // Producers key signups by user (one user's events in order); a signup older than an hour or 5 min ahead of the clock is flagged, still decided.
  ingest: { keying: ['payload.user_id'], latenessMs: 3_600_000, clockSkewMs: 300_000, dedupWindowMs: 86_400_000 },
  decisions: ['approve', 'review', 'block'],
  reviewDecision: 'review',
  review: {
    // A signup waits for a reviewer at most four hours; unresolved, it stays held (review, decided_by fallback): never approved by default.
    slaSeconds: 4 * 3_600,
    auditRate: 0.01,
    fallbackDecision: 'review',
    leaseSeconds: 600,
  },
  // A signup event is well under 1 KiB; anything over 256 KiB is OVERSIZED (below the broker's 1 MiB limit, so the dead letter itself fits).
  maxMessageBytes: 262_144,
  schemasDir: fileURLToPath(new URL('../../schemas/signup-risk/', import.meta.url)),
  payload: (_eventType, payload) => parseSignupPayload(payload),
  model: {
    featureNames: FEATURE_NAMES,
    features: (_eventType, payload) => featuresOf(payload),
    output: { kind: 'binary', classes: ['legit', 'risky'], positiveIndex: 1 },
    // Fifteen tabular features: every one is worth watching for drift.
    monitoredNames: FEATURE_NAMES,
    monitored: (_eventType, _payload, features) => (Array.isArray(features) ? features : Array.from(features)),
  },
  policy: signupRiskPolicy,
  generator: {
    *events(options) {
      for (const signup of generateSignups(options)) {
        yield {
          index: signup.index,
          eventId: signup.envelope.event_id,
          eventType: EVENT_TYPE,
          key: signup.key,
          value: envelopeBytes(signup.envelope),
          occurredAtMs: signup.occurredAtMs,
        };
      }
    },
    malformed: (options) => malformedSamples(options),
  },
  monitoring: {
    // Optional fields whose absence the model reads as a signal: a producer that stops sending one is a data-quality incident.
    missingIndicators: { email_domain_age_days: 'email_domain_age_missing', signups_from_ip_24h: 'signups_from_ip_24h_missing', ip_country: 'ip_country_missing' },
    // About 94% of signups are approved (card: flagged_rate_at_0_5 ≈ 0.055); all but every one approved is a collapse.
    decisionShareMax: 0.99,
  },
};
