/**
 * The speech run configuration (CNN feature encoder, convolutional positions, post-LN transformer, data2vec
 * settings, span masking, crops, training) and its presets. `tiny` is the issue's test-sized model, `small`
 * is sized for pretraining on a few hours of audio on 2 cores, `base` follows the paper (LibriSpeech 960h:
 * 7 × 512-channel CNN, 12 × 768 blocks, K = 8, instance-norm targets, L2 loss).
 */
import { DEFAULT_DIVERGENCE } from "../data2vec/monitor.js";
import { z } from "zod";
import { CheckpointError, ConfigError } from "../engine/errors.js";
import { deepMerge, validate } from "../config/validate.js";
import { data2vecSchema, trainFields } from "../config/schemas.js";
import { framesForSamples, type AudioFrontEndConfig } from "./model.js";

const convLayer = z.object({ channels: z.number().int().min(1), kernel: z.number().int().min(1), stride: z.number().int().min(1) }).strict();

export const audioModelSchema = z
  .object({
    sampleRate: z.number().int().min(1000),
    /** Zero-mean, unit-variance normalization of each clip (the paper's `task.normalize`). */
    normalize: z.boolean(),
    convLayers: z.array(convLayer).min(1),
    dim: z.number().int().min(8),
    layers: z.number().int().min(1),
    heads: z.number().int().min(1),
    ffnDim: z.number().int().min(8),
    posConvLayers: z.number().int().min(1),
    posConvKernel: z.number().int().min(1),
    posConvGroups: z.number().int().min(1),
    /** Dropout on the projected features before masking (fairseq's dropout_input). */
    featureDropout: z.number().min(0).max(0.9),
    dropout: z.number().min(0).max(0.9),
    attentionDropout: z.number().min(0).max(0.9),
    activationDropout: z.number().min(0).max(0.9),
    layerNormEps: z.number().positive(),
    /**
     * Padded frames and the positional convolutions: "isolate" (ours) zeroes them before every conv layer, so a
     * padded clip gives the outputs of the clip alone; "leak" (fairseq, Hugging Face) zeroes them once, so values
     * flow back from the padding into the last real frames.
     */
    posConvPadding: z.enum(["isolate", "leak"]).default("isolate"),
  })
  .strict();

export const audioRunSchema = z
  .object({
    modality: z.literal("audio"),
    preset: z.string(),
    model: audioModelSchema,
    data2vec: data2vecSchema,
    masking: z
      .object({
        /** Probability that a frame starts a masked span (0.65 with spans of 10 masks about 49%). */
        prob: z.number().gt(0).lt(1),
        spanLength: z.number().int().min(1),
        minSpans: z.number().int().min(1),
        /**
         * Each view (student, teacher) loses 0 to `edgeJitter` frames at each end of a clip, drawn
         * independently, and the loss covers masked frames both views keep. 0 (the paper) shows both views the
         * same frames. The convolutional positional encoder sees where a clip starts and ends, so with short
         * crops and small batches the teacher can drift into targets that encode position alone (a collapse
         * that target_var does not see; `positionShare` does); when the views' edges differ, the student
         * cannot predict position-only targets and has to predict content.
         */
        edgeJitter: z.number().int().min(0).default(0),
      })
      .strict(),
    data: z
      .object({
        /** Pretraining crops: clips longer than this are cropped at a random offset. */
        cropSeconds: z.number().positive(),
        /** Clips shorter than this are left out of pretraining (too few frames to mask). */
        minSeconds: z.number().min(0),
      })
      .strict(),
    train: z.object(trainFields).strict(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    const m = c.model;
    if (m.dim % m.heads !== 0) issue(["model", "heads"], `width ${m.dim} must be divisible by heads (${m.heads})`);
    if (m.dim % m.posConvGroups !== 0) issue(["model", "posConvGroups"], `width ${m.dim} must be divisible by the positional conv's groups (${m.posConvGroups})`);
    if (c.data2vec.topK > m.layers) issue(["data2vec", "topK"], `K = ${c.data2vec.topK} exceeds the ${m.layers} layers`);
    if (c.data2vec.ema.tauStart > c.data2vec.ema.tauEnd) issue(["data2vec", "ema", "tauStart"], "τ0 must not exceed τe (τ rises)");
    const frames = framesForSamples(Math.round(c.data.minSeconds * m.sampleRate), m.convLayers);
    if (frames <= c.masking.spanLength) issue(["data", "minSeconds"], `clips of ${c.data.minSeconds} s give ${frames} frames, not more than one span of ${c.masking.spanLength}; raise data.minSeconds`);
    else if (frames - 2 * c.masking.edgeJitter <= c.masking.spanLength) issue(["masking", "edgeJitter"], `clips of data.minSeconds = ${c.data.minSeconds} s give ${frames} frames; trimming up to ${c.masking.edgeJitter} at each end leaves no room for a span of ${c.masking.spanLength}; lower masking.edgeJitter or raise data.minSeconds`);
    if (c.data.minSeconds > c.data.cropSeconds) issue(["data", "minSeconds"], "must not exceed data.cropSeconds");
  });

export type AudioRunConfig = z.infer<typeof audioRunSchema>;
export type AudioModelConfig = AudioRunConfig["model"];

/** The paper's CNN: 7 layers, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2 (320 samples = 20 ms per frame). */
export function paperConvLayers(channels: number): AudioModelConfig["convLayers"] {
  return [
    { channels, kernel: 10, stride: 5 },
    ...Array.from({ length: 4 }, () => ({ channels, kernel: 3, stride: 2 })),
    ...Array.from({ length: 2 }, () => ({ channels, kernel: 2, stride: 2 })),
  ];
}

const tiny: AudioRunConfig = {
  modality: "audio",
  preset: "tiny",
  model: {
    sampleRate: 16000,
    normalize: true,
    convLayers: paperConvLayers(128),
    dim: 256,
    layers: 4,
    heads: 4,
    ffnDim: 1024,
    posConvLayers: 5,
    posConvKernel: 19,
    posConvGroups: 16,
    featureDropout: 0.1,
    dropout: 0.1,
    attentionDropout: 0.1,
    activationDropout: 0,
    layerNormEps: 1e-5,
    posConvPadding: "isolate",
  },
  data2vec: {
    topK: 4,
    targetLayer: "ffn",
    targetNorm: "instance",
    targetNormAfterAverage: "none",
    loss: "l2",
    lossBeta: 0,
    lossScale: null,
    headLayers: 1,
    // Short runs need a faster teacher than the paper's 0.999 → 0.9999 over 30k updates.
    ema: { tauStart: 0.99, tauEnd: 0.999, annealSteps: 500 },
    minTargetVar: 0.01,
    minPredVar: 0.01,
    collapseWarmupSteps: 200,
    teacherContext: null,
    maxPositionShare: null,
    removePositionMean: false,
    targetNormPadding: "exclude",
    emaShared: [],
    divergence: { ...DEFAULT_DIVERGENCE },
  },
  masking: { prob: 0.65, spanLength: 10, minSpans: 1, edgeJitter: 0 },
  data: { cropSeconds: 1, minSeconds: 0.5 },
  train: {
    batchSize: 4,
    steps: 500,
    accumSteps: 1,
    lr: 5e-4,
    schedule: "cosine",
    warmupSteps: 50,
    minLr: 0,
    weightDecay: 0.01,
    beta1: 0.9,
    beta2: 0.98,
    eps: 1e-6,
    clipNorm: 0,
    seed: 1,
    checkpointEvery: 100,
  },
};

// Six blocks over 1.5-s crops, sized so that pretraining on a few hours of synthetic speech takes about half
// an hour on 2 cores (about 2.5 s of audio per second) and a training step stays well inside the 4 GiB of
// wasm32 memory (the CNN's early layers dominate it: about 0.4 GB per second of audio in a batch).
const small: AudioRunConfig = deepMerge(tiny, {
  preset: "small",
  model: { layers: 6 },
  data2vec: { topK: 4, ema: { tauStart: 0.99, tauEnd: 0.999, annealSteps: 600 } },
  data: { cropSeconds: 1.5, minSeconds: 0.5 },
  train: { batchSize: 4, steps: 600, warmupSteps: 50, checkpointEvery: 50 },
});

const base: AudioRunConfig = deepMerge(tiny, {
  preset: "base",
  model: { convLayers: paperConvLayers(512), dim: 768, layers: 12, heads: 12, ffnDim: 3072, posConvGroups: 16 },
  data2vec: { topK: 8, ema: { tauStart: 0.999, tauEnd: 0.9999, annealSteps: 30000 }, collapseWarmupSteps: 5000 },
  data: { cropSeconds: 20, minSeconds: 2 },
  train: { batchSize: 32, steps: 400000, lr: 5e-4, schedule: "tri_stage", warmupSteps: 12000, checkpointEvery: 5000 },
});

export const AUDIO_PRESETS: Record<string, AudioRunConfig> = { tiny, small, base };

export function resolveAudioConfig(preset: string, fileConfig?: unknown, overrides?: unknown, source = "the configuration"): AudioRunConfig {
  const presetConfig = AUDIO_PRESETS[preset];
  if (!presetConfig) throw new ConfigError(`unknown audio preset "${preset}"; choose one of ${Object.keys(AUDIO_PRESETS).join(", ")}`);
  return validate(audioRunSchema, deepMerge(deepMerge(presetConfig, fileConfig), overrides), source);
}

export function parseAudioRunConfig(raw: unknown, path: string): AudioRunConfig {
  const { kind: _kind, ...rest } = (raw ?? {}) as { kind?: string };
  const r = audioRunSchema.safeParse(rest);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CheckpointError(`${path} is not a valid audio run config (${issue?.path.join(".") || "top level"}: ${issue?.message}); the checkpoint is corrupt or from another version`);
  }
  return r.data;
}

export function frontEndConfig(m: AudioModelConfig): AudioFrontEndConfig {
  return { convLayers: m.convLayers, dim: m.dim, posConvLayers: m.posConvLayers, posConvKernel: m.posConvKernel, posConvGroups: m.posConvGroups, layerNormEps: m.layerNormEps };
}
