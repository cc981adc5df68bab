/** The regression loss at masked steps, and the variance statistics of the collapse monitor. */
import { numpy as np } from "../engine/jax.js";
import { stepMeans } from "./targets.js";

export type LossKind = "l2" | "smooth_l1";

/**
 * Σ over masked steps of Σ_d L(pred − target), times `scale`, divided by the number of masked steps.
 * L2 is (p−y)² (no ½, as fairseq's mse_loss); Smooth L1(β) is ½d²/β for |d| < β, |d| − ½β otherwise.
 * pred, target: [B, T, D]; weights: [B, T], 1 at the steps that count and 0 elsewhere. Consumes all.
 */
export function regressionLoss(
  pred: np.Array,
  target: np.Array,
  weights: np.Array,
  opts: { kind: LossKind; beta: number; scale: number },
): np.Array {
  const diff = pred.sub(target);
  let perElement: np.Array;
  if (opts.kind === "l2" || opts.beta === 0) {
    perElement = np.square(diff);
  } else {
    const abs = np.abs(diff.ref);
    const quadratic = np.square(diff).mul(0.5 / opts.beta);
    const linear = abs.ref.sub(0.5 * opts.beta);
    perElement = np.where(abs.less(opts.beta), quadratic, linear);
  }
  const perStep = perElement.sum(-1); // [B, T]
  const count = np.maximum(weights.ref.sum(), 1);
  return perStep.mul(weights).sum().mul(opts.scale).div(count);
}

/**
 * The share of the variance of x [B, T, D] that the step index alone explains: Σ_t n_t·|x̄_t − x̄|² over
 * Σ |x − x̄|², with x̄_t the mean over the rows' real steps t and x̄ the mean over all real steps (weights
 * [B, T], 1 = real; null: all real). It is about 1/B for inputs unrelated to position, and 1 when targets
 * encode position alone, a collapse that target_var misses (the targets still vary along the sequence).
 * Undefined (NaN) for a single row. Consumes both.
 */
export function positionShare(x: np.Array, weights: np.Array | null): np.Array {
  const [b, t] = x.shape;
  if (b < 2) {
    x.dispose();
    weights?.dispose();
    return np.array(NaN);
  }
  const w = weights ?? np.ones([b, t]);
  const { means, counts } = stepMeans(x.ref, w); // [T, D], [T, 1]
  const mean = means.ref.mul(counts.ref).sum(0).div(counts.ref.sum()); // [D], over all real steps
  const between = np.square(means.sub(mean.ref)).mul(counts).sum();
  const within = np.square(x.sub(mean)).mul(w.reshape([b, t, 1])).sum();
  return between.div(np.maximum(within, 1e-12));
}

/**
 * The effective number of dimensions the weighted steps of x [B, T, D] span: the participation ratio
 * (Σλ)² / Σλ² of the eigenvalues λ of their correlation matrix C (each dimension standardized over the steps),
 * computed as tr(C)² / ‖C‖²_F. D for independent dimensions (at most the number of steps), 1 when every dimension
 * moves together. It catches a collapse that target_var misses: targets that keep their per-dimension variance
 * while all of them lie on a few directions (a line, for text, when the pooled states stop carrying content).
 * weights [B, T], 1 = counted. Consumes both.
 */
export function effectiveDimension(x: np.Array, weights: np.Array): np.Array {
  const d = x.shape[2];
  const flat = x.reshape([-1, d]);
  const w = weights.reshape([-1, 1]);
  const n = np.maximum(w.ref.sum(), 1);
  const mean = flat.ref.mul(w.ref).sum(0).div(n.ref);
  const centered = flat.sub(mean);
  const std = np.sqrt(np.square(centered.ref).mul(w.ref).sum(0).div(n.ref).add(1e-12));
  const z = centered.div(std);
  const weighted = z.ref.mul(w);
  const trace = weighted.ref.mul(z.ref).sum().div(n.ref); // Σ_d C_dd, without forming the diagonal
  const frobenius = np.square(np.matmul(weighted.transpose([1, 0]), z).div(n)).sum(); // ‖C‖²_F, C [D, D]
  return np.square(trace).div(np.maximum(frobenius, 1e-12));
}

/**
 * Mean over dimensions of the per-dimension standard deviation across the weighted steps (fairseq's
 * `compute_var`: unbiased variance, sqrt(var + 1e-6)). x: [B, T, D], weights: [B, T]. Consumes both.
 */
export function meanStd(x: np.Array, weights: np.Array): np.Array {
  const d = x.shape[2];
  const flat = x.reshape([-1, d]);
  const w = weights.reshape([-1, 1]);
  const n = np.maximum(w.ref.sum(), 2);
  const mean = flat.ref.mul(w.ref).sum(0).div(n.ref);
  const variance = np.square(flat.sub(mean)).mul(w).sum(0).div(n.sub(1));
  return np.sqrt(variance.add(1e-6)).mean();
}
