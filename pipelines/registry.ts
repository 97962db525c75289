/**
 * The pipelines this deployment runs. Registering a pipeline is one line in
 * PLUGINS; everything else about it lives in its own folder (docs/pipelines.md).
 */
import { SluiceError } from '../lib/errors.ts';
import type { PipelineInstance, PipelinePlugin } from '../lib/pipeline.ts';
import { signupRisk } from './signup-risk/index.ts';
import { ticketTriage } from './ticket-triage/index.ts';

const PLUGINS: readonly PipelinePlugin[] = [signupRisk, ticketTriage];

export type { PipelineInstance } from '../lib/pipeline.ts';

export const listPipelines = (): readonly PipelinePlugin[] => PLUGINS;

const INSTANCE_NAME = /^[a-zA-Z0-9._-]+$/;

/**
 * A pipeline by name. `<kind>-<instance>` (e.g. `signup-risk-staging`) runs
 * the same definition on its own topics, groups, subjects and control keys:
 * for staging, side-by-side trials and isolated tests. The longest matching
 * kind wins, so one kind may prefix another.
 */
export function pipelineByName(name: string): PipelineInstance {
  const plugin =
    PLUGINS.find((p) => p.kind === name) ??
    [...PLUGINS].sort((a, b) => b.kind.length - a.kind.length).find((p) => name.startsWith(`${p.kind}-`) && INSTANCE_NAME.test(name));
  if (!plugin) {
    throw new SluiceError('PIPELINE_UNKNOWN', `Unknown pipeline "${name}". Known pipelines: ${PLUGINS.map((p) => p.kind).join(', ')} (or <pipeline>-<instance>).`);
  }
  return { name, plugin, owners: plugin.owners };
}
