/**
 * The text run configuration (model, data2vec settings, masking, training) and its presets.
 * `tiny` is for tests and CI, `small` for demos on 2 cores, `base`/`large` follow the paper's text setup
 * (RoBERTa sizes, K = 10 of 12 blocks, layer-norm targets, Smooth L1 β = 4, 2-layer head, span masking).
 */
import { z } from "zod";
import { deepMerge } from "../config/validate.js";
import { encoderFields, PAPER_DATA2VEC_EXTRAS, FAIRSEQ_ADAM, TRAIN_DEFAULTS } from "../config/schemas.js";
import { maskingProbToRatio, refineRunConfig, runConfigKit, runConfigSchema } from "../config/run-config.js";

export const textRunSchema = runConfigSchema(
  "text",
  {
    model: z
      .object({
        vocabSize: z.number().int().min(261).max(65536),
        maxPositions: z.number().int().min(8),
        ...encoderFields,
        activationDropout: z.number().min(0).max(0.9),
      })
      .strict(),
    masking: z
      .object({
        kind: z.enum(["bert", "span"]),
        /**
         * Expected fraction of the (non-special) tokens masked. "bert" chooses that many tokens; "span" draws span
         * starts with fairseq's mask_prob = spanLength · (1 − (1 − ratio)^(1/spanLength)), spans overlapping.
         */
        ratio: z.number().gt(0).lt(1),
        spanLength: z.number().int().min(1),
        randomTokenProb: z.number().min(0).max(1),
        leaveUnmaskedProb: z.number().min(0).max(1),
      })
      .strict(),
  },
  { seqLen: z.number().int().min(8) },
).superRefine(
  refineRunConfig((c, issue) => {
    if (c.train.seqLen > c.model.maxPositions) issue(["train", "seqLen"], `sequence length ${c.train.seqLen} exceeds model.maxPositions ${c.model.maxPositions}`);
    if (c.masking.randomTokenProb + c.masking.leaveUnmaskedProb >= 1) issue(["masking"], "randomTokenProb + leaveUnmaskedProb must stay below 1");
    if (c.masking.kind === "bert" && c.masking.spanLength !== 1) issue(["masking", "spanLength"], "BERT masking chooses single tokens and ignores spanLength: set it to 1, or choose kind span");
  }),
);

export type TextRunConfig = z.infer<typeof textRunSchema>;

const tiny: TextRunConfig = {
  modality: "text",
  preset: "tiny",
  model: {
    vocabSize: 8000,
    maxPositions: 128,
    dim: 256,
    layers: 4,
    heads: 4,
    ffnDim: 1024,
    dropout: 0.1,
    attentionDropout: 0.1,
    activationDropout: 0.0,
    layerNormEps: 1e-5,
  },
  data2vec: {
    topK: 4,
    targetLayer: "ffn",
    targetNorm: "layer",
    targetNormAfterAverage: "none",
    loss: "smooth_l1",
    lossBeta: 4,
    lossScale: 1,
    headLayers: 2,
    // Short runs need a faster teacher than the paper's 0.999 → 0.9999 over 100k updates.
    ema: { tauStart: 0.99, tauEnd: 0.999, annealSteps: 1000 },
    minTargetVar: 0.1,
    minPredVar: 0.01,
    collapseWarmupSteps: 500,
    ...PAPER_DATA2VEC_EXTRAS,
  },
  // fairseq's data2vec text masking (mask_prob 0.35 in spans of 4), as the fraction of tokens it masks.
  masking: { kind: "span", ratio: 0.31, spanLength: 4, randomTokenProb: 0, leaveUnmaskedProb: 0 },
  train: { ...TRAIN_DEFAULTS, batchSize: 8, seqLen: 128, steps: 300, lr: 5e-4, warmupSteps: 30, weightDecay: 0.01, ...FAIRSEQ_ADAM, clipNorm: 5, checkpointEvery: 100 },
};

// Sized so that pretraining fits in 20 minutes on 2 cores (≈3 s per update, see docs/results/bench.md).
const small: TextRunConfig = deepMerge(tiny, {
  preset: "small",
  model: { layers: 6 },
  data2vec: { topK: 4, ema: { tauStart: 0.99, tauEnd: 0.999, annealSteps: 380 } },
  train: { steps: 380, warmupSteps: 40, checkpointEvery: 50 },
});

const base: TextRunConfig = deepMerge(tiny, {
  preset: "base",
  model: { vocabSize: 50265, maxPositions: 512, dim: 768, layers: 12, heads: 12, ffnDim: 3072, activationDropout: 0 },
  data2vec: { topK: 10, ema: { tauStart: 0.999, tauEnd: 0.9999, annealSteps: 100000 }, collapseWarmupSteps: 5000 },
  train: { batchSize: 256, seqLen: 512, steps: 1000000, lr: 2e-4, warmupSteps: 10000, checkpointEvery: 5000 },
});

const large: TextRunConfig = deepMerge(base, {
  preset: "large",
  model: { dim: 1024, layers: 24, heads: 16, ffnDim: 4096 },
  data2vec: { topK: 20 },
});

export const TEXT_PRESETS: Record<string, TextRunConfig> = { tiny, small, base, large };

export const textRunConfig = runConfigKit("text", textRunSchema, TEXT_PRESETS, maskingProbToRatio);
export const resolveTextConfig = textRunConfig.resolve;
export const parseTextRunConfig = textRunConfig.parse;
