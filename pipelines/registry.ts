/** The pipelines this deployment runs, by name. */
import { SluiceError } from '../lib/errors.ts';
import { signupRisk } from './signup-risk/pipeline.ts';

export interface PipelineDefinition {
  name: string;
  /** The one event type the pipeline accepts on `<name>.raw`. */
  eventType: string;
  /** Carried into metric labels and alerts (the brief's ownership component). */
  owners: { team: string; oncall: string };
}

const PIPELINES: ReadonlyMap<string, PipelineDefinition> = new Map([[signupRisk.name, signupRisk]]);

export function pipelineByName(name: string): PipelineDefinition {
  const pipeline = PIPELINES.get(name);
  if (!pipeline) {
    throw new SluiceError('PIPELINE_UNKNOWN', `Unknown pipeline "${name}". Known pipelines: ${[...PIPELINES.keys()].join(', ')}.`);
  }
  return pipeline;
}
