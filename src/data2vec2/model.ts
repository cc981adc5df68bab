/**
 * The data2vec 2.0 objective (Baevski, Babu, Hsu, Auli 2023), modality-agnostic. Per batch of B samples:
 *   1. local:    the modality's feature encoder, once per sample (student, with gradient);
 *   2. student:  M masked views per sample; each view keeps its visible steps only (in order) and runs them
 *                through the context encoder and the transformer blocks: no mask tokens in the encoder;
 *   3. decoder:  the blocks' outputs go back to their steps, masked steps empty, and a small convolutional
 *                decoder predicts every step;
 *   4. teacher:  the EMA teacher runs once per sample on the unmasked input; targets are the average of its
 *                top-K blocks' FFN outputs, each instance-normalized (as data2vec), shared by the sample's M views;
 *   5. loss:     L2 (or Smooth L1) at the masked steps of every view, plus, for images, the CLS output regressing
 *                the mean of the sample's targets.
 * A modality plugs in through `Modality2`: its local encoder and the shape of its context encoder and decoder.
 * fairseq: `examples/data2vec/models/data2vec2.py` and `modalities/base.py`.
 */
import { disposeTree, refTree, stopGradientTree } from "../engine/typed.js";
import { lax, numpy as np } from "../engine/jax.js";
import type { ParamTree } from "../engine/tree.js";
import { positionalConv, type PositionalConvSpec } from "../audio/model.js";
import type { ConvParams } from "../nn/conv.js";
import { runEncoder, type BlockParams, type EncoderSpec } from "../nn/encoder.js";
import { dropout, layerNorm, type LayerNormParams } from "../nn/layers.js";
import type { KeyStream } from "../nn/random.js";
import type { Data2VecSettings, Data2Vec2Settings } from "../data2vec/config.js";
import { regressionLoss } from "../data2vec/loss.js";
import { stepStatistics, targetPositionShare, withoutPositionMean, type Data2VecParams, type Embedded, type StepMetrics, type Teacher } from "../data2vec/model.js";
import { buildTargets } from "../data2vec/targets.js";
import { runDecoder, type DecoderParams, type DecoderShape } from "./decoder.js";
import type { ObjectiveLoss } from "../data2vec/step.js";
import type { ViewLayout } from "./views.js";

/**
 * The context encoder (fairseq `contextualized_features`) between the local features and the blocks: the speech
 * convolutional positions, extra (CLS) tokens, a layer norm, and `prenet` blocks; ALiBi biases attention.
 */
export type ContextParams = {
  /** [1, E, D] tokens prepended after masking (images: CLS). */
  extraTokens?: np.Array;
  /** Convolutional relative positions, added to each visible step (computed on the view with masked steps zeroed). */
  posConv?: ConvParams[];
  /** [H] learned per-head scale of the ALiBi bias (used clamped at 0). */
  alibiScale?: np.Array;
  norm?: LayerNormParams;
  prenet: BlockParams[];
};

export type ContextSpec = {
  extraTokens: number;
  posConv: PositionalConvSpec | null;
  /** ALiBi over 1-D step distances, one slope per head. */
  alibi: { heads: number } | null;
  /** The prenet blocks' settings (and the norm's epsilon). */
  blocks: EncoderSpec;
};

/** The student's input side: the modality's local encoder and the context encoder. */
export type V2Shared<Local extends ParamTree> = { local: Local; context: ContextParams };
export type Data2Vec2Params<Local extends ParamTree> = Data2VecParams<V2Shared<Local>, DecoderParams>;
export type Teacher2<Local extends ParamTree> = Teacher<V2Shared<Local>>;

/** The views of a batch as arrays (see `ViewLayout`): int32 indices and float masks. */
export type ViewArrays = {
  keep: np.Array;
  keepInView: np.Array;
  repeat: np.Array;
  restore: np.Array;
  /** [N, T], 1 = masked. */
  mask: np.Array;
  /** [N, K] */
  visiblePositions: np.Array;
  /** [N] */
  viewSample: np.Array;
};

export function viewArrays(l: ViewLayout): ViewArrays {
  const n = l.samples * l.clones;
  const int = (a: Int32Array) => np.array(a, { dtype: np.int32 });
  return {
    keep: int(l.keep),
    keepInView: int(l.keepInView),
    repeat: int(l.repeat),
    restore: int(l.restore),
    mask: np.array(l.mask).reshape([n, l.steps]),
    visiblePositions: np.array(l.visiblePositions).reshape([n, l.visible]),
    viewSample: int(l.viewSample),
  };
}

export type V2Batch = { views: ViewArrays; [k: string]: np.Array | ViewArrays };

export interface Modality2<Local extends ParamTree, Batch extends V2Batch> {
  /** The main blocks. */
  encoder: EncoderSpec;
  context: ContextSpec;
  decoder: DecoderShape;
  /**
   * Local features [B, T, D] of each sample (fixed positions included) and its [B, T] padding mask (1 = real step;
   * null: none). Consumes `p`; borrows `batch`.
   */
  local(p: Local, batch: Batch, keys: KeyStream | null): { x: np.Array; padding: np.Array | null };
}

/** ALiBi slopes (fairseq `get_alibi`): 2^(−8(h+1)/H) for H a power of 2, interleaved from the next power otherwise. */
export function alibiSlopes(heads: number): number[] {
  const powerOf2 = (n: number) => {
    const start = 2 ** -(2 ** -(Math.log2(n) - 3));
    return Array.from({ length: n }, (_, i) => start * start ** i);
  };
  if (Number.isInteger(Math.log2(heads))) return powerOf2(heads);
  const closest = 2 ** Math.floor(Math.log2(heads));
  return [...powerOf2(closest), ...alibiSlopes(2 * closest).filter((_, i) => i % 2 === 0).slice(0, heads - closest)];
}

/** −|p_i − p_j|·slope_h·max(scale_h, 0) for the steps at `positions` [R, S] → [R, H, S, S]. Consumes both. */
export function alibiBias(scale: np.Array, positions: np.Array, heads: number): np.Array {
  const [r, s] = positions.shape;
  const distance = np.abs(positions.ref.reshape([r, 1, s, 1]).sub(positions.reshape([r, 1, 1, s])));
  const perHead = np.maximum(scale, 0).mul(np.array(alibiSlopes(heads).map((x) => -x))).reshape([1, heads, 1, 1]);
  return distance.mul(perHead);
}

/**
 * The context encoder on local features [B, T, D] (padding [B, T] or null). With `views`, each view keeps its
 * visible steps only → [N, E + K, D]; without, every step of each sample → [B, E + T, D]. Consumes `ctx`, `x`
 * and `padding`; borrows `views`.
 */
export function contextualize(ctx: ContextParams, spec: ContextSpec, x: np.Array, padding: np.Array | null, views: ViewArrays | null, keys: KeyStream | null): Embedded {
  const [b, t, d] = x.shape;
  let positions: np.Array;
  if (views) {
    const [n, k] = views.visiblePositions.shape;
    if (ctx.posConv) {
      // The positions see the whole view with its masked steps zeroed (fairseq encoder_zero_mask); each visible
      // step adds its own.
      const view = np.take(x.ref.reshape([b * t, d]), views.repeat.ref, 0).reshape([n, t, d]).mul(np.negative(views.mask.ref).add(1).reshape([n, t, 1]));
      const pos = positionalConv(ctx.posConv, view, spec.posConv!).reshape([n * t, d]);
      x = visibleSteps(x, views).add(np.take(pos, views.keepInView.ref, 0).reshape([n, k, d]));
    } else x = visibleSteps(x, views);
    padding = padding ? np.take(padding.reshape([b * t]), views.keep.ref, 0).reshape([n, k]) : null;
    positions = views.visiblePositions.ref;
  } else {
    if (ctx.posConv) x = x.ref.add(positionalConv(ctx.posConv, x, spec.posConv!));
    positions = np.arange(t).astype(np.float32).reshape([1, t]);
  }
  let bias: np.Array | null = null;
  if (spec.alibi && ctx.alibiScale) bias = alibiBias(ctx.alibiScale, positions, spec.alibi.heads);
  else positions.dispose();
  const rows = x.shape[0];
  const e = spec.extraTokens;
  if (e > 0 && ctx.extraTokens) {
    x = np.concatenate([np.broadcastTo(ctx.extraTokens, [rows, e, d]), x], 1);
    if (padding) padding = np.concatenate([np.ones([rows, e]), padding], 1);
    if (bias) bias = np.pad(bias, [[0, 0], [0, 0], [e, 0], [e, 0]]);
  }
  if (ctx.norm) x = layerNorm(ctx.norm, x, spec.blocks.eps);
  if (ctx.prenet.length) x = runEncoder(ctx.prenet, x, spec.blocks, { padding, bias, keys }).out;
  return { x, padding, bias };
}

/**
 * The encoder's outputs of each view's visible steps [N, K, D] back at their steps: [N, T, D] with zeros at the
 * masked steps (fairseq `decoder_input`). Consumes `outputs`; borrows `views`.
 */
export function restoreViews(outputs: np.Array, views: ViewArrays): np.Array {
  const [n, k, d] = outputs.shape;
  const t = views.mask.shape[1];
  return np.take(np.concatenate([outputs.reshape([n * k, d]), np.zeros([1, d])], 0), views.restore.ref, 0).reshape([n, t, d]);
}

/** Each view's visible steps of per-sample rows x [B, T, D], in order: [N, K, D]. Consumes `x`; borrows `views`. */
export function visibleSteps(x: np.Array, views: ViewArrays): np.Array {
  const [b, t, d] = x.shape;
  const [n, k] = views.visiblePositions.shape;
  return np.take(x.reshape([b * t, d]), views.keep.ref, 0).reshape([n, k, d]);
}

/** The ALiBi bias [1, H, T, T] of a sequence of T steps with per-head scales [H]. Consumes `scale`. */
export function sequenceAlibi(scale: np.Array, steps: number): np.Array {
  return alibiBias(scale, np.arange(steps).astype(np.float32).reshape([1, steps]), scale.shape[0]);
}

/**
 * A data2vec 2.0 encoder on unmasked input, as fine-tuning and inference use it: local features, the context
 * encoder and the blocks → [B, E + T, D] (extra tokens first) with the [B, E + T] padding mask (null: none).
 * Consumes `p`; borrows `batch`.
 */
export function encodeV2<Local extends ParamTree, Batch>(modality: Modality2<Local, Batch & V2Batch>, p: { shared: V2Shared<Local>; layers: BlockParams[] }, batch: Batch, keys: KeyStream | null): { x: np.Array; padding: np.Array | null } {
  const local = modality.local(p.shared.local, batch as Batch & V2Batch, keys);
  const c = contextualize(p.shared.context, modality.context, local.x, local.padding, null, keys);
  const x = runEncoder(p.layers, c.x, modality.encoder, { padding: c.padding, bias: c.bias, keys }).out;
  c.bias?.dispose();
  return { x, padding: c.padding };
}

/** What the losses compare, and the per-sample targets the monitors read. */
export type Data2Vec2Outputs = {
  /** [N, T, D] the decoder's predictions of every view. */
  pred: np.Array;
  /** [N, T, D] each view's targets (its sample's). */
  target: np.Array;
  /** [N, T] 1 at masked steps. */
  weights: np.Array;
  /** [B, T, D] the teacher's targets per sample, and their padding [B, T] (null: none). */
  sampleTargets: np.Array;
  padding: np.Array | null;
  /** The CLS output of each view and the mean of its sample's targets, [N, D] (images' global loss). */
  cls: { pred: np.Array; target: np.Array } | null;
  /** The share of the targets' variance that position alone explains (before `removePositionMean`). */
  positionShare: np.Array;
};

/** Steps 1–4 of the method: everything before the loss. Consumes params, teacher, batch and keys. */
export function data2vec2Outputs<Local extends ParamTree, Batch extends V2Batch>(
  modality: Modality2<Local, Batch>,
  cfg: Data2VecSettings,
  params: Data2Vec2Params<Local>,
  teacherParams: Teacher2<Local>,
  batch: Batch,
  keys: KeyStream | null,
): Data2Vec2Outputs {
  const v2 = settingsV2(cfg);
  const views = batch.views;
  const e = modality.context.extraTokens;
  // The teacher's input side: its own EMA copies where it has them (`emaShared`), else the student's under stop-gradient.
  const teacherContext = teacherParams.shared.context ?? stopGradientTree(refTree(params.shared.context));
  const teacherLocal = teacherParams.shared.local;

  // 1. Local features, once per sample.
  const local = modality.local(params.shared.local, batch, keys);
  const teacherIn = teacherLocal ? modality.local(teacherLocal, batch, null) : { x: lax.stopGradient(local.x.ref), padding: local.padding?.ref ?? null };

  // 2. The student: each view's visible steps through the context encoder and the blocks → [N, E + K, D].
  const student = contextualize(params.shared.context, modality.context, local.x, local.padding, views, keys);
  const h = runEncoder(params.layers, student.x, modality.encoder, { padding: student.padding, bias: student.bias, keys }).out;
  student.padding?.dispose();
  student.bias?.dispose();

  // 3. The decoder: outputs back at their steps, masked steps zero (or noise), predictions at every step.
  const [n, ek, d] = h.shape;
  const k = ek - e;
  const t = views.mask.shape[1];
  const outputs = dropout((e > 0 ? h.ref.slice([], [e, ek]) : h.ref).reshape([n, k, d]), v2.decoder.inputDropout ?? 0, keys);
  let decoderIn = restoreViews(outputs, views);
  if (v2.decoder.maskNoiseStd > 0 && keys) decoderIn = decoderIn.add(keys.normal([n, t, d]).mul(v2.decoder.maskNoiseStd).mul(views.mask.ref.reshape([n, t, 1])));
  const pred = runDecoder(params.head, decoderIn, v2.decoder, modality.decoder);

  // 4. The teacher, once per sample on the unmasked input; targets from its top-K blocks, extra tokens dropped.
  const teacherCtx = contextualize(teacherContext, modality.context, teacherIn.x, teacherIn.padding?.ref ?? null, null, null);
  const run = runEncoder(teacherParams.layers, teacherCtx.x, modality.encoder, {
    padding: teacherCtx.padding,
    bias: teacherCtx.bias,
    keys: null,
    capture: "ffn",
    captureFrom: teacherParams.layers.length - cfg.topK,
  });
  run.out.dispose();
  teacherCtx.padding?.dispose();
  teacherCtx.bias?.dispose();
  const captured = run.captured.map((c) => (e > 0 ? c.slice([], [e, e + t]) : c));
  const padding = teacherIn.padding;
  const statsOver = cfg.targetNormPadding === "include" ? null : (padding?.ref ?? null);
  let sampleTargets = lax.stopGradient(buildTargets(captured, cfg.targetNorm, cfg.targetNormAfterAverage, statsOver));
  // Measured on the teacher's own targets, before any position mean is removed: does the teacher encode position?
  const share = targetPositionShare({ target: sampleTargets, padding });
  if (cfg.removePositionMean) sampleTargets = lax.stopGradient(withoutPositionMean({ target: sampleTargets, padding }, cfg.targetNorm).target);
  const b = sampleTargets.shape[0];
  const target = np.take(sampleTargets.ref.reshape([b * t, d]), views.repeat.ref, 0).reshape([n, t, d]);

  let cls: Data2Vec2Outputs["cls"] = null;
  if (v2.clsLoss > 0) {
    if (e < 1) throw new Error("data2vec2: the CLS loss needs an extra token (the modality has none)");
    cls = { pred: h.slice([], e - 1), target: np.take(sampleTargets.ref.mean(1), views.viewSample.ref, 0) };
  } else h.dispose();
  const weights = views.mask.ref;
  disposeTree(batch);
  return { pred, target, weights, sampleTargets, padding, cls, positionShare: share };
}

export function settingsV2(cfg: Data2VecSettings): Data2Vec2Settings {
  if (!cfg.v2) throw new Error("data2vec.objective data2vec2 needs data2vec.v2 (clone batch, decoder, CLS loss)");
  return cfg.v2;
}

/**
 * One batch's loss and the monitors' statistics. Loss = Σ over masked steps of all views of L(pred − y)·scale / their
 * number, plus `clsLoss`·scale·Σ L(cls − mean target) over the views (fairseq weighs the CLS term by the number of
 * masked steps before its trainer divides by it). Consumes params, teacher, batch and keys.
 */
export function data2vec2Loss<Local extends ParamTree, Batch extends V2Batch>(
  modality: Modality2<Local, Batch>,
  cfg: Data2VecSettings,
  params: Data2Vec2Params<Local>,
  teacher: Teacher2<Local>,
  batch: Batch,
  keys: KeyStream | null,
): [np.Array, StepMetrics] {
  const o = data2vec2Outputs(modality, cfg, params, teacher, batch, keys);
  const metrics: StepMetrics = { ...stepStatistics(o), positionShare: o.positionShare };
  disposeTree([o.sampleTargets, o.padding]);
  const d = o.pred.shape[2];
  const kind = { kind: cfg.loss, beta: cfg.lossBeta, scale: cfg.lossScale ?? 1 / Math.sqrt(d) };
  let loss = regressionLoss(o.pred, o.target, o.weights, kind);
  if (o.cls) loss = loss.add(clsLoss(o.cls, kind, settingsV2(cfg).clsLoss));
  return [loss, metrics];
}

/** weight · scale · Σ over views of L(cls − target), summed over dimensions. Consumes `cls`. */
export function clsLoss(cls: { pred: np.Array; target: np.Array }, kind: Parameters<typeof regressionLoss>[3], weight: number): np.Array {
  const [n, d] = cls.pred.shape;
  // regressionLoss averages over its weighted steps: one step per view, so times N gives the sum.
  return regressionLoss(cls.pred.reshape([n, 1, d]), cls.target.reshape([n, 1, d]), np.ones([n, 1]), kind).mul(n * weight);
}

export function data2vec2Objective<Local extends ParamTree, Batch extends V2Batch>(modality: Modality2<Local, Batch>, cfg: Data2VecSettings): ObjectiveLoss<Data2Vec2Params<Local>, Teacher2<Local>, Batch> {
  settingsV2(cfg);
  return (params, teacher, batch, keys) => data2vec2Loss(modality, cfg, params, teacher, batch, keys);
}
