/**
 * The modality-agnostic data2vec settings (see the reference's §1 and §2 for the paper's values): one zod schema, and
 * the type derived from it. Fields with defaults may be omitted (configs saved before they existed omit them).
 */
import { z } from "zod";

const targetNorm = z.enum(["layer", "instance", "none"]);

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

export type Data2VecSettings = z.input<typeof data2vecSchema>;

/** Stop when the loss or target_var stays over `maxGrowth` × its mean over the first `referenceSteps` updates for `patience` updates. */
export type DivergenceSettings = z.output<typeof data2vecSchema>["divergence"];
