/**
 * The model card that training/train.py writes beside every model.onnx. Kept
 * apart from model.ts so that readers of the card (drift checks, the CLI) do not
 * load onnxruntime.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { SluiceError, errorMessage } from '../../lib/errors.ts';

/**
 * A reference distribution over fixed bins: `counts[i]` counts the values v with
 * `edges[i-1] < v <= edges[i]`; the first bin is open below, the last open above,
 * so `counts.length === edges.length + 1`.
 */
const distribution = z
  .looseObject({
    edges: z.array(z.number()),
    counts: z.array(z.number().int().nonnegative()),
    proportions: z.array(z.number()),
    mean: z.number(),
    std: z.number(),
    min: z.number(),
    max: z.number(),
    quantiles: z.record(z.string(), z.number()),
  })
  .refine((d) => d.counts.length === d.edges.length + 1 && d.proportions.length === d.counts.length, {
    message: 'counts and proportions must have edges.length + 1 entries',
  });

const timeWindow = z.object({ from: z.string(), to: z.string() });
const split = z.looseObject({ rows: z.number().int(), positives: z.number().int(), window: timeWindow });

/**
 * Reference examples: feature rows and the class probabilities the training
 * runtime gave them. A version whose file scores them otherwise (by more than
 * REFERENCE_TOLERANCE) is not the model the card describes, or not one for
 * this pipeline's signature, and is refused.
 */
const examples = z
  .looseObject({
    rows: z.array(z.array(z.number())).min(1),
    probabilities: z.array(z.array(z.number())).min(1),
  })
  .refine((e) => e.rows.length === e.probabilities.length, { message: 'rows and probabilities must have the same length' });

const cardSchema = z.looseObject({
  card_version: z.literal(1),
  pipeline: z.string().min(1),
  version: z.string().min(1),
  created_at: z.string(),
  /** A drill version (e.g. one that inverts the champion) exists for game days; promote refuses it without --drill. */
  drill: z.boolean().optional(),
  algorithm: z.string(),
  hyperparameters: z.record(z.string(), z.unknown()),
  features: z.array(z.string()).min(1),
  onnx: z.looseObject({
    file: z.string(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    input: z.string(),
    output: z.string(),
    positive_class_index: z.number().int().nonnegative(),
    /** The output columns' classes, in order (multiclass models). */
    classes: z.array(z.string()).min(2).optional(),
  }),
  data: z.looseObject({ seed: z.number().int(), rows: z.number().int(), training: split, holdout: split }),
  metrics: z.looseObject({
    holdout: z.looseObject({ auc: z.number(), log_loss: z.number(), base_rate: z.number() }).catchall(z.number()),
  }),
  reference: z.looseObject({
    features: z.record(z.string(), distribution),
    score: distribution,
    examples: examples.optional(),
  }),
});

export type ModelCard = z.infer<typeof cardSchema>;
export type ReferenceDistribution = z.infer<typeof distribution>;

export const CARD_FILE = 'card.json';
/** How far a reference example's probability may be from the card's (float32 inference across runtimes). */
export const REFERENCE_TOLERANCE = 1e-6;

/**
 * Parses and checks a card's text; `where` names it in errors (a path or a
 * store location). Any problem is a MODEL_LOAD_FAILED naming it.
 */
export function parseCard(text: string, where: string, monitored?: readonly string[]): ModelCard {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new SluiceError('MODEL_LOAD_FAILED', `The model card ${where} is not valid JSON: ${errorMessage(error)}`, { cause: error });
  }
  const parsed = cardSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new SluiceError('MODEL_LOAD_FAILED', `The model card ${where} is incomplete or malformed; regenerate it with training/train.py:\n${problems.join('\n')}`);
  }
  const card = parsed.data;
  const missing = (monitored ?? card.features).filter((name) => !(name in card.reference.features));
  if (missing.length > 0) {
    throw new SluiceError('MODEL_LOAD_FAILED', `The model card ${where} has no reference distribution for ${missing.join(', ')}; regenerate it with training/train.py`);
  }
  return card;
}

/**
 * Reads and checks `<dir>/card.json`; any problem is a MODEL_LOAD_FAILED naming
 * the file. Reference distributions are required for `monitored` (the
 * features the pipeline watches for drift), by default every feature.
 */
export async function readCard(dir: string, monitored?: readonly string[]): Promise<ModelCard> {
  const path = join(dir, CARD_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new SluiceError('MODEL_LOAD_FAILED', `Cannot read the model card ${path}: ${errorMessage(error)}. Every model directory needs the card.json that training/train.py writes.`, { cause: error });
  }
  return parseCard(text, path, monitored);
}
