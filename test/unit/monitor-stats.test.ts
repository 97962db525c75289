/**
 * The monitor's statistics against values worked out by hand (the arithmetic
 * is in each comment), and its windows on a fixed clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { binnedKs, binOf, categoricalPsi, chiSquared, chiSquaredSurvival, kolmogorovSurvival, moments, PSI_EPSILON, psi, UNSEEN } from '../../monitor/stats.ts';
import { closedWindows, latestClosedWindow, parseDuration } from '../../monitor/windows.ts';
import { isSluiceError } from '../../lib/errors.ts';

const close = (actual: number, expected: number, what: string) => assert.ok(Math.abs(actual - expected) < 1e-6, `${what}: ${actual} != ${expected}`);

describe('monitor statistics', () => {
  it('PSI is zero for the reference shape and grows with the shift', () => {
    assert.equal(psi([0.25, 0.25, 0.5], [25, 25, 50]), 0);
    assert.equal(psi([0.25, 0.25, 0.5], [250, 250, 500]), 0, 'only the shape counts, not the size');
    // q = (0.3, 0.7) against p = (0.5, 0.5): (0.3-0.5)·ln(0.3/0.5) + (0.7-0.5)·ln(0.7/0.5) = 0.1021651 + 0.0672944
    close(psi([0.5, 0.5], [30, 70]), 0.1694596, 'psi(0.3/0.7 vs 0.5/0.5)');
  });

  it('PSI floors an empty bin at PSI_EPSILON instead of going infinite', () => {
    assert.equal(PSI_EPSILON, 1e-4);
    // q = (0.5, 0.5), p = (1, 0 → 1e-4): (0.5-1)·ln(0.5) + (0.5-0.0001)·ln(0.5/0.0001) = 0.3465736 + 4.2577449
    close(psi([1, 0], [50, 50]), 4.6043185, 'psi with an empty reference bin');
    assert.throws(() => psi([0.5, 0.5], [1, 2, 3]), RangeError);
  });

  it('chi-squared survival matches its closed forms and the textbook critical values', () => {
    // df = 2: P(X > x) = e^(-x/2); df = 1: erfc(sqrt(x/2)).
    close(chiSquaredSurvival(2, 2), Math.exp(-1), 'chi2 df=2 at 2');
    close(chiSquaredSurvival(10, 2), Math.exp(-5), 'chi2 df=2 at 10');
    close(chiSquaredSurvival(3.841458820694124, 1), 0.05, 'the 5% critical value of df=1');
    close(chiSquaredSurvival(18.307038053275146, 10), 0.05, 'the 5% critical value of df=10');
    close(chiSquaredSurvival(0.5, 3), 0.9188914, 'df=3 at 0.5 (below a + 1: the series)');
    assert.equal(chiSquaredSurvival(0, 1), 1);
  });

  it('the two-sample chi-squared test compares category counts, ignoring bins empty on both sides', () => {
    // Reference (50, 50), window (30, 70): expected 40/40 and 60/60; chi2 = 2·10²/40 + 2·10²/60 = 8.333333, df 1,
    // p = erfc(sqrt(8.333333 / 2)) = 0.003892417.
    const shifted = chiSquared([50, 50], [30, 70]);
    close(shifted.chi2, 8.3333333, 'chi2');
    assert.equal(shifted.df, 1);
    close(shifted.p, 0.003892417, 'p');
    const same = chiSquared([500, 500, 0], [50, 50, 0]);
    assert.deepEqual([same.chi2, same.df, same.p], [0, 1, 1], 'the same shape: nothing to see; the empty bin drops out');
    assert.deepEqual(chiSquared([10, 10], [0, 0]), { chi2: 0, df: 0, p: 1 }, 'an empty window has no verdict');
    assert.throws(() => chiSquared([1, 2], [1, 2, 3]), RangeError);
  });

  it('categorical PSI counts unknown categories in an unseen bucket', () => {
    // a, b and (unseen): q = (0.4, 0.4, 0.2), p = (0.5, 0.5, 1e-4):
    // 2·(0.4-0.5)·ln(0.8) + (0.2-0.0001)·ln(0.2/0.0001) = 0.0446287 + 1.5194204
    const result = categoricalPsi({ a: 0.5, b: 0.5 }, { a: 40, b: 40, z: 20 });
    close(result.psi, 1.5640491, 'categorical psi');
    assert.equal(result.unseenRate, 0.2);
    assert.equal(UNSEEN, '(unseen)');
    assert.deepEqual(categoricalPsi({ a: 0.5, b: 0.5 }, { a: 10, b: 10 }), { psi: 0, unseenRate: 0 });
  });

  it('binned KS: the largest gap of the cumulative shares, and its asymptotic p-value', () => {
    // cumulative (0.5, 1) against (0.2, 1): D = 0.3; n = m = 100, ne = 50,
    // λ = (√50 + 0.12 + 0.11/√50)·0.3 = 2.1619872, p = 2·Σ(-1)^(j-1)·e^(-2j²λ²) = 1.742132e-4
    const { d, p } = binnedKs([50, 50], [20, 80]);
    close(d, 0.3, 'D');
    close(p, 1.742132e-4, 'p');
    assert.deepEqual(binnedKs([50, 50], [500, 500]), { d: 0, p: 1 });
    assert.deepEqual(binnedKs([50, 50], [0, 0]), { d: 0, p: 1 }, 'an empty window proves nothing');
    // Q_KS(0.5) = 0.9639452 (the tabulated value)
    close(kolmogorovSurvival(0.5), 0.9639452, 'Q(0.5)');
  });

  it('moments and bins follow the card conventions', () => {
    // values 1, 2, 3: mean 2, population variance (1+4+9)/3 - 4 = 2/3
    const m = moments(3, 6, 14);
    close(m.mean, 2, 'mean');
    close(m.std, Math.sqrt(2 / 3), 'std');
    assert.deepEqual(moments(0, 0, 0), { mean: 0, std: 0 });
    // counts[i] holds edges[i-1] < v <= edges[i]: a value on an edge belongs to the bin below it.
    const edges = [-1, 0, 0.5];
    assert.deepEqual([-5, -1, -0.5, 0, 0.25, 0.5, 7].map((v) => binOf(edges, v)), [0, 0, 1, 1, 2, 2, 3]);
  });
});

describe('monitor windows', () => {
  it('are aligned to multiples of their length and judged only after the grace period', () => {
    // At 00:02:05 with a 30 s grace, 00:01:00–00:02:00 is not closed yet (it closes at 00:02:30).
    assert.deepEqual(latestClosedWindow(125_000, 60_000, 30_000), { startMs: 0, lengthMs: 60_000 });
    assert.deepEqual(latestClosedWindow(150_000, 60_000, 30_000), { startMs: 60_000, lengthMs: 60_000 });
    assert.equal(latestClosedWindow(59_000, 60_000, 0), null);
    assert.deepEqual(
      closedWindows(185_000, 60_000, 0, 3).map((w) => w.startMs),
      [0, 60_000, 120_000],
    );
    assert.deepEqual(closedWindows(125_000, 60_000, 0, 5).map((w) => w.startMs), [0, 60_000], 'never before the epoch');
  });

  it('parses durations and refuses what is not one', () => {
    assert.deepEqual(['10s', '60', '5m', '1h', '500ms'].map((d) => parseDuration(d, '--window')), [10_000, 60_000, 300_000, 3_600_000, 500]);
    assert.equal(parseDuration('0s', '--grace', { allowZero: true }), 0);
    for (const bad of ['', '0s', '-1s', '1d', 'ten']) assert.throws(() => parseDuration(bad, '--window'), (e) => isSluiceError(e, 'CONFIG_INVALID'), bad);
  });
});
