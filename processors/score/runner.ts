/**
 * Binds the score transform to `<p>.validated` → `<p>.scored`, serving the
 * pipeline instance's champion (the control topic's `model.champion` record;
 * without one, SLUICE_MODEL_VERSION or the store's ACTIVE) and scoring its
 * challenger in shadow. Promotions apply between batches, with no restart
 * (served.ts).
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import { z } from 'zod';
import { modelStoreOf, modelStoreSchema } from '../../connectors/models/config.ts';
import { SluiceError } from '../../lib/errors.ts';
import type { StageModule } from '../runtime/runtime.ts';
import type { ModelAlias } from '../runtime/control.ts';
import { ServedModels } from './served.ts';
import { scoreBatch } from './transform.ts';

const scoreConfigSchema = z.object({
  /** The default version when the control topic names no champion; default: the one named in the store's ACTIVE. */
  SLUICE_MODEL_VERSION: z.string().trim().min(1, 'name a model version, or leave it unset for ACTIVE').optional(),
});

export const scoreStage: StageModule<{ score: typeof scoreConfigSchema; store: typeof modelStoreSchema }> = {
  name: 'score',
  input: 'validated',
  outputs: ['scored'],
  settings: () => ({ score: scoreConfigSchema, store: modelStoreSchema }),
  factory:
    (settings) =>
    async ({ pipeline, control, logger, metrics, now }) => {
      const adapter = pipeline.plugin.model;
      const kind = pipeline.plugin.kind;
      const store = modelStoreOf(settings.store);
      const defaultVersion = settings.score.SLUICE_MODEL_VERSION ?? (await store.defaultVersion(kind));
      if (defaultVersion === null) {
        throw new SluiceError('MODEL_LOAD_FAILED', `No default model for ${kind}: ${store.location} has no ${kind}/ACTIVE. Write a version name into it, or set SLUICE_MODEL_VERSION.`);
      }
      const versions = await store.versions(kind);
      if (!versions.includes(defaultVersion)) {
        throw new SluiceError('MODEL_LOAD_FAILED', `Model version ${defaultVersion} of ${kind} is not in ${store.location}. Versions: ${versions.join(', ') || 'none'}.`);
      }

      const registers = [metrics.registry];
      const info = new Gauge({ name: 'sluice_model_info', help: 'The model versions this instance serves, by alias (1 = served)', labelNames: ['version', 'alias'], registers });
      const loadFailures = new Counter({
        name: 'sluice_model_load_failures_total',
        help: 'Model versions refused at load (checksum, signature, reference examples…); the instance kept the model it had',
        labelNames: ['alias', 'version', 'code'],
        registers,
      });
      const swaps = new Counter({ name: 'sluice_model_swaps_total', help: 'Models swapped in while running, by alias', labelNames: ['alias'], registers });
      const loadSeconds = new Histogram({ name: 'sluice_model_load_seconds', help: 'Time to load and verify a promoted version', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers });
      const shadowScored = new Counter({ name: 'sluice_shadow_scored_total', help: 'Records scored in shadow by the challenger', labelNames: ['version'], registers });
      const shadowDifference = new Histogram({
        name: 'sluice_shadow_score_difference',
        help: 'Absolute difference between the challenger score and the champion score, per record',
        labelNames: ['version'],
        buckets: [0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1],
        registers,
      });
      const shadowFailures = new Counter({ name: 'sluice_shadow_failures_total', help: 'Batches the challenger could not score (the champion decided as usual)', labelNames: ['version'], registers });
      const servedVersion: Record<ModelAlias, string | null> = { champion: null, challenger: null };

      const served = await ServedModels.start({
        pipeline: pipeline.name,
        kind,
        store,
        signature: { featureNames: adapter.featureNames, classes: adapter.output.classes, monitoredNames: adapter.monitoredNames },
        control,
        defaultVersion,
        logger,
        metrics: {
          setInfo(alias, version) {
            const before = servedVersion[alias];
            if (before !== null) info.remove({ version: before, alias });
            servedVersion[alias] = version;
            if (version !== null) info.set({ version, alias }, 1);
          },
          loadFailed: (alias, version, code) => loadFailures.inc({ alias, version, code }),
          swapped(alias, seconds) {
            swaps.inc({ alias });
            loadSeconds.observe(seconds);
          },
        },
      });
      logger.info({ models: served.versions(), store: store.location }, 'models served');

      return {
        input: 'validated',
        inputFormat: 'avro',
        outputs: ['scored'],
        async process(inputs) {
          const lease = served.lease();
          try {
            const killed = control.killSwitchOn(pipeline.name);
            return await scoreBatch(
              inputs.map((input) => input.value),
              {
                adapter,
                scorer: killed ? null : lease.champion,
                observeLatency: (seconds) => metrics.modelLatency.observe(seconds),
                shadow:
                  killed || lease.challenger === null
                    ? null
                    : {
                        scorer: lease.challenger,
                        report({ version, scores }) {
                          shadowScored.inc({ version }, scores.length);
                          for (const { champion, challenger } of scores) shadowDifference.observe({ version }, Math.abs(challenger - champion));
                        },
                        failed(error) {
                          shadowFailures.inc({ version: lease.challenger!.version });
                          logger.warn({ err: error, model_version: lease.challenger!.version }, 'challenger failed on a batch; the champion decided as usual');
                        },
                      },
                now,
              },
            );
          } finally {
            lease.release();
          }
        },
        close: () => served.close(),
      };
    },
};
