/**
 * The vision run configuration (ViT with BEiT blocks, data2vec settings, block masking, augmentation,
 * training) and its presets. `tiny` is for tests and quick runs, `small` for MNIST demos on 2 cores,
 * `base` follows the paper's ViT-B/16 setup (K = 6 of 12 block outputs, layer norm per layer and after the
 * average, Smooth L1 β = 2, shared relative position bias, ~60% of the patches masked in blocks).
 */
import { z } from "zod";
import { deepMerge } from "../config/validate.js";
import { DATA2VEC2_SETTINGS, encoderFields, PAPER_DATA2VEC_EXTRAS, TRAIN_DEFAULTS } from "../config/schemas.js";
import { refineRunConfig, runConfigKit, runConfigSchema } from "../config/run-config.js";

const range = z.tuple([z.number(), z.number()]);

export const visionRunSchema = runConfigSchema(
  "vision",
  {
    model: z
      .object({
        imageSize: z.number().int().min(4),
        patchSize: z.number().int().min(1),
        channels: z.union([z.literal(1), z.literal(3)]),
        ...encoderFields,
        /** Initial value of the per-channel layer scale λ (0 turns layer scale off). */
        layerScale: z.number().min(0),
        relativePositionBias: z.enum(["shared", "per_layer", "none"]),
        absolutePositions: z.boolean(),
      })
      .strict(),
    masking: z
      .object({
        /**
         * "blockwise": BEiT's rectangles of masked patches (data2vec); "inverse_block": blocks of `blockLength`²
         * VISIBLE patches, everything else masked, the same count in every image (data2vec 2.0).
         */
        kind: z.enum(["blockwise", "inverse_block"]).default("blockwise"),
        /** Fraction of the patches to mask (BEiT: 120 of 196 ≈ 0.6; data2vec 2.0: 0.8). */
        ratio: z.number().gt(0).lt(1),
        /** inverse_block: side of the visible blocks, in patches. */
        blockLength: z.number().int().min(1).default(3),
        /** inverse_block: extra block centres drawn, as a fraction of the grid (fairseq mask_prob_adjust). */
        probAdjust: z.number().min(0).max(1).default(0.07),
        /** Smallest block in patches; null scales BEiT's 16 (of a 14×14 grid) to the grid. */
        minBlockPatches: z.number().int().min(1).nullable(),
        minAspect: z.number().gt(0).max(1),
      })
      .strict(),
    augment: z
      .object({
        /** Random resized crop: area fraction and aspect ratio ranges (null turns the crop off). */
        cropScale: range.nullable(),
        cropRatio: range,
        flipProb: z.number().min(0).max(1),
        /** Color jitter strengths: factors drawn uniformly in [1 − s, 1 + s]. */
        brightness: z.number().min(0).max(1),
        contrast: z.number().min(0).max(1),
        saturation: z.number().min(0).max(1),
        mean: z.array(z.number()),
        std: z.array(z.number().positive()),
      })
      .strict(),
  },
  {},
).superRefine(
  refineRunConfig((c, issue) => {
    const m = c.model;
    if (m.imageSize % m.patchSize !== 0) issue(["model", "patchSize"], `image size ${m.imageSize} must be a multiple of the patch size ${m.patchSize}`);
    for (const k of ["mean", "std"] as const) {
      if (c.augment[k].length !== m.channels) issue(["augment", k], `needs one value per channel (${m.channels})`);
    }
    const patches = gridSize(m) ** 2;
    if (c.masking.kind === "inverse_block" && Math.floor(patches * (1 - c.masking.ratio)) < 1) {
      issue(["masking", "ratio"], `masking ${c.masking.ratio} of ${patches} patches leaves none visible; use at most ${(1 - 1 / patches).toFixed(3)}`);
    }
    if (c.data2vec.objective === "data2vec2") {
      if (c.masking.kind !== "inverse_block") issue(["masking", "kind"], "data2vec 2.0 needs the same number of masked patches in every view: use inverse_block");
      if (m.layerScale !== 0 || m.relativePositionBias !== "none" || m.absolutePositions) {
        issue(["model"], "data2vec 2.0's image encoder has post-LN blocks and fixed sin-cos positions: set layerScale 0, relativePositionBias none, absolutePositions false");
      }
      const k = c.data2vec.v2?.decoder.kernel ?? 0;
      if (k > gridSize(m)) issue(["data2vec", "v2", "decoder", "kernel"], `a ${k}×${k} decoder kernel is wider than the ${gridSize(m)}×${gridSize(m)} patch grid; use at most ${gridSize(m)}`);
    }
    const s = c.augment.cropScale;
    if (s && !(s[0] > 0 && s[0] <= s[1] && s[1] <= 1)) issue(["augment", "cropScale"], "needs 0 < min ≤ max ≤ 1");
    const r = c.augment.cropRatio;
    if (!(r[0] > 0 && r[0] <= r[1])) issue(["augment", "cropRatio"], "needs 0 < min ≤ max");
  }),
);

export type VisionRunConfig = z.infer<typeof visionRunSchema>;
export type AugmentConfig = VisionRunConfig["augment"];

// MNIST statistics (mean and std of the pixel values in [0, 1]).
const MNIST_MEAN = 0.1307;
const MNIST_STD = 0.3081;

const tiny: VisionRunConfig = {
  modality: "vision",
  preset: "tiny",
  model: {
    imageSize: 28,
    patchSize: 7,
    channels: 1,
    dim: 64,
    layers: 2,
    heads: 2,
    ffnDim: 256,
    layerScale: 0.1,
    relativePositionBias: "shared",
    absolutePositions: false,
    dropout: 0,
    attentionDropout: 0,
    layerNormEps: 1e-6,
  },
  data2vec: {
    topK: 2,
    // FFN outputs, as for text and speech: on MNIST they gave better features than block outputs (the
    // official vision choice, kept in `base`) in short runs; see docs/results/vision-mnist.md.
    targetLayer: "ffn",
    targetNorm: "layer",
    targetNormAfterAverage: "layer",
    loss: "smooth_l1",
    lossBeta: 2,
    lossScale: null,
    headLayers: 1,
    // Short runs need a faster teacher than the paper's constant 0.9998 over 800 epochs.
    ema: { tauStart: 0.99, tauEnd: 0.999, annealSteps: 300 },
    minTargetVar: 0,
    minPredVar: 0,
    collapseWarmupSteps: 0,
    ...PAPER_DATA2VEC_EXTRAS,
  },
  masking: { kind: "blockwise", ratio: 0.6, minBlockPatches: null, minAspect: 0.3, blockLength: 3, probAdjust: 0.07 },
  // Digits: no flips (a mirrored 2 is not a 2), mild crops, brightness/contrast jitter.
  augment: { cropScale: [0.7, 1], cropRatio: [3 / 4, 4 / 3], flipProb: 0, brightness: 0.2, contrast: 0.2, saturation: 0, mean: [MNIST_MEAN], std: [MNIST_STD] },
  train: { ...TRAIN_DEFAULTS, batchSize: 32, steps: 300, lr: 1e-3, warmupSteps: 30, weightDecay: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, clipNorm: 3, checkpointEvery: 100 },
};

// Six blocks on MNIST's 4×4 grid of 7-pixel patches; sized so that pretraining takes about 20 minutes on 2 cores.
const small: VisionRunConfig = deepMerge(tiny, {
  preset: "small",
  model: { dim: 128, layers: 6, heads: 4, ffnDim: 512 },
  data2vec: { topK: 3, ema: { tauStart: 0.99, tauEnd: 0.999, annealSteps: 2000 } },
  train: { steps: 2000, warmupSteps: 150, checkpointEvery: 100 },
});

const base: VisionRunConfig = {
  ...tiny,
  preset: "base",
  model: { ...tiny.model, imageSize: 224, patchSize: 16, channels: 3, dim: 768, layers: 12, heads: 12, ffnDim: 3072, layerScale: 1e-4, attentionDropout: 0.05 },
  data2vec: { ...tiny.data2vec, topK: 6, targetLayer: "end", ema: { tauStart: 0.9998, tauEnd: 0.9998, annealSteps: 0 } },
  augment: { cropScale: [0.08, 1], cropRatio: [3 / 4, 4 / 3], flipProb: 0.5, brightness: 0.4, contrast: 0.4, saturation: 0.4, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  train: { ...tiny.train, batchSize: 2048, steps: 500000, lr: 2e-3, warmupSteps: 6250, checkpointEvery: 5000 },
};

/**
 * data2vec 2.0 (fairseq `base_images_only_task.yaml`): post-LN blocks with fixed sin-cos positions and a CLS token,
 * instance-normalized FFN targets of all main blocks, layer-normed after the average, L2 loss, a CLS loss of 0.01,
 * 80% of the patches masked around visible 3×3 blocks, 16 views per image, a 2-D conv decoder. On MNIST's 28-pixel
 * digits the small presets use 4-pixel patches (a 7×7 grid, so a 3×3 block fits).
 */
const V2_MODEL = { layerScale: 0, relativePositionBias: "none", absolutePositions: false } as const;
const V2_DATA2VEC: Partial<VisionRunConfig["data2vec"]> = {
  ...DATA2VEC2_SETTINGS,
  targetNormAfterAverage: "layer",
  lossScale: null,
  // The teacher averages its own patch embedding, CLS token and context encoder (fairseq ema_local_encoder).
  emaShared: ["local", "context"],
};
const V2_MASKING = { kind: "inverse_block", ratio: 0.8, minBlockPatches: null, minAspect: 0.3, blockLength: 3, probAdjust: 0.07 } as const;

const tinyV2: VisionRunConfig = {
  ...tiny,
  preset: "tiny-v2",
  model: { ...tiny.model, ...V2_MODEL, patchSize: 4 },
  data2vec: {
    ...tiny.data2vec,
    ...V2_DATA2VEC,
    // On MNIST most patches are blank background, and the fixed sin-cos positions make the teacher's targets almost
    // pure position: their position share measured 0.997 over a 6-minute run, and the probe fell as training went on.
    removePositionMean: true,
    v2: { cloneBatch: 4, prenetDepth: 0, clsLoss: 0.01, decoder: { dim: 32, kernel: 3, groups: 16, layers: 2, residual: true, projectionLayers: 1, projectionRatio: 2, maskNoiseStd: 0.01, inputDropout: 0 } },
  },
  masking: V2_MASKING,
  train: { ...tiny.train, batchSize: 16 },
};

const smallV2: VisionRunConfig = {
  ...small,
  preset: "small-v2",
  model: { ...small.model, ...V2_MODEL, patchSize: 4, layers: 5 },
  data2vec: {
    ...small.data2vec,
    ...V2_DATA2VEC,
    removePositionMean: true,
    topK: 5,
    ema: { ...small.data2vec.ema, annealSteps: 2400 },
    v2: { cloneBatch: 4, prenetDepth: 1, clsLoss: 0.01, decoder: { dim: 64, kernel: 3, groups: 16, layers: 3, residual: true, projectionLayers: 1, projectionRatio: 2, maskNoiseStd: 0.01, inputDropout: 0 } },
  },
  masking: V2_MASKING,
  // 2,400 updates of 8 images × 4 views (about 35 minutes on one core of the native engine, beside another job): the
  // pretraining measured in docs/results/pretraining-helps.md (MNIST and Fashion-MNIST with 8–10 labels per class).
  train: { ...small.train, batchSize: 32, steps: 2400, warmupSteps: 180 },
};

const baseV2: VisionRunConfig = {
  ...base,
  preset: "base-v2",
  model: { ...base.model, ...V2_MODEL, layers: 10, attentionDropout: 0 },
  data2vec: {
    ...base.data2vec,
    ...V2_DATA2VEC,
    topK: 10,
    ema: { tauStart: 0.9998, tauEnd: 0.99999, annealSteps: 100000 },
    v2: { cloneBatch: 16, prenetDepth: 2, clsLoss: 0.01, decoder: { dim: 768, kernel: 3, groups: 16, layers: 6, residual: true, projectionLayers: 1, projectionRatio: 2, maskNoiseStd: 0.01, inputDropout: 0 } },
  },
  masking: V2_MASKING,
  train: { ...base.train, batchSize: 512, steps: 375000, lr: 1e-3, warmupSteps: 50040 },
};

export const VISION_PRESETS: Record<string, VisionRunConfig> = { tiny, small, base, "tiny-v2": tinyV2, "small-v2": smallV2, "base-v2": baseV2 };

export const visionRunConfig = runConfigKit("vision", visionRunSchema, VISION_PRESETS);
export const resolveVisionConfig = visionRunConfig.resolve;
export const parseVisionRunConfig = visionRunConfig.parse;

/** Patches per side. */
export function gridSize(m: VisionRunConfig["model"]): number {
  return m.imageSize / m.patchSize;
}
