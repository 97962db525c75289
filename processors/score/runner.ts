/** Binds the score transform to `<p>.validated` → `<p>.scored`, with the pipeline's active model. */
import { z } from 'zod';
import { loadModel, resolveModelDir } from '../../connectors/onnx/model.ts';
import type { StageModule } from '../runtime/runtime.ts';
import { scoreBatch } from './transform.ts';

const scoreConfigSchema = z.object({
  /** A version directory under models/<kind>/; default: the one named in models/<kind>/ACTIVE. */
  SLUICE_MODEL_VERSION: z.string().trim().min(1, 'name a model version, or leave it unset for ACTIVE').optional(),
});

export const scoreStage: StageModule<{ score: typeof scoreConfigSchema }> = {
  name: 'score',
  input: 'validated',
  outputs: ['scored'],
  settings: () => ({ score: scoreConfigSchema }),
  factory:
    (settings) =>
    async ({ pipeline, control, logger, metrics, now }) => {
      const adapter = pipeline.plugin.model;
      const dir = await resolveModelDir(pipeline.plugin.kind, settings.score.SLUICE_MODEL_VERSION);
      const model = await loadModel(dir, { featureNames: adapter.featureNames, classes: adapter.output.classes, monitoredNames: adapter.monitoredNames });
      logger.info({ model_version: model.version, dir }, 'model loaded');
      return {
        input: 'validated',
        inputFormat: 'avro',
        outputs: ['scored'],
        process: (inputs) =>
          scoreBatch(
            inputs.map((input) => input.value),
            {
              adapter,
              scorer: control.killSwitchOn(pipeline.name) ? null : model,
              observeLatency: (seconds) => metrics.modelLatency.observe(seconds),
              now,
            },
          ),
        close: () => model.close(),
      };
    },
};
