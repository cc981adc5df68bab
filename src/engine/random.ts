/** Seeded randomness on the host (data order, masking) with a serializable state for exact resume. */
import { xoroshiro128plus, xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus";
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import type { RandomGenerator } from "pure-rand/types/RandomGenerator";

export class HostRng {
  #gen: RandomGenerator;
  private constructor(gen: RandomGenerator) {
    this.#gen = gen;
  }
  static seeded(seed: number): HostRng {
    return new HostRng(xoroshiro128plus(seed | 0));
  }
  static fromState(state: readonly number[]): HostRng {
    return new HostRng(xoroshiro128plusFromState(state));
  }
  state(): number[] {
    return [...this.#gen.getState()];
  }
  /** Uniform in [0, 1). */
  uniform(): number {
    return uniformFloat64(this.#gen);
  }
  /** Uniform integer in [lo, hi] (both included). */
  int(lo: number, hi: number): number {
    return uniformInt(this.#gen, lo, hi);
  }
  /** Fisher–Yates shuffle in place. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  }
  /** `k` distinct integers from [0, n), in random order. */
  sample(n: number, k: number): number[] {
    const pool = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < k; i++) {
      const j = this.int(i, n - 1);
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    return pool.slice(0, k);
  }
  /** An independent 32-bit seed (for jax PRNG keys). */
  seed32(): number {
    return this.int(0, 0x7fffffff);
  }
}
