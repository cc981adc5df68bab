/**
 * Linear probes: a head trained on frozen features, computed once. This is how representation quality is
 * measured without letting a fine-tuning rewrite the encoder (the encoder's weights never change).
 *
 * `fitHead` is the training loop (full batch, AdamW, warm-up + cosine); `trainLinearProbe` is the standard
 * probe: each feature dimension standardized with the training set's mean and std (the non-affine batch norm
 * MAE puts before its probe), then a linear layer. The standardization is folded into the
 * returned linear layer, so the probe is an ordinary linear head on the raw features and needs no extra state.
 */
import { compile, disposeTree, refTree, valueAndGradOf } from "../engine/typed.js";
import { numpy as np, random } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import { adamwInit, adamwUpdate, learningRate, type AdamWConfig, type AdamWState, type ScheduleConfig } from "../engine/optim.js";
import { initLinear } from "../nn/init.js";
import { linear, type LinearParams } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import { crossEntropy } from "./metrics.js";

export type ProbeSettings = { steps: number; lr: number; weightDecay: number; seed: number };

const PROBE_OPT = (weightDecay: number): AdamWConfig => ({ beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay, clipNorm: 3 });

function checkFeatures(features: Float32Array, labels: number[], dim: number, classes: number) {
  const n = labels.length;
  if (n === 0) throw new DataError("a linear probe needs at least one labeled example");
  if (features.length !== n * dim) throw new DataError(`a linear probe got ${features.length} feature values for ${n} examples of dimension ${dim}`);
  const bad = labels.find((l) => !Number.isInteger(l) || l < 0 || l >= classes);
  if (bad !== undefined) throw new DataError(`label ${bad} is outside 0…${classes - 1}`);
  const nan = features.findIndex((v) => !Number.isFinite(v));
  if (nan >= 0) throw new DataError(`feature ${nan % dim} of example ${Math.floor(nan / dim)} is ${features[nan]}; the encoder produced non-finite values`);
}

/**
 * Trains `head` on frozen features [n × dim] (full batch, `s.steps` AdamW steps) with `logits(head, x)`, which
 * consumes both. Consumes `head` and returns the trained one.
 */
export function fitHead<H>(head: H, logits: (h: H, x: np.Array) => np.Array, features: Float32Array, labels: number[], dim: number, classes: number, s: ProbeSettings): H {
  checkFeatures(features, labels, dim, classes);
  const n = labels.length;
  const oneHot = new Float32Array(n * classes);
  labels.forEach((l, i) => (oneHot[i * classes + l] = 1));
  const x = np.array(features).reshape([n, dim]);
  const y = np.array(oneHot).reshape([n, classes]);
  const w = np.ones([n]);
  const opt = PROBE_OPT(s.weightDecay);
  const schedule: ScheduleConfig = { kind: "cosine", peakLr: s.lr, warmupSteps: Math.round(0.1 * s.steps), totalSteps: s.steps };
  const lossFn = (h: H, xb: np.Array, yb: np.Array, wb: np.Array) => crossEntropy(logits(h, xb), yb, wb);
  const gradFn = valueAndGradOf(lossFn);
  const step = compile((h: H, o: AdamWState, xb: np.Array, yb: np.Array, wb: np.Array, lr: np.Array): [H, AdamWState, np.Array] => {
    const [loss, grads] = gradFn(refTree(h), xb, yb, wb);
    const [h2, o2] = adamwUpdate(grads, o, h, lr, opt);
    return [h2, o2, loss];
  });
  let optState = adamwInit(head);
  for (let i = 0; i < s.steps; i++) {
    let loss: np.Array;
    [head, optState, loss] = step(head, optState, x.ref, y.ref, w.ref, np.array(learningRate(schedule, i)));
    loss.dispose();
  }
  step.dispose();
  disposeTree(optState);
  x.dispose();
  y.dispose();
  w.dispose();
  return head;
}

/** Predicted class of each feature row with `logits(head, x)`. Does not consume the head. */
export async function headPredictions<H>(head: H, logits: (h: H, x: np.Array) => np.Array, features: Float32Array, dim: number): Promise<number[]> {
  const n = features.length / dim;
  const pred = (await np.argmax(logits(refTree(head), np.array(features).reshape([n, dim])), -1).data()) as Int32Array;
  return Array.from(pred);
}

/** Per-dimension mean and standard deviation of features [n × dim] (population std, floored at `eps`). */
export function featureMoments(features: Float32Array, dim: number, eps = 1e-6): { mean: Float64Array; std: Float64Array } {
  const n = features.length / dim;
  const mean = new Float64Array(dim);
  const std = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) mean[d] += features[i * dim + d] / n;
  for (let i = 0; i < n; i++)
    for (let d = 0; d < dim; d++) {
      const c = features[i * dim + d] - mean[d];
      std[d] += (c * c) / n;
    }
  for (let d = 0; d < dim; d++) std[d] = Math.max(Math.sqrt(std[d]), eps);
  return { mean, std };
}

/**
 * How many dimensions the features really use: the participation ratio (Σλ)² / Σλ² of the eigenvalues λ of their
 * correlation matrix (each feature standardized over the rows), computed as tr(C)² / ‖C‖²_F without an
 * eigendecomposition. From 1 (every feature a multiple of one direction) to `dim` (uncorrelated features of equal
 * variance; at most the number of rows − 1). A probe cannot separate classes along directions that are not there:
 * a value near 1 means the pooled representation has collapsed to a line across examples, even when each token's
 * or frame's variance looks healthy. Constant features (zero variance) count for nothing.
 */
export function participationRatio(features: Float32Array, dim: number): number {
  const n = features.length / dim;
  const { mean, std } = featureMoments(features, dim);
  const z = new Float64Array(features.length);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) z[i * dim + d] = std[d] > 1e-6 ? (features[i * dim + d] - mean[d]) / std[d] : 0;
  let trace = 0;
  let frobenius = 0;
  for (let a = 0; a < dim; a++)
    for (let b = a; b < dim; b++) {
      let c = 0;
      for (let i = 0; i < n; i++) c += z[i * dim + a] * z[i * dim + b];
      c /= n;
      if (a === b) trace += c;
      frobenius += (a === b ? 1 : 2) * c * c;
    }
  return frobenius > 0 ? (trace * trace) / frobenius : 0;
}

/** Features standardized with the given moments. */
export function standardize(features: Float32Array, dim: number, m: { mean: Float64Array; std: Float64Array }): Float32Array {
  const out = new Float32Array(features.length);
  for (let i = 0; i < out.length; i++) out[i] = (features[i] - m.mean[i % dim]) / m.std[i % dim];
  return out;
}

/**
 * A linear layer on standardized features rewritten as one on raw features:
 * W·((x − μ)/σ) + b = (W/σ)·x + (b − (W/σ)·μ). Consumes `head`.
 */
export async function foldStandardization(head: LinearParams, m: { mean: Float64Array; std: Float64Array }): Promise<LinearParams> {
  const [dim, classes] = head.weight.shape;
  const weight = (await head.weight.data()) as Float32Array;
  const bias = head.bias ? ((await head.bias.data()) as Float32Array) : new Float32Array(classes);
  const folded = new Float32Array(dim * classes);
  const foldedBias = Float64Array.from(bias);
  for (let d = 0; d < dim; d++)
    for (let c = 0; c < classes; c++) {
      const w = weight[d * classes + c] / m.std[d];
      folded[d * classes + c] = w;
      foldedBias[c] -= w * m.mean[d];
    }
  return { weight: np.array(folded).reshape([dim, classes]), bias: np.array(Float32Array.from(foldedBias)) };
}

/**
 * The standard linear probe on frozen features [n × dim]: standardize each dimension, train a linear layer,
 * fold the standardization into it. Returns a linear head on the raw features and its training accuracy.
 */
export async function trainLinearProbe(features: Float32Array, labels: number[], dim: number, classes: number, s: ProbeSettings): Promise<{ head: LinearParams; trainAccuracy: number }> {
  checkFeatures(features, labels, dim, classes);
  const moments = featureMoments(features, dim);
  const keys = new KeyStream(random.key(s.seed + 7919));
  const init = initLinear(keys, dim, classes);
  keys.close();
  const trained = fitHead(init, (h, x) => linear(h, x), standardize(features, dim, moments), labels, dim, classes, s);
  const head = await foldStandardization(trained, moments);
  const pred = await headPredictions(head, (h, x) => linear(h, x), features, dim);
  return { head, trainAccuracy: pred.filter((p, i) => p === labels[i]).length / labels.length };
}
