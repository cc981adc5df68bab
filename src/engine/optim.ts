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
 * One AdamW step. Consumes grads, state, params and `lrScales`; returns [params, state, gradNorm (before clipping)].
 * `lrScales` (a scalar per parameter, same structure) multiplies the learning rate of each parameter, for its step and
 * its weight decay alike (layer-wise learning-rate decay).
 */
export function adamwUpdate<P>(
  grads: P,
  state: AdamWState,
  params: P,
  lr: np.Array,
  cfg: AdamWConfig,
  lrScales?: P,
): [P, AdamWState, np.Array] {
  const scales = lrScales ? (tree.leaves(lrScales as never) as np.Array[]) : null;
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
    const scale = scales?.[i];
    const leafLr = scale ? lr.ref.mul(scale.ref) : lr.ref;
    if (cfg.weightDecay > 0 && decays(p)) p = p.ref.sub(p.mul(leafLr.ref.mul(cfg.weightDecay)));
    leafLr.dispose();
    p = p.sub(m.ref.div(denom).mul(scale ? stepSize.ref.mul(scale) : stepSize.ref));
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

/**
 * AdamW with its moments on the host: the update `adamwUpdate` computes, in float64 arithmetic on float32 storage,
 * for models whose parameters, gradients and two moments do not fit the engine's 4 GiB heap together. The heap then
 * holds the parameters and, during a step, their gradients; the host holds a master copy and the moments
 * (3 × 4 bytes per parameter of ordinary memory). Slower per update (the gradients cross to the host and the
 * parameters back), so it is used only where the on-device update would not fit.
 */
export class HostAdamW<P> {
  #count = 0;
  private constructor(
    private readonly def: tree.JsTreeDef,
    private readonly shapes: number[][],
    private readonly params: Float32Array[],
    private readonly mu: Float32Array[],
    private readonly nu: Float32Array[],
    private readonly decaying: boolean[],
    private readonly cfg: AdamWConfig,
  ) {}

  /** Reads `params` to the host (they stay usable). */
  static async create<P>(params: P, cfg: AdamWConfig): Promise<HostAdamW<P>> {
    const [leaves, def] = tree.flatten(params as never) as [np.Array[], tree.JsTreeDef];
    const host: Float32Array[] = [];
    for (const a of leaves) host.push(Float32Array.from((await a.ref.data()) as Float32Array));
    return new HostAdamW<P>(def, leaves.map((a) => a.shape), host, host.map((p) => new Float32Array(p.length)), host.map((p) => new Float32Array(p.length)), leaves.map(decays), cfg);
  }

  #sum: Float32Array[] | null = null;
  #summed = 0;

  /** Adds gradients (consumed) to the sum the next `apply` averages (gradient accumulation). */
  async accumulate(grads: P): Promise<void> {
    const leaves = tree.leaves(grads as never) as np.Array[];
    if (!this.#sum) {
      this.#sum = [];
      for (const a of leaves) this.#sum.push((await a.data()) as Float32Array);
    } else {
      for (const [i, a] of leaves.entries()) {
        const g = (await a.data()) as Float32Array;
        const s = this.#sum[i];
        for (let k = 0; k < s.length; k++) s[k] += g[k];
      }
    }
    this.#summed++;
  }

  /** One step. Consumes the device parameters and the gradients; returns the new device parameters and the gradient norm (before clipping). */
  async step(params: P, grads: P, lr: number): Promise<[P, number]> {
    await this.accumulate(grads);
    return this.apply(params, lr);
  }

  /**
   * One step with the mean of the accumulated gradients. Consumes the device parameters and `lrScales` (as in
   * `adamwUpdate`); returns the new parameters and the gradient norm.
   */
  async apply(params: P, lr: number, lrScales?: P): Promise<[P, number]> {
    if (!this.#sum) throw new Error("HostAdamW.apply: no gradients accumulated");
    const scales: number[] = [];
    if (lrScales) for (const a of tree.leaves(lrScales as never) as np.Array[]) scales.push(((await a.data()) as Float32Array)[0]);
    const g = this.#sum;
    if (this.#summed > 1) for (const x of g) for (let k = 0; k < x.length; k++) x[k] /= this.#summed;
    this.#sum = null;
    this.#summed = 0;
    tree.dispose(params as never);
    let squares = 0;
    for (const x of g) for (let k = 0; k < x.length; k++) squares += x[k] * x[k];
    const norm = Math.sqrt(squares);
    const { beta1, beta2, eps, weightDecay, clipNorm } = this.cfg;
    const factor = clipNorm > 0 ? Math.min(clipNorm / (norm + 1e-6), 1) : 1;
    this.#count++;
    const bc1 = 1 - beta1 ** this.#count;
    const bc2 = 1 - beta2 ** this.#count;
    const stepSize = lr / bc1;
    const leaves: np.Array[] = [];
    for (let i = 0; i < g.length; i++) {
      const [p, m, v, gi] = [this.params[i], this.mu[i], this.nu[i], g[i]];
      const leafLr = lr * (scales[i] ?? 1);
      const leafStep = stepSize * (scales[i] ?? 1);
      const decay = weightDecay > 0 && this.decaying[i] ? leafLr * weightDecay : 0;
      for (let k = 0; k < p.length; k++) {
        const gk = gi[k] * factor;
        m[k] = beta1 * m[k] + (1 - beta1) * gk;
        v[k] = beta2 * v[k] + (1 - beta2) * gk * gk;
        p[k] = p[k] - p[k] * decay - (m[k] / (Math.sqrt(v[k] / bc2) + eps)) * leafStep;
      }
      leaves.push(np.array(p.slice()).reshape(this.shapes[i])); // a copy: the host master copy keeps changing
    }
    return [tree.unflatten(this.def, leaves) as P, norm];
  }
}
