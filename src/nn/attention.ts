/** Multi-head self-attention with an additive padding mask and an optional additive bias. */
import { numpy as np, nn as jnn } from "../engine/jax.js";
import { dropout, linear, type LinearParams } from "./layers.js";
import type { KeyStream } from "./random.js";

export type AttentionParams = { q: LinearParams; k: LinearParams; v: LinearParams; out: LinearParams };

export type AttentionOptions = {
  heads: number;
  /** Additive mask broadcastable to [B, H, T, T]: 0 where a key may be attended, a large negative where not. */
  mask?: np.Array | null;
  /** Additive bias broadcastable to [B, H, T, T] (relative position bias, context windows). */
  bias?: np.Array | null;
  /** Scale the query before Q·Kᵀ (wav2vec 2.0 / BART) instead of the scores after it (BERT, BEiT). */
  scaleQueryFirst?: boolean;
  attentionDropout?: number;
  keys?: KeyStream | null;
};

/** Additive key mask [B, 1, 1, T] from a padding mask [B, T] (1 = real token, 0 = padding). */
export function additivePaddingMask(paddingMask: np.Array, dtype: np.DType = np.float32): np.Array {
  const [b, t] = paddingMask.shape;
  return np.where(paddingMask.greater(0.5), 0, -1e9).astype(dtype).reshape([b, 1, 1, t]);
}

// [B, T, D] -> [B, H, T, hd]
function splitHeads(x: np.Array, heads: number): np.Array {
  const [b, t, d] = x.shape;
  return x.reshape([b, t, heads, d / heads]).transpose([0, 2, 1, 3]);
}

export function multiHeadAttention(p: AttentionParams, x: np.Array, opts: AttentionOptions): np.Array {
  const [b, t, d] = x.shape;
  const headDim = d / opts.heads;
  if (!Number.isInteger(headDim)) throw new Error(`attention: width ${d} is not divisible by ${opts.heads} heads`);
  const scale = 1 / Math.sqrt(headDim);
  let q = splitHeads(linear(p.q, x.ref), opts.heads);
  const k = splitHeads(linear(p.k, x.ref), opts.heads);
  const v = splitHeads(linear(p.v, x), opts.heads);
  // Equal-rank operands: jax-js's matmul mis-orders axes when ranks differ.
  let scores: np.Array;
  if (opts.scaleQueryFirst) {
    q = q.mul(scale);
    scores = np.matmul(q, k.transpose([0, 1, 3, 2])); // [B, H, T, T]
  } else {
    scores = np.matmul(q, k.transpose([0, 1, 3, 2])).mul(scale);
  }
  if (opts.bias) scores = scores.add(opts.bias);
  if (opts.mask) scores = scores.add(opts.mask);
  let probs = jnn.softmax(scores, -1);
  probs = dropout(probs, opts.attentionDropout ?? 0, opts.keys ?? null);
  const context = np.matmul(probs, v).transpose([0, 2, 1, 3]).reshape([b, t, d]);
  return linear(p.out, context);
}
