/**
 * The speech run configuration (CNN feature encoder, convolutional positions, post-LN transformer, data2vec
 * settings, span masking, crops, training) and its presets. `tiny` is the issue's test-sized model, `small`
 * is sized for pretraining on a few hours of audio on 2 cores, `base` follows the paper (LibriSpeech 960h:
 * 7 × 512-channel CNN, 12 × 768 blocks, K = 8, instance-norm targets, L2 loss).
 */
import { z } from "zod";
import { deepMerge } from "../config/validate.js";
import { encoderFields, PAPER_DATA2VEC_EXTRAS, FAIRSEQ_ADAM, TRAIN_DEFAULTS } from "../config/schemas.js";
import { maskingProbToRatio, refineRunConfig, runConfigKit, runConfigSchema } from "../config/run-config.js";
import { spanStartProbability } from "../data2vec/masking.js";
import type { SpanMaskSettings } from "./masking.js";
import { framesForSamples } from "./frames.js";

const convLayer = z.object({ channels: z.number().int().min(1), kernel: z.number().int().min(1), stride: z.number().int().min(1) }).strict();

export const audioModelSchema = z
  .object({
    sampleRate: z.number().int().min(1000),
    /** Zero-mean, unit-variance normalization of each clip (the paper's `task.normalize`). */
    normalize: z.boolean(),
    convLayers: z.array(convLayer).min(1),
    ...encoderFields,
    posConvLayers: z.number().int().min(1),
    posConvKernel: z.number().int().min(1),
    posConvGroups: z.number().int().min(1),
    /** Dropout on the projected features before masking (fairseq's dropout_input). */
    featureDropout: z.number().min(0).max(0.9),
    activationDropout: z.number().min(0).max(0.9),
    /**
     * Padded frames and the positional convolutions: "isolate" (ours) zeroes them before every conv layer, so a
     * padded clip gives the outputs of the clip alone; "leak" (fairseq, Hugging Face) zeroes them once, so values
     * flow back from the padding into the last real frames.
     */
    posConvPadding: z.enum(["isolate", "leak"]).default("isolate"),
  })
  .strict();

export const audioRunSchema = runConfigSchema(
  "audio",
  {
    model: audioModelSchema,
    masking: z
      .object({
        /**
         * Expected fraction of the frames masked; spans start with fairseq's mask_prob
         * p = spanLength · (1 − (1 − ratio)^(1/spanLength)) and may overlap (the paper's p = 0.65 in spans of 10 is 0.49).
         */
        ratio: z.number().gt(0).lt(1),
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
  },
  {},
).superRefine(
  refineRunConfig((c, issue) => {
    const m = c.model;
    if (m.dim % m.posConvGroups !== 0) issue(["model", "posConvGroups"], `width ${m.dim} must be divisible by the positional conv's groups (${m.posConvGroups})`);
    const frames = framesForSamples(Math.round(c.data.minSeconds * m.sampleRate), m.convLayers);
    if (frames <= c.masking.spanLength) issue(["data", "minSeconds"], `clips of ${c.data.minSeconds} s give ${frames} frames, not more than one span of ${c.masking.spanLength}; raise data.minSeconds`);
    else if (frames - 2 * c.masking.edgeJitter <= c.masking.spanLength) issue(["masking", "edgeJitter"], `clips of data.minSeconds = ${c.data.minSeconds} s give ${frames} frames; trimming up to ${c.masking.edgeJitter} at each end leaves no room for a span of ${c.masking.spanLength}; lower masking.edgeJitter or raise data.minSeconds`);
    if (c.data.minSeconds > c.data.cropSeconds) issue(["data", "minSeconds"], "must not exceed data.cropSeconds");
  }),
);

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
    ...PAPER_DATA2VEC_EXTRAS,
  },
  // The paper's mask_prob 0.65 in spans of 10, as the fraction of frames it masks.
  masking: { ratio: 0.49, spanLength: 10, minSpans: 1, edgeJitter: 0 },
  data: { cropSeconds: 1, minSeconds: 0.5 },
  train: { ...TRAIN_DEFAULTS, batchSize: 4, steps: 500, lr: 5e-4, warmupSteps: 50, weightDecay: 0.01, ...FAIRSEQ_ADAM, clipNorm: 0, checkpointEvery: 100 },
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
  train: { batchSize: 32, steps: 400000, lr: 5e-4, schedule: "tri_stage", warmupSteps: 0, checkpointEvery: 5000 },
});

export const AUDIO_PRESETS: Record<string, AudioRunConfig> = { tiny, small, base };

export const audioRunConfig = runConfigKit("audio", audioRunSchema, AUDIO_PRESETS, maskingProbToRatio);
export const resolveAudioConfig = audioRunConfig.resolve;
export const parseAudioRunConfig = audioRunConfig.parse;

/** The span masking of a run's settings. */
export function spanMaskSettings(m: AudioRunConfig["masking"]): SpanMaskSettings {
  return { spanStartProb: spanStartProbability(m.ratio, m.spanLength), spanLength: m.spanLength, minSpans: m.minSpans };
}

