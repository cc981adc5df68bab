/**
 * Text, speech and images as data2vec 2.0 modalities: each is its local encoder (the v1 models' input side without
 * mask embeddings) and the shape of its context encoder and decoder (fairseq `modalities/{text,audio,images}.py`).
 */
import { numpy as np, random } from "../engine/jax.js";
import { projectFeatures, type AudioFrontEnd } from "../audio/model.js";
import type { ConvLayerSpec } from "../audio/frames.js";
import type { EncoderSpec } from "../nn/encoder.js";
import { initLayerNorm, initPostLnBlock } from "../nn/init.js";
import type { ParamTree } from "../engine/tree.js";
import { linear, type LinearParams } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import { embedText, type TextEncoderConfig, type TextShared } from "../text/model.js";
import { patchify } from "../vision/model.js";
import type { DecoderSettings } from "../data2vec/config.js";
import { initDecoder } from "./decoder.js";
import type { ContextParams, Data2Vec2Params, Modality2, V2Batch } from "./model.js";

/** The transformer blocks of data2vec 2.0 (fairseq `AltBlock`, post-LN): the query is scaled before Q·Kᵀ. */
export function altBlockSpec(o: { heads: number; eps: number; dropout: number; attentionDropout: number; activationDropout: number }): EncoderSpec {
  return { kind: "post_ln", heads: o.heads, eps: o.eps, dropout: o.dropout, attentionDropout: o.attentionDropout, activationDropout: o.activationDropout, scaleQueryFirst: true };
}

// ---------------------------------------------------------------------------------------------------------
// Text: token embeddings + learned positions + layer norm; no context encoder; 1-D decoder.

export type TextV2Batch = V2Batch & { source: np.Array; positions: np.Array; padding: np.Array };

export function textModality2(c: TextEncoderConfig): Modality2<TextShared, TextV2Batch> {
  const blocks = altBlockSpec({ heads: c.heads, eps: c.layerNormEps, dropout: c.dropout, attentionDropout: c.attentionDropout, activationDropout: c.activationDropout });
  return {
    encoder: blocks,
    context: { extraTokens: 0, posConv: null, alibi: null, blocks },
    decoder: { kind: "1d" },
    // Padded tokens stay in the sequence as steps the attention never reads (fairseq does not zero them).
    local: (p, batch, keys) => ({ x: embedText(p, batch.source.ref, batch.positions.ref, c, keys), padding: batch.padding.ref }),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Speech: the CNN and its projection; convolutional positions, ALiBi and a layer norm in the context encoder.

export type AudioLocal = Pick<AudioFrontEnd, "features" | "projectionNorm" | "projection">;
export type AudioV2Config = {
  convLayers: ConvLayerSpec[];
  /** The feature encoder: the CNN, or fixed log mel frames (audio/logmel.ts). */
  frontEnd?: "cnn" | "logmel";
  melBands?: number;
  sampleRate?: number;
  dim: number;
  heads: number;
  layerNormEps: number;
  posConvLayers: number;
  posConvKernel: number;
  posConvGroups: number;
  /** "circular": the positional convs pad with the clip's other end (audio/config.ts); anything else, zeros. */
  posConvPadding?: string;
  dropout: number;
  attentionDropout: number;
  activationDropout: number;
};
export type AudioV2Batch = V2Batch & { wave: np.Array; frameMask: np.Array };

export function audioModality2(c: AudioV2Config): Modality2<AudioLocal, AudioV2Batch> {
  const blocks = altBlockSpec({ heads: c.heads, eps: c.layerNormEps, dropout: c.dropout, attentionDropout: c.attentionDropout, activationDropout: c.activationDropout });
  return {
    encoder: blocks,
    context: { extraTokens: 0, posConv: { posConvKernel: c.posConvKernel, posConvGroups: c.posConvGroups, circular: c.posConvPadding === "circular" }, alibi: { heads: c.heads }, blocks },
    decoder: { kind: "1d" },
    local(p, batch) {
      const { features, projected } = projectFeatures(p, c, batch.wave.ref);
      features.dispose();
      return { x: projected, padding: batch.frameMask.ref };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Images: patch embedding + fixed 2-D sin-cos positions; a CLS token, a layer norm and prenet blocks; 2-D decoder.

export type ImageLocal = { patch: LinearParams };
export type ImageV2Config = { imageSize: number; patchSize: number; channels: number; dim: number; heads: number; layerNormEps: number; dropout: number; attentionDropout: number; activationDropout: number };
export type ImageV2Batch = V2Batch & { images: np.Array };

/**
 * MAE's fixed 2-D sin-cos positions [g·g, D] (`get_2d_sincos_pos_embed`): the first half of the channels encodes
 * the column, the second the row, each as sin then cos over D/4 frequencies 1/10000^(i/(D/4)).
 */
export function sinCosPositions(grid: number, dim: number): Float32Array {
  if (dim % 4) throw new Error(`sin-cos positions need a width divisible by 4, not ${dim}`);
  const quarter = dim / 4;
  const out = new Float32Array(grid * grid * dim);
  for (let row = 0; row < grid; row++)
    for (let col = 0; col < grid; col++) {
      const o = (row * grid + col) * dim;
      for (let i = 0; i < quarter; i++) {
        const omega = 1 / 10000 ** (i / quarter);
        out[o + i] = Math.sin(col * omega);
        out[o + quarter + i] = Math.cos(col * omega);
        out[o + 2 * quarter + i] = Math.sin(row * omega);
        out[o + 3 * quarter + i] = Math.cos(row * omega);
      }
    }
  return out;
}

/** data2vec 2.0's image model from a vision run config's model section (the v1 fields it shares: sizes, dropout, epsilon). */
export function imageV2Config(m: { imageSize: number; patchSize: number; channels: number; dim: number; heads: number; layerNormEps: number; dropout: number; attentionDropout: number }): ImageV2Config {
  return { imageSize: m.imageSize, patchSize: m.patchSize, channels: m.channels, dim: m.dim, heads: m.heads, layerNormEps: m.layerNormEps, dropout: m.dropout, attentionDropout: m.attentionDropout, activationDropout: 0 };
}

export function imageModality2(c: ImageV2Config): Modality2<ImageLocal, ImageV2Batch> {
  const grid = c.imageSize / c.patchSize;
  if (!Number.isInteger(grid)) throw new Error(`image size ${c.imageSize} is not a multiple of the patch size ${c.patchSize}`);
  const positions = sinCosPositions(grid, c.dim);
  const blocks = altBlockSpec({ heads: c.heads, eps: c.layerNormEps, dropout: c.dropout, attentionDropout: c.attentionDropout, activationDropout: c.activationDropout });
  return {
    encoder: blocks,
    context: { extraTokens: 1, posConv: null, alibi: null, blocks },
    decoder: { kind: "2d", height: grid, width: grid },
    local: (p, batch) => ({ x: linear(p.patch, patchify(batch.images.ref, c.patchSize)).add(np.array(positions).reshape([1, grid * grid, c.dim])), padding: null }),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Fresh parameters.

/** A context encoder: the groups a modality uses, initialized as fairseq does (CLS N(0, 1), ALiBi scale 1). */
export function initContext(keys: KeyStream, o: { dim: number; ffnDim: number; extraTokens?: number; posConv?: { layers: number; kernel: number; groups: number }; alibiHeads?: number; norm?: boolean; prenet?: number }): ContextParams {
  const ctx: ContextParams = { prenet: Array.from({ length: o.prenet ?? 0 }, () => initPostLnBlock(keys, o.dim, o.ffnDim)) };
  if (o.extraTokens) ctx.extraTokens = keys.normal([1, o.extraTokens, o.dim]);
  if (o.posConv) {
    const { layers, kernel, groups } = o.posConv;
    const fanIn = (kernel * o.dim) / groups;
    ctx.posConv = Array.from({ length: layers }, () => ({
      weight: random.uniform(keys.next(), [groups, fanIn, o.dim / groups], { minval: -1, maxval: 1 }).mul(1 / Math.sqrt(fanIn)),
      bias: random.uniform(keys.next(), [o.dim], { minval: -1, maxval: 1 }).mul(1 / Math.sqrt(fanIn)),
    }));
  }
  if (o.alibiHeads) ctx.alibiScale = np.ones([o.alibiHeads]);
  if (o.norm) ctx.norm = initLayerNorm(o.dim);
  return ctx;
}

/** Student parameters: the local encoder, a context encoder, `layers` blocks and the decoder. */
export function initData2Vec2<Local extends ParamTree>(
  seed: number,
  o: { local: (keys: KeyStream) => Local; context: (keys: KeyStream) => ContextParams; dim: number; ffnDim: number; layers: number; decoder: DecoderSettings; decoderShape: Modality2<never, never>["decoder"] },
): Data2Vec2Params<Local> {
  const keys = new KeyStream(random.key(seed));
  const local = o.local(keys);
  const context = o.context(keys);
  const layers = Array.from({ length: o.layers }, () => initPostLnBlock(keys, o.dim, o.ffnDim));
  const head = initDecoder(keys, o.decoder, o.dim, o.decoderShape);
  keys.close();
  return { shared: { local, context }, layers, head };
}
