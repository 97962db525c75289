/** The pipelines this deployment runs, by name. */
import { SluiceError } from '../lib/errors.ts';
import { signupRisk } from './signup-risk/pipeline.ts';

export interface PipelineDefinition {
  /** Names the topics (`<name>.raw`…), groups, subjects and control keys. */
  name: string;
  /** The definition it runs (`signup-risk` for `signup-risk-staging`): picks models and rules. */
  kind: string;
  /** The one event type the pipeline accepts on `<name>.raw`. */
  eventType: string;
  /** Carried into metric labels and alerts (the brief's ownership component). */
  owners: { team: string; oncall: string };
}

const PIPELINES: ReadonlyMap<string, PipelineDefinition> = new Map([[signupRisk.name, signupRisk]]);

/**
 * A pipeline by name. `<pipeline>-<instance>` (e.g. `signup-risk-staging`) runs
 * the same definition on its own topics, groups, subjects and control keys:
 * for staging, side-by-side trials and isolated tests.
 */
export function pipelineByName(name: string): PipelineDefinition {
  const exact = PIPELINES.get(name);
  if (exact) return exact;
  const base = [...PIPELINES.values()].find((p) => name.startsWith(`${p.name}-`) && /^[a-zA-Z0-9._-]+$/.test(name));
  if (base) return { ...base, name };
  throw new SluiceError('PIPELINE_UNKNOWN', `Unknown pipeline "${name}". Known pipelines: ${[...PIPELINES.keys()].join(', ')}.`);
}
