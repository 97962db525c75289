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

/**
 * Two-sample chi-squared test of homogeneity over the same bins (a 2 × k
 * table: the reference's counts against the window's): the test reported
 * beside PSI for a categorical subject (an indicator, a category), where the
 * ordering that Kolmogorov–Smirnov relies on means nothing. Bins empty on both
 * sides carry no degree of freedom and drop out; df = bins left − 1.
 */
export function chiSquared(referenceCounts: readonly number[], observedCounts: readonly number[]): { chi2: number; df: number; p: number } {
  if (referenceCounts.length !== observedCounts.length) throw new RangeError('chiSquared: bins differ');
  const n = referenceCounts.reduce((a, b) => a + b, 0);
  const m = observedCounts.reduce((a, b) => a + b, 0);
  if (n === 0 || m === 0) return { chi2: 0, df: 0, p: 1 };
  let chi2 = 0;
  let bins = 0;
  for (let i = 0; i < referenceCounts.length; i++) {
    const total = referenceCounts[i]! + observedCounts[i]!;
    if (total === 0) continue;
    bins++;
    const expectedReference = (total * n) / (n + m);
    const expectedObserved = (total * m) / (n + m);
    chi2 += (referenceCounts[i]! - expectedReference) ** 2 / expectedReference + (observedCounts[i]! - expectedObserved) ** 2 / expectedObserved;
  }
  const df = bins - 1;
  return df <= 0 ? { chi2: 0, df: 0, p: 1 } : { chi2, df, p: chiSquaredSurvival(chi2, df) };
}

/** P(X > x) for X ~ χ²(df): the regularized upper incomplete gamma Q(df/2, x/2). */
export function chiSquaredSurvival(x: number, df: number): number {
  if (x <= 0) return 1;
  return Math.min(1, Math.max(0, upperGammaQ(df / 2, x / 2)));
}

/** ln Γ(z) for z > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits). */
function logGamma(z: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - logGamma(1 - z);
  const zz = z - 1;
  let sum = c[0]!;
  for (let i = 1; i < 9; i++) sum += c[i]! / (zz + i);
  const t = zz + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (zz + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** Q(a, x) = Γ(a, x) / Γ(a): by its series below a + 1, by Lentz's continued fraction above (Numerical Recipes §6.2). */
function upperGammaQ(a: number, x: number): number {
  const front = Math.exp(-x + a * Math.log(x) - logGamma(a));
  if (x < a + 1) {
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 1_000 && Math.abs(term) > Math.abs(sum) * 1e-15; n++) {
      term *= x / (a + n);
      sum += term;
    }
    return 1 - sum * front;
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1_000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return front * h;
}
