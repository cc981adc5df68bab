/** Classification losses and metrics shared by every modality. */
import { nn as jnn, numpy as np } from "../engine/jax.js";

/** Mean cross-entropy over the weighted rows. Consumes all. */
export function crossEntropy(logits: np.Array, oneHot: np.Array, weights: np.Array): np.Array {
  const logp = jnn.logSoftmax(logits, -1);
  const perRow = logp.mul(oneHot).sum(-1).mul(-1);
  return perRow.mul(weights.ref).sum().div(np.maximum(weights.sum(), 1));
}

/** Number of weighted rows whose argmax matches the label. Consumes all. */
export function correctCount(logits: np.Array, oneHot: np.Array, weights: np.Array): np.Array {
  const pred = np.argmax(logits, -1);
  const gold = np.argmax(oneHot, -1);
  return pred.equal(gold).astype(np.float32).mul(weights).sum();
}

export function accuracy(pred: number[], gold: number[]): number {
  return pred.filter((p, i) => p === gold[i]).length / Math.max(1, gold.length);
}

/** Macro-averaged F1 over the classes present in `gold` or `pred`. */
export function macroF1(pred: number[], gold: number[], classes: number): number {
  let sum = 0;
  let n = 0;
  for (let c = 0; c < classes; c++) {
    const tp = pred.filter((p, i) => p === c && gold[i] === c).length;
    const fp = pred.filter((p, i) => p === c && gold[i] !== c).length;
    const fn = gold.filter((g, i) => g === c && pred[i] !== c).length;
    if (tp + fp + fn === 0) continue;
    sum += (2 * tp) / (2 * tp + fp + fn);
    n++;
  }
  return n ? sum / n : 0;
}


/** Levenshtein distance between two sequences (substitutions, insertions and deletions cost 1). */
export function editDistance<T>(ref: ArrayLike<T>, hyp: ArrayLike<T>): number {
  let prev = Array.from({ length: hyp.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ref.length; i++) {
    const row = [i];
    for (let j = 1; j <= hyp.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ref[i - 1] === hyp[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[hyp.length];
}

const words = (s: string) => s.trim().split(/\s+/).filter(Boolean);
const chars = (s: string) => [...s.trim().replace(/\s+/g, " ")];

/**
 * Corpus word error rate: total word edits over total reference words (not a mean of per-utterance rates),
 * as sclite and the LibriSpeech results count it.
 */
export function wordErrorRate(refs: string[], hyps: string[]): number {
  let edits = 0;
  let total = 0;
  refs.forEach((r, i) => {
    edits += editDistance(words(r), words(hyps[i]));
    total += words(r).length;
  });
  return total === 0 ? 0 : edits / total;
}

/** Corpus character error rate (spaces count as characters; runs of spaces count once). */
export function charErrorRate(refs: string[], hyps: string[]): number {
  let edits = 0;
  let total = 0;
  refs.forEach((r, i) => {
    edits += editDistance(chars(r), chars(hyps[i]));
    total += chars(r).length;
  });
  return total === 0 ? 0 : edits / total;
}

/** Mean and sample standard deviation of a list of numbers (0 for a single one): results over seeds. */
export function sampleMeanStd(xs: number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}
