/**
 * The data2vec training objective, modality-agnostic (Baevski et al. 2022, §3):
 *   1. mask:      the modality embeds a masked view for the student and the full view for the teacher;
 *   2. encode:    the student runs its blocks on the masked view; the EMA teacher runs its blocks on the
 *                 full view and keeps the top-K blocks' outputs;
 *   3. targets:   y = Norm(mean_k Norm_k(teacher_k)), under stop-gradient;
 *   4. regress:   a head maps the student's final states to y at the masked steps (Smooth L1 / L2).
 * A modality plugs in through `Modality`: its embeddings (feature encoder + positions + masking) and its
 * block settings. Nothing here knows about text, audio or images.
 */
import { disposeTree, mapGroups, refTree, stopGradientTree } from "../engine/typed.js";
import { lax, numpy as np } from "../engine/jax.js";
import type { ParamTree } from "../engine/tree.js";
import { runEncoder, type BlockParams, type EncoderSpec } from "../nn/encoder.js";
import { gelu, layerNorm, linear, type LayerNormParams, type LinearParams } from "../nn/layers.js";
import { initLayerNorm, initLinear } from "../nn/init.js";
import type { KeyStream } from "../nn/random.js";
import type { Data2VecSettings } from "./config.js";
import { effectiveDimension, meanStd, positionShare, regressionLoss } from "./loss.js";
import { buildTargets, normalizeTarget, subtractPositionMean } from "./targets.js";

/**
 * A modality's embedded view: [B, T, D] states, an optional [B, T] padding mask, and an optional additive
 * attention bias (such as a shared relative position bias). All owned by the caller.
 */
export type Embedded = { x: np.Array; padding: np.Array | null; bias?: np.Array | null };

function disposeExtras(e: Embedded): void {
  e.padding?.dispose();
  e.bias?.dispose();
}

export interface Modality<Shared extends ParamTree, Batch extends { [k: string]: np.Array }> {
  encoder: EncoderSpec;
  /**
   * The student's masked view ("student") or the teacher's unmasked view ("teacher"), [B, T, D].
   * Consumes `shared`; borrows `batch`. `keys` is null when there is no dropout (the teacher, evaluation).
   */
  embed(shared: Shared, batch: Batch, view: "student" | "teacher", keys: KeyStream | null): Embedded;
  /**
   * Both views at once, for modalities whose shared feature encoder should run only once (speech: the
   * teacher reads the student's unmasked CNN features). The teacher view must carry no gradient, and uses the
   * teacher's own copy of any shared group in `teacherShared` (see `Teacher`); it consumes those.
   * Consumes `shared`; borrows `batch`.
   */
  embedViews?(shared: Shared, batch: Batch, keys: KeyStream | null, teacherShared: Partial<Shared>): { student: Embedded; teacher: Embedded };
  /** [B, T] weights of the steps the loss covers (1 at masked steps). Borrows `batch`. */
  lossWeights(batch: Batch): np.Array;
  /**
   * [T·T] distances between the steps of a length-T input, for the teacher's context window
   * (`Data2VecSettings.teacherContext`). Default: |i − j|.
   */
  stepDistances?(steps: number): Float32Array;
}

/** |i − j| for a sequence of `steps` steps (row-major [T, T]). */
export function sequenceDistances(steps: number): Float32Array {
  const d = new Float32Array(steps * steps);
  for (let i = 0; i < steps; i++) for (let j = 0; j < steps; j++) d[i * steps + j] = Math.abs(i - j);
  return d;
}

/**
 * Additive attention bias [1, 1, T, T] that limits each step to the keys at most `window` away: 0 inside the
 * window, a large negative outside (every step keeps itself, so no row is empty).
 */
export function contextWindowBias(distances: Float32Array, steps: number, window: number): np.Array {
  const bias = new Float32Array(steps * steps);
  for (let i = 0; i < bias.length; i++) bias[i] = distances[i] <= window ? 0 : -1e9;
  return np.array(bias).reshape([1, 1, steps, steps]);
}

/** The regression head; `norm` is a layer norm on its input (BEiT's final norm, used only in pretraining). */
export type RegressionHead = { norm?: LayerNormParams; layers: LinearParams[] };

/**
 * Student parameters: the shared input side, the transformer blocks, and what predicts the targets from the blocks'
 * output (v1: the regression head; data2vec 2.0: its decoder).
 */
export type Data2VecParams<Shared extends ParamTree, Head extends ParamTree = RegressionHead> = { shared: Shared; layers: BlockParams[]; head: Head };

/**
 * The EMA teacher: its own copy of the transformer blocks and of the shared input-side groups that
 * `Data2VecSettings.emaShared` names (none by default: the teacher then reads the student's embeddings, positions
 * and norms under stop-gradient, which is what fairseq's copying them at every EMA step amounts to).
 */
export type Teacher<Shared extends ParamTree = ParamTree> = { layers: BlockParams[]; shared: Partial<Shared> };

/** The groups of the student's shared input side that the teacher averages (a new tree of references). */
export function emaSharedOf<Shared extends ParamTree>(shared: Shared, names: readonly string[]): Partial<Shared> {
  const out: Record<string, unknown> = {};
  for (const n of names) {
    if (!(n in (shared as object))) throw new Error(`data2vec.emaShared: "${n}" is not a shared parameter group of this modality (${Object.keys(shared as object).join(", ")})`);
    out[n] = (shared as Record<string, unknown>)[n];
  }
  return out as Partial<Shared>;
}

/** What the EMA step averages the teacher with: the student's blocks and its `emaShared` groups (references, consumed by the step). */
export function studentForEma<Shared extends ParamTree>(params: Data2VecParams<Shared, ParamTree>, names: readonly string[]): Teacher<Shared> {
  return { layers: refTree(params.layers), shared: refTree(emaSharedOf(params.shared, names)) };
}

export function initRegressionHead(keys: KeyStream, dim: number, layers: 1 | 2, opts: { inputNorm?: boolean } = {}): RegressionHead {
  const head: RegressionHead = { layers: layers === 1 ? [initLinear(keys, dim, dim)] : [initLinear(keys, dim, 2 * dim), initLinear(keys, 2 * dim, dim)] };
  if (opts.inputNorm) head.norm = initLayerNorm(dim);
  return head;
}

export function regressionHead(p: RegressionHead, x: np.Array, eps = 1e-5): np.Array {
  if (p.norm) x = layerNorm(p.norm, x, eps);
  p.layers.forEach((layer, i) => {
    x = linear(layer, x);
    if (i < p.layers.length - 1) x = gelu(x);
  });
  return x;
}

export type StepMetrics = { targetVar: np.Array; predVar: np.Array; targetRank: np.Array; maskedSteps: np.Array; positionShare: np.Array };

/**
 * What the loss compares: the student's predictions and the teacher's targets [B, T, D], the [B, T] loss weights,
 * and the teacher view's [B, T] padding mask (null: none), which the diagnostics read.
 */
export type Data2VecOutputs = { pred: np.Array; target: np.Array; weights: np.Array; padding: np.Array | null };

/**
 * One batch's loss and the monitors' statistics. The method is `data2vecOutputs` then `regressionLoss`; the
 * statistics are computed beside it from the same outputs (no gradient flows through them), and
 * `removePositionMean`, an extension outside the paper, transforms the targets in between. Consumes params,
 * teacher, batch and keys; differentiate it with respect to `params` only.
 */
export function data2vecLoss<Shared extends ParamTree, Batch extends { [k: string]: np.Array }>(
  modality: Modality<Shared, Batch>,
  cfg: Data2VecSettings,
  params: Data2VecParams<Shared>,
  teacher: Teacher<Shared>,
  batch: Batch,
  keys: KeyStream | null,
): [np.Array, StepMetrics] {
  let outputs = data2vecOutputs(modality, cfg, params, teacher, batch, keys);
  // Measured on the teacher's own targets, before any position mean is removed: does the teacher encode position?
  const share = targetPositionShare(outputs);
  if (cfg.removePositionMean) outputs = withoutPositionMean(outputs, cfg.targetNorm);
  const metrics = { ...stepStatistics(outputs), positionShare: share };
  outputs.padding?.dispose();
  const scale = cfg.lossScale ?? 1 / Math.sqrt(outputs.pred.shape[2]);
  return [regressionLoss(outputs.pred, outputs.target, outputs.weights, { kind: cfg.loss, beta: cfg.lossBeta, scale }), metrics];
}

/**
 * The method (§3): mask, encode, build the targets, and the regression head: everything before the loss.
 * Consumes params, teacher, batch and keys.
 */
export function data2vecOutputs<Shared extends ParamTree, Batch extends { [k: string]: np.Array }>(
  modality: Modality<Shared, Batch>,
  cfg: Data2VecSettings,
  params: Data2VecParams<Shared>,
  teacherParams: Teacher<Shared>,
  batch: Batch,
  keys: KeyStream | null,
): Data2VecOutputs {
  // 1. The student's masked view (dropout on) and the teacher's unmasked view, through the shared input side under
  //    stop-gradient (no dropout), with the teacher's own copies of any `emaShared` groups.
  let student: Embedded, teacherIn: Embedded;
  if (modality.embedViews) ({ student, teacher: teacherIn } = modality.embedViews(params.shared, batch, keys, teacherParams.shared));
  else {
    student = modality.embed(refTree(params.shared), batch, "student", keys);
    teacherIn = modality.embed(teacherInputSide(params.shared, teacherParams.shared), batch, "teacher", null);
  }
  // 2. Encode: the student's blocks on the masked view; the EMA teacher's blocks on the unmasked view, no dropout,
  //    keeping the top-K blocks' outputs (optionally with a restricted context, §5.3).
  const h = runEncoder(params.layers, student.x, modality.encoder, { padding: student.padding, bias: student.bias, keys }).out;
  disposeExtras(student);
  if (cfg.teacherContext != null) {
    const steps = teacherIn.x.shape[1];
    const distances = modality.stepDistances?.(steps) ?? sequenceDistances(steps);
    const window = contextWindowBias(distances, steps, cfg.teacherContext);
    teacherIn.bias = teacherIn.bias ? teacherIn.bias.add(window) : window;
  }
  const teacher = runEncoder(teacherParams.layers, teacherIn.x, modality.encoder, {
    padding: teacherIn.padding,
    bias: teacherIn.bias,
    keys: null,
    capture: cfg.targetLayer,
    captureFrom: teacherParams.layers.length - cfg.topK,
  });
  teacher.out.dispose();
  // 3. Targets y = Norm(mean_k Norm_k(teacher_k)) under stop-gradient. Padded steps are left out of the
  //    instance-norm statistics, so padding never reaches the targets (fairseq includes them: "include").
  const padding = teacherIn.padding?.ref ?? null;
  const statsOver = cfg.targetNormPadding === "include" ? null : (teacherIn.padding?.ref ?? null);
  const target = lax.stopGradient(buildTargets(teacher.captured, cfg.targetNorm, cfg.targetNormAfterAverage, statsOver));
  disposeExtras(teacherIn);
  // 4. The regression head's predictions, compared at the masked steps.
  const pred = regressionHead(params.head, h, modality.encoder.eps);
  const weights = modality.lossWeights(batch);
  disposeTree(batch);
  return { pred, target, weights, padding };
}

/**
 * The input side the teacher reads: its own EMA copy of each group it has (`emaShared`), the student's other
 * groups under stop-gradient. Consumes `shared`, not `own`.
 */
function teacherInputSide<Shared extends ParamTree>(shared: Shared, own: Partial<Shared>): Shared {
  return mapGroups(shared, (name, group) => {
    const mine = own[name];
    if (mine === undefined) return stopGradientTree(group);
    disposeTree(group);
    return mine as Shared[typeof name];
  });
}

/**
 * The statistics the collapse monitor reads, beside the loss (no gradient): target_var, pred_var, the targets'
 * effective number of dimensions, masked steps. Borrows `o`.
 */
export function stepStatistics(o: Pick<Data2VecOutputs, "pred" | "target" | "weights">): Omit<StepMetrics, "positionShare"> {
  return {
    targetVar: lax.stopGradient(meanStd(o.target.ref, o.weights.ref)),
    predVar: lax.stopGradient(meanStd(o.pred.ref, o.weights.ref)),
    targetRank: lax.stopGradient(effectiveDimension(o.target.ref, o.weights.ref)),
    maskedSteps: lax.stopGradient(o.weights.ref.sum()),
  };
}

/** The share of the targets' variance that position alone explains (see `positionShare`). Borrows `o`. */
export function targetPositionShare(o: Pick<Data2VecOutputs, "target" | "padding">): np.Array {
  return lax.stopGradient(positionShare(o.target.ref, o.padding?.ref ?? null));
}

/**
 * `Data2VecSettings.removePositionMean` (not in the paper): the targets less their mean over the batch at each
 * step, normalized again, so that the student gains nothing from encoding position. Consumes `o`'s target.
 */
export function withoutPositionMean<O extends Pick<Data2VecOutputs, "target" | "padding">>(o: O, norm: Data2VecSettings["targetNorm"]): O {
  const target = normalizeTarget(subtractPositionMean(o.target, o.padding), norm, o.padding);
  return { ...o, target };
}
