/**
 * A log mel front end for the speech model (`model.frontEnd: "logmel"`), in place of the CNN feature encoder.
 *
 * Why: from random weights the CNN's frames are nearly white in time (lag-1 autocorrelation of the targets about
 * 0.08, docs/results/speech-synth.md), so on short crops the only thing a data2vec student can predict at first is
 * where a frame sits in its crop, and without that shortcut it predicts nothing. Log mel energies are smooth in time
 * and carry the spectrum from the first update, so the teacher's targets carry content from the start (as in EAT,
 * data2vec 2.0 on spectrograms). The frames are the CNN's: a window of the CNN's receptive field (400 samples, 25 ms,
 * for the paper's CNN) every total stride (320 samples, 20 ms), and the same count for any clip length, so masking,
 * padding and CTC lengths are unchanged. Nothing here is trained: a Hann-windowed DFT (as a matmul), the power
 * spectrum, triangular mel filters (HTK scale, 0 Hz to half the sample rate) and a log.
 */
import { numpy as np } from "../engine/jax.js";
import { cnnActivations } from "../train/memory-plan.js";
import { framesForSamples, type ConvLayerSpec } from "./frames.js";

/** The part of a speech model's settings the feature encoder needs. */
export type FeatureSpec = { convLayers: ConvLayerSpec[]; frontEnd?: "cnn" | "logmel"; melBands?: number; sampleRate?: number };

/** Samples one CNN frame sees (its receptive field) and samples between frames (the product of the strides). */
export function cnnWindow(layers: ConvLayerSpec[]): { window: number; hop: number } {
  let window = 1;
  let hop = 1;
  for (const l of layers) {
    window += (l.kernel - 1) * hop;
    hop *= l.stride;
  }
  return { window, hop };
}

const hzToMel = (hz: number) => 2595 * Math.log10(1 + hz / 700);
const melToHz = (mel: number) => 700 * (10 ** (mel / 2595) - 1);

/** Triangular mel filters [fftSize/2 + 1, bands] (row-major) over the bins of an fftSize-point DFT, HTK mel scale, 0 Hz to sampleRate/2. */
export function melFilterbank(sampleRate: number, fftSize: number, bands: number): Float64Array {
  const bins = Math.floor(fftSize / 2) + 1;
  const edges = Array.from({ length: bands + 2 }, (_, i) => melToHz((i / (bands + 1)) * hzToMel(sampleRate / 2)));
  const out = new Float64Array(bins * bands);
  for (let k = 0; k < bins; k++) {
    const hz = (k * sampleRate) / fftSize;
    for (let m = 0; m < bands; m++) out[k * bands + m] = Math.max(0, Math.min((hz - edges[m]) / (edges[m + 1] - edges[m]), (edges[m + 2] - hz) / (edges[m + 2] - edges[m + 1])));
  }
  return out;
}

/** The real and imaginary parts of a Hann-windowed DFT of `n` samples as one matrix [n, 2·(n/2 + 1)]: frame · basis = [re | im]. */
export function dftBasis(n: number): Float32Array {
  const bins = Math.floor(n / 2) + 1;
  const basis = new Float32Array(n * 2 * bins);
  for (let i = 0; i < n; i++) {
    const hann = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n); // periodic Hann (torch.hann_window)
    for (let k = 0; k < bins; k++) {
      const angle = (2 * Math.PI * ((i * k) % n)) / n;
      basis[i * 2 * bins + k] = hann * Math.cos(angle);
      basis[i * 2 * bins + bins + k] = -hann * Math.sin(angle);
    }
  }
  return basis;
}

/** Added to the mel energies before the log: a floor far below speech in clips normalized to unit variance. */
export const LOG_MEL_FLOOR = 1e-6;

const constants = new Map<string, { basis: Float32Array; filters: Float32Array }>();

/**
 * Log mel energies [B, T, melBands] of waveforms [B, L], T = framesForSamples(L): frame t covers samples
 * t·hop … t·hop + window − 1 (zeros past the end). Consumes the wave.
 */
export function logMelFeatures(wave: np.Array, spec: FeatureSpec): np.Array {
  const { window, hop } = cnnWindow(spec.convLayers);
  const bands = spec.melBands ?? 80;
  const sampleRate = spec.sampleRate ?? 16000;
  const key = `${window}:${bands}:${sampleRate}`;
  if (!constants.has(key)) constants.set(key, { basis: dftBasis(window), filters: Float32Array.from(melFilterbank(sampleRate, window, bands)) });
  const { basis, filters } = constants.get(key)!;
  const bins = Math.floor(window / 2) + 1;
  const [b, l] = wave.shape;
  const t = framesForSamples(l, spec.convLayers);
  // Frame t is hop-chunk t followed by the first (window − hop) samples of chunk t + 1: two slices, not `window` taps.
  const chunks = Math.max(t, 0) + Math.ceil(Math.max(0, window - hop) / hop);
  let x = wave;
  if (chunks * hop > l) x = np.pad(x, [[0, 0], [0, chunks * hop - l]]);
  else if (chunks * hop < l) x = x.slice([], [0, chunks * hop]);
  const grid = x.reshape([b, chunks, hop]);
  const parts: np.Array[] = [];
  for (let start = 0, c = 0; start < window; start += hop, c++) {
    const width = Math.min(hop, window - start);
    parts.push(grid.ref.slice([], [c, c + t], [0, width]));
  }
  grid.dispose();
  const frames = parts.length === 1 ? parts[0] : np.concatenate(parts, 2); // [B, T, window]
  const spectrum = np.matmul(frames.reshape([b * t, window]), np.array(basis).reshape([window, 2 * bins])); // [B·T, re | im]
  const power = np.square(spectrum.ref.slice([], [0, bins])).add(np.square(spectrum.slice([], [bins, 2 * bins])));
  const mel = np.matmul(power, np.array(filters).reshape([bins, bands]));
  return np.log(mel.add(LOG_MEL_FLOOR)).reshape([b, t, bands]);
}

/**
 * Floats the feature encoder holds per clip of `samples` samples, for the memory plan: the CNN's (`cnnActivations`),
 * or for log mel frames each frame's samples, spectrum, power and bands, twice (nothing there trains).
 */
export function featureActivations(samples: number, spec: FeatureSpec, trained = true): number {
  if (spec.frontEnd !== "logmel") return cnnActivations(samples, spec.convLayers, trained);
  const { window } = cnnWindow(spec.convLayers);
  const bins = Math.floor(window / 2) + 1;
  return 2 * framesForSamples(samples, spec.convLayers) * (window + 3 * bins + (spec.melBands ?? 80));
}
