/**
 * Image classification (BEiT / data2vec fine-tuning): mean of the patch tokens → layer norm → linear,
 * cross-entropy, accuracy. Full fine-tuning (with the pretraining augmentations), or a linear probe: the
 * encoder frozen, its mean-pooled features computed once, and only the head trained.
 */
import { jit, nn as jnn, numpy as np, random, tree, valueAndGrad } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import { adamwInit, adamwUpdate, learningRate, type AdamWConfig, type AdamWState, type ScheduleConfig } from "../engine/optim.js";
import { HostRng } from "../engine/random.js";
import type { ParamTree } from "../engine/tree.js";
import { initLayerNorm, initLinear } from "../nn/init.js";
import { layerNorm, linear, type LayerNormParams, type LinearParams } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import { crossEntropy } from "../train/metrics.js";
import { labelArrays, trainClassifier, type EpochRecord, type FinetuneBase } from "../train/finetune.js";
import { augmentImage, prepareImage } from "./augment.js";
import type { VisionRunConfig } from "./config.js";
import type { Image, LabeledImages } from "./images.js";
import { encodeImages, relativeIndexArray, type VisionEncoderParams } from "./model.js";

export type VisionClassifierHead = { norm: LayerNormParams; out: LinearParams };
export type VisionClassifierParams = { encoder: VisionEncoderParams; head: VisionClassifierHead };

export function newVisionHead(seed: number, dim: number, classes: number): VisionClassifierHead {
  const keys = new KeyStream(random.key(seed + 7919));
  const head = { norm: initLayerNorm(dim), out: initLinear(keys, dim, classes) };
  keys.close();
  return head;
}

/** Mean over the patch tokens (the CLS token left out), [B, D]. Consumes `states` [B, 1 + N, D]. */
export function meanPatchTokens(states: np.Array): np.Array {
  const [, t] = states.shape;
  return states.slice([], [1, t]).mean(1);
}

function headLogits(head: VisionClassifierHead, pooled: np.Array, eps: number): np.Array {
  return linear(head.out, layerNorm(head.norm, pooled, eps));
}

/** Logits [B, C]. Consumes params and images; borrows the index. */
export function visionLogits(p: VisionClassifierParams, images: np.Array, relativeIndex: np.Array | null, cfg: VisionRunConfig, keys: KeyStream | null): np.Array {
  return headLogits(p.head, meanPatchTokens(encodeImages(p.encoder, images, relativeIndex, cfg.model, keys)), cfg.model.layerNormEps);
}

type Inputs = { images: np.Array; relativeIndex?: np.Array };
type Batch = Inputs & { labels: np.Array; weights: np.Array };

/** Normalized images (augmented when `rng` is given) and the relative index; rows past `rows` stay zero. */
function imageInputs(images: Image[], rows: number[], batchSize: number, cfg: VisionRunConfig, rng: HostRng | null, differentiable: boolean): Inputs {
  const { imageSize: s, channels } = cfg.model;
  const per = channels * s * s;
  const pixels = new Float32Array(batchSize * per);
  rows.forEach((r, i) => pixels.set(rng ? augmentImage(images[r], s, cfg.augment, rng) : prepareImage(images[r], s, cfg.augment), i * per));
  const inputs: Inputs = { images: np.array(pixels).reshape([batchSize, channels, s, s]) };
  const index = relativeIndexArray(cfg.model, differentiable);
  if (index) inputs.relativeIndex = index;
  return inputs;
}

export type VisionFinetuneSettings = FinetuneBase & {
  /** Train on augmented views (the run config's augmentations). */
  augment: boolean;
};

const FINETUNE_OPT = (weightDecay: number): AdamWConfig => ({ beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay, clipNorm: 3 });

export async function finetuneVision(
  params: VisionClassifierParams,
  cfg: VisionRunConfig,
  train: LabeledImages,
  s: VisionFinetuneSettings,
  opts: { quiet?: boolean; onEpoch?: (r: EpochRecord) => void } = {},
): Promise<{ params: VisionClassifierParams; history: EpochRecord[] }> {
  if (train.labels.length !== train.images.length) throw new DataError("every training image needs a label");
  return trainClassifier<VisionClassifierParams, Batch>({
    params,
    examples: train.images.length,
    epochs: s.epochs,
    batchSize: s.batchSize,
    lr: s.lr,
    warmupFraction: s.warmupFraction,
    seed: s.seed,
    opt: FINETUNE_OPT(s.weightDecay),
    batch: (rows, rng) => ({
      ...imageInputs(train.images, rows, s.batchSize, cfg, s.augment ? rng : null, true),
      ...labelArrays(train.labels, rows, s.batchSize, train.classes.length),
    }),
    logits: (p, b, keys) => {
      const logits = visionLogits(p, b.images, b.relativeIndex ?? null, cfg, keys);
      b.relativeIndex?.dispose();
      return logits;
    },
    ...opts,
  });
}

/**
 * Runs a jitted `forward(params, images, relativeIndex)` over every image in fixed-size batches (no
 * augmentation, no dropout) and collects its first `width` outputs per image. Does not consume params.
 */
async function mapImages<P>(params: P, cfg: VisionRunConfig, images: Image[], batchSize: number, width: number, forward: (p: P, images: np.Array, relativeIndex: np.Array | null) => np.Array): Promise<Float32Array> {
  const compiled = jit((p: P, b: Inputs) => {
    const y = forward(p, b.images, b.relativeIndex ?? null);
    b.relativeIndex?.dispose();
    return y;
  }) as unknown as ((p: P, b: Inputs) => np.Array) & { dispose(): void };
  const out = new Float32Array(images.length * width);
  for (let i = 0; i < images.length; i += batchSize) {
    const rows = Array.from({ length: Math.min(batchSize, images.length - i) }, (_, k) => i + k);
    const values = (await compiled(tree.ref(params as never) as P, imageInputs(images, rows, batchSize, cfg, null, false)).data()) as Float32Array | Int32Array;
    out.set(Float32Array.from(values.subarray(0, rows.length * width)), i * width);
  }
  compiled.dispose();
  return out;
}

/** Predicted class of every image. Does not consume params. */
export async function predictVision(params: VisionClassifierParams, cfg: VisionRunConfig, images: Image[], batchSize: number): Promise<number[]> {
  const pred = await mapImages(params, cfg, images, batchSize, 1, (p, x, index) => np.argmax(visionLogits(p, x, index, cfg, null), -1));
  return Array.from(pred);
}

/** Class probabilities [images × classes]. Does not consume params. */
export function classProbabilities(params: VisionClassifierParams, cfg: VisionRunConfig, images: Image[], batchSize: number, classes: number): Promise<Float32Array> {
  return mapImages(params, cfg, images, batchSize, classes, (p, x, index) => jnn.softmax(visionLogits(p, x, index, cfg, null), -1));
}

/** Mean-pooled final-block features [images × D] of a frozen encoder. Does not consume the encoder. */
export function imageFeatures(encoder: VisionEncoderParams, cfg: VisionRunConfig, images: Image[], batchSize: number): Promise<Float32Array> {
  return mapImages(encoder, cfg, images, batchSize, cfg.model.dim, (e, x, index) => meanPatchTokens(encodeImages(e, x, index, cfg.model, null)));
}

export type ProbeSettings = { steps: number; lr: number; weightDecay: number; seed: number };

/**
 * Linear probe: layer norm + linear head trained on frozen features (full batch, AdamW, cosine schedule).
 * Returns the head and its accuracy on the training features.
 */
export async function trainProbe(features: Float32Array, labels: number[], dim: number, classes: number, s: ProbeSettings): Promise<{ head: VisionClassifierHead; trainAccuracy: number; eps: number }> {
  const n = labels.length;
  const eps = 1e-6;
  const oneHot = new Float32Array(n * classes);
  labels.forEach((l, i) => (oneHot[i * classes + l] = 1));
  const x = np.array(features).reshape([n, dim]);
  const y = np.array(oneHot).reshape([n, classes]);
  const w = np.ones([n]);
  const opt = FINETUNE_OPT(s.weightDecay);
  const schedule: ScheduleConfig = { kind: "cosine", peakLr: s.lr, warmupSteps: Math.round(0.1 * s.steps), totalSteps: s.steps };
  const lossFn = (h: VisionClassifierHead, xb: np.Array, yb: np.Array, wb: np.Array) => crossEntropy(headLogits(h, xb, eps), yb, wb);
  const step = jit((h: VisionClassifierHead, o: AdamWState, xb: np.Array, yb: np.Array, wb: np.Array, lr: np.Array) => {
    const [loss, grads] = (valueAndGrad(lossFn) as unknown as (h: VisionClassifierHead, x: np.Array, y: np.Array, w: np.Array) => [np.Array, ParamTree])(tree.ref(h as never) as VisionClassifierHead, xb, yb, wb);
    const [h2, o2] = adamwUpdate(grads, o, h as ParamTree, lr, opt);
    return [h2, o2, loss] as never;
  }) as unknown as (h: VisionClassifierHead, o: AdamWState, x: np.Array, y: np.Array, w: np.Array, lr: np.Array) => [VisionClassifierHead, AdamWState, np.Array];
  let head = newVisionHead(s.seed, dim, classes);
  let optState = adamwInit(head as ParamTree);
  for (let i = 0; i < s.steps; i++) {
    let loss: np.Array;
    [head, optState, loss] = step(head, optState, x.ref, y.ref, w.ref, np.array(learningRate(schedule, i)));
    loss.dispose();
  }
  tree.dispose(optState as never);
  const pred = (await np.argmax(headLogits(tree.ref(head as never) as VisionClassifierHead, x, eps), -1).data()) as Int32Array;
  y.dispose();
  w.dispose();
  return { head, trainAccuracy: Array.from(pred).filter((p, i) => p === labels[i]).length / n, eps };
}

/** Probe predictions on frozen features. Does not consume the head. */
export async function probePredict(head: VisionClassifierHead, features: Float32Array, dim: number, eps: number): Promise<number[]> {
  const n = features.length / dim;
  const pred = (await np.argmax(headLogits(tree.ref(head as never) as VisionClassifierHead, np.array(features).reshape([n, dim]), eps), -1).data()) as Int32Array;
  return Array.from(pred);
}
