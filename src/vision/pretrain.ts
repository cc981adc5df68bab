/** data2vec pretraining on unlabeled images: folder (or MNIST) → augmented views + block masks, through `runPretraining`. */
import { numpy as np } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import type { HostRng } from "../engine/random.js";
import { anyPrepared, exampleBatches, runPretraining, type PretrainAdapter, type PretrainRunOptions, type PretrainRunResult } from "../train/pretrain-runner.js";
import type { ParamTree } from "../engine/tree.js";
import { data2vecObjective } from "../data2vec/step.js";
import { initLinear } from "../nn/init.js";
import { data2vec2Objective, settingsV2, viewArrays, type Data2Vec2Params } from "../data2vec2/model.js";
import { imageModality2, imageV2Config, initContext, initData2Vec2, type ImageLocal, type ImageV2Batch } from "../data2vec2/modalities.js";
import { inverseBlockMask } from "../data2vec2/masking.js";
import { viewLayout } from "../data2vec2/views.js";
import { v2UpdateShape } from "../data2vec2/decoder.js";
import type { V2StepShape } from "../train/memory-plan.js";
import { augmentImage } from "./augment.js";
import { gridSize, visionRunConfig, type VisionRunConfig } from "./config.js";
import { mnistSplits, readImageDir, withChannels, type Image } from "./images.js";
import { blockMask } from "./masking.js";
import { initVisionData2Vec, visionModality, type VisionPretrainBatch } from "./model.js";

export type VisionPretrainOptions = Omit<PretrainRunOptions<VisionRunConfig, Image>, "given"> & {
  /** Images given directly (instead of `data`: a folder of images; the MNIST training digits by default). */
  images?: Image[];
};

/** A batch of augmented views of these images, one block mask each, all drawn from `rng`. */
export function imageBatch(images: Image[], rows: number[], cfg: VisionRunConfig, rng: HostRng): VisionPretrainBatch {
  const { imageSize, channels } = cfg.model;
  const g = gridSize(cfg.model);
  const pixels = new Float32Array(rows.length * channels * imageSize * imageSize);
  const mask = new Float32Array(rows.length * g * g);
  rows.forEach((r, i) => {
    pixels.set(augmentImage(images[r], imageSize, cfg.augment, rng), i * channels * imageSize * imageSize);
    mask.set(blockMask(g, g, cfg.masking, rng), i * g * g);
  });
  return {
    images: np.array(pixels).reshape([rows.length, channels, imageSize, imageSize]),
    mask: np.array(mask).reshape([rows.length, g * g]),
  };
}

/**
 * A data2vec 2.0 batch: one augmented view of each image (the teacher's input), and `cloneBatch` inverse block
 * masks of it for the student.
 */
export function imageViewsBatch(images: Image[], rows: number[], cfg: VisionRunConfig, rng: HostRng): ImageV2Batch {
  const { imageSize, channels } = cfg.model;
  const g = gridSize(cfg.model);
  const clones = settingsV2(cfg.data2vec).cloneBatch;
  const pixels = new Float32Array(rows.length * channels * imageSize * imageSize);
  const mask = new Uint8Array(rows.length * clones * g * g);
  rows.forEach((r, i) => {
    pixels.set(augmentImage(images[r], imageSize, cfg.augment, rng), i * channels * imageSize * imageSize);
    for (let c = 0; c < clones; c++) mask.set(inverseBlockMask(g, cfg.masking, rng), (i * clones + c) * g * g);
  });
  return {
    images: np.array(pixels).reshape([rows.length, channels, imageSize, imageSize]),
    views: viewArrays(viewLayout(mask, rows.length, clones, g * g)),
  };
}

/** Fresh data2vec 2.0 parameters for images: patch embedding, CLS + norm + prenet blocks, blocks, 2-D decoder. */
export function initVisionData2Vec2(cfg: VisionRunConfig, seed: number): Data2Vec2Params<ImageLocal> {
  const m = cfg.model;
  const v2 = settingsV2(cfg.data2vec);
  const g = gridSize(m);
  return initData2Vec2(seed, {
    local: (keys) => ({ patch: initLinear(keys, m.channels * m.patchSize * m.patchSize, m.dim) }),
    context: (keys) => initContext(keys, { dim: m.dim, ffnDim: m.ffnDim, extraTokens: 1, norm: true, prenet: v2.prenetDepth ?? 0 }),
    dim: m.dim,
    ffnDim: m.ffnDim,
    layers: m.layers,
    decoder: v2.decoder,
    decoderShape: { kind: "2d", height: g, width: g },
  });
}

/** The teacher of images averages everything but the decoder (fairseq ema_local_encoder). */
export const IMAGE_V2_EMA_SHARED = ["local", "context"];

/** Images for the pretraining runner: a folder or MNIST's training digits, at the model's channels. */
export function visionPretraining(): PretrainAdapter<VisionRunConfig, Image, ParamTree, unknown> {
  return {
    config: visionRunConfig,
    describe: ({ model: m, train }) => `${m.layers} layers × ${m.dim}, ${m.imageSize}² images in ${m.patchSize}² patches, ${train.steps} updates of ${train.batchSize} images`,
    dataName: "image set",
    givenName: "images",
    defaultSource: { mnist: true },
    async load(cfg, source, given, log) {
      const m = cfg.model;
      let images: Image[];
      if ("caller" in source) images = given ?? [];
      else if ("path" in source) images = await readImageDir(source.path as string, { channels: m.channels, size: m.imageSize, minSide: m.patchSize });
      else images = mnistSplits().train.images;
      if (images.length < cfg.train.batchSize) {
        throw new DataError(`${images.length} images are fewer than one batch (${cfg.train.batchSize}); add images or lower train.batchSize`);
      }
      log(`${images.length} unlabeled images (${"mnist" in source ? "MNIST training digits" : "path" in source ? source.path : "given by the caller"})`);
      return images.map((img) => withChannels(img, m.channels));
    },
    prepare(cfg, images) {
      if (cfg.data2vec.objective === "data2vec2") {
        return anyPrepared({
          cfg,
          loss: data2vec2Objective(imageModality2(imageV2Config(cfg.model)), cfg.data2vec),
          init: (seed) => initVisionData2Vec2(cfg, seed),
          batches: exampleBatches(images.length, cfg.train.batchSize, { item: "images", unit: "img" }, (rows, rng) => ({ batch: imageViewsBatch(images, rows, cfg, rng), units: rows.length })),
          v2Shape: visionV2Shape(cfg),
        });
      }
      return anyPrepared({
        cfg,
        loss: data2vecObjective(visionModality(cfg.model), cfg.data2vec),
        init: (seed) => initVisionData2Vec(cfg, seed),
        batches: exampleBatches(images.length, cfg.train.batchSize, { item: "images", unit: "img" }, (rows, rng) => ({ batch: imageBatch(images, rows, cfg, rng), units: rows.length })),
      });
    },
  };
}

/** A data2vec 2.0 update of a run for the memory plan: the CLS token rides with the visible patches. */
function visionV2Shape(cfg: VisionRunConfig): Omit<V2StepShape, "params"> {
  const g = gridSize(cfg.model);
  const steps = g * g;
  return v2UpdateShape({
    samples: cfg.train.batchSize,
    v2: settingsV2(cfg.data2vec),
    encoder: cfg.model,
    steps,
    visible: steps - Math.round(steps * cfg.masking.ratio),
    extra: 1,
    decoderShape: { kind: "2d", height: g, width: g },
  });
}

export async function pretrainVision(o: VisionPretrainOptions): Promise<PretrainRunResult> {
  return runPretraining(visionPretraining(), { ...o, given: o.images });
}
