/** Binds the pipeline's policy to `<p>.scored` → `<p>.decided` and `<p>.review`. */
import type { PipelinePlugin } from '../../lib/pipeline.ts';
import type { StageModule } from '../runtime/runtime.ts';
import { auditRateOf } from './audit.ts';
import { decide, UNREAD_SCORED_FIELDS } from './transform.ts';

export const decideStage: StageModule<{ policy: PipelinePlugin['policy']['configSchema'] }> = {
  name: 'decide',
  input: 'scored',
  outputs: ['decided', 'review'],
  // The policy's own variables (thresholds, lists) are parsed with the process's other settings.
  settings: (plugin) => ({ policy: plugin.policy.configSchema }),
  factory:
    (settings) =>
    async ({ pipeline, control, logger, now }) => {
      const policy = pipeline.plugin.policy.load(settings.policy);
      const auditRate = auditRateOf(pipeline.plugin);
      logger.info({ policy_version: policy.version, audit_rate: auditRate }, 'policy loaded');
      return {
        input: 'scored',
        inputFormat: 'avro',
        // Decisions never read the monitored features: 15 names and 15 values a
        // record that decoding built and the collector swept. Skipping them gave
        // decide alone 11% more throughput (`npm run bench -- --stages-only`).
        inputSkips: UNREAD_SCORED_FIELDS,
        outputs: ['decided', 'review'],
        process: (inputs) => {
          // The kill switch is read once per chunk: a chunk is decided under one policy.
          const mode = control.killSwitchMode(pipeline.name);
          const ctx = { pipeline: pipeline.name, policy, reviewDecision: pipeline.plugin.reviewDecision, killSwitchOn: mode === 'rules', reviewEverything: mode === 'review', auditRate, now };
          return inputs.map(({ value }) => decide(value, ctx));
        },
        // Kill switch `park`: decide stops consuming; events wait in Kafka, undecided, until the mode changes.
        holds: () => (control.killSwitchMode(pipeline.name) === 'park' ? 'kill switch in mode park' : null),
      };
    },
};
