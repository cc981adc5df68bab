/** The modality-agnostic data2vec settings (see the reference's §1 and §2 for the paper's values). */
import type { Capture } from "../nn/blocks.js";
import type { EmaSchedule } from "./ema.js";
import type { LossKind } from "./loss.js";
import type { TargetNorm } from "./targets.js";

export type Data2VecSettings = {
  /** Number of top teacher blocks whose outputs are averaged into the target (K). */
  topK: number;
  /** Which block intermediate is the target: the FFN output before the last residual (paper) or an ablation. */
  targetLayer: Capture;
  /** Per-layer target normalization, then optional normalization of the average. */
  targetNorm: TargetNorm;
  targetNormAfterAverage: TargetNorm;
  /**
   * Groups of the student's shared input side (e.g. speech's "encoderNorm") that the teacher keeps its own EMA
   * copy of, instead of reading the student's (the default, none: fairseq copies them at every EMA step, except
   * speech's encoder layer norm, which it averages).
   */
  emaShared?: string[];
  /** Instance-norm statistics over the real steps only ("exclude", the default) or padded ones too ("include", fairseq). */
  targetNormPadding?: "exclude" | "include";
  /**
   * Subtract from the averaged targets their mean over the batch at each step, then apply the per-layer norm
   * again: the student gains nothing from encoding position, which otherwise short inputs and small batches
   * let the targets collapse to (see `positionShare`). Not in the paper; needs 2 or more rows per batch.
   */
  removePositionMean?: boolean;
  loss: LossKind;
  /** Smooth L1 β (ignored for L2). */
  lossBeta: number;
  /** Loss scale; null means 1/√D. */
  lossScale: number | null;
  /** Regression head: 1 = Linear(D, D); 2 = Linear(D, 2D) → GELU → Linear(2D, D) (text). */
  headLayers: 1 | 2;
  ema: EmaSchedule;
  /**
   * Restrict the teacher's self-attention to steps at most this far away (the paper's context-size ablation,
   * §5.3); null = the whole input. Distances are the modality's (`Modality.stepDistances`): steps for text and
   * speech, patches on the grid for images.
   */
  teacherContext?: number | null;
  /** Collapse monitor: stop when target_var / pred_var fall under these after `collapseWarmupSteps`. */
  minTargetVar: number;
  minPredVar: number;
  /**
   * Stop when the targets' position share (`positionShare`: about 1/B unrelated to position, 1 when the
   * targets encode position alone) rises above this after the warm-up; null only logs it.
   */
  maxPositionShare?: number | null;
  collapseWarmupSteps: number;
  /** Divergence guard (see `DivergenceGuard`); absent in configs saved before it existed: the defaults apply. */
  divergence?: DivergenceSettings;
};

/** Stop when the loss or target_var stays over `maxGrowth` × its mean over the first `referenceSteps` updates for `patience` updates. */
export type DivergenceSettings = { referenceSteps: number; maxGrowth: number | null; patience: number };
