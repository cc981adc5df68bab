/** data2vec pretraining on unlabeled images: folder (or MNIST) → augmented views + block masks, through `runPretraining`. */
import { numpy as np } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import type { HostRng } from "../engine/random.js";
import { exampleBatches, runPretraining, type PretrainAdapter, type PretrainRunOptions, type PretrainRunResult } from "../train/pretrain-runner.js";
import { augmentImage } from "./augment.js";
import { gridSize, visionRunConfig, type VisionRunConfig } from "./config.js";
import { mnistSplits, readImageDir, withChannels, type Image } from "./images.js";
import { blockMask } from "./masking.js";
import { initVisionData2Vec, visionModality, type VisionPretrainBatch, type VisionShared } from "./model.js";

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

/** Images for the pretraining runner: a folder or MNIST's training digits, at the model's channels. */
export function visionPretraining(): PretrainAdapter<VisionRunConfig, Image, VisionShared, VisionPretrainBatch> {
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
      return {
        cfg,
        modality: visionModality(cfg.model),
        init: (seed) => initVisionData2Vec(cfg, seed),
        batches: exampleBatches(images.length, cfg.train.batchSize, { item: "images", unit: "img" }, (rows, rng) => ({ batch: imageBatch(images, rows, cfg, rng), units: rows.length })),
      };
    },
  };
}

export async function pretrainVision(o: VisionPretrainOptions): Promise<PretrainRunResult> {
  return runPretraining(visionPretraining(), { ...o, given: o.images });
}
