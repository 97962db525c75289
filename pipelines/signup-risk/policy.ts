/**
 * The signup-risk decision policy (PRODUCT.md), pure: thresholds and rules
 * around the model. In this order:
 * 1. kill switch on (or no usable score): the model is not consulted; rules
 *    that need no score still apply, everything else is `review` by `fallback`;
 * 2. disposable email domain (or a subdomain of one) → `block` by `rule`;
 * 3. score ≥ blockAt → `block` by `model`, except plan `enterprise`, which is
 *    never blocked automatically: `review` by `rule`;
 * 4. score ≥ reviewAt → `review` by `model`;
 * 5. otherwise `approve` by `model`.
 * Because rule 2 needs no score it is checked first in every case.
 */
import { createHash } from 'node:crypto';
import { SluiceError } from '../../lib/errors.ts';
import { isValidDomain } from './payload.ts';
import type { DecidedBy } from '../../lib/pipeline.ts';
import type { Plan, SignupDecision } from './types.ts';

/** Scores are probabilities; 0 ≤ reviewAt ≤ blockAt ≤ 1. */
export interface Thresholds {
  blockAt: number;
  reviewAt: number;
}

export const DEFAULT_THRESHOLDS: Readonly<Thresholds> = { blockAt: 0.9, reviewAt: 0.5 };

/** Stable, machine-readable reasons: dashboards and reviewers filter on them. */
export const REASONS = {
  disposableEmailDomain: 'disposable_email_domain',
  modelSwitchedOff: 'model_switched_off',
  noModelScore: 'no_model_score',
  invalidModelScore: 'invalid_model_score',
  scoreAboveBlockThreshold: 'score_above_block_threshold',
  enterpriseNeverAutoBlocked: 'enterprise_never_auto_blocked',
  scoreAboveReviewThreshold: 'score_above_review_threshold',
  scoreBelowReviewThreshold: 'score_below_review_threshold',
} as const;
export type Reason = (typeof REASONS)[keyof typeof REASONS];

export interface PolicyInput {
  /** lower case, as validate normalizes it */
  emailDomain: string;
  plan: Plan;
  score: number | null;
}

export interface PolicySettings {
  /** The decide stage's own current view of the pipeline's model kill switch. */
  killSwitchOn: boolean;
  thresholds: Thresholds;
  disposableDomains: ReadonlySet<string>;
}

export interface Verdict {
  decision: SignupDecision;
  decidedBy: DecidedBy;
  reasons: Reason[];
}

export function evaluatePolicy(input: PolicyInput, settings: PolicySettings): Verdict {
  if (disposableDomainMatch(input.emailDomain, settings.disposableDomains) !== null) {
    return { decision: 'block', decidedBy: 'rule', reasons: [REASONS.disposableEmailDomain] };
  }

  const score = usableScore(input.score, settings.killSwitchOn);
  if (typeof score === 'string') return { decision: 'review', decidedBy: 'fallback', reasons: [score] };

  const { blockAt, reviewAt } = settings.thresholds;
  if (score >= blockAt) {
    if (input.plan === 'enterprise') {
      return {
        decision: 'review',
        decidedBy: 'rule',
        reasons: [REASONS.scoreAboveBlockThreshold, REASONS.enterpriseNeverAutoBlocked],
      };
    }
    return { decision: 'block', decidedBy: 'model', reasons: [REASONS.scoreAboveBlockThreshold] };
  }
  if (score >= reviewAt) {
    return { decision: 'review', decidedBy: 'model', reasons: [REASONS.scoreAboveReviewThreshold] };
  }
  return { decision: 'approve', decidedBy: 'model', reasons: [REASONS.scoreBelowReviewThreshold] };
}

/**
 * The score the model gave, or the reason there is none to use: the kill
 * switch is on (a score present is ignored), the score stage had the model
 * switched off (null), or the model misbehaved (not a probability).
 */
function usableScore(score: number | null, killSwitchOn: boolean): number | Reason {
  if (killSwitchOn) return REASONS.modelSwitchedOff;
  if (score === null) return REASONS.noModelScore;
  if (!(Number.isFinite(score) && score >= 0 && score <= 1)) return REASONS.invalidModelScore;
  return score;
}

/**
 * The list entry matching `domain` or one of its parent domains
 * (`a.mailinator.com` matches `mailinator.com`), or null.
 */
export function disposableDomainMatch(domain: string, disposableDomains: ReadonlySet<string>): string | null {
  const lower = domain.toLowerCase();
  // The domain, then what follows each of its dots: no array of labels per decision.
  for (let start = 0; ; ) {
    const candidate = start === 0 ? lower : lower.slice(start);
    if (disposableDomains.has(candidate)) return candidate;
    const dot = lower.indexOf('.', start);
    if (dot < 0) return null;
    start = dot + 1;
  }
}

/** null when the thresholds are usable, otherwise the problem. */
export function thresholdsProblem(thresholds: Thresholds): string | null {
  const { blockAt, reviewAt } = thresholds;
  if (!(Number.isFinite(blockAt) && blockAt >= 0 && blockAt <= 1)) return 'block threshold must be between 0 and 1';
  if (!(Number.isFinite(reviewAt) && reviewAt >= 0 && reviewAt <= 1)) return 'review threshold must be between 0 and 1';
  if (reviewAt > blockAt) return 'review threshold must not exceed the block threshold';
  return null;
}

/**
 * Parses a disposable-domain list: one domain per line, `#` starts a comment,
 * blank lines ignored, case-insensitive. Every bad line is listed in one
 * CONFIG_INVALID error.
 */
export function parseDisposableDomains(text: string, origin = 'disposable-domain list'): Set<string> {
  const domains = new Set<string>();
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const entry = line.replace(/#.*$/, '').trim().toLowerCase();
    if (entry === '') return;
    if (isValidDomain(entry)) domains.add(entry);
    else problems.push(`  line ${index + 1}: ${JSON.stringify(entry)} is not a domain name`);
  });
  if (problems.length > 0) {
    throw new SluiceError('CONFIG_INVALID', `Invalid ${origin}; fix these lines:\n${problems.join('\n')}`);
  }
  return domains;
}

/**
 * Bump when the policy's logic changes (not its data), so that the change
 * shows in policy_version too.
 */
export const POLICY_RULES_REVISION = 1;

/**
 * A short, deterministic name for the policy in force: `policy-` and the first
 * 12 hex digits of a SHA-256 over the rules revision, thresholds and sorted
 * domain list. Any change of policy shows in every decision it makes.
 */
export function policyVersion(thresholds: Thresholds, disposableDomains: Iterable<string>): string {
  const canonical = JSON.stringify({
    rules: POLICY_RULES_REVISION,
    blockAt: thresholds.blockAt,
    reviewAt: thresholds.reviewAt,
    disposableDomains: [...new Set(disposableDomains)].sort(),
  });
  return `policy-${createHash('sha256').update(canonical).digest('hex').slice(0, 12)}`;
}
