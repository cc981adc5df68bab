/**
 * Classic baselines on the same labels as the neural models: logistic regression on raw pixels (images), on tf-idf
 * vectors (text), and on a clip's log mel spectrum summarized over time (speech). A pretrained model that loses to
 * these is not a result to advertise.
 */
import FFT from "fft.js";
import { linear, type LinearParams } from "../src/nn/layers.js";
import { disposeTree } from "../src/engine/typed.js";
import { numpy as np } from "../src/engine/jax.js";
import { accuracy } from "../src/train/metrics.js";
import { featureMoments, fitHead, headPredictions, standardize } from "../src/train/probe.js";
import { melFilterbank } from "../src/audio/logmel.js";

/**
 * Multinomial logistic regression (a linear layer, cross-entropy, full-batch AdamW with a little weight decay, as
 * the linear probes) on features used as given: raw pixels in [0, 1] and L2-normalized tf-idf rows need no scaling.
 */
export async function logisticRegression(train: Float32Array, trainLabels: number[], test: Float32Array, testLabels: number[], dim: number, classes: number, seed: number): Promise<{ accuracy: number; trainAccuracy: number }> {
  const logits = (h: LinearParams, x: np.Array) => linear(h, x);
  const head = fitHead({ weight: np.zeros([dim, classes]), bias: np.zeros([classes]) }, logits, train, trainLabels, dim, classes, { steps: 500, lr: 1e-2, weightDecay: 1e-4, seed });
  const trainAccuracy = accuracy(await headPredictions(head, logits, train, dim), trainLabels);
  const testAccuracy = accuracy(await headPredictions(head, logits, test, dim), testLabels);
  disposeTree(head);
  return { accuracy: testAccuracy, trainAccuracy };
}

const words = (text: string) => text.toLowerCase().match(/[a-z']+/g) ?? [];

/**
 * tf-idf vectors as scikit-learn's TfidfVectorizer(sublinear_tf=True) makes them: the vocabulary and document
 * frequencies of the training texts, tf = 1 + log(count), idf = ln((1 + n) / (1 + df)) + 1, each row L2-normalized.
 */
export function tfidfFeatures(train: string[], test: string[]): { train: Float32Array; test: Float32Array; dim: number } {
  const df = new Map<string, number>();
  for (const t of train) for (const w of new Set(words(t))) df.set(w, (df.get(w) ?? 0) + 1);
  const vocab = new Map([...df.keys()].sort().map((w, i) => [w, i] as const));
  const idf = Float64Array.from([...vocab.keys()], (w) => Math.log((1 + train.length) / (1 + df.get(w)!)) + 1);
  const vectors = (texts: string[]) => {
    const out = new Float32Array(texts.length * vocab.size);
    texts.forEach((t, i) => {
      const counts = new Map<number, number>();
      for (const w of words(t)) if (vocab.has(w)) counts.set(vocab.get(w)!, (counts.get(vocab.get(w)!) ?? 0) + 1);
      let norm = 0;
      for (const [j, c] of counts) norm += ((1 + Math.log(c)) * idf[j]) ** 2;
      for (const [j, c] of counts) out[i * vocab.size + j] = ((1 + Math.log(c)) * idf[j]) / Math.sqrt(norm || 1);
    });
    return out;
  };
  return { train: vectors(train), test: vectors(test), dim: vocab.size };
}

const SAMPLE_RATE = 16000;
const FRAME = 400; // 25 ms
const HOP = 160; // 10 ms
const FFT_SIZE = 512;
const MEL_BANDS = 40;

/** The 40 mel filters over the FFT bins (HTK mel scale, 0–8 kHz), one array per band. */
function melFilters(): Float64Array[] {
  const bins = FFT_SIZE / 2 + 1;
  const bank = melFilterbank(SAMPLE_RATE, FFT_SIZE, MEL_BANDS);
  return Array.from({ length: MEL_BANDS }, (_, m) => Float64Array.from({ length: bins }, (_, k) => bank[k * MEL_BANDS + m]));
}

/** The 40 log mel energies of each 25-ms Hann frame, every 10 ms: [frames][40]. */
export function logMelFrames(samples: Float32Array): Float64Array[] {
  const fft = new FFT(FFT_SIZE);
  const filters = melFilters();
  const window = Float64Array.from({ length: FRAME }, (_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (FRAME - 1)));
  const frame = new Array<number>(FFT_SIZE).fill(0);
  const spectrum = fft.createComplexArray() as number[];
  const rows: Float64Array[] = [];
  for (let start = 0; start + FRAME <= samples.length; start += HOP) {
    for (let i = 0; i < FFT_SIZE; i++) frame[i] = i < FRAME ? samples[start + i] * window[i] : 0;
    fft.realTransform(spectrum, frame);
    const power = Float64Array.from({ length: FFT_SIZE / 2 + 1 }, (_, k) => spectrum[2 * k] ** 2 + spectrum[2 * k + 1] ** 2);
    rows.push(Float64Array.from(filters, (f) => Math.log(f.reduce((s, w, k) => s + w * power[k], 0) + 1e-6)));
  }
  return rows;
}

/**
 * Each clip as the mean and standard deviation over time of its 40 log mel energies (25-ms Hann frames every
 * 10 ms), then every feature standardized with the statistics of the clips passed as `fitOn` (the training clips).
 */
export function logSpectrumFeatures(clips: Float32Array[], fitOn?: { mean: Float64Array; std: Float64Array }): { features: Float32Array; dim: number; moments: { mean: Float64Array; std: Float64Array } } {
  const dim = 2 * MEL_BANDS;
  const raw = new Float32Array(clips.length * dim);
  clips.forEach((samples, c) => {
    const rows = logMelFrames(samples);
    for (let m = 0; m < MEL_BANDS; m++) {
      const xs = rows.map((r) => r[m]);
      const mean = xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
      const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / Math.max(1, xs.length);
      raw[c * dim + m] = mean;
      raw[c * dim + MEL_BANDS + m] = Math.sqrt(variance);
    }
  });
  const moments = fitOn ?? featureMoments(raw, dim);
  return { features: standardize(raw, dim, moments), dim, moments };
}

/** Frames on each side that a spliced log mel frame carries (the context a hybrid ASR front end gives a frame). */
export const SPLICE_CONTEXT = 4;

/**
 * The classic frame-level front end for transcription: log mel frames spliced with their ±4 neighbours (9 × 40 =
 * 360 features; the clip's edge frames repeated), every second frame kept: 50 frames per second, the rate of the
 * speech encoder's states.
 */
export function splicedLogMelFrames(samples: Float32Array): { rows: Float32Array; frames: number; dim: number } {
  const mel = logMelFrames(samples);
  const width = 2 * SPLICE_CONTEXT + 1;
  const dim = width * MEL_BANDS;
  const frames = Math.ceil(mel.length / 2);
  const rows = new Float32Array(frames * dim);
  for (let f = 0; f < frames; f++)
    for (let j = 0; j < width; j++) {
      const src = mel[Math.min(mel.length - 1, Math.max(0, 2 * f + j - SPLICE_CONTEXT))];
      rows.set(src, f * dim + j * MEL_BANDS);
    }
  return { rows, frames, dim };
}
