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
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { SluiceError, errorMessage } from '../../lib/errors.ts';
import { ACTIVE_FILE, MODELS_ROOT, type ModelStore } from '../models/store.ts';
import { CARD_FILE, type ModelCard, parseCard, REFERENCE_TOLERANCE } from './card.ts';

export type { ModelCard, ReferenceDistribution } from './card.ts';
export { ACTIVE_FILE, MODELS_ROOT };

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

/** Where a version's files come from: a directory or a model store. */
interface VersionSource {
  /** Names the version in messages: a path or `<store>/<kind>/<version>`. */
  where: string;
  /** The version the caller asked for; the card must say the same. */
  version: string;
  read(file: string): Promise<Buffer | null>;
}

/**
 * Loads a model version directory: checks the card, that model.onnx is the file
 * the card describes (sha256), and that the card's features are exactly
 * `expectedFeatures` in order; then opens an onnxruntime session. Every failure
 * is a MODEL_LOAD_FAILED saying what to fix.
 */
export async function loadModel(dir: string, signature: ModelSignature): Promise<ScoringModel> {
  return openVersion(
    {
      where: dir,
      version: basename(dir),
      read: (file) =>
        readFile(join(dir, file)).catch((error: unknown) => {
          if ((error as NodeJS.ErrnoException)?.code === 'ENOENT') return null;
          throw error;
        }),
    },
    signature,
  );
}

/** Loads version `version` of pipeline kind `kind` from a model store, with every check of loadModel. */
export async function loadModelFromStore(store: ModelStore, kind: string, version: string, signature: ModelSignature): Promise<ScoringModel> {
  return openVersion({ where: `${store.location}${store.location.endsWith('/') ? '' : '/'}${kind}/${version}`, version, read: (file) => store.read(kind, version, file) }, signature);
}

/**
 * Loads a version from files held in memory (name → bytes), with every check
 * of loadModel: what `sluice model register` verifies before it stores exactly
 * those bytes. `where` names the files in messages.
 */
export async function loadModelFromFiles(where: string, version: string, files: ReadonlyMap<string, Buffer>, signature: ModelSignature): Promise<ScoringModel> {
  return openVersion({ where, version, read: async (file) => files.get(file) ?? null }, signature);
}

async function readSource(source: VersionSource, file: string): Promise<Buffer> {
  let bytes: Buffer | null;
  try {
    bytes = await source.read(file);
  } catch (error) {
    // A store outage stays retriable: the caller may wait it out rather than give the version up.
    if (error instanceof SluiceError && error.retriable) throw error;
    throw new SluiceError('MODEL_LOAD_FAILED', `Cannot read ${file} of ${source.where}: ${errorMessage(error)}`, { cause: error });
  }
  if (bytes === null) {
    throw new SluiceError('MODEL_LOAD_FAILED', `${source.where} has no ${file}. A model version needs the card.json that training wrote and the model file it names.`);
  }
  return bytes;
}

/** The session's declared width of a [N, width] tensor, or null when it is symbolic or unknown. */
function declaredWidth(metadata: readonly InferenceSession.ValueMetadata[], name: string): number | null | 'not-2d' {
  const entry = metadata.find((m) => m.name === name);
  if (!entry?.isTensor || entry.shape.length === 0) return null;
  if (entry.shape.length !== 2) return 'not-2d';
  const width = entry.shape[1];
  return typeof width === 'number' && width > 0 ? width : null;
}

async function openVersion(source: VersionSource, signature: ModelSignature): Promise<ScoringModel> {
  const expectedFeatures = signature.featureNames;
  const cardPath = `${source.where}/${CARD_FILE}`;
  const card = parseCard((await readSource(source, CARD_FILE)).toString('utf8'), cardPath, signature.monitoredNames);
  if (card.version !== source.version) {
    throw new SluiceError('MODEL_LOAD_FAILED', `The card in ${source.where} is for version ${card.version}, not ${source.version}; model directories are named after their version.`);
  }
  const same = card.features.length === expectedFeatures.length && card.features.every((name, i) => name === expectedFeatures[i]);
  if (!same) {
    throw new SluiceError(
      'MODEL_LOAD_FAILED',
      `Model ${card.version} was trained on other features than this code computes (${describeMismatch(card.features, expectedFeatures)}). ` +
        `Serve it from the code it was trained with, or train a new model on the current features (npm run train) and make it ACTIVE.`,
    );
  }

  const modelPath = `${source.where}/${card.onnx.file}`;
  const bytes = await readSource(source, card.onnx.file);
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
  const refuse = async (message: string): Promise<never> => {
    await session.release();
    throw new SluiceError('MODEL_LOAD_FAILED', message);
  };
  const { input, output } = card.onnx;
  if (card.onnx.classes !== undefined && card.onnx.classes.join('\u0000') !== signature.classes.join('\u0000')) {
    await refuse(`Model ${card.version} outputs the classes [${card.onnx.classes.join(', ')}], but the pipeline reads [${signature.classes.join(', ')}]. Retrain it for this pipeline.`);
  }
  if (!session.inputNames.includes(input) || !session.outputNames.includes(output)) {
    await refuse(`${modelPath} has inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}], but its card names input '${input}' and output '${output}'.`);
  }
  // The pipeline's signature: [N, features] in, [N, classes] out, where the graph declares them.
  const inputWidth = declaredWidth(session.inputMetadata, input);
  if (inputWidth === 'not-2d' || (inputWidth !== null && inputWidth !== expectedFeatures.length)) {
    await refuse(`${modelPath} takes input '${input}' of shape other than [N, ${expectedFeatures.length}] (the pipeline's ${expectedFeatures.length} features); it is not a model for this pipeline's signature.`);
  }
  const outputWidth = declaredWidth(session.outputMetadata, output);
  if (outputWidth === 'not-2d' || (outputWidth !== null && outputWidth !== signature.classes.length)) {
    await refuse(`${modelPath} returns output '${output}' of shape other than [N, ${signature.classes.length}] (the pipeline's classes ${signature.classes.join(', ')}).`);
  }

  const width = expectedFeatures.length;
  let closed = false;
  const inFlight = new Set<Promise<unknown>>();
  const model: ScoringModel = {
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
  try {
    await checkReferenceExamples(model, modelPath);
  } catch (error) {
    await model.close();
    throw error;
  }
  return model;
}

/**
 * Scores the card's reference examples (when it has them) and compares every
 * probability with the card's: a file that computes something else than what
 * it was trained to, or runs otherwise on this runtime, is refused.
 */
async function checkReferenceExamples(model: ScoringModel, where: string): Promise<void> {
  const examples = model.card.reference.examples;
  if (examples === undefined) return;
  const width = model.classes.length;
  let scored: Float32Array;
  try {
    scored = await model.predict(examples.rows);
  } catch (error) {
    throw new SluiceError('MODEL_LOAD_FAILED', `${where} cannot score its card's reference examples: ${errorMessage(error)}`, { cause: error });
  }
  for (let r = 0; r < examples.rows.length; r++) {
    const expected = examples.probabilities[r]!;
    if (expected.length !== width) {
      throw new SluiceError('MODEL_LOAD_FAILED', `The card of ${model.version} gives ${expected.length} probabilities for reference example ${r}; the pipeline has ${width} classes.`);
    }
    for (let c = 0; c < width; c++) {
      const gap = Math.abs(scored[r * width + c]! - expected[c]!);
      if (!(gap <= REFERENCE_TOLERANCE)) {
        throw new SluiceError(
          'MODEL_LOAD_FAILED',
          `${where} scores reference example ${r} as ${scored[r * width + c]} for class ${model.classes[c]}, but its card says ${expected[c]} (off by ${gap}, more than ${REFERENCE_TOLERANCE}); the file is not the model the card describes.`,
        );
      }
    }
  }
}
