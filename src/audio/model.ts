/**
 * The data2vec speech front end (wav2vec 2.0 layout): a CNN feature encoder over the raw waveform (each layer
 * conv → layer norm over channels → GELU), a feature projection (layer norm → linear), and the convolutional
 * positional encoder (a stack of grouped convs, each followed by a non-affine layer norm and GELU) whose
 * output is added to the frames before the encoder's layer norm. Convolutions run as matmuls (`nn/conv.ts`).
 */
import { numpy as np } from "../engine/jax.js";
import { conv1d, convOutputLength, type ConvParams } from "../nn/conv.js";
import { gelu, layerNorm, linear, type LayerNormParams, type LinearParams } from "../nn/layers.js";

export type ConvLayerSpec = { channels: number; kernel: number; stride: number };

export type AudioFrontEndConfig = {
  convLayers: ConvLayerSpec[];
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

/** Frames produced from `samples` input samples (the paper's encoder turns 16000 into 49). */
export function framesForSamples(samples: number, layers: ConvLayerSpec[]): number {
  return layers.reduce((n, l) => (n < l.kernel ? 0 : convOutputLength(n, l.kernel, l.stride)), samples);
}

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
 * The convolutional positional encoder on frames [B, T, D]: each layer is a grouped conv with "same" padding
 * (an even kernel drops its extra last frame), a non-affine layer norm and GELU. Consumes both.
 */
export function positionalConv(convs: ConvParams[], h: np.Array, c: AudioFrontEndConfig): np.Array {
  const t = h.shape[1];
  let x = h;
  for (const p of convs) {
    x = conv1d(p, x, { kernel: c.posConvKernel, padding: Math.floor(c.posConvKernel / 2), groups: c.posConvGroups });
    if (x.shape[1] > t) x = x.slice([], [0, t]);
    x = gelu(layerNorm(null, x, CONV_NORM_EPS));
  }
  return x;
}

/** Normalized CNN features [B, T, C] (`extract_features`) and their projection [B, T, D]. Consumes the params and the wave. */
export function projectFeatures(p: Pick<AudioFrontEnd, "features" | "projectionNorm" | "projection">, c: AudioFrontEndConfig, wave: np.Array): { features: np.Array; projected: np.Array } {
  const features = layerNorm(p.projectionNorm, featureEncoder(p.features, c.convLayers, wave), c.layerNormEps);
  return { features: features.ref, projected: linear(p.projection, features) };
}

/**
 * Adds the positional encoding and applies the encoder's input layer norm. Frames outside `frameMask`
 * [B, T] (1 = real) are zeroed first, and only there: the stacked convs then carry values back into the
 * padded frames, as in the reference implementation. Consumes `h` and the params; borrows the mask.
 */
export function addPositions(p: Pick<AudioFrontEnd, "posConv" | "encoderNorm">, c: AudioFrontEndConfig, h: np.Array, frameMask: np.Array | null): np.Array {
  if (frameMask) h = h.mul(frameMask.ref.reshape([frameMask.shape[0], frameMask.shape[1], 1]));
  const positions = positionalConv(p.posConv, h.ref, c);
  return layerNorm(p.encoderNorm, h.add(positions), c.layerNormEps);
}
