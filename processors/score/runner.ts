/** Binds the score transform to `<p>.validated` → `<p>.scored`, with the pipeline's active model. */
import { loadModel, resolveModelDir } from '../../connectors/onnx/model.ts';
import type { ValidatedRecord } from '../../pipelines/signup-risk/types.ts';
import type { StageFactory } from '../runtime/runtime.ts';
import { scoreBatch } from './transform.ts';

export const scoreStage: StageFactory<ValidatedRecord> = async ({ pipeline, control, logger, metrics, now }) => {
  const dir = await resolveModelDir(pipeline.kind, process.env.SLUICE_MODEL_VERSION || undefined);
  const model = await loadModel(dir);
  logger.info({ model_version: model.version, dir }, 'model loaded');
  return {
    input: 'validated',
    inputFormat: 'avro',
    outputs: ['scored'],
    process: (inputs) =>
      scoreBatch(
        inputs.map((input) => input.value),
        {
          scorer: control.killSwitchOn(pipeline.name) ? null : model,
          observeLatency: (seconds) => metrics.modelLatency.observe(seconds),
          now,
        },
      ),
    close: () => model.close(),
  };
};
