/**
 * AdamW with decoupled weight decay, global-norm clipping and learning-rate schedules.
 * `adamwUpdate` is pure and jit-friendly: the learning rate and the step count are arrays, so one
 * compiled step serves the whole schedule; bias correction happens inside the graph.
 */
import { numpy as np, tree } from "./jax.js";
import type { ParamTree } from "./tree.js";

export type AdamWConfig = {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Clip the global gradient norm to this value; 0 disables clipping. */
  clipNorm: number;
};

export type AdamWState = { count: np.Array; mu: ParamTree; nu: ParamTree };

export function adamwInit(params: unknown): AdamWState {
  const zeros = (a: np.Array) => np.zerosLike(a.ref);
  return { count: np.zeros([]), mu: tree.map(zeros, params as never) as ParamTree, nu: tree.map(zeros, params as never) as ParamTree };
}

/** Weight decay applies to matrices (weights, embeddings), not to biases, gains or other vectors. */
export function decays(leaf: { ndim: number }): boolean {
  return leaf.ndim >= 2;
}

/** sqrt(Σ g²) over every leaf. Consumes nothing. */
export function globalNorm(grads: unknown): np.Array {
  const leaves = tree.leaves(grads as never) as np.Array[];
  let total: np.Array = np.zeros([]);
  for (const g of leaves) total = total.add(np.square(g.ref).sum());
  return np.sqrt(total);
}

/**
 * One AdamW step. Consumes grads, state and params; returns [params, state, gradNorm (before clipping)].
 */
export function adamwUpdate<P>(
  grads: P,
  state: AdamWState,
  params: P,
  lr: np.Array,
  cfg: AdamWConfig,
): [P, AdamWState, np.Array] {
  const [pLeaves, def] = tree.flatten(params as never) as [np.Array[], tree.JsTreeDef];
  let gLeaves = tree.leaves(grads as never) as np.Array[];
  const mLeaves = tree.leaves(state.mu as never) as np.Array[];
  const vLeaves = tree.leaves(state.nu as never) as np.Array[];
  const norm = globalNorm(grads);
  if (cfg.clipNorm > 0) {
    const factor = np.minimum(np.reciprocal(norm.ref.add(1e-6)).mul(cfg.clipNorm), 1);
    gLeaves = gLeaves.map((g) => g.mul(factor.ref));
    factor.dispose();
  }
  const count = state.count.add(1);
  // Bias corrections 1 - β^t, computed in the graph from the step count.
  const bc1 = np.exp(count.ref.mul(Math.log(cfg.beta1))).mul(-1).add(1);
  const bc2 = np.exp(count.ref.mul(Math.log(cfg.beta2))).mul(-1).add(1);
  const stepSize = lr.ref.div(bc1);
  const newP: np.Array[] = [];
  const newM: np.Array[] = [];
  const newV: np.Array[] = [];
  for (let i = 0; i < pLeaves.length; i++) {
    const g = gLeaves[i];
    const m = mLeaves[i].mul(cfg.beta1).add(g.ref.mul(1 - cfg.beta1));
    const v = vLeaves[i].mul(cfg.beta2).add(np.square(g).mul(1 - cfg.beta2));
    const denom = np.sqrt(v.ref.div(bc2.ref)).add(cfg.eps);
    let p = pLeaves[i];
    if (cfg.weightDecay > 0 && decays(p)) p = p.ref.sub(p.mul(lr.ref.mul(cfg.weightDecay)));
    p = p.sub(m.ref.div(denom).mul(stepSize.ref));
    newP.push(p);
    newM.push(m);
    newV.push(v);
  }
  lr.dispose();
  bc2.dispose();
  stepSize.dispose();
  return [
    tree.unflatten(def, newP) as P,
    { count, mu: tree.unflatten(def, newM) as ParamTree, nu: tree.unflatten(def, newV) as ParamTree },
    norm,
  ];
}

export type ScheduleConfig =
  | { kind: "cosine"; peakLr: number; warmupSteps: number; totalSteps: number; minLr?: number }
  | {
      kind: "tri_stage";
      peakLr: number;
      totalSteps: number;
      /** Fractions of totalSteps (fairseq's phase_ratio); they must sum to 1. */
      phases: [number, number, number];
      initScale?: number;
      finalScale?: number;
    }
  | { kind: "constant"; peakLr: number; warmupSteps: number };

/** Learning rate at optimizer step `step` (0-based). */
export function learningRate(s: ScheduleConfig, step: number): number {
  if (s.kind === "constant") return s.warmupSteps > 0 && step < s.warmupSteps ? (s.peakLr * (step + 1)) / s.warmupSteps : s.peakLr;
  if (s.kind === "cosine") {
    const minLr = s.minLr ?? 0;
    if (step < s.warmupSteps) return (s.peakLr * (step + 1)) / s.warmupSteps;
    const span = Math.max(1, s.totalSteps - s.warmupSteps);
    const progress = Math.min(1, (step - s.warmupSteps) / span);
    return minLr + 0.5 * (s.peakLr - minLr) * (1 + Math.cos(Math.PI * progress));
  }
  // Tri-stage (fairseq): linear warmup from initScale·peak, hold at peak, exponential decay to finalScale·peak.
  const initScale = s.initScale ?? 0.01;
  const finalScale = s.finalScale ?? 0.05;
  const warmup = Math.round(s.phases[0] * s.totalSteps);
  const hold = Math.round(s.phases[1] * s.totalSteps);
  const decay = Math.max(1, s.totalSteps - warmup - hold);
  if (step < warmup) return s.peakLr * (initScale + ((1 - initScale) * step) / warmup);
  if (step < warmup + hold) return s.peakLr;
  const t = Math.min(step - warmup - hold, decay);
  return s.peakLr * Math.exp((Math.log(finalScale) * t) / decay);
}
