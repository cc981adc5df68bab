/**
 * The vision transformer (BEiT layout): non-overlapping patches embedded by one matmul (a convolution with
 * stride = kernel = patch size), a CLS token, a learned mask token, optional absolute position embeddings,
 * and pre-LN blocks with layer scale and a relative position bias (shared by all blocks or one per block).
 */
import { numpy as np, random } from "../engine/jax.js";
import { initRegressionHead, type Data2VecParams, type Embedded, type Modality } from "../data2vec/model.js";
import type { PreLnBlockParams } from "../nn/blocks.js";
import { encodeV2, type V2Shared } from "../data2vec2/model.js";
import { imageModality2, imageV2Config, type ImageLocal } from "../data2vec2/modalities.js";
import { runEncoder, type BlockParams, type EncoderSpec } from "../nn/encoder.js";
import { initLinear, initNormal, initPreLnBlock } from "../nn/init.js";
import { dropout, linear, type LinearParams } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import { relativeBias, relativeIndexConstant, relativeIndexInput, relativeTableSize } from "../nn/relpos.js";
import { gridSize, type VisionRunConfig } from "./config.js";

export type VisionModelConfig = VisionRunConfig["model"];

/** The input side shared by student and teacher (never EMA-averaged). */
export type VisionShared = {
  /** Patch embedding: weight [C·p·p, D] (rows in (channel, y, x) order, like a conv kernel), bias [D]. */
  patch: LinearParams;
  cls: np.Array; // [1, 1, D]
  maskToken: np.Array; // [1, 1, D]
  positions?: np.Array; // [1, 1 + N, D]
  /** The shared relative position bias table [size, heads]. */
  relativeTable?: np.Array;
};

/** A data2vec image encoder: BEiT's (v1, `VisionEncoder1Params`) or data2vec 2.0's; `isVisionV2` tells them apart. */
export type VisionEncoderParams = VisionEncoder1Params | VisionEncoder2Params;
export type VisionEncoder1Params = { shared: VisionShared; layers: BlockParams[] };
/** A data2vec 2.0 image encoder (patch embedding, fixed sin-cos positions, CLS, norm, prenet and post-LN blocks). */
export type VisionEncoder2Params = { shared: V2Shared<ImageLocal>; layers: BlockParams[] };

export function isVisionV2(e: VisionEncoderParams): e is VisionEncoder2Params {
  return "local" in e.shared;
}

/** The blocks' settings; `relativeIndex` (see `visionRelativeIndex`) serves per-layer bias tables. */
export function visionEncoderSpec(c: VisionModelConfig, relativeIndex: np.Array | null): EncoderSpec {
  return {
    kind: "pre_ln",
    heads: c.heads,
    eps: c.layerNormEps,
    dropout: c.dropout,
    attentionDropout: c.attentionDropout,
    activationDropout: 0,
    relativeIndex: c.relativePositionBias === "per_layer" ? relativeIndex : null,
  };
}

/**
 * The model's relative position index as a process-wide one-hot constant (null when the model has no relative
 * bias): jitted training and inference capture it, so it rides in no batch. Borrowed; never disposed. Take it
 * outside any jitted function (an array first made inside a trace would belong to that compiled function).
 */
export function visionRelativeIndex(c: VisionModelConfig): np.Array | null {
  if (c.relativePositionBias === "none") return null;
  const g = gridSize(c);
  return relativeIndexConstant(g, g);
}

export function initVisionEncoder(keys: KeyStream, c: VisionModelConfig): VisionEncoder1Params {
  const g = gridSize(c);
  const shared: VisionShared = {
    patch: initLinear(keys, c.channels * c.patchSize * c.patchSize, c.dim),
    cls: initNormal(keys, [1, 1, c.dim]),
    maskToken: initNormal(keys, [1, 1, c.dim]),
  };
  if (c.absolutePositions) shared.positions = initNormal(keys, [1, 1 + g * g, c.dim]);
  // BEiT initializes relative bias tables to zero: attention starts position-agnostic.
  if (c.relativePositionBias === "shared") shared.relativeTable = np.zeros([relativeTableSize(g, g), c.heads]);
  const layers = Array.from({ length: c.layers }, () => {
    const b: PreLnBlockParams = initPreLnBlock(keys, c.dim, c.ffnDim, { layerScale: c.layerScale });
    if (c.relativePositionBias === "per_layer") b.relativeTable = np.zeros([relativeTableSize(g, g), c.heads]);
    return b;
  });
  return { shared, layers };
}

/** [B, C, H, W] → [B, N, C·p·p], patches in row-major grid order, each flattened as (channel, y, x). */
export function patchify(images: np.Array, patchSize: number): np.Array {
  const [b, ch, h, w] = images.shape;
  const gh = h / patchSize;
  const gw = w / patchSize;
  return images
    .reshape([b, ch, gh, patchSize, gw, patchSize])
    .transpose([0, 2, 4, 1, 3, 5])
    .reshape([b, gh * gw, ch * patchSize * patchSize]);
}

/**
 * Patch embeddings with CLS (and positions): [B, 1 + N, D], and the shared relative position bias. `mask` [B, N]
 * (1 = masked) replaces masked patches by the mask token. `relativeIndex`: see `visionRelativeIndex` (Hugging Face
 * inference passes the int32 form). Consumes `shared` and `images`; borrows the rest.
 */
export function embedImages(
  shared: VisionShared,
  images: np.Array,
  c: VisionModelConfig,
  mask: np.Array | null,
  keys: KeyStream | null,
  relativeIndex: np.Array | null,
): Embedded {
  let x = linear(shared.patch, patchify(images, c.patchSize)); // [B, N, D]
  const [b, n] = x.shape;
  if (mask) {
    const m = mask.ref.reshape([b, n, 1]);
    x = x.mul(np.negative(m.ref).add(1)).add(m.mul(shared.maskToken));
  } else shared.maskToken.dispose();
  x = np.concatenate([np.broadcastTo(shared.cls, [b, 1, c.dim]), x], 1);
  if (shared.positions) x = x.add(shared.positions);
  x = dropout(x, c.dropout, keys);
  if (c.relativePositionBias !== "none" && !relativeIndex) throw new Error("embedImages: this model needs the relative position index");
  const bias = shared.relativeTable ? relativeBias(shared.relativeTable, relativeIndex!.ref) : null;
  return { x, padding: null, bias };
}

/**
 * The model's relative position index (null when the model has no relative bias): one-hot where the bias
 * tables are trained, int32 for inference (see `relativeIndexInput`).
 */
export function relativeIndexArray(c: VisionModelConfig, differentiable: boolean): np.Array | null {
  if (c.relativePositionBias === "none") return null;
  const g = gridSize(c);
  return relativeIndexInput(g, g, differentiable);
}

/** Final block states [B, 1 + N, D] (CLS first). Consumes the params and the images; borrows the index (`visionRelativeIndex`). */
export function encodeImages(p: VisionEncoderParams, images: np.Array, c: VisionModelConfig, keys: KeyStream | null, relativeIndex: np.Array | null): np.Array {
  if (isVisionV2(p)) {
    const batch = { images };
    const out = encodeV2(imageModality2(imageV2Config(c)), p, batch, keys);
    out.padding?.dispose();
    images.dispose();
    return out.x;
  }
  const e = embedImages(p.shared, images, c, null, keys, relativeIndex);
  const out = runEncoder(p.layers, e.x, visionEncoderSpec(c, relativeIndex), { bias: e.bias, keys }).out;
  e.bias?.dispose();
  return out;
}

/** A data2vec batch of images: both views see the same augmented images; the student's has masked patches. */
export type VisionPretrainBatch = {
  images: np.Array; // [B, C, H, W], normalized
  mask: np.Array; // [B, N] float32, 1 = masked patch
};

export function visionModality(c: VisionModelConfig): Modality<VisionShared, VisionPretrainBatch> {
  const relativeIndex = visionRelativeIndex(c);
  return {
    encoder: visionEncoderSpec(c, relativeIndex),
    embed(shared, batch, view, keys) {
      return embedImages(shared, batch.images.ref, c, view === "student" ? batch.mask : null, keys, relativeIndex);
    },
    // The CLS step is never masked, so it never enters the loss.
    lossWeights(batch) {
      const [b] = batch.mask.shape;
      return np.concatenate([np.zeros([b, 1]), batch.mask.ref], 1);
    },
    stepDistances: (steps) => gridDistances(gridSize(c), steps),
  };
}

/**
 * Distances for the teacher's context window: patches are Chebyshev-distance apart on the g×g grid (a window of
 * w is a (2w+1)² square of patches); the CLS step (index 0) is at distance 0 from everything.
 */
export function gridDistances(g: number, steps: number): Float32Array {
  if (steps !== g * g + 1) throw new Error(`gridDistances: ${steps} steps for a ${g}×${g} grid plus CLS`);
  const d = new Float32Array(steps * steps);
  for (let i = 1; i < steps; i++) {
    for (let j = 1; j < steps; j++) {
      const [yi, xi, yj, xj] = [Math.floor((i - 1) / g), (i - 1) % g, Math.floor((j - 1) / g), (j - 1) % g];
      d[i * steps + j] = Math.max(Math.abs(yi - yj), Math.abs(xi - xj));
    }
  }
  return d;
}

/** Fresh data2vec parameters for vision; the regression head starts with BEiT's final layer norm. */
export function initVisionData2Vec(cfg: VisionRunConfig, seed: number): Data2VecParams<VisionShared> {
  const keys = new KeyStream(random.key(seed));
  const { shared, layers } = initVisionEncoder(keys, cfg.model);
  const head = initRegressionHead(keys, cfg.model.dim, cfg.data2vec.headLayers, { inputNorm: true });
  keys.close();
  return { shared, layers, head };
}
