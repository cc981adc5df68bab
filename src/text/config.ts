/**
 * The text run configuration (model, data2vec settings, masking, training) and its presets.
 * `tiny` is for tests and CI, `small` for demos on 2 cores, `base`/`large` follow the paper's text setup
 * (RoBERTa sizes, K = 10 of 12 blocks, layer-norm targets, Smooth L1 β = 4, 2-layer head, span masking).
 */
import { DEFAULT_DIVERGENCE } from "../data2vec/monitor.js";
import { z } from "zod";
import { ConfigError } from "../engine/errors.js";
import { CheckpointError } from "../engine/errors.js";
import { deepMerge, validate } from "../config/validate.js";
import { data2vecSchema, trainFields } from "../config/schemas.js";


export const textRunSchema = z
  .object({
    modality: z.literal("text"),
    preset: z.string(),
    model: z
      .object({
        vocabSize: z.number().int().min(261).max(65536),
        maxPositions: z.number().int().min(8),
        dim: z.number().int().min(8),
        layers: z.number().int().min(1),
        heads: z.number().int().min(1),
        ffnDim: z.number().int().min(8),
        dropout: z.number().min(0).max(0.9),
        attentionDropout: z.number().min(0).max(0.9),
        activationDropout: z.number().min(0).max(0.9),
        layerNormEps: z.number().positive(),
      })
      .strict(),
    data2vec: data2vecSchema,
    masking: z
      .object({
        kind: z.enum(["bert", "span"]),
        prob: z.number().gt(0).lt(1),
        spanLength: z.number().int().min(1),
        randomTokenProb: z.number().min(0).max(1),
        leaveUnmaskedProb: z.number().min(0).max(1),
      })
      .strict(),
    train: z.object({ ...trainFields, seqLen: z.number().int().min(8), }).strict(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    if (c.model.dim % c.model.heads !== 0) issue(["model", "heads"], `width ${c.model.dim} must be divisible by heads (${c.model.heads})`);
    if (c.data2vec.topK > c.model.layers) issue(["data2vec", "topK"], `K = ${c.data2vec.topK} exceeds the ${c.model.layers} layers`);
    if (c.train.seqLen > c.model.maxPositions) issue(["train", "seqLen"], `sequence length ${c.train.seqLen} exceeds model.maxPositions ${c.model.maxPositions}`);
    if (c.masking.randomTokenProb + c.masking.leaveUnmaskedProb >= 1) issue(["masking"], "randomTokenProb + leaveUnmaskedProb must stay below 1");
    if (c.data2vec.ema.tauStart > c.data2vec.ema.tauEnd) issue(["data2vec", "ema", "tauStart"], "τ0 must not exceed τe (τ rises)");
  });

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
    teacherContext: null,
    maxPositionShare: null,
    removePositionMean: false,
    targetNormPadding: "exclude",
    emaShared: [],
    divergence: { ...DEFAULT_DIVERGENCE },
  },
  masking: { kind: "span", prob: 0.35, spanLength: 4, randomTokenProb: 0, leaveUnmaskedProb: 0 },
  train: {
    batchSize: 8,
    seqLen: 128,
    steps: 300,
    accumSteps: 1,
    lr: 5e-4,
    schedule: "cosine",
    warmupSteps: 30,
    minLr: 0,
    weightDecay: 0.01,
    beta1: 0.9,
    beta2: 0.98,
    eps: 1e-6,
    clipNorm: 5,
    seed: 1,
    checkpointEvery: 100,
  },
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

/** Preset, then a config file's partial config, then command-line overrides; validated once at the end. */
export function resolveTextConfig(preset: string, fileConfig?: unknown, overrides?: unknown, source = "the configuration"): TextRunConfig {
  const presetConfig = TEXT_PRESETS[preset];
  if (!presetConfig) throw new ConfigError(`unknown preset "${preset}"; choose one of ${Object.keys(TEXT_PRESETS).join(", ")}`);
  const merged = deepMerge(deepMerge(presetConfig, fileConfig), overrides);
  return validate(textRunSchema, merged, source);
}

/** The run config stored in a checkpoint's config.json (its `kind` field aside), validated. */
export function parseTextRunConfig(raw: unknown, path: string): TextRunConfig {
  const { kind: _kind, ...rest } = (raw ?? {}) as { kind?: string };
  const r = textRunSchema.safeParse(rest);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CheckpointError(`${path} is not a valid text run config (${issue?.path.join(".") || "top level"}: ${issue?.message}); the checkpoint is corrupt or from another version`);
  }
  return r.data;
}
