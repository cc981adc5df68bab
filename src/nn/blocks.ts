/**
 * Transformer blocks. Both return the block output and, on request, one intermediate ("capture") that
 * data2vec uses as a target: the FFN output before the last residual (the paper's choice), the FFN output
 * plus residual before the final layer norm, the block output, or the self-attention output.
 */
import type { numpy as np } from "../engine/jax.js";
import { multiHeadAttention, type AttentionParams } from "./attention.js";
import { dropout, gelu, layerNorm, linear, type LayerNormParams, type LinearParams } from "./layers.js";
import type { KeyStream } from "./random.js";
import { relativeBias } from "./relpos.js";

export type Capture = "ffn" | "ffn_residual" | "end" | "attn";

export type FeedForwardParams = { fc1: LinearParams; fc2: LinearParams };

/** Post-LN block (BERT / RoBERTa / wav2vec 2.0): x = LN(x + Attn(x)); x = LN(x + FFN(x)). */
export type PostLnBlockParams = {
  attn: AttentionParams;
  attnNorm: LayerNormParams;
  ffn: FeedForwardParams;
  ffnNorm: LayerNormParams;
};

/** Pre-LN block with layer scale (BEiT): x = x + λ1·Attn(LN(x)); x = x + λ2·FFN(LN(x)). */
export type PreLnBlockParams = {
  attnNorm: LayerNormParams;
  attn: AttentionParams;
  ffnNorm: LayerNormParams;
  ffn: FeedForwardParams;
  lambda1?: np.Array;
  lambda2?: np.Array;
  /** This block's own relative position bias table [size, heads] (BEiT without a shared table). */
  relativeTable?: np.Array;
};

/** Options shared by every block of a stack; `mask` and `bias` are borrowed (not consumed). */
export type BlockOptions = {
  heads: number;
  eps: number;
  dropout: number;
  attentionDropout: number;
  activationDropout: number;
  mask?: np.Array | null;
  bias?: np.Array | null;
  /** Flat relative position index (int32 [T·T]) for blocks that own a relative bias table; borrowed. */
  relativeIndex?: np.Array | null;
  scaleQueryFirst?: boolean;
  /** Dropout keys; null in evaluation (and always for the teacher). */
  keys: KeyStream | null;
  capture?: Capture | null;
};

export type BlockResult = { out: np.Array; captured: np.Array | null };

function feedForward(p: FeedForwardParams, x: np.Array, o: BlockOptions): np.Array {
  const h = dropout(gelu(linear(p.fc1, x)), o.activationDropout, o.keys);
  return linear(p.fc2, h);
}

function attention(p: AttentionParams, x: np.Array, o: BlockOptions, relativeTable?: np.Array): np.Array {
  let bias = o.bias?.ref ?? null;
  if (relativeTable) {
    if (!o.relativeIndex) throw new Error("a block with its own relative position table needs BlockOptions.relativeIndex");
    const own = relativeBias(relativeTable, o.relativeIndex.ref);
    bias = bias ? bias.add(own) : own;
  }
  return multiHeadAttention(p, x, {
    heads: o.heads,
    mask: o.mask?.ref ?? null,
    bias,
    scaleQueryFirst: o.scaleQueryFirst,
    attentionDropout: o.attentionDropout,
    keys: o.keys,
  });
}

export function postLnBlock(p: PostLnBlockParams, x: np.Array, o: BlockOptions): BlockResult {
  const attnOut = dropout(attention(p.attn, x.ref, o), o.dropout, o.keys);
  let captured: np.Array | null = o.capture === "attn" ? attnOut.ref : null;
  const h = layerNorm(p.attnNorm, x.add(attnOut), o.eps);
  const ffnOut = feedForward(p.ffn, h.ref, o);
  if (o.capture === "ffn") captured = ffnOut.ref;
  const residual = h.add(dropout(ffnOut, o.dropout, o.keys));
  if (o.capture === "ffn_residual") captured = residual.ref;
  const out = layerNorm(p.ffnNorm, residual, o.eps);
  if (o.capture === "end") captured = out.ref;
  return { out, captured };
}

export function preLnBlock(p: PreLnBlockParams, x: np.Array, o: BlockOptions): BlockResult {
  let attnOut = dropout(attention(p.attn, layerNorm(p.attnNorm, x.ref, o.eps), o, p.relativeTable), o.dropout, o.keys);
  let captured: np.Array | null = o.capture === "attn" ? attnOut.ref : null;
  if (p.lambda1) attnOut = attnOut.mul(p.lambda1);
  const h = x.add(attnOut);
  let ffnOut = feedForward(p.ffn, layerNorm(p.ffnNorm, h.ref, o.eps), o);
  if (o.capture === "ffn") captured = ffnOut.ref;
  ffnOut = dropout(ffnOut, o.dropout, o.keys);
  if (p.lambda2) ffnOut = ffnOut.mul(p.lambda2);
  const out = h.add(ffnOut);
  if (o.capture === "ffn_residual" || o.capture === "end") captured = out.ref;
  return { out, captured };
}
