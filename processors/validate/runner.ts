/** Binds the validate transform to `<p>.raw` → `<p>.validated` (+ dead letters), with the pipeline's payload rules. */
import type { StageModule } from '../runtime/runtime.ts';
import { validateConfigSchema } from './config.ts';
import { type ValidateContext, validateRecord } from './transform.ts';

export const validateStage: StageModule<{ validate: typeof validateConfigSchema }> = {
  name: 'validate',
  input: 'raw',
  outputs: ['validated'],
  settings: () => ({ validate: validateConfigSchema }),
  factory:
    (settings) =>
    async ({ pipeline, catalog, metrics, now }) => {
      const ctx: ValidateContext = {
        pipeline: pipeline.name,
        eventTypes: pipeline.plugin.eventTypes,
        maxMessageBytes: settings.validate.SLUICE_MAX_MESSAGE_BYTES ?? pipeline.plugin.maxMessageBytes,
        parsePayload: pipeline.plugin.payload,
        decodeFramed: (value) => catalog.decodeSync(value),
        now,
      };
      return {
        input: 'raw',
        inputFormat: 'bytes',
        outputs: ['validated'],
        process: (inputs) =>
          inputs.map(({ source }) => {
            const outcome = validateRecord(source, ctx);
            if (outcome.kind === 'emit') {
              for (const output of outcome.outputs) metrics.droppedFields.inc((output.value as { dropped_fields: string[] }).dropped_fields.length);
            }
            return outcome;
          }),
      };
    },
};
