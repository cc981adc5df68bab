/**
 * Image classification (BEiT / data2vec fine-tuning): mean of the patch tokens → layer norm → linear,
 * cross-entropy, accuracy. Full fine-tuning (with the pretraining augmentations), or a linear probe: the
 * encoder frozen, its mean-pooled features computed once, and only the head trained.
 */
import { mapExamples } from "../train/inference.js";
import { nn as jnn, numpy as np, random } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import { HostRng } from "../engine/random.js";
import { initLayerNorm, initLinear } from "../nn/init.js";
import { layerNorm, linear, type LayerNormParams, type LinearParams } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import { fitHead, headPredictions, type ProbeSettings } from "../train/probe.js";
import { labelArrays, layerDecayScale, trainClassifier, type FinetuneBase, type Trained, type TrainingHooks } from "../train/finetune.js";
import { augmentImage, prepareImage } from "./augment.js";
import type { VisionRunConfig } from "./config.js";
import type { Image, LabeledImages } from "./images.js";
import { encodeImages, visionRelativeIndex, type VisionEncoderParams } from "./model.js";

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

/** The probe's layer-norm epsilon (the fine-tuning head uses the model's). */
const PROBE_LN_EPS = 1e-6;

function headLogits(head: VisionClassifierHead, pooled: np.Array, eps: number): np.Array {
  return linear(head.out, layerNorm(head.norm, pooled, eps));
}

/** Logits [B, C]. Consumes params and images; borrows the index (`visionRelativeIndex`, taken outside jitted code). */
export function visionLogits(p: VisionClassifierParams, images: np.Array, cfg: VisionRunConfig, keys: KeyStream | null, relativeIndex: np.Array | null): np.Array {
  return headLogits(p.head, meanPatchTokens(encodeImages(p.encoder, images, cfg.model, keys, relativeIndex)), cfg.model.layerNormEps);
}

type Inputs = { images: np.Array };
type Batch = Inputs & { labels: np.Array; weights: np.Array };

/** Normalized images (augmented when `rng` is given); rows past `rows` stay zero. */
function imageInputs(images: Image[], rows: number[], batchSize: number, cfg: VisionRunConfig, rng: HostRng | null): Inputs {
  const { imageSize: s, channels } = cfg.model;
  const per = channels * s * s;
  const pixels = new Float32Array(batchSize * per);
  rows.forEach((r, i) => pixels.set(rng ? augmentImage(images[r], s, cfg.augment, rng) : prepareImage(images[r], s, cfg.augment), i * per));
  return { images: np.array(pixels).reshape([batchSize, channels, s, s]) };
}

export type VisionFinetuneSettings = FinetuneBase & {
  /** Train on augmented views (the run config's augmentations). */
  augment: boolean;
  /** Layer-wise learning-rate decay (BEiT / data2vec: 0.65 at base size); 1 or absent: one rate for all. */
  layerDecay?: number;
};

const FINETUNE_ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8, clipNorm: 3 };

export async function finetuneVision(params: VisionClassifierParams, cfg: VisionRunConfig, train: LabeledImages, s: VisionFinetuneSettings, opts: TrainingHooks = {}): Promise<Trained<VisionClassifierParams>> {
  if (train.labels.length !== train.images.length) throw new DataError("every training image needs a label");
  const index = visionRelativeIndex(cfg.model);
  return trainClassifier<VisionClassifierParams, Batch>({
    params,
    examples: train.images.length,
    settings: s,
    adam: FINETUNE_ADAM,
    batch: (rows, rng) => ({
      ...imageInputs(train.images, rows, s.batchSize, cfg, s.augment ? rng : null),
      ...labelArrays(train.labels, rows, s.batchSize, train.classes.length),
    }),
    logits: (p, b, keys) => visionLogits(p, b.images, cfg, keys, index),
    ...(s.layerDecay !== undefined && s.layerDecay !== 1 ? { lrScale: layerDecayScale(cfg.model.layers, s.layerDecay) } : {}),
    ...opts,
  });
}

/**
 * Runs a jitted `forward(params, images)` over every image in fixed-size batches (no augmentation, no dropout)
 * and collects its first `width` outputs per image. Does not consume params.
 */
function mapImages<P>(params: P, cfg: VisionRunConfig, images: Image[], batchSize: number, width: number, forward: (p: P, images: np.Array, relativeIndex: np.Array | null) => np.Array): Promise<Float32Array> {
  const index = visionRelativeIndex(cfg.model);
  return mapExamples(params, images.length, batchSize, width, (rows) => imageInputs(images, rows, batchSize, cfg, null), (p, b) => forward(p, b.images, index));
}

/** Predicted class of every image. Does not consume params. */
export async function predictVision(params: VisionClassifierParams, cfg: VisionRunConfig, images: Image[], batchSize: number): Promise<number[]> {
  const pred = await mapImages(params, cfg, images, batchSize, 1, (p, x, index) => np.argmax(visionLogits(p, x, cfg, null, index), -1));
  return Array.from(pred);
}

/** Class probabilities [images × classes]. Does not consume params. */
export function classProbabilities(params: VisionClassifierParams, cfg: VisionRunConfig, images: Image[], batchSize: number, classes: number): Promise<Float32Array> {
  return mapImages(params, cfg, images, batchSize, classes, (p, x, index) => jnn.softmax(visionLogits(p, x, cfg, null, index), -1));
}

/** Mean-pooled final-block features [images × D] of a frozen encoder. Does not consume the encoder. */
export function imageFeatures(encoder: VisionEncoderParams, cfg: VisionRunConfig, images: Image[], batchSize: number): Promise<Float32Array> {
  return mapImages(encoder, cfg, images, batchSize, cfg.model.dim, (e, x, index) => meanPatchTokens(encodeImages(e, x, cfg.model, null, index)));
}

/**
 * Linear probe with the fine-tuning head (layer norm + linear) trained on frozen features (full batch, AdamW,
 * cosine schedule). Returns the head and its accuracy on the training features.
 */
export async function trainProbe(features: Float32Array, labels: number[], dim: number, classes: number, s: ProbeSettings): Promise<{ head: VisionClassifierHead; trainAccuracy: number }> {
  const logits = (h: VisionClassifierHead, x: np.Array) => headLogits(h, x, PROBE_LN_EPS);
  const head = fitHead(newVisionHead(s.seed, dim, classes), logits, features, labels, dim, classes, s);
  const pred = await headPredictions(head, logits, features, dim);
  return { head, trainAccuracy: pred.filter((p, i) => p === labels[i]).length / labels.length };
}

/** Probe predictions on frozen features. Does not consume the head. */
export function probePredict(head: VisionClassifierHead, features: Float32Array, dim: number): Promise<number[]> {
  return headPredictions(head, (h, x) => headLogits(h, x, PROBE_LN_EPS), features, dim);
}
