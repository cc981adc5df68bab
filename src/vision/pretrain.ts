/** data2vec pretraining on unlabeled images: folder (or MNIST) → augmented views + block masks → `pretrain`. */
import { join, resolve } from "node:path";
import { numpy as np, tree } from "../engine/jax.js";
import { ConfigError, DataError, type StopSignal } from "../engine/errors.js";
import { HostRng } from "../engine/random.js";
import { firstEpoch, freshPretrainState, nextRows, openPretrainRun, type EpochOrder, loadPretrainState, pretrain, runSetup, type PretrainData, type PretrainRecord } from "../train/pretrain.js";
import { augmentImage } from "./augment.js";
import { gridSize, parseVisionRunConfig, type VisionRunConfig } from "./config.js";
import { mnistSplits, readImageDir, withChannels, type Image } from "./images.js";
import { blockMask } from "./masking.js";
import { initVisionData2Vec, relativeIndexArray, visionModality, type VisionPretrainBatch } from "./model.js";

export type VisionPretrainOptions = {
  config: VisionRunConfig;
  /** A folder of images (recursive); the MNIST training digits when absent. */
  data?: string;
  /** Images given directly (instead of `data`). */
  images?: Image[];
  outDir: string;
  resume?: boolean;
  resumeSteps?: number;
  force?: boolean;
  quiet?: boolean;
  stopAfter?: number;
  onUpdate?: (record: PretrainRecord) => void;
  log?: (msg: string) => void;
};

type ImageSource = { path: string } | { mnist: true } | { caller: true };
type StreamState = EpochOrder & { rng: number[]; source: ImageSource };

/** Shuffled epochs of augmented images with one block mask each; everything drawn from a resumable RNG. */
export class ImageStream implements PretrainData<VisionPretrainBatch> {
  unitName = "img";
  unitsPerBatch: number;
  #s: StreamState;
  constructor(
    private images: Image[],
    private cfg: VisionRunConfig,
    saved: StreamState | null,
    source: ImageSource,
  ) {
    this.unitsPerBatch = cfg.train.batchSize;
    if (saved) this.#s = structuredClone(saved);
    else {
      const rng = HostRng.seeded(cfg.train.seed);
      this.#s = { ...firstEpoch(images.length, rng), rng: rng.state(), source };
    }
  }
  next(): VisionPretrainBatch {
    const { batchSize } = this.cfg.train;
    const { imageSize, channels } = this.cfg.model;
    const g = gridSize(this.cfg.model);
    const rng = HostRng.fromState(this.#s.rng);
    const rows = nextRows(this.#s, batchSize, rng);
    const pixels = new Float32Array(batchSize * channels * imageSize * imageSize);
    const mask = new Float32Array(batchSize * g * g);
    rows.forEach((r, i) => {
      pixels.set(augmentImage(this.images[r], imageSize, this.cfg.augment, rng), i * channels * imageSize * imageSize);
      mask.set(blockMask(g, g, this.cfg.masking, rng), i * g * g);
    });
    this.#s.rng = rng.state();
    const batch: VisionPretrainBatch = {
      images: np.array(pixels).reshape([batchSize, channels, imageSize, imageSize]),
      mask: np.array(mask).reshape([batchSize, g * g]),
    };
    const index = relativeIndexArray(this.cfg.model, true);
    if (index) batch.relativeIndex = index;
    return batch;
  }
  state(): StreamState {
    return structuredClone(this.#s);
  }
}

/** The unlabeled training images of a source, at the model's channels (MNIST: the training pool only). */
export async function loadPretrainImages(cfg: VisionRunConfig, source: ImageSource, images?: Image[]): Promise<Image[]> {
  const m = cfg.model;
  let out: Image[];
  if ("caller" in source) {
    if (!images) throw new ConfigError("this run was started with images passed through the API; pass the same `images` to resume it");
    out = images;
  } else if ("path" in source) out = await readImageDir(source.path, { channels: m.channels, size: m.imageSize, minSide: m.patchSize });
  else out = mnistSplits().train.images;
  return out.map((img) => withChannels(img, m.channels));
}

export async function pretrainVision(o: VisionPretrainOptions): Promise<{ records: PretrainRecord[]; checkpoint: string; interrupted: StopSignal | null }> {
  const log = o.log ?? (() => {});
  const { ckpt, saved } = openPretrainRun(o.outDir, o);
  let cfg = o.config;
  if (saved) {
    const savedConfig = parseVisionRunConfig(saved.config, join(ckpt, "config.json"));
    cfg = { ...savedConfig, train: { ...savedConfig.train, steps: o.resumeSteps ?? savedConfig.train.steps } };
  }
  // On resume the data is what the run started with (unless the caller passes it again).
  const savedSource = (saved?.source ?? null) as ImageSource | null;
  const source: ImageSource = o.images ? { caller: true } : o.data ? { path: resolve(o.data) } : (savedSource ?? { mnist: true });
  const images = await loadPretrainImages(cfg, source, o.images);
  if (images.length < cfg.train.batchSize) {
    throw new DataError(`${images.length} images are fewer than one batch (${cfg.train.batchSize}); add images or lower train.batchSize`);
  }
  log(`${images.length} unlabeled images (${"mnist" in source ? "MNIST training digits" : "path" in source ? source.path : "given by the caller"})`);

  const fresh = initVisionData2Vec(cfg, cfg.train.seed);
  let state;
  let dataState: StreamState | null = null;
  if (o.resume) {
    const loaded = loadPretrainState(ckpt, fresh, cfg.data2vec.emaShared);
    state = loaded.state;
    dataState = loaded.data as StreamState;
    if (dataState.order.length !== images.length) {
      throw new DataError(`the image set changed since the checkpoint was written (${dataState.order.length} images then, ${images.length} now); resume with the original --data or start a new run`);
    }
    log(`resuming at update ${state.step} of ${cfg.train.steps} with the run's saved settings${o.resumeSteps !== undefined ? ` (--steps ${o.resumeSteps} applied)` : ""}`);
  } else state = freshPretrainState(fresh, cfg.data2vec.emaShared);

  const result = await pretrain(
    runSetup(visionModality(cfg.model), cfg, { outDir: o.outDir, quiet: o.quiet, stopAfter: o.stopAfter, onUpdate: o.onUpdate, log: o.log }),
    state,
    new ImageStream(images, cfg, dataState, source),
  );
  tree.dispose(result.state as never);
  return { records: result.records, checkpoint: ckpt, interrupted: result.interrupted };
}
