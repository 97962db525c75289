/** TypeScript shapes of the signup-risk Avro records (schemas/signup-risk/*.avsc; test/unit/pipelines.test.ts checks them against each other). */
import type * as contracts from '../../lib/contracts.ts';

export type SignupChannel = 'web' | 'ios' | 'android' | 'api';
export type Plan = 'free' | 'pro' | 'enterprise';

export interface SignupPayload {
  user_id: string;
  email: string;
  email_domain: string;
  country: string;
  ip_country: string | null;
  signup_channel: SignupChannel;
  plan: Plan;
  email_domain_age_days: number | null;
  signups_from_ip_24h: number | null;
  referral_code: string | null;
}

export type Envelope = contracts.RecordEnvelope;
export type ValidatedRecord = contracts.ValidatedRecord<SignupPayload>;
/** `label`, `class_names` and `class_scores` are always null and empty for this binary model. */
export type ScoredRecord = contracts.ScoredRecord<SignupPayload>;

export type DecidedBy = contracts.DecidedBy;
export type SignupDecision = 'approve' | 'review' | 'block';
export type DecisionRecord = contracts.DecisionRecord<SignupDecision>;
export type ReviewRecord = contracts.ReviewRecord<SignupPayload, DecisionRecord>;

export const PIPELINE = 'signup-risk';
export const EVENT_TYPE = 'user_signed_up';
