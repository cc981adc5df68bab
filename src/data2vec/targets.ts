/**
 * data2vec targets: the average of the top-K teacher blocks' outputs (FFN outputs by default), each
 * normalized, optionally normalized again after averaging. Targets are built from the unmasked teacher
 * pass and are only read at masked steps; the caller applies stop-gradient.
 */
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
