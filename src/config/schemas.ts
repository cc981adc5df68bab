/** zod schemas shared by every modality's run configuration. */
import { z } from "zod";
import { DEFAULT_DIVERGENCE } from "../data2vec/monitor.js";

export { data2vecSchema } from "../data2vec/config.js";
import { data2vecSchema } from "../data2vec/config.js";

/** The transformer fields every modality's model has. */
export const encoderFields = {
  dim: z.number().int().min(8),
  layers: z.number().int().min(1),
  heads: z.number().int().min(1),
  ffnDim: z.number().int().min(8),
  dropout: z.number().min(0).max(0.9),
  attentionDropout: z.number().min(0).max(0.9),
  layerNormEps: z.number().positive(),
};

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

/**
 * The presets' values of the data2vec settings that go beyond the paper (a restricted teacher context, position
 * monitors, fairseq's padding behaviour, a teacher copy of shared groups): all off, so the method is as published;
 * the divergence guard on.
 */
export const PAPER_DATA2VEC_EXTRAS = {
  objective: "data2vec",
  teacherContext: null,
  maxPositionShare: null,
  minTargetRank: null,
  removePositionMean: false,
  targetNormPadding: "exclude",
  emaShared: [],
  divergence: DEFAULT_DIVERGENCE,
} as const satisfies Partial<z.infer<typeof data2vecSchema>>;

/** fairseq's Adam for text and speech (β1 0.9, β2 0.98, ε 1e-6). */
export const FAIRSEQ_ADAM = { beta1: 0.9, beta2: 0.98, eps: 1e-6 } as const;

/** The presets' training bookkeeping: no accumulation, cosine decay to 0, seed 1. */
export const TRAIN_DEFAULTS = { accumSteps: 1, schedule: "cosine", minLr: 0, seed: 1 } as const;

/**
 * What every data2vec 2.0 preset shares (fairseq's v2 yamls): the objective, the blocks' FFN outputs each
 * instance-normalized as targets, the L2 loss; the regression head setting is unused (v2 predicts with its decoder).
 */
export const DATA2VEC2_SETTINGS = {
  objective: "data2vec2",
  targetLayer: "ffn",
  targetNorm: "instance",
  loss: "l2",
  lossBeta: 0,
  headLayers: 1,
} as const satisfies Partial<z.infer<typeof data2vecSchema>>;
