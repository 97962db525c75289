/**
 * The signup-risk policy's configuration, from the environment, parsed with
 * the decide process's other settings before any I/O: thresholds and the
 * disposable-domain list. The list is read from a file here, at start, so the
 * policy stays pure.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { errorMessage, SluiceError } from '../../lib/errors.ts';
import type { Policy, PolicyModule } from '../../lib/pipeline.ts';
import { parseEnv, probabilityVar } from '../../lib/settings.ts';
import {
  DEFAULT_THRESHOLDS,
  evaluatePolicy,
  parseDisposableDomains,
  policyVersion,
  type Thresholds,
  thresholdsProblem,
} from './policy.ts';
import type { Plan, SignupPayload } from './types.ts';

export const DECIDE_DEFAULTS = {
  blockThreshold: DEFAULT_THRESHOLDS.blockAt,
  reviewThreshold: DEFAULT_THRESHOLDS.reviewAt,
  disposableDomainsFile: fileURLToPath(new URL('./disposable-domains.txt', import.meta.url)),
} as const;

export const decideConfigSchema = z
  .object({
    SLUICE_BLOCK_THRESHOLD: probabilityVar().default(DECIDE_DEFAULTS.blockThreshold),
    SLUICE_REVIEW_THRESHOLD: probabilityVar().default(DECIDE_DEFAULTS.reviewThreshold),
    SLUICE_DISPOSABLE_DOMAINS_FILE: z.string().trim().min(1).default(DECIDE_DEFAULTS.disposableDomainsFile),
  })
  .refine((env) => env.SLUICE_REVIEW_THRESHOLD <= env.SLUICE_BLOCK_THRESHOLD, {
    path: ['SLUICE_REVIEW_THRESHOLD'],
    message: 'must not exceed SLUICE_BLOCK_THRESHOLD',
  });

export interface DecideConfig {
  thresholds: Thresholds;
  disposableDomainsFile: string;
}

export function decideConfigFromEnv(env: NodeJS.ProcessEnv = process.env): DecideConfig {
  const parsed = parseEnv(decideConfigSchema, env);
  return {
    thresholds: { blockAt: parsed.SLUICE_BLOCK_THRESHOLD, reviewAt: parsed.SLUICE_REVIEW_THRESHOLD },
    disposableDomainsFile: parsed.SLUICE_DISPOSABLE_DOMAINS_FILE,
  };
}

/** The policy in force: what the runtime puts in every DecideContext. */
export interface DecidePolicy {
  thresholds: Thresholds;
  disposableDomains: ReadonlySet<string>;
  policyVersion: string;
}

export function loadDecidePolicy(
  config: DecideConfig,
  readText: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): DecidePolicy {
  const problem = thresholdsProblem(config.thresholds);
  if (problem !== null) throw new SluiceError('CONFIG_INVALID', `Invalid decision thresholds: ${problem}.`);
  let text: string;
  try {
    text = readText(config.disposableDomainsFile);
  } catch (error) {
    throw new SluiceError(
      'CONFIG_INVALID',
      `Cannot read the disposable-domain list ${config.disposableDomainsFile} (${errorMessage(error)}); set SLUICE_DISPOSABLE_DOMAINS_FILE to a readable file.`,
      { cause: error },
    );
  }
  const disposableDomains = parseDisposableDomains(text, `disposable-domain list ${config.disposableDomainsFile}`);
  return {
    thresholds: { ...config.thresholds },
    disposableDomains,
    policyVersion: policyVersion(config.thresholds, disposableDomains),
  };
}

/** The policy as a plugin: its variables, and the policy in force built from them. */
export const signupRiskPolicy: PolicyModule<SignupPayload, DecideConfig> = {
  configSchema: decideConfigSchema.transform(
    (env): DecideConfig => ({
      thresholds: { blockAt: env.SLUICE_BLOCK_THRESHOLD, reviewAt: env.SLUICE_REVIEW_THRESHOLD },
      disposableDomainsFile: env.SLUICE_DISPOSABLE_DOMAINS_FILE,
    }),
  ),
  load(config): Policy<SignupPayload> {
    const policy = loadDecidePolicy(config);
    return {
      version: policy.policyVersion,
      decide: (input, settings) =>
        evaluatePolicy(
          { emailDomain: input.payload.email_domain, plan: input.payload.plan as Plan, score: input.score },
          { killSwitchOn: settings.killSwitchOn, thresholds: policy.thresholds, disposableDomains: policy.disposableDomains },
        ),
    };
  },
};
