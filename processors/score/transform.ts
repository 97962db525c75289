/**
 * The score stage's logic: validated records in, the same records with the
 * model's score out. Inference runs on the whole chunk at once (micro-batches
 * of at least 32 rows keep onnxruntime efficient); a chunk that fails is
 * retried row by row so that only the rows that cannot be scored become
 * SCORING_FAILED dead letters.
 */
import { FEATURE_NAMES, featuresOf } from '../../pipelines/signup-risk/features.ts';
import type { ScoredRecord, ValidatedRecord } from '../../pipelines/signup-risk/types.ts';
import { errorMessage } from '../../lib/errors.ts';
import { type Clock, deadLetter, type Outcome } from '../runtime/types.ts';

/** The model as the transform sees it: rows of features in, P(risky) out. */
export interface Scorer {
  readonly version: string;
  predict(rows: ReadonlyArray<ReadonlyArray<number>>): Promise<Float64Array>;
}

export interface ScoreContext extends Clock {
  /** null while the pipeline's model kill switch is on: no model is consulted. */
  scorer: Scorer | null;
  /** Called with the inference time of each predict call, in seconds. */
  observeLatency?(seconds: number): void;
}

/** Shared by every scored record: the names are the same for all rows, so they are not copied per record. */
const FEATURE_NAME_LIST: string[] = [...FEATURE_NAMES];

function scoredRecord(record: ValidatedRecord, features: number[], score: number | null, version: string | null, now: number): ScoredRecord {
  return {
    event_id: record.event_id,
    event_type: record.event_type,
    occurred_at: record.occurred_at,
    source: record.source,
    payload: record.payload,
    score,
    model_version: version,
    feature_names: FEATURE_NAME_LIST,
    feature_values: features,
    validated_at: record.validated_at,
    scored_at: now,
  };
}

export async function scoreBatch(records: ValidatedRecord[], ctx: ScoreContext): Promise<Array<Outcome<ScoredRecord>>> {
  const rows: Array<number[] | null> = records.map((record) => {
    try {
      const features = featuresOf(record.payload);
      return features.every(Number.isFinite) ? features : null;
    } catch {
      return null;
    }
  });
  const emit = (record: ValidatedRecord, features: number[], score: number | null, version: string | null): Outcome<ScoredRecord> => ({
    kind: 'emit',
    eventId: record.event_id,
    outputs: [{ to: 'scored', value: scoredRecord(record, features, score, version, ctx.now()) }],
  });
  const failed = (record: ValidatedRecord, why: string) => deadLetter('SCORING_FAILED', why, record.event_id);

  const scorer = ctx.scorer;
  if (scorer === null) {
    return records.map((record, i) => (rows[i] ? emit(record, rows[i], null, null) : failed(record, 'features could not be computed')));
  }

  const predict = async (batch: number[][]): Promise<Float64Array> => {
    const started = performance.now();
    const scores = await scorer.predict(batch);
    ctx.observeLatency?.((performance.now() - started) / 1000);
    return scores;
  };

  const scorable = rows.flatMap((row, i) => (row ? [i] : []));
  const scores = new Map<number, number | string>();
  try {
    const result = await predict(scorable.map((i) => rows[i]!));
    scorable.forEach((index, j) => {
      scores.set(index, result[j]!);
    });
  } catch {
    for (const index of scorable) {
      try {
        scores.set(index, (await predict([rows[index]!]))[0]!);
      } catch (error) {
        scores.set(index, `inference failed: ${errorMessage(error)}`);
      }
    }
  }

  return records.map((record, i) => {
    const row = rows[i];
    if (!row) return failed(record, 'features could not be computed (non-finite value)');
    const score = scores.get(i);
    if (typeof score === 'string') return failed(record, score);
    if (score === undefined || !Number.isFinite(score) || score < 0 || score > 1) {
      return failed(record, `model returned an invalid score (${score})`);
    }
    return emit(record, row, score, scorer.version);
  });
}
