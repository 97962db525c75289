/**
 * The signup-risk feature vector. `featuresOf` is the single definition of the
 * features: the `score` stage calls it online and `training/export-data.ts`
 * calls it to write the training data, so training and serving cannot drift
 * apart. Changing a feature (name, order or meaning) means training a new model;
 * a model whose card lists other features is refused at load.
 */
import type { SignupPayload } from './types.ts';

/** Stands in for an absent optional count; never a real value (counts are >= 0). */
export const MISSING = -1;

export const FEATURE_NAMES = [
  'email_domain_age_days_log1p',
  'email_domain_age_missing',
  'signups_from_ip_24h_log1p',
  'signups_from_ip_24h_missing',
  'ip_country_missing',
  'ip_country_mismatch',
  'channel_web',
  'channel_ios',
  'channel_android',
  'channel_api',
  'plan_free',
  'plan_pro',
  'plan_enterprise',
  'has_referral_code',
  'email_local_digits',
] as const;

export type FeatureName = (typeof FEATURE_NAMES)[number];

const indicator = (condition: boolean): number => (condition ? 1 : 0);

/** log1p of an optional count, or MISSING when it is absent. */
const logCount = (value: number | null): number => (value === null ? MISSING : Math.log1p(value));

/** Number of digits in the part of the address before the last `@`. */
export function localPartDigits(email: string): number {
  const at = email.lastIndexOf('@');
  const local = at < 0 ? email : email.slice(0, at);
  let digits = 0;
  for (let i = 0; i < local.length; i++) {
    const code = local.charCodeAt(i);
    if (code >= 48 && code <= 57) digits++;
  }
  return digits;
}

/**
 * The feature vector of a validated, normalized payload, in FEATURE_NAMES order.
 * Pure and total: every valid payload gives finite numbers. Absent optional
 * fields are explicit: an indicator feature set to 1 and the value feature set
 * to MISSING, so a model can tell "unknown" from "zero".
 */
export function featuresOf(payload: SignupPayload): number[] {
  const channel = payload.signup_channel;
  const plan = payload.plan;
  return [
    logCount(payload.email_domain_age_days),
    indicator(payload.email_domain_age_days === null),
    logCount(payload.signups_from_ip_24h),
    indicator(payload.signups_from_ip_24h === null),
    indicator(payload.ip_country === null),
    indicator(payload.ip_country !== null && payload.ip_country !== payload.country),
    indicator(channel === 'web'),
    indicator(channel === 'ios'),
    indicator(channel === 'android'),
    indicator(channel === 'api'),
    indicator(plan === 'free'),
    indicator(plan === 'pro'),
    indicator(plan === 'enterprise'),
    indicator(payload.referral_code !== null && payload.referral_code !== ''),
    localPartDigits(payload.email),
  ];
}
