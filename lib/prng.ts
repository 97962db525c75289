/**
 * A small seeded PRNG (sfc32, seeded through splitmix32) so generated data is
 * reproducible: the same (seed, stream) always yields the same numbers, on any
 * machine and Node version. Not for anything security-related.
 */
import { oncePerObject } from './once.ts';

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [min, max], both inclusive. */
  int(min: number, max: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** Picks a key with probability proportional to its weight. `weights` is read on its first draw only: pass a constant. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K;
}

function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

const TWO_POW_32 = 4_294_967_296;

/** A weights object's keys and weights as arrays, and their total (summed in key order). */
interface WeightTable {
  keys: string[];
  weights: number[];
  total: number;
}

/**
 * A weights object as a table, built at its first draw: a generator's constant
 * weights are read once, not on every draw (an event draws several times). An
 * object changed after its first draw would keep its first weights: `weighted`
 * takes constants.
 */
const weightTable = oncePerObject((weights: Readonly<Record<string, number>>): WeightTable => {
  const keys = Object.keys(weights);
  const values = keys.map((key) => weights[key]!);
  return { keys, weights: values, total: values.reduce((sum, weight) => sum + weight, 0) };
});

/**
 * An independent stream per (seed, stream): each generated event gets its own,
 * so event i does not depend on how many events came before it.
 */
export function createRng(seed: number, stream = 0): Rng {
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(stream)) {
    throw new RangeError(`seed and stream must be safe integers, got ${seed} and ${stream}`);
  }
  const mix = splitmix32(
    (seed >>> 0) ^ Math.imul(Math.floor(seed / TWO_POW_32) >>> 0, 0x27d4eb2f) ^ Math.imul(stream >>> 0, 0x165667b1),
  );
  const high = splitmix32(Math.floor(stream / TWO_POW_32) >>> 0)();
  let a = mix() ^ high;
  let b = mix();
  let c = mix();
  let d = 1;

  const nextUint32 = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) nextUint32();

  const next = (): number => nextUint32() / TWO_POW_32;
  const rng: Rng = {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    chance: (p) => next() < p,
    pick: (items) => {
      if (items.length === 0) throw new RangeError('cannot pick from an empty list');
      return items[Math.floor(next() * items.length)]!;
    },
    weighted: <K extends string>(weights: Readonly<Record<K, number>>): K => {
      const { keys, weights: values, total } = weightTable(weights);
      let roll = next() * total;
      for (let i = 0; i < values.length; i++) {
        roll -= values[i]!;
        if (roll < 0) return keys[i] as K;
      }
      return keys[keys.length - 1] as K;
    },
  };
  return rng;
}
