/**
 * The score stage's logic, generic over pipelines: validated records in, the
 * same records with the model's view of them out. The pipeline's model
 * adapter computes the features (the one definition, shared with training) and
 * says how to read the output: binary (score = P(positive)) or multiclass
 * (score = top class probability, label = that class). Inference runs on the
 * whole chunk at once (micro-batches of at least 32 rows keep onnxruntime
 * efficient); a chunk that fails is retried row by row so that only the rows
 * that cannot be scored become SCORING_FAILED dead letters.
 */
import { type Clock, deadLetter, type Outcome, type ScoredRecord, type ValidatedRecord } from '../../lib/contracts.ts';
import { errorMessage } from '../../lib/errors.ts';
import type { ModelAdapter } from '../../lib/pipeline.ts';

/**
 * `<p>.scored` as this stage writes it: the common scored record, and the
 * challenger's view of the same record when one was scored in shadow (for
 * comparison in ClickHouse; the decision never reads it as its own).
 */
export interface ShadowedScoredRecord<P = unknown> extends ScoredRecord<P> {
  /** The challenger that scored the record; null when none did (none set, kill switch on, or it failed on the batch). */
  shadow_model_version: string | null;
  /** The challenger's score, read like `score`. */
  shadow_score: number | null;
  /** multiclass: the challenger's probability of each class, parallel to class_names; [] otherwise. */
  shadow_class_scores: number[];
}

/** The model as the transform sees it: rows of features in, class probabilities out (row-major). */
export interface Scorer {
  readonly version: string;
  predict(rows: ReadonlyArray<ArrayLike<number>>): Promise<Float32Array>;
}

/** The challenger's view of a batch, beside the champion's: for comparison only, it never decides. */
export interface ShadowReport {
  version: string;
  /** One entry per record both models scored. */
  scores: Array<{ eventId: string; champion: number; challenger: number }>;
}

export interface ScoreContext<P> extends Clock {
  adapter: ModelAdapter<P>;
  /** null while the pipeline's model kill switch is on: no model is consulted. */
  scorer: Scorer | null;
  /** Called with the inference time of each predict call, in seconds. */
  observeLatency?(seconds: number): void;
  /**
   * The challenger, scored in shadow on the same rows after the champion.
   * Whatever it returns or throws, the outputs are the champion's alone.
   */
  shadow?: { scorer: Scorer; report(report: ShadowReport): void; failed(error: unknown): void } | null;
}

interface Prediction {
  score: number;
  label: string | null;
  classScores: number[];
}

/** Reads one row of probabilities (`offset` into the batch's output); a string says why it is unusable. */
function readRow<P>(adapter: ModelAdapter<P>, probabilities: ArrayLike<number>, offset: number): Prediction | string {
  const classes = adapter.output.classes;
  let best = 0;
  for (let i = 0; i < classes.length; i++) {
    const p = probabilities[offset + i]!;
    if (!(Number.isFinite(p) && p >= 0 && p <= 1 + 1e-6)) {
      return `model returned invalid probabilities (${Array.from({ length: classes.length }, (_, j) => probabilities[offset + j]).join(', ')})`;
    }
    if (p > probabilities[offset + best]!) best = i;
  }
  const at = (i: number) => Math.min(1, probabilities[offset + i]!);
  if (adapter.output.kind === 'binary') return { score: at(adapter.output.positiveIndex), label: null, classScores: [] };
  return { score: at(best), label: classes[best]!, classScores: Array.from({ length: classes.length }, (_, i) => at(i)) };
}

export async function scoreBatch<P>(records: Array<ValidatedRecord<P>>, ctx: ScoreContext<P>): Promise<Array<Outcome<ShadowedScoredRecord<P>>>> {
  const { adapter } = ctx;
  const width = adapter.output.classes.length;
  const rows: Array<ArrayLike<number> | null> = records.map((record) => {
    try {
      const features = adapter.features(record.event_type, record.payload);
      if (features.length !== adapter.featureNames.length) return null;
      for (let i = 0; i < features.length; i++) if (!Number.isFinite(features[i]!)) return null;
      return features;
    } catch {
      return null;
    }
  });
  const monitoredNames = [...adapter.monitoredNames];
  const emit = (
    record: ValidatedRecord<P>,
    features: ArrayLike<number>,
    prediction: Prediction | null,
    version: string | null,
    shadow: { version: string; prediction: Prediction } | null = null,
  ): Outcome<ShadowedScoredRecord<P>> => ({
    kind: 'emit',
    eventId: record.event_id,
    outputs: [
      {
        to: 'scored',
        value: {
          event_id: record.event_id,
          event_type: record.event_type,
          occurred_at: record.occurred_at,
          source: record.source,
          payload: record.payload,
          score: prediction?.score ?? null,
          label: prediction?.label ?? null,
          class_names: prediction && prediction.classScores.length > 0 ? [...adapter.output.classes] : [],
          class_scores: prediction?.classScores ?? [],
          model_version: version,
          feature_names: monitoredNames,
          feature_values: adapter.monitored(record.event_type, record.payload, features),
          validated_at: record.validated_at,
          scored_at: ctx.now(),
          shadow_model_version: shadow?.version ?? null,
          shadow_score: shadow?.prediction.score ?? null,
          shadow_class_scores: shadow?.prediction.classScores ?? [],
        },
      },
    ],
  });
  const failed = (record: ValidatedRecord<P>, why: string) => deadLetter('SCORING_FAILED', why, record.event_id);

  const scorer = ctx.scorer;
  if (scorer === null) {
    return records.map((record, i) => (rows[i] ? emit(record, rows[i], null, null) : failed(record, 'features could not be computed')));
  }

  const predict = async (batch: Array<ArrayLike<number>>): Promise<Float32Array> => {
    const started = performance.now();
    const probabilities = await scorer.predict(batch);
    ctx.observeLatency?.((performance.now() - started) / 1000);
    return probabilities;
  };

  const scorable = rows.flatMap((row, i) => (row ? [i] : []));
  const predictions = new Map<number, Prediction | string>();
  try {
    const result = await predict(scorable.map((i) => rows[i]!));
    // A model that returns too few or too many values would pin scores on the wrong records.
    if (result.length !== scorable.length * width) throw new Error(`model returned ${result.length} values for ${scorable.length} rows of ${width} classes`);
    scorable.forEach((index, j) => {
      predictions.set(index, readRow(adapter, result, j * width));
    });
  } catch {
    for (const index of scorable) {
      try {
        predictions.set(index, readRow(adapter, await predict([rows[index]!]), 0));
      } catch (error) {
        predictions.set(index, `inference failed: ${errorMessage(error)}`);
      }
    }
  }

  const shadows = ctx.shadow ? await scoreShadow(ctx.shadow, adapter, records, rows, predictions) : null;

  return records.map((record, i) => {
    const row = rows[i];
    if (!row) return failed(record, 'features could not be computed (wrong count or a non-finite value)');
    const prediction = predictions.get(i);
    if (prediction === undefined) return failed(record, 'no prediction for this row');
    if (typeof prediction === 'string') return failed(record, prediction);
    const shadow = shadows?.predictions.get(i);
    return emit(record, row, prediction, scorer.version, shadow && shadows ? { version: shadows.version, prediction: shadow } : null);
  });
}

/**
 * Scores the rows the champion scored with the challenger, reports both, and
 * returns the challenger's predictions by record index; null when it failed on
 * the batch (it is all or nothing: a batch is compared whole). Never throws.
 */
async function scoreShadow<P>(
  shadow: NonNullable<ScoreContext<P>['shadow']>,
  adapter: ModelAdapter<P>,
  records: Array<ValidatedRecord<P>>,
  rows: Array<ArrayLike<number> | null>,
  predictions: Map<number, Prediction | string>,
): Promise<{ version: string; predictions: Map<number, Prediction> } | null> {
  const scored = [...predictions].flatMap(([index, prediction]) => (typeof prediction === 'string' ? [] : [{ index, champion: prediction.score }]));
  if (scored.length === 0) return null;
  try {
    const width = adapter.output.classes.length;
    const result = await shadow.scorer.predict(scored.map(({ index }) => rows[index]!));
    if (result.length !== scored.length * width) throw new Error(`challenger returned ${result.length} values for ${scored.length} rows of ${width} classes`);
    const scores: ShadowReport['scores'] = [];
    const byIndex = new Map<number, Prediction>();
    scored.forEach(({ index, champion }, j) => {
      const prediction = readRow(adapter, result, j * width);
      if (typeof prediction === 'string') throw new Error(prediction);
      scores.push({ eventId: records[index]!.event_id, champion, challenger: prediction.score });
      byIndex.set(index, prediction);
    });
    shadow.report({ version: shadow.scorer.version, scores });
    return { version: shadow.scorer.version, predictions: byIndex };
  } catch (error) {
    shadow.failed(error);
    return null;
  }
}
