/**
 * data2vec 2.0's lightweight decoder (fairseq `Decoder1d` / `Decoder2d`): the encoder's outputs put back at their
 * steps with masked steps empty, then `layers` × [grouped conv with "same" padding → layer norm over channels
 * (no affine) → GELU], each layer adding its input where the widths match, then a projection to the model
 * width. 1-D over time for speech and text, 2-D over the patch grid for images.
 */
import { random } from "../engine/jax.js";
import type { numpy as np } from "../engine/jax.js";
import { conv1d, conv2d, type ConvParams } from "../nn/conv.js";
import { gelu, layerNorm, linear, type LinearParams } from "../nn/layers.js";
import type { KeyStream } from "../nn/random.js";
import type { Data2Vec2Settings, DecoderSettings } from "../data2vec/config.js";
import type { V2StepShape } from "../train/memory-plan.js";

export type DecoderParams = { layers: ConvParams[]; projection: LinearParams[] };

/** What the decoder convolves over: a sequence, or a patch grid of `height` × `width` (row-major steps). */
export type DecoderShape = { kind: "1d" } | { kind: "2d"; height: number; width: number };

const NORM_EPS = 1e-5;

/** The projection's widths: decoder dim → (dim·ratio → …) → model dim. */
function projectionWidths(s: DecoderSettings, modelDim: number): number[] {
  const widths = [s.dim];
  for (let i = 0; i < s.projectionLayers - 1; i++) widths.push(i === 0 ? Math.floor(widths[i] * s.projectionRatio) : widths[i]);
  widths.push(modelDim);
  return widths;
}

/**
 * A data2vec 2.0 update's shape for the memory plan (`V2StepShape` less the parameter count): the modality gives its
 * lengths and encoder, and any convolution besides the decoder's that runs over whole views (speech's positional
 * conv); the decoder adds, per step of a view, each conv layer's im2col width (taps × input channels) and output
 * width, and the widths of the restored input and of the projection's outputs.
 */
export function v2UpdateShape(o: {
  samples: number;
  v2: Data2Vec2Settings;
  encoder: { dim: number; ffnDim: number; heads: number; layers: number };
  steps: number;
  visible: number;
  extra: number;
  decoderShape: DecoderShape;
  viewConvs?: { taps: number; out: number }[];
  localFloats?: number;
}): Omit<V2StepShape, "params"> {
  const s = o.v2.decoder;
  const { dim } = o.encoder;
  const taps = o.decoderShape.kind === "2d" ? s.kernel * s.kernel : s.kernel;
  const convs = [...(o.viewConvs ?? []), ...Array.from({ length: s.layers }, (_, i) => ({ taps: taps * (i === 0 ? dim : s.dim), out: s.dim }))];
  return {
    samples: o.samples,
    views: o.v2.cloneBatch,
    steps: o.steps,
    visible: o.visible,
    extra: o.extra,
    dim,
    ffnDim: o.encoder.ffnDim,
    heads: o.encoder.heads,
    layers: o.encoder.layers + (o.v2.prenetDepth ?? 0),
    convTaps: convs.map((c) => c.taps),
    convOut: convs.map((c) => c.out),
    widths: [dim, ...projectionWidths(s, dim).slice(1)],
    ...(o.localFloats === undefined ? {} : { localFloats: o.localFloats }),
  };
}

/** PyTorch's default Conv / Linear init, U(±1/√fan_in), which fairseq keeps for the decoder. */
export function initDecoder(keys: KeyStream, s: DecoderSettings, modelDim: number, shape: DecoderShape): DecoderParams {
  const taps = shape.kind === "2d" ? s.kernel * s.kernel : s.kernel;
  const uniform = (dims: number[], fanIn: number) => random.uniform(keys.next(), dims, { minval: -1, maxval: 1 }).mul(1 / Math.sqrt(fanIn));
  const layers = Array.from({ length: s.layers }, (_, i) => {
    const cin = i === 0 ? modelDim : s.dim;
    if (cin % s.groups || s.dim % s.groups) throw new Error(`decoder: ${s.groups} groups do not divide ${cin} → ${s.dim} channels`);
    const fanIn = (taps * cin) / s.groups;
    const weight = s.groups === 1 ? uniform([fanIn, s.dim], fanIn) : uniform([s.groups, fanIn, s.dim / s.groups], fanIn);
    return { weight, bias: uniform([s.dim], fanIn) };
  });
  const widths = projectionWidths(s, modelDim);
  const projection = widths.slice(1).map((w, i) => ({ weight: uniform([widths[i], w], widths[i]), bias: uniform([w], widths[i]) }));
  return { layers, projection };
}

/** Decoder over x [N, T, D] (the restored sequence) → predictions [N, T, D]. Consumes both. */
export function runDecoder(p: DecoderParams, x: np.Array, s: DecoderSettings, shape: DecoderShape): np.Array {
  const [n, t] = x.shape;
  if (shape.kind === "2d") x = x.reshape([n, shape.height, shape.width, -1]);
  p.layers.forEach((conv) => {
    const pad = Math.floor(s.kernel / 2);
    let y = shape.kind === "2d" ? conv2d(conv, x.ref, { kernel: s.kernel, padding: pad, groups: s.groups }) : conv1d(conv, x.ref, { kernel: s.kernel, padding: pad, groups: s.groups });
    // SamePad: an even kernel gives one step more than it was given; drop the last.
    if (s.kernel % 2 === 0) y = shape.kind === "2d" ? y.slice([], [0, shape.height], [0, shape.width]) : y.slice([], [0, t]);
    y = gelu(layerNorm(null, y, NORM_EPS));
    const residual = s.residual && x.shape[x.shape.length - 1] === y.shape[y.shape.length - 1];
    x = residual ? y.add(x) : (x.dispose(), y);
  });
  x = x.reshape([n, t, -1]);
  p.projection.forEach((layer, i) => {
    x = linear(layer, x);
    if (i < p.projection.length - 1) x = gelu(x);
  });
  return x;
}
