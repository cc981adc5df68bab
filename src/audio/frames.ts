/** How the CNN feature encoder's layers turn samples into frames (shared by the config checks and the model). */
import { convOutputLength } from "../nn/conv.js";

export type ConvLayerSpec = { channels: number; kernel: number; stride: number };

/** Frames produced from `samples` input samples (the paper's encoder turns 16000 into 49). */
export function framesForSamples(samples: number, layers: ConvLayerSpec[]): number {
  return layers.reduce((n, l) => (n < l.kernel ? 0 : convOutputLength(n, l.kernel, l.stride)), samples);
}
