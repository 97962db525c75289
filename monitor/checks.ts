/**
 * The monitor's checks, pure: one window's histograms (as ClickHouse
 * aggregated them) and the champion card's reference distributions in, one
 * result per check and subject out. Time, I/O and thresholds arrive as
 * arguments, so tests give hand-made histograms and read the verdicts.
 */
import type { ModelCard, ReferenceDistribution } from '../connectors/onnx/card.ts';
import type { MonitoringSettings } from '../lib/pipeline.ts';
import { binnedKs, chiSquared, moments, psi } from './stats.ts';

export const CHECKS = ['feature_drift', 'score_drift', 'data_quality', 'output_collapse', 'volume_drop', 'dead_letter_spike', 'stall', 'lag_growth'] as const;
export type CheckKind = (typeof CHECKS)[number];

/** `ok` passed, `breach` failed, `insufficient`: too few events in the window for a verdict. */
export type CheckStatus = 'ok' | 'breach' | 'insufficient';

export const MONITOR_DEFAULTS = {
  psiThreshold: 0.2,
  minSamples: 200,
  /** data_quality: a null rate above the reference's by more than this is a breach. */
  nullRateMargin: 0.05,
  /** data_quality: values outside the reference's [min, max]; the reference has none by construction. */
  outOfRangeRate: 0.01,
  /** output_collapse on `score`: the window's standard deviation below this fraction of the reference's. */
  scoreSpreadRatio: 0.25,
  decisionShareMax: 0.99,
  /** volume_drop: the window's input below this fraction of the baseline (median of the previous windows). */
  volumeRatio: 0.5,
  /** How many previous windows make the baseline of volume_drop and dead_letter_spike. */
  baselineWindows: 10,
  /** volume_drop: no baseline until this many of the previous windows had input. */
  baselineMinWindows: 3,
  /** dead_letter_spike: a ratio above max(this, deadLetterFactor × the baseline ratio). */
  deadLetterRatio: 0.02,
  deadLetterFactor: 5,
  /** dead_letter_spike: no verdict on a window with fewer inputs. */
  minInputs: 20,
  /**
   * lag_growth: the lag must also have grown by at least this many records over
   * the run. A healthy stage's lag is a handful of records in flight between two
   * commits, and four such samples rise in a row by chance about once in 24.
   */
  lagGrowthMinRecords: 100,
} as const;

/** One subject's values in one window, binned by its reference's edges. */
export interface Histogram {
  /** counts[i]: values v with edges[i-1] < v <= edges[i] (the card's convention); edges.length + 1 bins. */
  counts: number[];
  /** Values below the reference's min or above its max. */
  outOfRange: number;
  sum: number;
  sumSquares: number;
}

/** What ClickHouse counted in one window, for the champion model version. */
export interface WindowStats {
  /** Scored events (one per event id). */
  events: number;
  /** By monitored name; a name the window never saw is absent. */
  features: ReadonlyMap<string, Histogram>;
  score: Histogram | undefined;
  /** Latest decision per event, counted by decision. */
  decisions: ReadonlyMap<string, number>;
}

export interface CheckResult {
  check: CheckKind;
  subject: string;
  value: number;
  threshold: number;
  status: CheckStatus;
  /** Events the verdict rests on. */
  sampleSize: number;
  /** What was measured and the test reported beside it, e.g. `psi; ks_d=0.31 ks_p=0.000`. */
  detail: string;
}

const count = (h: Histogram | undefined) => (h ? h.counts.reduce((a, b) => a + b, 0) : 0);
const round = (x: number) => Number(x.toFixed(6));

/**
 * A categorical reference: an indicator (values 0 and 1, one edge between
 * them), as the card describes one-hot categories (channel_web, plan_free…)
 * and flags (ip_country_mismatch). Its bins are categories, not an order.
 */
export function isCategorical(reference: ReferenceDistribution): boolean {
  return reference.min === 0 && reference.max === 1 && reference.edges.length === 1 && reference.edges[0]! > 0 && reference.edges[0]! < 1;
}

function drift(check: 'feature_drift' | 'score_drift', subject: string, reference: ReferenceDistribution, h: Histogram | undefined, threshold: number, minSamples: number): CheckResult {
  const n = count(h);
  const counts = h?.counts ?? reference.counts.map(() => 0);
  const value = n > 0 ? psi(reference.proportions, counts) : 0;
  // The two-sample test beside PSI: chi² for a categorical subject (its bins are categories), KS for a numeric one.
  let test: string;
  if (isCategorical(reference)) {
    const chi = chiSquared(reference.counts, counts);
    test = `chi2=${chi.chi2.toFixed(2)} df=${chi.df} chi2_p=${chi.p.toPrecision(3)}`;
  } else {
    const ks = binnedKs(reference.counts, counts);
    test = `ks_d=${ks.d.toFixed(4)} ks_p=${ks.p.toPrecision(3)}`;
  }
  return {
    check,
    subject,
    value: round(value),
    threshold,
    status: n < minSamples ? 'insufficient' : value >= threshold ? 'breach' : 'ok',
    sampleSize: n,
    detail: `psi over ${counts.length} reference bins; ${test}`,
  };
}

/** Every check's result for one window, in CHECKS order, subjects in the card's order. */
export function evaluateWindow(args: { card: ModelCard; monitoredNames: readonly string[]; stats: WindowStats; settings?: MonitoringSettings }): CheckResult[] {
  const { card, stats } = args;
  const settings = args.settings ?? {};
  const minSamples = settings.minSamples ?? MONITOR_DEFAULTS.minSamples;
  const psiThreshold = (subject: string) => settings.psiThresholds?.[subject] ?? MONITOR_DEFAULTS.psiThreshold;
  const results: CheckResult[] = [];
  const references = args.monitoredNames.flatMap((name) => {
    const reference = card.reference.features[name];
    return reference ? [{ name, reference }] : [];
  });

  for (const { name, reference } of references) {
    results.push(drift('feature_drift', name, reference, stats.features.get(name), psiThreshold(name), minSamples));
  }
  results.push(drift('score_drift', 'score', card.reference.score, stats.score, psiThreshold('score'), minSamples));

  // data_quality: null rates of the declared fields, then values outside each feature's reference range.
  for (const [field, indicator] of Object.entries(settings.missingIndicators ?? {})) {
    const reference = card.reference.features[indicator];
    if (!reference) continue;
    const h = stats.features.get(indicator);
    const n = count(h);
    const rate = n > 0 ? h!.sum / n : 0;
    const threshold = round(Math.min(1, reference.mean + MONITOR_DEFAULTS.nullRateMargin));
    results.push({
      check: 'data_quality',
      subject: field,
      value: round(rate),
      threshold,
      status: n < minSamples ? 'insufficient' : rate > threshold ? 'breach' : 'ok',
      sampleSize: n,
      detail: `null rate (${indicator}); reference ${reference.mean.toFixed(4)} + ${MONITOR_DEFAULTS.nullRateMargin}`,
    });
  }
  for (const { name, reference } of references) {
    const h = stats.features.get(name);
    const n = count(h);
    const rate = n > 0 ? h!.outOfRange / n : 0;
    results.push({
      check: 'data_quality',
      subject: name,
      value: round(rate),
      threshold: MONITOR_DEFAULTS.outOfRangeRate,
      status: n < minSamples ? 'insufficient' : rate > MONITOR_DEFAULTS.outOfRangeRate ? 'breach' : 'ok',
      sampleSize: n,
      detail: `out-of-range rate outside the reference [${reference.min}, ${reference.max}]`,
    });
  }

  // output_collapse: the score's spread against the reference's, and the decision mix.
  const scored = count(stats.score);
  const spread = stats.score ? moments(scored, stats.score.sum, stats.score.sumSquares).std : 0;
  const ratio = card.reference.score.std > 0 ? spread / card.reference.score.std : 1;
  results.push({
    check: 'output_collapse',
    subject: 'score',
    value: round(ratio),
    threshold: MONITOR_DEFAULTS.scoreSpreadRatio,
    status: scored < minSamples ? 'insufficient' : ratio < MONITOR_DEFAULTS.scoreSpreadRatio ? 'breach' : 'ok',
    sampleSize: scored,
    detail: `score std ${spread.toFixed(4)} / reference std ${card.reference.score.std.toFixed(4)}; a breach is below the threshold`,
  });
  const decided = [...stats.decisions.values()].reduce((a, b) => a + b, 0);
  const [topDecision, topCount] = [...stats.decisions.entries()].sort((a, b) => b[1] - a[1])[0] ?? ['none', 0];
  const share = decided > 0 ? topCount / decided : 0;
  const shareMax = settings.decisionShareMax ?? MONITOR_DEFAULTS.decisionShareMax;
  results.push({
    check: 'output_collapse',
    subject: 'decision',
    value: round(share),
    threshold: shareMax,
    status: decided < minSamples ? 'insufficient' : share >= shareMax ? 'breach' : 'ok',
    sampleSize: decided,
    detail: `share of the most frequent decision (${topDecision})`,
  });
  return results;
}

/** One window's record flow through the stages, from sluice.stage_events (each Kafka record once). */
export interface FlowWindow {
  startMs: number;
  /** Records that reached validate: passed plus dead-lettered by validate (everything read from `<p>.raw`). */
  inputs: number;
  /** Records each stage passed on, by stage (validate, score, decide). */
  passed: Readonly<Record<string, number>>;
  /** Dead letters of any stage, by reason. */
  deadLetters: Readonly<Record<string, number>>;
}

/** The stages whose output follows from their upstream's: a stage that stops while its upstream flows has stalled. */
const DOWNSTREAM: ReadonlyArray<[stage: string, upstream: string]> = [
  ['score', 'validate'],
  ['decide', 'score'],
];

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The checks on the pipeline's own recent history: `current` against
 * `history` (the windows before it, oldest first, empty ones included with
 * zeros). `topic` names the input topic (the subject of volume_drop).
 */
export function evaluateFlow(args: { topic: string; current: FlowWindow; history: readonly FlowWindow[] }): CheckResult[] {
  const { current, history } = args;
  const results: CheckResult[] = [];

  const baselineWindows = history.filter((w) => w.inputs > 0);
  const baseline = history.length > 0 ? median(history.map((w) => w.inputs)) : 0;
  const hasBaseline = baselineWindows.length >= MONITOR_DEFAULTS.baselineMinWindows && baseline > 0;
  const ratio = hasBaseline ? current.inputs / baseline : 0;
  results.push({
    check: 'volume_drop',
    subject: args.topic,
    value: round(ratio),
    threshold: MONITOR_DEFAULTS.volumeRatio,
    status: !hasBaseline ? 'insufficient' : ratio < MONITOR_DEFAULTS.volumeRatio ? 'breach' : 'ok',
    sampleSize: current.inputs,
    detail: `inputs ${current.inputs} / baseline ${baseline} (median of ${history.length} previous windows); a breach is below the threshold`,
  });

  const historyInputs = history.reduce((n, w) => n + w.inputs, 0);
  const reasons = [...new Set([...Object.keys(current.deadLetters), ...history.flatMap((w) => Object.keys(w.deadLetters))])].sort();
  const spike = (subject: string, count: (w: FlowWindow) => number): CheckResult => {
    const base = historyInputs > 0 ? history.reduce((n, w) => n + count(w), 0) / historyInputs : 0;
    const threshold = round(Math.max(MONITOR_DEFAULTS.deadLetterRatio, MONITOR_DEFAULTS.deadLetterFactor * base));
    const value = current.inputs > 0 ? count(current) / current.inputs : 0;
    return {
      check: 'dead_letter_spike',
      subject,
      value: round(value),
      threshold,
      status: current.inputs < MONITOR_DEFAULTS.minInputs ? 'insufficient' : value > threshold ? 'breach' : 'ok',
      sampleSize: current.inputs,
      detail: `dead letters / inputs; baseline ratio ${base.toFixed(4)} over ${history.length} previous windows`,
    };
  };
  results.push(spike('all', (w) => Object.values(w.deadLetters).reduce((a, b) => a + b, 0)));
  for (const reason of reasons) results.push(spike(reason, (w) => w.deadLetters[reason] ?? 0));

  const previous = history.at(-1);
  for (const [stage, upstream] of DOWNSTREAM) {
    const flowing = previous !== undefined && (current.passed[upstream] ?? 0) > 0 && (previous.passed[upstream] ?? 0) > 0;
    const produced = (current.passed[stage] ?? 0) + (previous?.passed[stage] ?? 0);
    results.push({
      check: 'stall',
      subject: stage,
      value: produced,
      threshold: 0,
      status: !flowing ? 'insufficient' : produced <= 0 ? 'breach' : 'ok',
      sampleSize: (current.passed[upstream] ?? 0) + (previous?.passed[upstream] ?? 0),
      detail: `records ${stage} passed on over two windows while ${upstream} passed on ${(current.passed[upstream] ?? 0) + (previous?.passed[upstream] ?? 0)}`,
    });
  }
  return results;
}

/** How many consecutive increases of a stage's lag make lag_growth. */
export const LAG_GROWTH_WINDOWS = 3;

/**
 * lag_growth per stage: the lag measured now against the lags recorded for the
 * LAG_GROWTH_WINDOWS windows before (oldest first; undefined where none was
 * measured). A breach when it grew at every one of them, by at least
 * lagGrowthMinRecords in all; the threshold recorded is the lag at the start
 * of that run.
 */
export function evaluateLag(current: ReadonlyMap<string, number>, previous: ReadonlyArray<ReadonlyMap<string, number> | undefined>): CheckResult[] {
  return [...current].map(([stage, lag]) => {
    const series = [...previous.map((p) => p?.get(stage)), lag];
    const complete = series.length === LAG_GROWTH_WINDOWS + 1 && series.every((v) => v !== undefined);
    const growing = complete && series.every((v, i) => i === 0 || v! > series[i - 1]!) && lag - series[0]! >= MONITOR_DEFAULTS.lagGrowthMinRecords;
    return {
      check: 'lag_growth' as const,
      subject: stage,
      value: lag,
      threshold: complete ? series[0]! : 0,
      status: !complete ? ('insufficient' as const) : growing ? ('breach' as const) : ('ok' as const),
      sampleSize: series.filter((v) => v !== undefined).length,
      detail: `consumer-group lag in records over the last ${LAG_GROWTH_WINDOWS + 1} windows: ${series.map((v) => v ?? '?').join(' → ')} (growth of at least ${MONITOR_DEFAULTS.lagGrowthMinRecords} needed)`,
    };
  });
}
