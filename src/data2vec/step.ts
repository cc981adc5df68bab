/**
 * Compiled training steps. One optimizer update is: (EMA step, if due) → forward/backward on each
 * micro-batch → AdamW. The EMA runs once per optimizer update, never per micro-batch.
 */
import { jit, numpy as np, random, tree, valueAndGrad } from "../engine/jax.js";
import { adamwUpdate, type AdamWConfig, type AdamWState } from "../engine/optim.js";
import type { ParamTree } from "../engine/tree.js";
import { KeyStream } from "../nn/random.js";
import type { Data2VecSettings } from "./config.js";
import { emaUpdate } from "./ema.js";
import { data2vecLoss, type Data2VecParams, type Modality, type StepMetrics, type Teacher } from "./model.js";

export type StepOutput = StepMetrics & { loss: np.Array; gradNorm: np.Array };

/** A deterministic per-update PRNG key (depends only on the seed and the update index, so resume is exact). */
export function stepKey(seed: number, update: number, microBatch = 0): np.Array {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [update, microBatch]) {
    h = Math.imul(h ^ v, 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return random.key(h & 0x7fffffff);
}

export function makeData2VecSteps<Shared extends ParamTree, Batch extends { [k: string]: np.Array }>(
  modality: Modality<Shared, Batch>,
  cfg: Data2VecSettings,
  opt: AdamWConfig,
) {
  type Params = Data2VecParams<Shared>;
  type TeacherP = Teacher<Shared>;
  const lossFn = (params: Params, teacher: TeacherP, batch: Batch, key: np.Array) => {
    const keys = new KeyStream(key);
    const out = data2vecLoss(modality, cfg, params, teacher, batch, keys);
    keys.close();
    return out;
  };
  const lossAndGrad = valueAndGrad(lossFn, { hasAux: true }) as unknown as (
    p: Params,
    t: TeacherP,
    b: Batch,
    k: np.Array,
  ) => [[np.Array, StepMetrics], Params];

  /** One fused update (no accumulation): returns [params, optState, outputs]. */
  const update = jit((params: Params, teacher: TeacherP, optState: AdamWState, batch: Batch, key: np.Array, lr: np.Array) => {
    const [[loss, metrics], grads] = lossAndGrad(tree.ref(params as never) as Params, teacher, batch, key);
    const [newParams, newOpt, gradNorm] = adamwUpdate(grads as ParamTree, optState, params as ParamTree, lr, opt);
    return [newParams, newOpt, { loss, gradNorm, ...metrics }] as never;
  }) as unknown as (p: Params, t: TeacherP, o: AdamWState, b: Batch, k: np.Array, lr: np.Array) => [Params, AdamWState, StepOutput];

  /** Loss and gradients of one micro-batch (for gradient accumulation). */
  const microStep = jit((params: Params, teacher: TeacherP, batch: Batch, key: np.Array) => {
    const [[loss, metrics], grads] = lossAndGrad(params, teacher, batch, key);
    return [grads, { loss, ...metrics }] as never;
  }) as unknown as (p: Params, t: TeacherP, b: Batch, k: np.Array) => [Params, StepMetrics & { loss: np.Array }];

  /** AdamW on accumulated (averaged) gradients. */
  const apply = jit((params: Params, grads: Params, optState: AdamWState, lr: np.Array) => {
    const [newParams, newOpt, gradNorm] = adamwUpdate(grads as ParamTree, optState, params as ParamTree, lr, opt);
    return [newParams, newOpt, gradNorm] as never;
  }) as unknown as (p: Params, g: Params, o: AdamWState, lr: np.Array) => [Params, AdamWState, np.Array];

  /** teacher ← τ·teacher + (1−τ)·student over the teacher's blocks and own shared groups (see `studentForEma`). */
  const ema = jit((teacher: TeacherP, student: TeacherP, tau: np.Array) => emaUpdate(teacher as ParamTree, student as ParamTree, tau) as never) as unknown as (
    t: TeacherP,
    s: TeacherP,
    tau: np.Array,
  ) => TeacherP;

  return { update, microStep, apply, ema, lossFn };
}
