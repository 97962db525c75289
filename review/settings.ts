/**
 * A pipeline's review settings as the service applies them: its manifest's
 * `review` block (lib/pipeline.ts ReviewSettings) over the defaults, with the
 * service-wide environment overrides on top (SLUICE_REVIEW_SLA_SECONDS,
 * SLUICE_REVIEW_LEASE_SECONDS: tests and drills shorten every pipeline's
 * times at once). Checked once at start: a manifest naming a fallback
 * decision the pipeline does not make is refused before any item is served.
 */
import { SluiceError } from '../lib/errors.ts';
import type { PipelinePlugin } from '../lib/pipeline.ts';
import { auditRateOf } from '../processors/decide/audit.ts';
import { REVIEW_DEFAULTS } from './config.ts';

export interface PipelineReviewSettings {
  /** An item expires this long after the decision under review was made. */
  slaMs: number;
  /** The share of automatic decisions the decide stage samples for audit (shown to reviewers; the stage applies it). */
  auditRate: number;
  /** The decision an expired review item gets, decided_by fallback. */
  fallbackDecision: string;
  /** How long a claim holds an item. */
  leaseMs: number;
}

function seconds(plugin: PipelinePlugin, name: 'slaSeconds' | 'leaseSeconds', fallback: number): number {
  const value = plugin.review?.[name] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new SluiceError('CONFIG_INVALID', `pipelines/${plugin.kind}/index.ts: review.${name} must be a whole number of seconds, at least 1; got ${String(value)}.`);
  }
  return value;
}

export function reviewSettingsOf(plugin: PipelinePlugin, overrides: { slaMs?: number | undefined; leaseMs?: number | undefined } = {}): PipelineReviewSettings {
  const fallbackDecision = plugin.review?.fallbackDecision ?? plugin.reviewDecision;
  if (!plugin.decisions.includes(fallbackDecision)) {
    throw new SluiceError('CONFIG_INVALID', `pipelines/${plugin.kind}/index.ts: review.fallbackDecision "${fallbackDecision}" is not one of the pipeline's decisions (${plugin.decisions.join(', ')}).`);
  }
  return {
    slaMs: overrides.slaMs ?? seconds(plugin, 'slaSeconds', REVIEW_DEFAULTS.slaSeconds) * 1_000,
    auditRate: auditRateOf(plugin),
    fallbackDecision,
    leaseMs: overrides.leaseMs ?? seconds(plugin, 'leaseSeconds', REVIEW_DEFAULTS.leaseSeconds) * 1_000,
  };
}
