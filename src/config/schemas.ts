/** zod schemas shared by every modality's run configuration. */
import { z } from "zod";

const targetNorm = z.enum(["layer", "instance", "none"]);

/** The modality-agnostic data2vec settings (`Data2VecSettings`). */
export const data2vecSchema = z
  .object({
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

/** Optimization and bookkeeping of a pretraining run. */
export const trainFields = {
  batchSize: z.number().int().min(1),
  steps: z.number().int().min(1),
  accumSteps: z.number().int().min(1),
  lr: z.number().positive(),
  schedule: z.enum(["cosine", "tri_stage", "constant"]),
  warmupSteps: z.number().int().min(0),
  minLr: z.number().min(0),
  weightDecay: z.number().min(0),
  beta1: z.number().min(0).lt(1),
  beta2: z.number().min(0).lt(1),
  eps: z.number().positive(),
  clipNorm: z.number().min(0),
  seed: z.number().int(),
  checkpointEvery: z.number().int().min(1),
};
