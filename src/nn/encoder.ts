/** A stack of transformer blocks, optionally capturing one intermediate per block from a given depth. */
import type { numpy as np } from "../engine/jax.js";
import { additivePaddingMask } from "./attention.js";
import { postLnBlock, preLnBlock, type Capture, type PostLnBlockParams, type PreLnBlockParams } from "./blocks.js";
import type { KeyStream } from "./random.js";

export type BlockKind = "post_ln" | "pre_ln";
export type BlockParams = PostLnBlockParams | PreLnBlockParams;

export type EncoderSpec = {
  kind: BlockKind;
  heads: number;
  eps: number;
  dropout: number;
  attentionDropout: number;
  activationDropout: number;
  scaleQueryFirst?: boolean;
  /**
   * The relative position index of blocks with their own bias tables (vision's per-layer tables): a constant of
   * the architecture, borrowed and never consumed.
   */
  relativeIndex?: np.Array | null;
};

export type EncoderRun = {
  /** [B, T] padding mask (1 = real step), borrowed; null when nothing is padded. */
  padding?: np.Array | null;
  /** Additive attention bias, borrowed (relative positions, local context windows). */
  bias?: np.Array | null;
  keys: KeyStream | null;
  capture?: Capture | null;
  /** Capture from this block index on (the teacher's top K are blocks L−K … L−1). */
  captureFrom?: number;
};

/** Runs every block (consuming `layers` and `x`); returns the output and the captured intermediates. */
export function runEncoder(layers: BlockParams[], x: np.Array, spec: EncoderSpec, run: EncoderRun): { out: np.Array; captured: np.Array[] } {
  const mask = run.padding ? additivePaddingMask(run.padding.ref, x.dtype) : null;
  const captured: np.Array[] = [];
  layers.forEach((p, i) => {
    const wantCapture = run.capture && i >= (run.captureFrom ?? 0) ? run.capture : null;
    const options = { ...spec, mask, bias: run.bias ?? null, relativeIndex: spec.relativeIndex ?? null, keys: run.keys, capture: wantCapture };
    const r = spec.kind === "post_ln" ? postLnBlock(p, x, options) : preLnBlock(p, x, options);
    x = r.out;
    if (r.captured) captured.push(r.captured);
  });
  mask?.dispose();
  return { out: x, captured };
}
