/**
 * The data2vec speech front end (wav2vec 2.0 layout): a CNN feature encoder over the raw waveform (each layer
 * conv → layer norm over channels → GELU), a feature projection (layer norm → linear), and the convolutional
 * positional encoder (a stack of grouped convs, each followed by a non-affine layer norm and GELU) whose
 * output is added to the frames before the encoder's layer norm. Convolutions run as matmuls (`nn/conv.ts`).
 */
import { lax, numpy as np, random } from "../engine/jax.js";
import { refTree, stopGradientTree } from "../engine/typed.js";
import { sequenceAlibi } from "../data2vec2/model.js";
import { initRegressionHead, type Data2VecParams, type Modality } from "../data2vec/model.js";
import type { PostLnBlockParams } from "../nn/blocks.js";
import { conv1d, type ConvParams } from "../nn/conv.js";
import { runEncoder, type EncoderSpec } from "../nn/encoder.js";
import { initLayerNorm, initLinear, initPostLnBlock } from "../nn/init.js";
import { dropout, gelu, layerNorm, linear, type LayerNormParams, type LinearParams } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import type { AudioModelConfig, AudioRunConfig } from "./config.js";
import { framesForSamples, type ConvLayerSpec } from "./frames.js";
import { logMelFeatures, type FeatureSpec } from "./logmel.js";

/** The front end's part of a run's model settings. */
export function frontEndConfig(m: AudioModelConfig): AudioFrontEndConfig {
  return { convLayers: m.convLayers, frontEnd: m.frontEnd, melBands: m.melBands, sampleRate: m.sampleRate, dim: m.dim, posConvLayers: m.posConvLayers, posConvKernel: m.posConvKernel, posConvGroups: m.posConvGroups, layerNormEps: m.layerNormEps };
}

export type { ConvLayerSpec } from "./frames.js";
export { framesForSamples } from "./frames.js";

export type AudioFrontEndConfig = FeatureSpec & {
  dim: number;
  posConvLayers: number;
  posConvKernel: number;
  posConvGroups: number;
  /** Epsilon of the feature-projection and encoder layer norms (the conv layers' norms use PyTorch's 1e-5). */
  layerNormEps: number;
};

export type FeatureEncoderLayer = { conv: ConvParams; norm: LayerNormParams };
export type AudioFrontEnd = {
  features: FeatureEncoderLayer[];
  projectionNorm: LayerNormParams;
  projection: LinearParams;
  posConv: ConvParams[];
  encoderNorm: LayerNormParams;
};

const CONV_NORM_EPS = 1e-5;

/** Waveform [B, L] → CNN features [B, T, C] (before the projection's layer norm). Consumes both. */
export function featureEncoder(layers: FeatureEncoderLayer[], specs: ConvLayerSpec[], wave: np.Array): np.Array {
  const [b, l] = wave.shape;
  let x = wave.reshape([b, l, 1]);
  layers.forEach((p, i) => {
    x = conv1d(p.conv, x, { kernel: specs[i].kernel, stride: specs[i].stride });
    x = gelu(layerNorm(p.norm, x, CONV_NORM_EPS));
  });
  return x;
}

/**
 * The feature encoder's frames [B, T, C] of waveforms [B, L]: the CNN (`layers`), or fixed log mel energies when
 * `spec.frontEnd` is "logmel" (then `layers` is empty). Consumes both.
 */
export function audioFeatures(layers: FeatureEncoderLayer[], spec: FeatureSpec, wave: np.Array): np.Array {
  if (spec.frontEnd === "logmel") return logMelFeatures(wave, spec);
  return featureEncoder(layers, spec.convLayers, wave);
}

/** Channels of the feature encoder's frames: the CNN's last layer, or the mel bands. */
export function featureChannels(spec: FeatureSpec): number {
  return spec.frontEnd === "logmel" ? (spec.melBands ?? 80) : spec.convLayers[spec.convLayers.length - 1].channels;
}

/** The positional encoder's shape, and whether it pads circularly (`posConvPadding: "circular"`) instead of with zeros. */
export type PositionalConvSpec = Pick<AudioFrontEndConfig, "posConvKernel" | "posConvGroups"> & { circular?: boolean };

/**
 * The convolutional positional encoder on frames [B, T, D]: each layer is a grouped conv with "same" padding
 * (an even kernel drops its extra last frame), a non-affine layer norm and GELU. Consumes both.
 */
export function positionalConv(convs: ConvParams[], h: np.Array, c: PositionalConvSpec, frameMask: np.Array | null = null): np.Array {
  const t = h.shape[1];
  const keep = frameMask ? frameMask.ref.reshape([frameMask.shape[0], t, 1]) : null;
  const pad = Math.floor(c.posConvKernel / 2);
  // Circular padding: frames −pad…−1 are the last ones, T…T+pad−1 the first ones (indices mod T, so any T works).
  const wrapped = c.circular ? Int32Array.from({ length: t + 2 * pad }, (_, i) => (((i - pad) % t) + t) % t) : null;
  let x = h;
  convs.forEach((p, i) => {
    // With a frame mask, padded frames are zeroed before every layer, so nothing flows back from them.
    if (keep && i > 0) x = x.mul(keep.ref);
    if (wrapped) x = conv1d(p, np.take(x, np.array(wrapped, { dtype: np.int32 }), 1), { kernel: c.posConvKernel, padding: 0, groups: c.posConvGroups });
    else x = conv1d(p, x, { kernel: c.posConvKernel, padding: pad, groups: c.posConvGroups });
    if (x.shape[1] > t) x = x.slice([], [0, t]);
    x = gelu(layerNorm(null, x, CONV_NORM_EPS));
  });
  keep?.dispose();
  return x;
}

/** Normalized CNN features [B, T, C] (`extract_features`) and their projection [B, T, D]. Consumes the params and the wave. */
export function projectFeatures(p: Pick<AudioFrontEnd, "features" | "projectionNorm" | "projection">, c: AudioFrontEndConfig, wave: np.Array): { features: np.Array; projected: np.Array } {
  const features = layerNorm(p.projectionNorm, audioFeatures(p.features, c, wave), c.layerNormEps);
  return { features: features.ref, projected: linear(p.projection, features) };
}

/**
 * Adds the positional encoding and applies the encoder's input layer norm. Frames outside `frameMask`
 * [B, T] (1 = real) are zeroed first. With `padding: "leak"` (Hugging Face / fairseq, for parity) that is
 * all: the stacked convs then carry values back from the padded frames into the real ones near the end, so
 * outputs depend on how much a clip was padded. Our own models use `"isolate"`: padded frames are zeroed
 * before every conv layer, and a padded clip gives the same outputs as the clip alone.
 * Consumes `h` and the params; borrows the mask.
 */
export function addPositions(p: Pick<AudioFrontEnd, "posConv" | "encoderNorm">, c: AudioFrontEndConfig, h: np.Array, frameMask: np.Array | null, opts: { padding: AudioModelConfig["posConvPadding"] } = { padding: "leak" }): np.Array {
  if (frameMask) h = h.mul(frameMask.ref.reshape([frameMask.shape[0], frameMask.shape[1], 1]));
  const positions = positionalConv(p.posConv, h.ref, { ...c, circular: opts.padding === "circular" }, opts.padding === "leak" ? null : frameMask);
  return layerNorm(p.encoderNorm, h.add(positions), c.layerNormEps);
}

// ---------------------------------------------------------------------------------------------------------
// Our speech models: initialization, the encoder, and speech as a data2vec modality.

/**
 * The input side shared by student and teacher: CNN, projection, mask embedding, positional conv, encoder LN; and
 * for encoders pretrained with data2vec 2.0, the learned per-head scales [H] of their ALiBi attention bias.
 */
export type AudioShared = AudioFrontEnd & { maskEmbedding: np.Array; alibiScale?: np.Array };
export type AudioEncoderParams = { shared: AudioShared; layers: PostLnBlockParams[] };

export function audioEncoderSpec(m: AudioModelConfig): EncoderSpec {
  return { kind: "post_ln", heads: m.heads, eps: m.layerNormEps, dropout: m.dropout, attentionDropout: m.attentionDropout, activationDropout: m.activationDropout };
}

/** A conv with PyTorch's default init, U(±1/√fan_in) (fan_in = k·Cin/G), or Kaiming normal for the CNN (wav2vec 2.0). */
function initConv(keys: KeyStream, cin: number, cout: number, kernel: number, o: { groups?: number; bias?: boolean; kaiming?: boolean } = {}): ConvParams {
  const groups = o.groups ?? 1;
  const fanIn = (kernel * cin) / groups;
  const shape = groups === 1 ? [fanIn, cout] : [groups, fanIn, cout / groups];
  const weight = o.kaiming ? keys.normal(shape).mul(Math.sqrt(2 / fanIn)) : random.uniform(keys.next(), shape, { minval: -1, maxval: 1 }).mul(1 / Math.sqrt(fanIn));
  const p: ConvParams = { weight };
  if (o.bias) p.bias = random.uniform(keys.next(), [cout], { minval: -1, maxval: 1 }).mul(1 / Math.sqrt(fanIn));
  return p;
}

export function initAudioEncoder(keys: KeyStream, m: AudioModelConfig): AudioEncoderParams {
  // The log mel front end has no weights: `features` is empty and the projection reads the mel bands.
  const features =
    m.frontEnd === "logmel"
      ? []
      : m.convLayers.map((l, i) => ({
          conv: initConv(keys, i === 0 ? 1 : m.convLayers[i - 1].channels, l.channels, l.kernel, { kaiming: true }),
          norm: initLayerNorm(l.channels),
        }));
  const last = featureChannels(m);
  const shared: AudioShared = {
    features,
    projectionNorm: initLayerNorm(last),
    projection: initLinear(keys, last, m.dim),
    // fairseq: mask_emb uniform in [0, 1).
    maskEmbedding: random.uniform(keys.next(), [m.dim]),
    posConv: Array.from({ length: m.posConvLayers }, () => initConv(keys, m.dim, m.dim, m.posConvKernel, { groups: m.posConvGroups, bias: true })),
    encoderNorm: initLayerNorm(m.dim),
  };
  return { shared, layers: Array.from({ length: m.layers }, () => initPostLnBlock(keys, m.dim, m.ffnDim)) };
}

export function initAudioData2Vec(cfg: AudioRunConfig, seed: number): Data2VecParams<AudioShared> {
  const keys = new KeyStream(random.key(seed));
  const { shared, layers } = initAudioEncoder(keys, cfg.model);
  const head = initRegressionHead(keys, cfg.model.dim, cfg.data2vec.headLayers);
  keys.close();
  return { shared, layers, head };
}

/** [B, T] frame mask (1 = real frame) for clips of the given sample counts in a batch padded to T frames. */
export function frameMaskArray(sampleLengths: number[], frames: number, m: Pick<AudioModelConfig, "convLayers">): Float32Array {
  const mask = new Float32Array(sampleLengths.length * frames);
  sampleLengths.forEach((n, i) => mask.fill(1, i * frames, i * frames + Math.min(frames, framesForSamples(n, m.convLayers))));
  return mask;
}

/**
 * Encoder input [B, T, D] from waveforms [B, L]: CNN → projection → (dropout, then the mask embedding at the
 * `mask` frames) → positions → LN → dropout. `frameMask` [B, T] marks real frames (null: no padding).
 * Consumes `shared` and `wave`; borrows the masks.
 */
export function embedAudio(shared: AudioShared, wave: np.Array, frameMask: np.Array | null, mask: np.Array | null, m: AudioModelConfig, keys: KeyStream | null): np.Array {
  const { features, ...rest } = shared;
  return embedFeatures(rest, audioFeatures(features, m, wave), frameMask, mask, m, keys);
}

/**
 * `embedAudio` from the CNN's output [B, T, C] (cached when the feature encoder is frozen in fine-tuning).
 * Consumes `shared` and `cnnOut`; borrows the masks.
 */
export function embedFeatures(shared: Omit<AudioShared, "features">, cnnOut: np.Array, frameMask: np.Array | null, mask: np.Array | null, m: AudioModelConfig, keys: KeyStream | null): np.Array {
  const projected = linear(shared.projection, layerNorm(shared.projectionNorm, cnnOut, m.layerNormEps));
  let h = dropout(projected, m.featureDropout, keys);
  h = applyMask(h, mask, shared.maskEmbedding);
  return dropout(addPositions(shared, frontEndConfig(m), h, frameMask, { padding: m.posConvPadding ?? "isolate" }), m.dropout, keys);
}

/** Replaces the frames where mask [B, T] is 1 by the mask embedding [D]. Consumes h and the embedding; borrows the mask. */
function applyMask(h: np.Array, mask: np.Array | null, embedding: np.Array): np.Array {
  if (!mask) {
    embedding.dispose();
    return h;
  }
  const [b, t] = mask.shape;
  const m = mask.ref.reshape([b, t, 1]);
  return h.mul(m.ref.mul(-1).add(1)).add(m.mul(embedding));
}

/** Final hidden states [B, T, D]. Consumes params and wave; borrows the frame mask. */
export function encodeAudio(p: AudioEncoderParams, wave: np.Array, frameMask: np.Array | null, m: AudioModelConfig, keys: KeyStream | null, timeMask: np.Array | null = null): np.Array {
  const { alibiScale, ...shared } = p.shared;
  const x = embedAudio(shared, wave, frameMask, timeMask, m, keys);
  return runAudioBlocks(p.layers, x, alibiScale, frameMask, m, keys);
}

/** The blocks on frames x [B, T, D], with the ALiBi bias of a data2vec 2.0 encoder (`alibiScale`, consumed) if it has one. */
export function runAudioBlocks(layers: PostLnBlockParams[], x: np.Array, alibiScale: np.Array | undefined, frameMask: np.Array | null, m: AudioModelConfig, keys: KeyStream | null): np.Array {
  const bias = alibiScale ? sequenceAlibi(alibiScale, x.shape[1]) : null;
  const out = runEncoder(layers, x, audioEncoderSpec(m), { padding: frameMask, bias, keys }).out;
  bias?.dispose();
  return out;
}

/** A pretraining batch: waveforms, which frames are real, which are masked for the student. */
export type AudioPretrainBatch = {
  wave: np.Array; // [B, L] float32
  frameMask: np.Array; // [B, T] float32, 1 = real frame (of the student's view)
  mask: np.Array; // [B, T] float32, 1 = masked (never on padding, always in both views)
  /** [B, T] the teacher's frames when its view differs from the student's (`masking.edgeJitter`). */
  teacherFrameMask?: np.Array;
};

/**
 * Speech as a data2vec modality. The CNN runs once: the teacher reads the student's unmasked projected
 * features (under stop-gradient) through the shared positional conv, as fairseq's `pre_encoder_features`.
 */
export function audioModality(m: AudioModelConfig): Modality<AudioShared, AudioPretrainBatch> {
  const c = frontEndConfig(m);
  return {
    encoder: audioEncoderSpec(m),
    embed(shared, batch, view, keys) {
      const mask = view === "student" ? batch.mask : null;
      const frames = view === "teacher" ? (batch.teacherFrameMask ?? batch.frameMask) : batch.frameMask;
      return { x: embedAudio(shared, batch.wave.ref, frames, mask, m, keys), padding: frames.ref };
    },
    embedViews(shared, batch, keys, teacherShared) {
      const { features, projected } = projectFeatures(shared, c, batch.wave.ref);
      features.dispose();
      const frozen = lax.stopGradient(projected.ref);
      // The teacher's own copies (data2vec.emaShared) where it has them, else the student's under stop-gradient.
      const stopped = <T>(p: T): T => stopGradientTree(refTree(p));
      const teacherPositions = {
        posConv: teacherShared.posConv ?? shared.posConv.map((p) => stopped(p)),
        encoderNorm: teacherShared.encoderNorm ?? stopped(shared.encoderNorm),
      };
      const unused = Object.entries(teacherShared).filter(([k]) => k !== "posConv" && k !== "encoderNorm");
      if (unused.length) throw new Error(`data2vec.emaShared: the speech teacher can keep its own posConv and encoderNorm only, not ${unused.map(([k]) => k).join(", ")}`);
      const teacherFrames = batch.teacherFrameMask ?? batch.frameMask;
      const padding = m.posConvPadding ?? "isolate";
      const teacher = addPositions(teacherPositions, c, frozen, teacherFrames, { padding });
      const h = applyMask(dropout(projected, m.featureDropout, keys), batch.mask, shared.maskEmbedding);
      const student = dropout(addPositions(shared, c, h, batch.frameMask, { padding }), m.dropout, keys);
      return { student: { x: student, padding: batch.frameMask.ref }, teacher: { x: teacher, padding: teacherFrames.ref } };
    },
    lossWeights: (batch) => batch.mask.ref,
  };
}
