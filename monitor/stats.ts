/**
 * The statistics of the monitor, over histograms only: ClickHouse counts the
 * values of a window into the reference's bins (SQL on 18.16 has no PSI or KS),
 * and these pure functions compare those counts with the reference. Nothing
 * here sees a raw row.
 */

/**
 * The floor put under an empty bin's proportion before taking logarithms, on
 * both sides: without it one empty bin makes PSI infinite. 1e-4 is the usual
 * choice; it bounds one bin's contribution at about (q - 1e-4)·ln(q / 1e-4).
 */
export const PSI_EPSILON = 1e-4;

/** Proportions of counts; all zeros when the counts sum to zero. */
export function proportions(counts: readonly number[]): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((c) => (total > 0 ? c / total : 0));
}

/**
 * Population stability index of observed counts against expected proportions
 * over the same bins: Σ (q_i − p_i) · ln(q_i / p_i), each proportion floored at
 * PSI_EPSILON. 0 for identical shapes; below 0.1 stable, 0.1–0.2 a moderate
 * shift, 0.2 and above a significant one (the conventional reading).
 */
export function psi(expected: readonly number[], observedCounts: readonly number[]): number {
  if (expected.length !== observedCounts.length) throw new RangeError(`psi: ${expected.length} expected bins, ${observedCounts.length} observed`);
  const observed = proportions(observedCounts);
  let sum = 0;
  for (let i = 0; i < expected.length; i++) {
    const p = Math.max(expected[i]!, PSI_EPSILON);
    const q = Math.max(observed[i]!, PSI_EPSILON);
    sum += (q - p) * Math.log(q / p);
  }
  return sum;
}

/** The bucket categories outside the reference are counted in. */
export const UNSEEN = '(unseen)';

/**
 * Categorical PSI: the reference categories plus an UNSEEN bucket (expected
 * proportion 0, floored like any empty bin), into which every observed
 * category the reference does not know is counted.
 */
export function categoricalPsi(expected: Readonly<Record<string, number>>, observed: Readonly<Record<string, number>>): { psi: number; unseenRate: number } {
  const categories = Object.keys(expected);
  const counts = categories.map((c) => observed[c] ?? 0);
  const unseen = Object.entries(observed)
    .filter(([c]) => !(c in expected))
    .reduce((n, [, count]) => n + count, 0);
  const total = counts.reduce((a, b) => a + b, 0) + unseen;
  return { psi: psi([...categories.map((c) => expected[c]!), 0], [...counts, unseen]), unseenRate: total > 0 ? unseen / total : 0 };
}

/**
 * Two-sample Kolmogorov–Smirnov over binned samples: D is the largest gap
 * between the two cumulative distributions at the bin boundaries (a lower
 * bound of the exact D, exact when the bins are the only resolution), and p the
 * asymptotic p-value with the effective size n·m/(n+m) (Stephens' correction).
 */
export function binnedKs(referenceCounts: readonly number[], observedCounts: readonly number[]): { d: number; p: number } {
  if (referenceCounts.length !== observedCounts.length) throw new RangeError('binnedKs: bins differ');
  const n = referenceCounts.reduce((a, b) => a + b, 0);
  const m = observedCounts.reduce((a, b) => a + b, 0);
  if (n === 0 || m === 0) return { d: 0, p: 1 };
  let cr = 0;
  let co = 0;
  let d = 0;
  for (let i = 0; i < referenceCounts.length; i++) {
    cr += referenceCounts[i]!;
    co += observedCounts[i]!;
    d = Math.max(d, Math.abs(cr / n - co / m));
  }
  const ne = (n * m) / (n + m);
  return { d, p: kolmogorovSurvival((Math.sqrt(ne) + 0.12 + 0.11 / Math.sqrt(ne)) * d) };
}

/** P(K > λ) for the Kolmogorov distribution: 2 Σ_{j≥1} (−1)^{j−1} e^{−2j²λ²}, clamped to [0, 1]. */
export function kolmogorovSurvival(lambda: number): number {
  if (lambda < 0.2) return 1;
  let sum = 0;
  for (let j = 1; j <= 100; j++) {
    const term = Math.exp(-2 * j * j * lambda * lambda);
    sum += (j % 2 === 1 ? 1 : -1) * term;
    if (term < 1e-12) break;
  }
  return Math.min(1, Math.max(0, 2 * sum));
}

/** Mean and population standard deviation from a count, a sum and a sum of squares. */
export function moments(n: number, sum: number, sumSquares: number): { mean: number; std: number } {
  if (n === 0) return { mean: 0, std: 0 };
  const mean = sum / n;
  return { mean, std: Math.sqrt(Math.max(0, sumSquares / n - mean * mean)) };
}

/**
 * The bin of a value under the card's convention: counts[i] holds
 * edges[i-1] < v <= edges[i], so the bin is the number of edges below v. The
 * SQL that fills histograms computes the same (arrayCount(e -> e < v, edges)).
 */
export function binOf(edges: readonly number[], value: number): number {
  let bin = 0;
  for (const edge of edges) if (edge < value) bin++;
  return bin;
}
