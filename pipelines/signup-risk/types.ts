/** TypeScript shapes of the signup-risk Avro records (schemas/signup-risk/*.avsc; test/unit/pipelines.test.ts checks them against each other). */
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

export interface Envelope {
  event_id: string;
  event_type: string;
  /** epoch ms UTC (Avro timestamp-millis; avsc decodes it as a Date unless told otherwise) */
  occurred_at: number;
  source: string;
}

export interface ValidatedRecord extends Envelope {
  payload: SignupPayload;
  dropped_fields: string[];
  validated_at: number;
}

export interface ScoredRecord extends Envelope {
  payload: SignupPayload;
  score: number | null;
  /** Always null and empty for this binary model; multiclass pipelines fill them. */
  label: string | null;
  class_names: string[];
  class_scores: number[];
  model_version: string | null;
  feature_names: string[];
  feature_values: number[];
  validated_at: number;
  scored_at: number;
}

export type { DecidedBy } from '../../lib/pipeline.ts';
import type { DecidedBy } from '../../lib/pipeline.ts';
export type SignupDecision = 'approve' | 'review' | 'block';

export interface DecisionRecord {
  event_id: string;
  pipeline: string;
  decision: SignupDecision;
  decided_by: DecidedBy;
  reasons: string[];
  score: number | null;
  model_version: string | null;
  policy_version: string;
  decision_version: number;
  occurred_at: number;
  decided_at: number;
}

export interface ReviewRecord extends DecisionRecord {
  payload: SignupPayload;
}

export const PIPELINE = 'signup-risk';
export const EVENT_TYPE = 'user_signed_up';
