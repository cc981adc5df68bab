/**
 * Functional building blocks: `(params, x) => y`. Like every jax-js op, each function consumes its array
 * arguments (params included); callers pass `.ref` / `refTree(...)` for anything they use again.
 */
import { numpy as np, nn as jnn } from "@jax-js/jax";
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

/**
 * Instance norm over time: each channel of each sequence normalized by its own mean and biased variance
 * over the time axis (axis 1 of [B, T, D]), as data2vec's speech targets.
 */
export function instanceNorm(x: np.Array, eps = 1e-5): np.Array {
  const centered = x.ref.sub(x.mean(1, { keepdims: true }));
  const variance = np.square(centered.ref).mean(1, { keepdims: true });
  return centered.mul(np.reciprocal(np.sqrt(variance.add(eps))));
}

/** Exact GELU, 0.5·x·(1 + erf(x/√2)), as fairseq and Hugging Face use it. */
export function gelu(x: np.Array): np.Array {
  return jnn.gelu(x, { approximate: false });
}

/** Inverted dropout; identity when `rate` is 0 or no key stream is given (evaluation). */
export function dropout(x: np.Array, rate: number, keys: KeyStream | null): np.Array {
  if (!keys || rate <= 0) return x;
  const keep = np.where(keys.bernoulli(1 - rate, x.shape), 1 / (1 - rate), 0);
  return x.mul(keep.astype(x.dtype));
}
