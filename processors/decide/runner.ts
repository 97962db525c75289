/** Binds the decide policy to `<p>.scored` → `<p>.decided` and `<p>.review`. */
import type { ScoredRecord } from '../../pipelines/signup-risk/types.ts';
import type { StageFactory } from '../runtime/runtime.ts';
import { decideConfigFromEnv, loadDecidePolicy } from './config.ts';
import { decide } from './transform.ts';

export const decideStage: StageFactory<ScoredRecord> = async ({ pipeline, control, logger, now }) => {
  const policy = loadDecidePolicy(decideConfigFromEnv());
  logger.info({ policy_version: policy.policyVersion, thresholds: policy.thresholds, disposable_domains: policy.disposableDomains.size }, 'policy loaded');
  return {
    input: 'scored',
    inputFormat: 'avro',
    outputs: ['decided', 'review'],
    process: (inputs) => {
      // The kill switch is read once per chunk: a chunk is decided under one policy.
      const ctx = { pipeline: pipeline.name, killSwitchOn: control.killSwitchOn(pipeline.name), ...policy, now };
      return inputs.map(({ value }) => decide(value, ctx));
    },
  };
};
