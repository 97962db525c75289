/** Binds the validate transform to `<p>.raw` → `<p>.validated` (+ dead letters). */
import { parseSignupPayload } from '../../pipelines/signup-risk/payload.ts';
import type { StageFactory } from '../runtime/runtime.ts';
import { validateConfigFromEnv } from './config.ts';
import { type ValidateContext, validateRecord } from './transform.ts';

export const validateStage: StageFactory<Buffer | null> = async ({ pipeline, catalog, metrics, now }) => {
  const config = validateConfigFromEnv();
  const ctx: ValidateContext = {
    pipeline: pipeline.name,
    expectedEventType: pipeline.eventType,
    maxMessageBytes: config.maxMessageBytes,
    parsePayload: parseSignupPayload,
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
          for (const output of outcome.outputs) {
            for (const field of (output.value as { dropped_fields: string[] }).dropped_fields) metrics.droppedFields.inc({ field });
          }
        }
        return outcome;
      }),
  };
};
