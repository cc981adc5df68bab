import { numpy as np } from "../src/engine/jax.js";
import type { Mat } from "./reference.js";

export async function toHost(a: np.Array): Promise<number[]> {
  return Array.from((await a.data()) as Float32Array);
}

export function fromMat(m: Mat, opts: { dtype?: np.DType; device?: "cpu" | "wasm" } = {}): np.Array {
  return np.array(m, { dtype: opts.dtype ?? np.float32, device: opts.device });
}

/** Nested number[][] from a jax leaf [rows, cols] (does not consume). */
export async function toMat(a: np.Array): Promise<Mat> {
  const [r, c] = a.shape;
  const flat = await toHost(a.ref);
  return Array.from({ length: r }, (_, i) => flat.slice(i * c, (i + 1) * c));
}

export function assertClose(actual: number[], expected: number[], tol: number, what: string): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} vs ${expected.length}`);
  let worst = 0;
  let at = -1;
  actual.forEach((v, i) => {
    const d = Math.abs(v - expected[i]);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  });
  if (!(worst <= tol)) throw new Error(`${what}: max |diff| ${worst} at ${at} (actual ${actual[at]}, expected ${expected[at]}) exceeds ${tol}`);
}
