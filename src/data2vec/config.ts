/**
 * The modality-agnostic data2vec settings (see the reference's §1 and §2 for the paper's values): one zod schema, and
 * the type derived from it. Fields with defaults may be omitted (configs saved before they existed omit them).
 */
import { z } from "zod";

const targetNorm = z.enum(["layer", "instance", "none"]);

/** data2vec 2.0's decoder (fairseq `D2vDecoderConfig`): convolutions over the restored sequence or patch grid, then a projection. */
export const decoderSchema = z
  .object({
    dim: z.number().int().min(1),
    kernel: z.number().int().min(1),
    groups: z.number().int().min(1),
    layers: z.number().int().min(1),
    /** Add each layer's input to its output where the widths match. */
    residual: z.boolean(),
    /** Linear layers of the projection to the model width (GELU between them); the first widens by `projectionRatio`. */
    projectionLayers: z.number().int().min(1),
    projectionRatio: z.number().positive(),
    /** Masked steps enter the decoder as N(0, std) noise (0: zeros). */
    maskNoiseStd: z.number().min(0),
    /** Dropout on the encoder's outputs as they enter the decoder. */
    inputDropout: z.number().min(0).max(0.9).default(0),
  })
  .strict();

/** The settings data2vec 2.0 adds (Baevski et al. 2023). */
export const data2vec2Schema = z
  .object({
    /** M: masked views per sample; the teacher runs once per sample and its targets serve all M. */
    cloneBatch: z.number().int().min(1),
    decoder: decoderSchema,
    /** Transformer blocks of the context encoder, before the main `model.layers` (fairseq prenet_depth; images: 2). */
    prenetDepth: z.number().int().min(0).default(0),
    /** Weight of the images' global (CLS) loss: the CLS output regresses the mean of the sample's targets (0: off). */
    clsLoss: z.number().min(0),
  })
  .strict();

export const data2vecSchema = z
  .object({
    /**
     * "data2vec": the student encodes the masked input with mask embeddings and a regression head predicts the
     * targets (v1). "data2vec2": the student encodes the visible steps only, M views per sample, and a
     * convolutional decoder predicts the masked steps (`v2` holds its settings).
     */
    objective: z.enum(["data2vec", "data2vec2"]).default("data2vec"),
    v2: data2vec2Schema.optional(),
    topK: z.number().int().min(1),
    targetLayer: z.enum(["ffn", "ffn_residual", "end", "attn"]),
    targetNorm,
    targetNormAfterAverage: targetNorm,
    /**
     * Instance-norm statistics of the targets: over the real steps only ("exclude", ours: padding never reaches
     * the targets) or over every step, padded ones included ("include", fairseq's F.instance_norm).
     */
    targetNormPadding: z.enum(["exclude", "include"]).default("exclude"),
    /** Shared input-side groups the teacher keeps its own EMA copy of (fairseq speech: ["encoderNorm"]); default none. */
    emaShared: z.array(z.string()).default([]),
    /** Subtract the targets' per-step batch mean, then normalize again (against collapse to position). */
    removePositionMean: z.boolean().default(false),
    loss: z.enum(["l2", "smooth_l1"]),
    lossBeta: z.number().min(0),
    lossScale: z.number().positive().nullable(),
    headLayers: z.union([z.literal(1), z.literal(2)]),
    ema: z
      .object({
        tauStart: z.number().min(0).max(1),
        tauEnd: z.number().min(0).max(1),
        annealSteps: z.number().int().min(0),
      })
      .strict(),
    /** Teacher self-attention window (max distance in steps / patches); null = full context. */
    teacherContext: z.number().int().min(0).nullable().default(null),
    minTargetVar: z.number().min(0),
    minPredVar: z.number().min(0),
    /** Stop when the targets' position share exceeds this (after the warm-up); null: log it only. */
    maxPositionShare: z.number().gt(0).max(1).nullable().default(null),
    /** Stop when the targets' effective number of dimensions falls below this (after the warm-up); null: log it only. */
    minTargetRank: z.number().min(1).nullable().default(null),
    collapseWarmupSteps: z.number().int().min(0),
    /** Divergence guard: loss or target_var over maxGrowth × their early mean for `patience` updates stops the run. */
    divergence: z
      .object({
        referenceSteps: z.number().int().min(1).default(20),
        maxGrowth: z.number().gt(1).nullable().default(10),
        patience: z.number().int().min(1).default(10),
      })
      .strict()
      .default({ referenceSteps: 20, maxGrowth: 10, patience: 10 }),
  })
  .strict();

export type Data2VecSettings = z.input<typeof data2vecSchema>;
export type DecoderSettings = z.input<typeof decoderSchema>;
export type Data2Vec2Settings = z.input<typeof data2vec2Schema>;

/** Stop when the loss or target_var stays over `maxGrowth` × its mean over the first `referenceSteps` updates for `patience` updates. */
export type DivergenceSettings = z.output<typeof data2vecSchema>["divergence"];
