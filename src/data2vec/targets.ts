/**
 * data2vec targets: the average of the top-K teacher blocks' outputs (FFN outputs by default), each
 * normalized, optionally normalized again after averaging. Targets are built from the unmasked teacher
 * pass and are only read at masked steps; the caller applies stop-gradient.
 */
import { numpy as np } from "../engine/jax.js";
import { instanceNorm, layerNorm } from "../nn/layers.js";

export type TargetNorm = "layer" | "instance" | "none";

export function normalizeTarget(x: np.Array, kind: TargetNorm): np.Array {
  if (kind === "layer") return layerNorm(null, x, 1e-5);
  if (kind === "instance") return instanceNorm(x, 1e-5);
  return x;
}

/** layers: the top-K captured outputs, each [B, T, D] (consumed). Returns [B, T, D]. */
export function buildTargets(layers: np.Array[], perLayer: TargetNorm, afterAverage: TargetNorm): np.Array {
  if (layers.length === 0) throw new Error("buildTargets: no teacher layers to average");
  let sum = normalizeTarget(layers[0], perLayer);
  for (let i = 1; i < layers.length; i++) sum = sum.add(normalizeTarget(layers[i], perLayer));
  return normalizeTarget(sum.div(layers.length), afterAverage);
}
