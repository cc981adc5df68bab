/**
 * Sequence classification: the encoder's state at `<s>` → dropout → dense → tanh → dropout → linear
 * (RoBERTa's classification head), cross-entropy, accuracy. Fine-tuning starts from a data2vec checkpoint
 * or from scratch with the same architecture.
 */
import { mapExamples } from "../train/inference.js";
import { nn as jnn, numpy as np, random } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import { initLayerNorm, initLinear } from "../nn/init.js";
import { dropout, layerNorm, linear, maskedMean, type LayerNormParams, type LinearParams } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import type { BpeTokenizer } from "./bpe.js";
import { padBatch, type LabeledText } from "./data.js";
import { encodeText, type TextEncoderConfig, type TextEncoderParams } from "./model.js";
import { labelArrays, trainClassifier, type FinetuneBase, type Trained, type TrainingHooks } from "../train/finetune.js";

export { accuracy, crossEntropy, macroF1 } from "../train/metrics.js";

/** `norm`: an optional layer norm on the pooled state (it removes the large offset all pretrained pooled states share). */
export type ClassifierHead = { norm?: LayerNormParams; dense: LinearParams; out: LinearParams };
export type TextClassifierParams = { encoder: TextEncoderParams; head: ClassifierHead };

export type ClassifyBatch = {
  ids: np.Array; // [B, T] int32
  positions: np.Array; // [B, T] int32
  padding: np.Array; // [B, T]
  labels: np.Array; // [B, C] one-hot
  weights: np.Array; // [B], 0 for filler rows of a partial batch
};

export function initClassifierHead(keys: KeyStream, dim: number, classes: number): ClassifierHead {
  return { dense: initLinear(keys, dim, dim), out: initLinear(keys, dim, classes) };
}

/** What the head reads: the `<s>` state (RoBERTa, Hugging Face) or the mean over real tokens. */
export type Pooling = "first" | "mean";

/** Logits [B, C]. Consumes params and the batch's ids/positions/padding. */
export function classifierLogits(
  p: TextClassifierParams,
  ids: np.Array,
  positions: np.Array,
  padding: np.Array,
  c: TextEncoderConfig,
  keys: KeyStream | null,
  pooling: Pooling = "first",
): np.Array {
  const mask = pooling === "first" ? null : padding.ref;
  const h = encodeText(p.encoder, ids, positions, padding, c, keys); // [B, T, D]
  let pooled = mask ? maskedMean(h, mask) : h.slice([], 0); // [B, D]
  if (p.head.norm) pooled = layerNorm(p.head.norm, pooled, c.layerNormEps);
  let x = dropout(pooled, c.dropout, keys);
  x = np.tanh(linear(p.head.dense, x));
  x = dropout(x, c.dropout, keys);
  return linear(p.head.out, x);
}

export type Encoded = { ids: Int32Array[]; labels: number[] };

export function encodeLabeled(examples: LabeledText[], tok: BpeTokenizer, labels: string[]): Encoded {
  const index = new Map(labels.map((l, i) => [l, i]));
  return {
    ids: examples.map((e) => Int32Array.from(tok.encode(e.text))),
    labels: examples.map((e) => {
      const i = index.get(e.label);
      if (i === undefined) throw new DataError(`label "${e.label}" is not one of the model's labels (${labels.join(", ")})`);
      return i;
    }),
  };
}

function makeBatch(d: Encoded, rows: number[], batchSize: number, seqLen: number, classes: number, tok: BpeTokenizer): ClassifyBatch {
  const seqs = rows.map((r) => d.ids[r]);
  while (seqs.length < batchSize) seqs.push(Int32Array.from([tok.bos, tok.eos])); // filler rows, weight 0
  const { ids, padding, positions } = padBatch(seqs, seqLen, tok.pad, tok.eos);
  const shape = [batchSize, seqLen];
  return {
    ids: np.array(ids, { dtype: np.int32 }).reshape(shape),
    positions: np.array(positions, { dtype: np.int32 }).reshape(shape),
    padding: np.array(padding).reshape(shape),
    ...labelArrays(d.labels, rows, batchSize, classes),
  };
}

export type FinetuneSettings = FinetuneBase & {
  /** Sequences are truncated to this many tokens (at most the model's maxPositions). */
  seqLen: number;
  /** The head reads the `<s>` state (default) or the mean over tokens. */
  pooling?: Pooling;
  /** Layer norm on the pooled state before the head. */
  poolNorm?: boolean;
};

export type { EpochRecord } from "../train/finetune.js";

export async function finetuneClassifier(params: TextClassifierParams, enc: TextEncoderConfig, tok: BpeTokenizer, train: Encoded, classes: number, s: FinetuneSettings, opts: TrainingHooks = {}): Promise<Trained<TextClassifierParams>> {
  return trainClassifier<TextClassifierParams, ClassifyBatch>({
    params,
    examples: train.ids.length,
    settings: s,
    adam: { beta1: 0.9, beta2: 0.98, eps: 1e-6, clipNorm: 1 },
    batch: (rows) => makeBatch(train, rows, s.batchSize, s.seqLen, classes, tok),
    logits: (p, b, keys) => classifierLogits(p, b.ids, b.positions, b.padding, enc, keys, s.pooling),
    ...opts,
  });
}

/** Runs `head` (argmax or softmax of the classifier's logits) over every example in fixed-size batches. */
function mapClassifier(
  params: TextClassifierParams,
  enc: TextEncoderConfig,
  tok: BpeTokenizer,
  data: Encoded,
  classes: number,
  batchSize: number,
  seqLen: number,
  pooling: Pooling,
  width: number,
  head: (logits: np.Array) => np.Array,
): Promise<Float32Array> {
  return mapExamples(params, data.ids.length, batchSize, width, (rows) => makeBatch(data, rows, batchSize, seqLen, classes, tok), (p, b: ClassifyBatch) => {
    b.labels.dispose();
    b.weights.dispose();
    return head(classifierLogits(p, b.ids, b.positions, b.padding, enc, null, pooling));
  });
}

/** The predicted class of every example. Does not consume params. */
export async function predictClasses(
  params: TextClassifierParams,
  enc: TextEncoderConfig,
  tok: BpeTokenizer,
  data: Encoded,
  classes: number,
  batchSize: number,
  seqLen: number,
  pooling: Pooling = "first",
): Promise<number[]> {
  return Array.from(await mapClassifier(params, enc, tok, data, classes, batchSize, seqLen, pooling, 1, (logits) => np.argmax(logits, -1)));
}

/** Mean over real tokens of the final states [examples × dim] of a frozen encoder (linear probes). Does not consume it. */
export function pooledTextFeatures(encoder: TextEncoderParams, enc: TextEncoderConfig, tok: Pick<BpeTokenizer, "bos" | "eos" | "pad">, data: Encoded, batchSize: number, seqLen: number): Promise<Float32Array> {
  const inputs = (rows: number[]) => {
    const seqs = rows.map((r) => data.ids[r]);
    while (seqs.length < batchSize) seqs.push(Int32Array.from([tok.bos, tok.eos])); // filler rows, dropped
    const { ids, padding, positions } = padBatch(seqs, seqLen, tok.pad, tok.eos);
    const shape = [batchSize, seqLen];
    return { ids: np.array(ids, { dtype: np.int32 }).reshape(shape), positions: np.array(positions, { dtype: np.int32 }).reshape(shape), padding: np.array(padding).reshape(shape) };
  };
  return mapExamples(encoder, data.ids.length, batchSize, enc.dim, inputs, (p, b) => maskedMean(encodeText(p, b.ids, b.positions, b.padding.ref, enc, null), b.padding));
}

/** Class probabilities [examples × classes]. Does not consume params. */
export function textClassProbabilities(
  params: TextClassifierParams,
  enc: TextEncoderConfig,
  tok: BpeTokenizer,
  data: Encoded,
  classes: number,
  batchSize: number,
  seqLen: number,
  pooling: Pooling = "first",
): Promise<Float32Array> {
  return mapClassifier(params, enc, tok, data, classes, batchSize, seqLen, pooling, classes, (logits) => jnn.softmax(logits, -1));
}

/** Fresh classifier parameters: a given encoder (pretrained) or a random one (scratch), plus a new head. */
export function newHead(seed: number, dim: number, classes: number, opts: { poolNorm?: boolean } = {}): ClassifierHead {
  const keys = new KeyStream(random.key(seed + 7919));
  const head: ClassifierHead = initClassifierHead(keys, dim, classes);
  keys.close();
  return opts.poolNorm ? { norm: initLayerNorm(dim), ...head } : head;
}
