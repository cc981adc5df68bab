/** Initializers (BERT / fairseq style: N(0, 0.02) weights, zero biases, unit layer-norm gains). */
import { numpy as np } from "../engine/jax.js";
import type { AttentionParams } from "./attention.js";
import type { PostLnBlockParams, PreLnBlockParams } from "./blocks.js";
import type { LayerNormParams, LinearParams } from "./layers.js";
import type { KeyStream } from "./random.js";

export const INIT_STD = 0.02;

export function initNormal(keys: KeyStream, shape: number[], std = INIT_STD): np.Array {
  return keys.normal(shape).mul(std);
}

export function initLinear(keys: KeyStream, inDim: number, outDim: number, opts: { bias?: boolean; std?: number } = {}): LinearParams {
  const p: LinearParams = { weight: initNormal(keys, [inDim, outDim], opts.std) };
  if (opts.bias !== false) p.bias = np.zeros([outDim]);
  return p;
}

export function initLayerNorm(dim: number): LayerNormParams {
  return { weight: np.ones([dim]), bias: np.zeros([dim]) };
}

export function initAttention(keys: KeyStream, dim: number, opts: { keyBias?: boolean } = {}): AttentionParams {
  return {
    q: initLinear(keys, dim, dim),
    k: initLinear(keys, dim, dim, { bias: opts.keyBias !== false }),
    v: initLinear(keys, dim, dim),
    out: initLinear(keys, dim, dim),
  };
}

export function initPostLnBlock(keys: KeyStream, dim: number, ffnDim: number): PostLnBlockParams {
  return {
    attn: initAttention(keys, dim),
    attnNorm: initLayerNorm(dim),
    ffn: { fc1: initLinear(keys, dim, ffnDim), fc2: initLinear(keys, ffnDim, dim) },
    ffnNorm: initLayerNorm(dim),
  };
}

export function initPreLnBlock(
  keys: KeyStream,
  dim: number,
  ffnDim: number,
  opts: { layerScale?: number; keyBias?: boolean } = {},
): PreLnBlockParams {
  const p: PreLnBlockParams = {
    attnNorm: initLayerNorm(dim),
    attn: initAttention(keys, dim, { keyBias: opts.keyBias }),
    ffnNorm: initLayerNorm(dim),
    ffn: { fc1: initLinear(keys, dim, ffnDim), fc2: initLinear(keys, ffnDim, dim) },
  };
  if (opts.layerScale && opts.layerScale > 0) {
    p.lambda1 = np.full([dim], opts.layerScale);
    p.lambda2 = np.full([dim], opts.layerScale);
  }
  return p;
}
