/**
 * The text run configuration (model, data2vec settings, masking, training) and its presets.
 * `tiny` is for tests and CI, `small` for demos on 2 cores, `base`/`large` follow the paper's text setup
 * (RoBERTa sizes, K = 10 of 12 blocks, layer-norm targets, Smooth L1 β = 4, 2-layer head, span masking).
 */
import { z } from "zod";
import { deepMerge } from "../config/validate.js";
import { DATA2VEC2_SETTINGS, encoderFields, PAPER_DATA2VEC_EXTRAS, FAIRSEQ_ADAM, TRAIN_DEFAULTS } from "../config/schemas.js";
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
    if (c.data2vec.objective === "data2vec2") {
      if (c.masking.kind !== "bert" || c.masking.randomTokenProb > 0 || c.masking.leaveUnmaskedProb > 0) {
        issue(["masking"], "data2vec 2.0 removes the masked tokens from the student's input: use kind bert (single tokens) with randomTokenProb and leaveUnmaskedProb 0");
      }
      const k = c.data2vec.v2?.decoder.kernel ?? 0;
      if (k > c.train.seqLen) issue(["data2vec", "v2", "decoder", "kernel"], `a decoder kernel of ${k} is longer than the ${c.train.seqLen}-token sequences; use at most ${c.train.seqLen}`);
    }
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

/**
 * data2vec 2.0 (fairseq `base_text_only_task.yaml`): instance-normalized FFN targets of every block, L2 loss with
 * scale 1, 48% of the tokens masked singly and removed from the student's input, 8 views per block (4 in the short
 * presets), a 1-D conv decoder (kernel 9, no residual) with a 2-layer projection; the teacher averages the blocks only.
 */
const V2_DATA2VEC: Partial<TextRunConfig["data2vec"]> = {
  ...DATA2VEC2_SETTINGS,
  targetNormAfterAverage: "none",
  lossScale: 1,
  emaShared: [],
};
const V2_MASKING: TextRunConfig["masking"] = { kind: "bert", ratio: 0.48, spanLength: 1, randomTokenProb: 0, leaveUnmaskedProb: 0 };
const v2Decoder = (dim: number, layers: number) => ({ dim, kernel: 9, groups: 1, layers, residual: false, projectionLayers: 2, projectionRatio: 2, maskNoiseStd: 0.01, inputDropout: 0.1 });

// 4 blocks × 4 views (16 student rows, as many tokens as v1's 8 × 128): 8 blocks × 4 views ran out of the 4 GiB heap.
const tinyV2: TextRunConfig = {
  ...tiny,
  preset: "tiny-v2",
  data2vec: { ...tiny.data2vec, ...V2_DATA2VEC, topK: tiny.model.layers, v2: { cloneBatch: 4, prenetDepth: 0, clsLoss: 0, decoder: v2Decoder(tiny.model.dim, 2) } },
  masking: V2_MASKING,
  train: { ...tiny.train, batchSize: 4 },
};
const smallV2: TextRunConfig = {
  ...small,
  preset: "small-v2",
  data2vec: { ...small.data2vec, ...V2_DATA2VEC, topK: small.model.layers, v2: { cloneBatch: 4, prenetDepth: 0, clsLoss: 0, decoder: v2Decoder(small.model.dim, 3) } },
  masking: V2_MASKING,
  train: { ...small.train, batchSize: 4 },
};
const baseV2: TextRunConfig = {
  ...base,
  preset: "base-v2",
  model: { ...base.model, attentionDropout: 0.1 },
  data2vec: {
    ...base.data2vec,
    ...V2_DATA2VEC,
    topK: 12,
    ema: { tauStart: 0.9999, tauEnd: 0.99999, annealSteps: 100000 },
    v2: { cloneBatch: 8, prenetDepth: 0, clsLoss: 0, decoder: v2Decoder(768, 5) },
  },
  masking: V2_MASKING,
  train: { ...base.train, steps: 600000, lr: 2e-4, warmupSteps: 4000 },
};

export const TEXT_PRESETS: Record<string, TextRunConfig> = { tiny, small, base, large, "tiny-v2": tinyV2, "small-v2": smallV2, "base-v2": baseV2 };

export const textRunConfig = runConfigKit("text", textRunSchema, TEXT_PRESETS, maskingProbToRatio);
export const resolveTextConfig = textRunConfig.resolve;
export const parseTextRunConfig = textRunConfig.parse;
