/**
 * The ticket-triage routing policy, pure once loaded. In this order:
 * 1. security indicators in the text (a summary, description or document
 *    text containing a CVE identifier or a phrase of security-indicators.txt)
 *    → `route` to `security` at P1 by `rule`, whatever the model says and
 *    even with the kill switch on: it needs no model;
 * 2. kill switch on → `review` by `fallback`; no model, so the queue is
 *    FALLBACK_QUEUE (`bug`: the largest queue, staffed to triage what it does
 *    not own; the reviewer re-routes) with reason `model_switched_off`;
 *    likewise without a score (`no_model_score`) or with one that is not a
 *    probability of a known class (`invalid_model_output`);
 * 3. top class probability ≥ the route threshold (SLUICE_ROUTE_THRESHOLD,
 *    default 0.7) → `route` to that class's queue by `model`;
 * 4. otherwise `review` by `model`, the model's best guess as the queue, with
 *    every reason that applies: `score_below_route_threshold`, and
 *    `close_runner_up` (the second class within CLOSE_RUNNER_UP_MARGIN) and
 *    `document_text_truncated` (the model saw only the first 64 KiB).
 * Priority: P1 for the security rule; otherwise the ticket's `priority_hint`,
 * or P3 without one (documents have none).
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { errorMessage, SluiceError } from '../../lib/errors.ts';
import type { Policy, PolicyInput, PolicyModule, Verdict } from '../../lib/pipeline.ts';
import { probabilityVar } from '../../lib/settings.ts';
import { CVE_PATTERN } from './features.ts';
import { CATEGORIES, type Category, type Priority, type TicketTriagePayload, type TriageDecision } from './types.ts';

export const DEFAULT_ROUTE_THRESHOLD = 0.7;
export const FALLBACK_QUEUE: Category = 'bug';
export const DEFAULT_PRIORITY: Priority = 'P3';
export const SECURITY_PRIORITY: Priority = 'P1';
/** A runner-up this close to the top class makes a review worth flagging as a coin toss. */
export const CLOSE_RUNNER_UP_MARGIN = 0.1;
export const SECURITY_INDICATORS_FILE = fileURLToPath(new URL('./security-indicators.txt', import.meta.url));

/** Stable, machine-readable reasons: dashboards and reviewers filter on them. */
export const REASONS = {
  cveIdentifier: 'security_cve_identifier',
  securityPhrase: 'security_phrase',
  modelSwitchedOff: 'model_switched_off',
  noModelScore: 'no_model_score',
  invalidModelOutput: 'invalid_model_output',
  scoreAboveRouteThreshold: 'score_above_route_threshold',
  scoreBelowRouteThreshold: 'score_below_route_threshold',
  closeRunnerUp: 'close_runner_up',
  documentTextTruncated: 'document_text_truncated',
} as const;
export type Reason = (typeof REASONS)[keyof typeof REASONS];

/** Bump when the policy's logic changes (not its data), so that the change shows in policy_version too. */
export const POLICY_RULES_REVISION = 1;

// ---------------------------------------------------------------------------
// Security indicators.

export const CVE_IDENTIFIER = CVE_PATTERN;
const PHRASE = /^[\p{L}\p{N}]+(?:[ '-][\p{L}\p{N}]+)*$/u;
export const MAX_PHRASE_CHARS = 100;

/**
 * Parses a security-indicator list: one phrase per line, `#` starts a comment,
 * blank lines ignored, case-insensitive (stored lower case, inner whitespace
 * collapsed). Every bad line is listed in one CONFIG_INVALID error.
 */
export function parseSecurityIndicators(text: string, origin = 'security-indicator list'): string[] {
  const phrases = new Set<string>();
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const entry = line.replace(/#.*$/, '').trim().replace(/\s+/g, ' ').toLowerCase();
    if (entry === '') return;
    if (entry.length <= MAX_PHRASE_CHARS && PHRASE.test(entry)) phrases.add(entry);
    else problems.push(`  line ${index + 1}: ${JSON.stringify(entry.slice(0, 120))} is not a phrase of words`);
  });
  if (problems.length > 0) throw new SluiceError('CONFIG_INVALID', `Invalid ${origin}; fix these lines:\n${problems.join('\n')}`);
  if (phrases.size === 0) throw new SluiceError('CONFIG_INVALID', `The ${origin} has no phrases; an empty list would silently switch the security rule off.`);
  return [...phrases].sort();
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * One regular expression for all phrases: whole words, any case; a space or
 * hyphen between two words of a phrase matches any run of whitespace and
 * hyphens ("cross-site scripting", "cross site\nscripting").
 */
export function phraseMatcher(phrases: readonly string[]): RegExp {
  // Longest first, so a phrase is never shadowed by one of its own prefixes.
  const alternatives = [...phrases]
    .sort((a, b) => b.length - a.length || a.localeCompare(b))
    .map((phrase) => phrase.split(/[ -]+/).map(escapeRegExp).join('[\\s-]+'));
  return new RegExp(`(?<![\\p{L}\\p{N}])(?:${alternatives.join('|')})(?![\\p{L}\\p{N}])`, 'iu');
}

/** The texts the security rule reads: summary and description, or the document's text. */
export function securityTexts(payload: TicketTriagePayload): string[] {
  if (payload.ticket !== null) return [payload.ticket.summary, payload.ticket.description ?? ''];
  return [payload.document.text];
}

/** The security reasons that apply to `payload` (empty: none). */
export function securityReasons(payload: TicketTriagePayload, phrases: RegExp): Reason[] {
  const texts = securityTexts(payload);
  const reasons: Reason[] = [];
  if (texts.some((text) => CVE_IDENTIFIER.test(text))) reasons.push(REASONS.cveIdentifier);
  if (texts.some((text) => phrases.test(text))) reasons.push(REASONS.securityPhrase);
  return reasons;
}

// ---------------------------------------------------------------------------
// The decision.

export interface PolicySettings {
  killSwitchOn: boolean;
  routeThreshold: number;
  /** phraseMatcher(the indicator list) */
  securityPhrases: RegExp;
}

export interface TriageVerdict extends Verdict {
  decision: TriageDecision;
  reasons: Reason[];
  fields: { queue: Category; priority: Priority };
}

const isCategory = (label: string | null): label is Category => label !== null && (CATEGORIES as readonly string[]).includes(label);

export function evaluatePolicy(input: PolicyInput<TicketTriagePayload>, settings: PolicySettings): TriageVerdict {
  const { payload } = input;
  const security = securityReasons(payload, settings.securityPhrases);
  if (security.length > 0) {
    return { decision: 'route', decidedBy: 'rule', reasons: security, fields: { queue: 'security', priority: SECURITY_PRIORITY } };
  }
  const priority = payload.ticket?.priority_hint ?? DEFAULT_PRIORITY;
  const fallback = (reason: Reason): TriageVerdict => ({
    decision: 'review',
    decidedBy: 'fallback',
    reasons: [reason],
    fields: { queue: FALLBACK_QUEUE, priority },
  });
  if (settings.killSwitchOn) return fallback(REASONS.modelSwitchedOff);
  const { score, label } = input;
  if (score === null) return fallback(REASONS.noModelScore);
  if (!(Number.isFinite(score) && score >= 0 && score <= 1) || !isCategory(label)) return fallback(REASONS.invalidModelOutput);

  if (score >= settings.routeThreshold) {
    return { decision: 'route', decidedBy: 'model', reasons: [REASONS.scoreAboveRouteThreshold], fields: { queue: label, priority } };
  }
  const reasons: Reason[] = [REASONS.scoreBelowRouteThreshold];
  const runnerUp = Math.max(-1, ...Object.entries(input.classScores).filter(([name]) => name !== label).map(([, p]) => p));
  if (score - runnerUp < CLOSE_RUNNER_UP_MARGIN) reasons.push(REASONS.closeRunnerUp);
  if (payload.document?.text_truncated === true) reasons.push(REASONS.documentTextTruncated);
  return { decision: 'review', decidedBy: 'model', reasons, fields: { queue: label, priority } };
}

/**
 * `policy-` and the first 12 hex digits of a SHA-256 over the rules revision,
 * the route threshold and the sorted phrase list: any change of policy shows in
 * every decision it makes.
 */
export function policyVersion(routeThreshold: number, phrases: Iterable<string>): string {
  const canonical = JSON.stringify({
    rules: POLICY_RULES_REVISION,
    routeThreshold,
    securityPhrases: [...new Set(phrases)].sort(),
  });
  return `policy-${createHash('sha256').update(canonical).digest('hex').slice(0, 12)}`;
}

// ---------------------------------------------------------------------------
// Configuration and the plugin's PolicyModule.

export interface TriagePolicyConfig {
  routeThreshold: number;
  securityIndicatorsFile: string;
}

export const triageConfigSchema = z
  .object({
    SLUICE_ROUTE_THRESHOLD: probabilityVar().default(DEFAULT_ROUTE_THRESHOLD),
    SLUICE_SECURITY_INDICATORS_FILE: z.string().trim().min(1).default(SECURITY_INDICATORS_FILE),
  })
  .transform(
    (env): TriagePolicyConfig => ({ routeThreshold: env.SLUICE_ROUTE_THRESHOLD, securityIndicatorsFile: env.SLUICE_SECURITY_INDICATORS_FILE }),
  );

/** Builds the policy in force; reads the indicator list once, here. Throws CONFIG_INVALID. */
export function loadTriagePolicy(
  config: TriagePolicyConfig,
  readText: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): Policy<TicketTriagePayload> {
  const { routeThreshold, securityIndicatorsFile } = config;
  if (!(Number.isFinite(routeThreshold) && routeThreshold >= 0 && routeThreshold <= 1)) {
    throw new SluiceError('CONFIG_INVALID', `Invalid route threshold ${routeThreshold}: it must be between 0 and 1.`);
  }
  let text: string;
  try {
    text = readText(securityIndicatorsFile);
  } catch (error) {
    throw new SluiceError(
      'CONFIG_INVALID',
      `Cannot read the security-indicator list ${securityIndicatorsFile} (${errorMessage(error)}); set SLUICE_SECURITY_INDICATORS_FILE to a readable file.`,
      { cause: error },
    );
  }
  const phrases = parseSecurityIndicators(text, `security-indicator list ${securityIndicatorsFile}`);
  const securityPhrases = phraseMatcher(phrases);
  return {
    version: policyVersion(routeThreshold, phrases),
    decide: (input, settings) => evaluatePolicy(input, { killSwitchOn: settings.killSwitchOn, routeThreshold, securityPhrases }),
  };
}

export const ticketTriagePolicy: PolicyModule<TicketTriagePayload, TriagePolicyConfig> = {
  configSchema: triageConfigSchema,
  load: (config) => loadTriagePolicy(config),
};
