/**
 * The onnxruntime adapter: the only module that imports onnxruntime-node.
 *
 * A model version lives in `models/<pipeline>/<version>/` as `model.onnx` plus
 * the `card.json` that training/train.py wrote with it; `models/<pipeline>/ACTIVE`
 * names the version used when none is asked for (the control topic can still
 * switch versions at run time).
 */
import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { SluiceError, errorMessage } from '../../lib/errors.ts';
import { type ModelCard, readCard } from './card.ts';

export type { ModelCard, ReferenceDistribution } from './card.ts';

export const MODELS_ROOT = fileURLToPath(new URL('../../models/', import.meta.url));
export const ACTIVE_FILE = 'ACTIVE';

/** What the pipeline expects of its model: the input columns and the output classes, in order. */
export interface ModelSignature {
  featureNames: readonly string[];
  classes: readonly string[];
  /** Features that need a reference distribution in the card (drift checks). */
  monitoredNames?: readonly string[];
}

/**
 * A loaded model version. Lifecycle: `loadModel` → any number of `predict` calls
 * (concurrent calls are allowed) → `close`, which waits for predictions in
 * flight; `predict` after `close` rejects.
 */
export interface ScoringModel {
  readonly version: string;
  readonly card: ModelCard;
  /** The feature order `predict` expects, equal to the card's. */
  readonly featureNames: readonly string[];
  /** The output columns, equal to the signature's classes. */
  readonly classes: readonly string[];
  /**
   * Class probabilities, row-major: `classes.length` values per row. Each row
   * holds featureNames.length finite numbers.
   */
  predict(rows: ReadonlyArray<ArrayLike<number>>): Promise<Float32Array>;
  close(): Promise<void>;
}

/**
 * One intra-op and one inter-op thread, and no spinning: a stage process scales
 * by running more processes, and spinning threads would burn a core each while
 * the stage waits on Kafka. The `extra` entries become ORT session config keys
 * (`session.intra_op.allow_spinning`), which the Node binding passes through.
 */
const SESSION_OPTIONS: InferenceSession.SessionOptions = {
  executionProviders: ['cpu'],
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function checkName(kind: string, value: string): void {
  if (!NAME.test(value)) {
    throw new SluiceError('MODEL_LOAD_FAILED', `Invalid ${kind} '${value}': use letters, digits, '.', '_' and '-' only.`);
  }
}

/**
 * The directory of a model version: `<modelsRoot>/<pipeline>/<version>`, the
 * version defaulting to the one named in `<modelsRoot>/<pipeline>/ACTIVE`.
 */
export async function resolveModelDir(pipeline: string, version?: string, modelsRoot: string = MODELS_ROOT): Promise<string> {
  checkName('pipeline', pipeline);
  const pipelineDir = join(modelsRoot, pipeline);
  let chosen = version;
  if (chosen === undefined) {
    const activePath = join(pipelineDir, ACTIVE_FILE);
    try {
      chosen = (await readFile(activePath, 'utf8')).trim();
    } catch (error) {
      throw new SluiceError('MODEL_LOAD_FAILED', `No active model for ${pipeline}: cannot read ${activePath} (${errorMessage(error)}). Write a version name into it, or pass a version.`, { cause: error });
    }
  }
  checkName('model version', chosen);
  const dir = join(pipelineDir, chosen);
  const isDir = await stat(dir).then((s) => s.isDirectory(), () => false);
  if (!isDir) {
    const available = await readdir(pipelineDir, { withFileTypes: true }).then(
      (entries) => entries.filter((e) => e.isDirectory()).map((e) => e.name).sort(),
      () => [],
    );
    throw new SluiceError('MODEL_LOAD_FAILED', `Model version ${chosen} of ${pipeline} not found at ${dir}. Available: ${available.join(', ') || 'none'}.`);
  }
  return dir;
}

function describeMismatch(card: readonly string[], code: readonly string[]): string {
  const missing = code.filter((name) => !card.includes(name));
  const unexpected = card.filter((name) => !code.includes(name));
  const parts: string[] = [];
  if (missing.length > 0) parts.push(`computed by the code but not in the card: ${missing.join(', ')}`);
  if (unexpected.length > 0) parts.push(`in the card but not computed by the code: ${unexpected.join(', ')}`);
  const first = code.findIndex((name, i) => card[i] !== name);
  const at = first === -1 ? code.length : first;
  if (parts.length === 0 || at < Math.min(card.length, code.length)) {
    parts.push(`first difference at position ${at}: card has '${card[at] ?? '(nothing)'}', code has '${code[at] ?? '(nothing)'}'`);
  }
  return parts.join('; ');
}

/**
 * Loads a model version directory: checks the card, that model.onnx is the file
 * the card describes (sha256), and that the card's features are exactly
 * `expectedFeatures` in order; then opens an onnxruntime session. Every failure
 * is a MODEL_LOAD_FAILED saying what to fix.
 */
export async function loadModel(dir: string, signature: ModelSignature): Promise<ScoringModel> {
  const expectedFeatures = signature.featureNames;
  const card = await readCard(dir, signature.monitoredNames);
  if (card.version !== basename(dir)) {
    throw new SluiceError('MODEL_LOAD_FAILED', `The card in ${dir} is for version ${card.version}, not ${basename(dir)}; model directories are named after their version.`);
  }
  const same = card.features.length === expectedFeatures.length && card.features.every((name, i) => name === expectedFeatures[i]);
  if (!same) {
    throw new SluiceError(
      'MODEL_LOAD_FAILED',
      `Model ${card.version} was trained on other features than this code computes (${describeMismatch(card.features, expectedFeatures)}). ` +
        `Serve it from the code it was trained with, or train a new model on the current features (npm run train) and make it ACTIVE.`,
    );
  }

  const modelPath = join(dir, card.onnx.file);
  let bytes: Buffer;
  try {
    bytes = await readFile(modelPath);
  } catch (error) {
    throw new SluiceError('MODEL_LOAD_FAILED', `Cannot read ${modelPath}: ${errorMessage(error)}. A model directory needs both card.json and the model file it names.`, { cause: error });
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== card.onnx.sha256) {
    throw new SluiceError('MODEL_LOAD_FAILED', `${modelPath} does not match its card (sha256 ${sha256}, card says ${card.onnx.sha256}); the file was changed or replaced after training. Restore it or retrain.`);
  }

  let session: InferenceSession;
  try {
    session = await InferenceSession.create(bytes, SESSION_OPTIONS);
  } catch (error) {
    throw new SluiceError('MODEL_LOAD_FAILED', `onnxruntime cannot load ${modelPath}: ${errorMessage(error)}`, { cause: error });
  }
  const { input, output } = card.onnx;
  if (card.onnx.classes !== undefined && card.onnx.classes.join('\u0000') !== signature.classes.join('\u0000')) {
    await session.release();
    throw new SluiceError(
      'MODEL_LOAD_FAILED',
      `Model ${card.version} outputs the classes [${card.onnx.classes.join(', ')}], but the pipeline reads [${signature.classes.join(', ')}]. Retrain it for this pipeline.`,
    );
  }
  if (!session.inputNames.includes(input) || !session.outputNames.includes(output)) {
    await session.release();
    throw new SluiceError('MODEL_LOAD_FAILED', `${modelPath} has inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}], but its card names input '${input}' and output '${output}'.`);
  }

  const width = expectedFeatures.length;
  let closed = false;
  const inFlight = new Set<Promise<unknown>>();
  return {
    version: card.version,
    card,
    featureNames: card.features,
    classes: signature.classes,
    async predict(rows) {
      if (closed) throw new Error(`model ${card.version} is closed`);
      const count = rows.length;
      const classes = signature.classes.length;
      if (count === 0) return new Float32Array(0);
      const data = new Float32Array(count * width);
      for (let r = 0; r < count; r++) {
        const row = rows[r]!;
        if (row.length !== width) throw new RangeError(`row ${r} has ${row.length} features, the model takes ${width}`);
        for (let c = 0; c < width; c++) {
          const value = row[c]!;
          if (!Number.isFinite(value)) throw new RangeError(`row ${r}: feature ${card.features[c]} is ${value}; features must be finite`);
          data[r * width + c] = value;
        }
      }
      const run = session.run({ [input]: new Tensor('float32', data, [count, width]) }, [output]);
      inFlight.add(run);
      const results = await run.finally(() => inFlight.delete(run));
      const probabilities = results[output];
      if (probabilities === undefined || probabilities.dims.length !== 2 || probabilities.dims[0] !== count || probabilities.dims[1] !== classes) {
        throw new Error(`model ${card.version} returned output '${output}' with dims [${probabilities?.dims.join(', ')}], expected [${count}, ${classes}]`);
      }
      return probabilities.data as Float32Array;
    },
    async close() {
      if (closed) return;
      closed = true;
      // Releasing the session under a running inference would free memory it still uses.
      await Promise.allSettled(inFlight);
      await session.release();
    },
  };
}
