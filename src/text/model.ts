/**
 * The RoBERTa-style text encoder: token embeddings + learned positions (with RoBERTa's padding offset:
 * the first real token sits at position padId + 1), embedding layer norm, dropout, post-LN blocks.
 */
import { lax, numpy as np } from "../engine/jax.js";
import { initRegressionHead, type Data2VecParams, type Modality } from "../data2vec/model.js";
import { random } from "../engine/jax.js";
import { KeyStream } from "../nn/random.js";
import type { TextRunConfig } from "./config.js";
import { initLayerNorm, initNormal, initPostLnBlock } from "../nn/init.js";
import { dropout, layerNorm, type LayerNormParams } from "../nn/layers.js";
import { runEncoder, type BlockParams, type EncoderSpec } from "../nn/encoder.js";

export type TextEncoderConfig = {
  vocabSize: number;
  /** Longest sequence, special tokens included. */
  maxPositions: number;
  dim: number;
  layers: number;
  heads: number;
  ffnDim: number;
  dropout: number;
  attentionDropout: number;
  activationDropout: number;
  layerNormEps: number;
  padId: number;
};

/** The input side shared by student and teacher (never EMA-averaged). */
export type TextShared = { tokens: np.Array; positions: np.Array; norm: LayerNormParams };

export type TextEncoderParams = { shared: TextShared; layers: BlockParams[] };

export function textEncoderSpec(c: TextEncoderConfig): EncoderSpec {
  return {
    kind: "post_ln",
    heads: c.heads,
    eps: c.layerNormEps,
    dropout: c.dropout,
    attentionDropout: c.attentionDropout,
    activationDropout: c.activationDropout,
  };
}

export function initTextEncoder(keys: KeyStream, c: TextEncoderConfig): TextEncoderParams {
  // The padding row of the token table is zero (fairseq padding_idx); RoBERTa's position table has
  // maxPositions + padId + 1 rows because positions start after the padding index.
  const padRow = np.arange(c.vocabSize).notEqual(c.padId).astype(np.float32).reshape([c.vocabSize, 1]);
  const tokens = initNormal(keys, [c.vocabSize, c.dim]).mul(padRow);
  const positions = initNormal(keys, [c.maxPositions + c.padId + 1, c.dim]);
  const layers = Array.from({ length: c.layers }, () => initPostLnBlock(keys, c.dim, c.ffnDim));
  return { shared: { tokens, positions, norm: initLayerNorm(c.dim) }, layers };
}

/** RoBERTa position ids: padId + (running count of real tokens) at real tokens, padId at padding. */
export function positionIds(ids: Int32Array, batch: number, seqLen: number, padId: number): Int32Array {
  const out = new Int32Array(ids.length);
  for (let b = 0; b < batch; b++) {
    let count = 0;
    for (let t = 0; t < seqLen; t++) {
      const i = b * seqLen + t;
      out[i] = ids[i] === padId ? padId : padId + ++count;
    }
  }
  return out;
}

/** [B, T] token ids and position ids (int32) → [B, T, D]. Consumes everything. */
export function embedText(
  shared: TextShared,
  ids: np.Array,
  positions: np.Array,
  c: TextEncoderConfig,
  keys: KeyStream | null,
): np.Array {
  const real = ids.ref.notEqual(c.padId).astype(np.float32).reshape([...ids.shape, 1]);
  let x = np.take(shared.tokens, ids, 0).add(np.take(shared.positions, positions, 0));
  // Padded steps read the padding rows of both tables (positions put padding at padId too); as in PyTorch's
  // Embedding(padding_idx), those rows get no gradient, which matters where padded steps reach the loss (data2vec 2.0).
  x = x.ref.mul(real.ref).add(lax.stopGradient(x).mul(np.negative(real).add(1)));
  return dropout(layerNorm(shared.norm, x, c.layerNormEps), c.dropout, keys);
}

/** Final hidden states [B, T, D] for a padded batch (padding [B, T], 1 = real token). Consumes all. */
export function encodeText(
  p: TextEncoderParams,
  ids: np.Array,
  positions: np.Array,
  padding: np.Array,
  c: TextEncoderConfig,
  keys: KeyStream | null,
): np.Array {
  const x = embedText(p.shared, ids, positions, c, keys);
  const out = runEncoder(p.layers, x, textEncoderSpec(c), { padding, keys }).out;
  padding.dispose();
  return out;
}

/** A masked-LM batch for data2vec: `source` has masks applied, `target` is the original text. */
export type TextPretrainBatch = {
  source: np.Array; // [B, T] int32
  target: np.Array; // [B, T] int32
  positions: np.Array; // [B, T] int32
  padding: np.Array; // [B, T] float32, 1 = real token
  lossWeights: np.Array; // [B, T] float32, 1 where the loss applies (steps that show <mask>)
};

/** Text as a data2vec modality: the student embeds the masked tokens, the teacher the original ones. */
export function textModality(c: TextEncoderConfig): Modality<TextShared, TextPretrainBatch> {
  return {
    encoder: textEncoderSpec(c),
    embed(shared, batch, view, keys) {
      const ids = view === "student" ? batch.source.ref : batch.target.ref;
      return { x: embedText(shared, ids, batch.positions.ref, c, keys), padding: batch.padding.ref };
    },
    lossWeights: (batch) => batch.lossWeights.ref,
  };
}

/** Fresh data2vec parameters for text: encoder (shared input side + blocks) and regression head. */
export function initTextData2Vec(cfg: TextRunConfig, enc: TextEncoderConfig, seed: number): Data2VecParams<TextShared> {
  const keys = new KeyStream(random.key(seed));
  const { shared, layers } = initTextEncoder(keys, enc);
  const head = initRegressionHead(keys, enc.dim, cfg.data2vec.headLayers);
  keys.close();
  return { shared, layers, head };
}

