/**
 * data2vec targets: the average of the top-K teacher blocks' outputs (FFN outputs by default), each
 * normalized, optionally normalized again after averaging. Targets are built from the unmasked teacher
 * pass and are only read at masked steps; the caller applies stop-gradient.
 */
import { ConfigError } from "../engine/errors.js";
import { numpy as np } from "../engine/jax.js";
import { instanceNorm, layerNorm } from "../nn/layers.js";

export type TargetNorm = "layer" | "instance" | "none";

/** `padding` [B, T] (1 = real step, borrowed) restricts instance-norm statistics to the real steps. */
export function normalizeTarget(x: np.Array, kind: TargetNorm, padding: np.Array | null = null): np.Array {
  if (kind === "layer") return layerNorm(null, x, 1e-5);
  if (kind === "instance") return instanceNorm(x, 1e-5, padding);
  return x;
}

/**
 * The mean over the batch's rows at each step, over the rows where the step is real: y [B, T, D] → means
 * [T, D], with the number of real rows per step [T, 1] (padding [B, T], 1 = real; null: all real).
 * Consumes y; borrows the padding.
 */
export function stepMeans(y: np.Array, padding: np.Array | null): { means: np.Array; counts: np.Array } {
  const [b, t] = y.shape;
  const w = padding ? padding.ref.reshape([b, t, 1]) : np.ones([b, t, 1]);
  const counts = w.ref.sum(0);
  return { means: y.mul(w).sum(0).div(np.maximum(counts.ref, 1)), counts };
}

/**
 * y minus its mean over the batch's rows at each step (`stepMeans`): what the step index alone predicts is
 * gone. Consumes y; borrows the padding.
 */
export function subtractPositionMean(y: np.Array, padding: np.Array | null): np.Array {
  if (y.shape[0] < 2) throw new ConfigError("data2vec.removePositionMean needs at least 2 rows per batch (with one, the targets would be all zero); raise train.batchSize");
  const { means, counts } = stepMeans(y.ref, padding);
  counts.dispose();
  return y.sub(means);
}

/**
 * layers: the top-K captured outputs, each [B, T, D] (consumed). `padding` [B, T] (consumed; null when
 * nothing is padded) keeps padded steps out of the instance-norm statistics. Returns [B, T, D].
 */
export function buildTargets(layers: np.Array[], perLayer: TargetNorm, afterAverage: TargetNorm, padding: np.Array | null = null): np.Array {
  if (layers.length === 0) throw new Error("buildTargets: no teacher layers to average");
  let sum = normalizeTarget(layers[0], perLayer, padding);
  for (let i = 1; i < layers.length; i++) sum = sum.add(normalizeTarget(layers[i], perLayer, padding));
  const out = normalizeTarget(sum.div(layers.length), afterAverage, padding);
  padding?.dispose();
  return out;
}
