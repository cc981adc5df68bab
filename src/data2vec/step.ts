/**
 * Compiled training steps. One optimizer update is: (EMA step, if due) → forward/backward on each
 * micro-batch → AdamW. The EMA runs once per optimizer update, never per micro-batch.
 */
import { compile, refTree, valueAndGradOf } from "../engine/typed.js";
import { numpy as np, random } from "../engine/jax.js";
import { adamwUpdate, type AdamWConfig, type AdamWState } from "../engine/optim.js";
import type { ParamTree } from "../engine/tree.js";
import { KeyStream } from "../nn/random.js";
import { emaUpdate } from "./ema.js";
import { data2vecLoss, type Data2VecParams, type Modality, type StepMetrics, type Teacher } from "./model.js";
import type { Data2VecSettings } from "./config.js";

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

/**
 * An objective's loss on one batch, with the monitors' statistics: data2vec's (`data2vecObjective`) or data2vec
 * 2.0's (`data2vec2Objective` in data2vec2/model.ts). Consumes params, teacher and batch; differentiated with
 * respect to the params only.
 */
export type ObjectiveLoss<P, T, B> = (params: P, teacher: T, batch: B, keys: KeyStream | null) => [np.Array, StepMetrics];

export function data2vecObjective<Shared extends ParamTree, Batch extends { [k: string]: np.Array }>(modality: Modality<Shared, Batch>, cfg: Data2VecSettings): ObjectiveLoss<Data2VecParams<Shared>, Teacher<Shared>, Batch> {
  return (params, teacher, batch, keys) => data2vecLoss(modality, cfg, params, teacher, batch, keys);
}

export function makeData2VecSteps<Shared extends ParamTree, Batch extends { [k: string]: np.Array }>(modality: Modality<Shared, Batch>, cfg: Data2VecSettings, opt: AdamWConfig) {
  return makeSteps(data2vecObjective(modality, cfg), opt);
}

/** The compiled steps of an objective: a fused update, a micro-batch's gradients, AdamW on accumulated ones, and the EMA. */
export function makeSteps<Params, TeacherP, Batch>(objective: ObjectiveLoss<Params, TeacherP, Batch>, opt: AdamWConfig) {
  const lossFn = (params: Params, teacher: TeacherP, batch: Batch, key: np.Array) => {
    const keys = new KeyStream(key);
    const out = objective(params, teacher, batch, keys);
    keys.close();
    return out;
  };
  const lossAndGrad = valueAndGradOf(lossFn, { hasAux: true });

  /** One fused update (no accumulation): returns [params, optState, outputs]. */
  const update = compile((params: Params, teacher: TeacherP, optState: AdamWState, batch: Batch, key: np.Array, lr: np.Array): [Params, AdamWState, StepOutput] => {
    const [[loss, metrics], grads] = lossAndGrad(refTree(params), teacher, batch, key);
    const [newParams, newOpt, gradNorm] = adamwUpdate(grads, optState, params, lr, opt);
    return [newParams, newOpt, { loss, gradNorm, ...metrics }];
  });

  /** Loss and gradients of one micro-batch (for gradient accumulation). */
  const microStep = compile((params: Params, teacher: TeacherP, batch: Batch, key: np.Array): [Params, StepMetrics & { loss: np.Array }] => {
    const [[loss, metrics], grads] = lossAndGrad(params, teacher, batch, key);
    return [grads, { loss, ...metrics }];
  });

  /** AdamW on accumulated (averaged) gradients. */
  const apply = compile((params: Params, grads: Params, optState: AdamWState, lr: np.Array) => adamwUpdate(grads, optState, params, lr, opt));

  /** teacher ← τ·teacher + (1−τ)·student over the teacher's blocks and own shared groups (see `studentForEma`). */
  const ema = compile((teacher: TeacherP, student: TeacherP, tau: np.Array) => emaUpdate(teacher, student, tau));

  return { update, microStep, apply, ema, lossFn };
}
