/**
 * Functional building blocks: `(params, x) => y`. Like every jax-js op, each function consumes its array
 * arguments (params included); callers pass `.ref` / `tree.ref(...)` for anything they use again.
 */
import { numpy as np } from "../engine/jax.js";
import type { KeyStream } from "./random.js";

export type LinearParams = { weight: np.Array; bias?: np.Array }; // weight [in, out]
export type LayerNormParams = { weight?: np.Array; bias?: np.Array };

/** y = x·W + b over the last axis. x is flattened to 2-D so the matmul is a plain GEMM. */
export function linear(p: LinearParams, x: np.Array): np.Array {
  const shape = x.shape;
  const [inDim, outDim] = p.weight.shape;
  if (shape[shape.length - 1] !== inDim) {
    throw new Error(`linear: input has ${shape[shape.length - 1]} features, weight expects ${inDim}`);
  }
  let y = np.matmul(x.reshape([-1, inDim]), p.weight);
  if (p.bias) y = y.add(p.bias);
  return y.reshape([...shape.slice(0, -1), outDim]);
}

/** Layer norm over the last axis with biased variance; affine when the params have weight/bias. */
export function layerNorm(p: LayerNormParams | null, x: np.Array, eps = 1e-5): np.Array {
  const centered = x.ref.sub(x.mean(-1, { keepdims: true }));
  const variance = np.square(centered.ref).mean(-1, { keepdims: true });
  let y = centered.mul(np.reciprocal(np.sqrt(variance.add(eps))));
  if (p?.weight) y = y.mul(p.weight);
  if (p?.bias) y = y.add(p.bias);
  return y;
}

/** The mean over the real steps: x [B, T, D], mask [B, T] (1 = real step) → [B, D]. Consumes both. */
export function maskedMean(x: np.Array, mask: np.Array): np.Array {
  const [b, t] = mask.shape;
  const w = mask.reshape([b, t, 1]);
  return x.mul(w.ref).sum(1).div(np.maximum(w.sum(1), 1));
}

/**
 * Instance norm over time: each channel of each sequence normalized by its own mean and biased variance
 * over the time axis (axis 1 of [B, T, D]), as data2vec's speech targets. With `padding` [B, T] (1 = real
 * step, borrowed) the statistics cover only the real steps (fairseq includes padded frames; we do not, so
 * a clip's targets do not depend on how much it was padded).
 */
export function instanceNorm(x: np.Array, eps = 1e-5, padding: np.Array | null = null): np.Array {
  if (!padding) {
    const centered = x.ref.sub(x.mean(1, { keepdims: true }));
    const variance = np.square(centered.ref).mean(1, { keepdims: true });
    return centered.mul(np.reciprocal(np.sqrt(variance.add(eps))));
  }
  const [b, t] = padding.shape;
  const w = padding.ref.reshape([b, t, 1]);
  const count = np.maximum(w.ref.sum(1, { keepdims: true }), 1);
  const mean = x.ref.mul(w.ref).sum(1, { keepdims: true }).div(count.ref);
  const centered = x.sub(mean);
  const variance = np.square(centered.ref).mul(w).sum(1, { keepdims: true }).div(count);
  return centered.mul(np.reciprocal(np.sqrt(variance.add(eps))));
}

/**
 * erf for float32: x·P(x²)/Q(x²) on x clamped to [−4, 4] (the rational approximation XLA and Eigen use;
 * max error under 1e-6, i.e. float32 rounding). Built from multiplies and one divide, it costs about half
 * of jax-js's `lax.erf` on wasm, and its derivative is as cheap.
 */
export function erf(x: np.Array): np.Array {
  const z = np.clip(x, -4, 4);
  const z2 = np.square(z.ref);
  const odd = [-2.72614225801306e-10, 2.77068142495902e-8, -2.10102402082508e-6, -5.69250639462346e-5, -7.34990630326855e-4, -2.95459980854025e-3, -1.60960333262415e-2];
  const even = [-1.45660718464996e-5, -2.13374055278905e-4, -1.68282697438203e-3, -7.37332916720468e-3, -1.42647390514189e-2];
  let p = z2.ref.mul(odd[0]).add(odd[1]);
  for (const c of odd.slice(2)) p = p.mul(z2.ref).add(c);
  let q = z2.ref.mul(even[0]).add(even[1]);
  for (const c of even.slice(2)) q = q.mul(z2.ref).add(c);
  z2.dispose();
  return z.mul(p).div(q);
}

/** Exact (erf) GELU, 0.5·x·(1 + erf(x/√2)), as fairseq and Hugging Face use it (not the tanh variant). */
export function gelu(x: np.Array): np.Array {
  return x.ref.mul(erf(x.mul(Math.SQRT1_2)).add(1)).mul(0.5);
}

/** Inverted dropout; identity when `rate` is 0 or no key stream is given (evaluation). */
export function dropout(x: np.Array, rate: number, keys: KeyStream | null): np.Array {
  if (!keys || rate <= 0) return x;
  const keep = np.where(keys.bernoulli(1 - rate, x.shape), 1 / (1 - rate), 0);
  return x.mul(keep.astype(x.dtype));
}
