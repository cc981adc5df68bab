/**
 * How much genre information do pretrained text encoders carry? Linear probes on Brown-corpus genre
 * classification (the task of `d2v data brown-genre`: 8 genres, 16 labeled passages per genre, 480 test passages
 * from held-out documents), measured at every depth of each given checkpoint, against two references that
 * need no neural network:
 *
 * - bag of words: the log counts of the words that occur in at least two labeled passages (what the labeled
 *   data alone offers a linear classifier);
 * - similarity to the unlabeled documents: each passage as its tf-idf cosine similarity to every pretraining
 *   document (what the unlabeled corpus can add when topic co-occurrence is captured).
 *
 *   node dist/experiments/text-probes.js --checkpoints runs/a,runs/b [--random-seed 1] [--out runs/text-probes.json]
 *
 * `--random-seed N` adds the first checkpoint's architecture with random weights. Each probe: the mean over real
 * tokens of one depth's states (the embedding output, then each block), standardized with the labeled passages'
 * statistics, a linear layer (train/probe.ts, 500 full-batch AdamW steps, lr 1e-2).
 */
import { writeFileSync } from "node:fs";
import { numpy as np, random, tree } from "../src/engine/jax.js";
import { initEngine } from "../src/engine/runtime.js";
import { linear, maskedMean } from "../src/nn/layers.js";
import { runEncoder } from "../src/nn/encoder.js";
import { KeyStream } from "../src/nn/random.js";
import { accuracy } from "../src/train/metrics.js";
import { headPredictions, trainLinearProbe } from "../src/train/probe.js";
import { brownGenreTask } from "../src/text/brown-genre.js";
import { loadTextCheckpoint } from "../src/text/checkpoints.js";
import { encodeLabeled, type Encoded } from "../src/text/classify.js";
import { padBatch, type LabeledText } from "../src/text/data.js";
import { embedText, initTextEncoder, textEncoderSpec, type TextEncoderConfig, type TextEncoderParams } from "../src/text/model.js";
import { arg } from "./common.js";

const checkpoints = arg("checkpoints", "").split(",").filter(Boolean);
const randomSeed = arg("random-seed", "");
const out = arg("out", "");
if (checkpoints.length === 0) throw new Error("--checkpoints DIR[,DIR…] is required");

await initEngine();
const task = brownGenreTask();
const classes = task.labels.length;
const labelsOf = (examples: LabeledText[]) => examples.map((e) => task.labels.indexOf(e.label));
const PROBE = { steps: 500, lr: 1e-2, weightDecay: 1e-4, seed: 1 };

/** Test accuracy of a standardized linear probe trained on the labeled passages' features. */
async function probeAccuracy(train: Float32Array, test: Float32Array, dim: number): Promise<number> {
  const { head } = await trainLinearProbe(train, labelsOf(task.train), dim, classes, PROBE);
  const pred = await headPredictions(head, (h, x) => linear(h, x), test, dim);
  return accuracy(pred, labelsOf(task.test));
}

/** Mean-pooled states at every depth (embedding output, then each block): one [n × dim] array per depth. */
async function pooledStates(encoder: TextEncoderParams, enc: TextEncoderConfig, seqLen: number, data: Encoded, pad: number, eos: number): Promise<Float32Array[]> {
  const perDepth = Array.from({ length: enc.layers + 1 }, () => new Float32Array(data.ids.length * enc.dim));
  const batch = 16;
  for (let i = 0; i < data.ids.length; i += batch) {
    const seqs = data.ids.slice(i, i + batch);
    const { ids, padding, positions } = padBatch(seqs, seqLen, pad, eos);
    const shape = [seqs.length, seqLen];
    const mask = np.array(padding).reshape(shape);
    const x = embedText(tree.ref(encoder.shared as never), np.array(ids, { dtype: np.int32 }).reshape(shape), np.array(positions, { dtype: np.int32 }).reshape(shape), enc, null);
    const run = runEncoder(tree.ref(encoder.layers as never), x.ref, textEncoderSpec(enc), { padding: mask.ref, keys: null, capture: "end", captureFrom: 0 });
    run.out.dispose();
    const states = [x, ...run.captured];
    for (let d = 0; d < states.length; d++) perDepth[d].set((await maskedMean(states[d], mask.ref).data()) as Float32Array, i * enc.dim);
    mask.dispose();
  }
  return perDepth;
}

type Row = { name: string; updates?: number; depths: number[] };
const rows: Row[] = [];
const log = (m: string) => process.stderr.write(`${m}\n`);

async function probeEncoder(name: string, dir: string, randomWeights: number | null) {
  const loaded = loadTextCheckpoint(dir);
  let encoder = loaded.encoder;
  if (randomWeights !== null) {
    tree.dispose(encoder as never);
    const keys = new KeyStream(random.key(randomWeights));
    encoder = initTextEncoder(keys, loaded.enc);
    keys.close();
  }
  const { tok, enc } = loaded;
  const seqLen = loaded.run.train.seqLen;
  const train = await pooledStates(encoder, enc, seqLen, encodeLabeled(task.train, tok, task.labels), tok.pad, tok.eos);
  const test = await pooledStates(encoder, enc, seqLen, encodeLabeled(task.test, tok, task.labels), tok.pad, tok.eos);
  tree.dispose(encoder as never);
  const depths: number[] = [];
  for (let d = 0; d < train.length; d++) depths.push(await probeAccuracy(train[d], test[d], enc.dim));
  rows.push({ name, depths });
  log(`${name}: ${depths.map((a) => (100 * a).toFixed(1)).join(" ")}`);
}

for (const dir of checkpoints) await probeEncoder(dir, dir, null);
if (randomSeed) await probeEncoder(`random weights (seed ${randomSeed}), the architecture of ${checkpoints[0]}`, checkpoints[0], Number(randomSeed));

// References without a neural network.
const words = (text: string) => text.toLowerCase().match(/[a-z']+/g) ?? [];
const labeledDf = new Map<string, number>();
for (const e of task.train) for (const w of new Set(words(e.text))) labeledDf.set(w, (labeledDf.get(w) ?? 0) + 1);
const bagVocab = new Map([...labeledDf.keys()].filter((w) => labeledDf.get(w)! >= 2).map((w, i) => [w, i] as const));
const bagOfWords = (examples: LabeledText[]) => {
  const f = new Float32Array(examples.length * bagVocab.size);
  examples.forEach((e, i) => words(e.text).forEach((w) => bagVocab.has(w) && (f[i * bagVocab.size + bagVocab.get(w)!] += 1)));
  return f.map(Math.log1p);
};
const bagAccuracy = await probeAccuracy(bagOfWords(task.train), bagOfWords(task.test), bagVocab.size);

const docs = task.pretrainDocs.map(words);
const docFreq = new Map<string, number>();
for (const d of docs) for (const w of new Set(d)) docFreq.set(w, (docFreq.get(w) ?? 0) + 1);
const tfidf = (ws: string[]) => {
  const v = new Map<string, number>();
  for (const w of ws) if (docFreq.has(w)) v.set(w, (v.get(w) ?? 0) + 1);
  let norm = 0;
  for (const [w, c] of v) {
    const x = Math.log1p(c) * Math.log(docs.length / (1 + docFreq.get(w)!));
    v.set(w, x);
    norm += x * x;
  }
  for (const [w, x] of v) v.set(w, x / (Math.sqrt(norm) || 1));
  return v;
};
const docVectors = docs.map(tfidf);
const docSimilarity = (examples: LabeledText[]) => {
  const f = new Float32Array(examples.length * docs.length);
  examples.forEach((e, i) => {
    const p = tfidf(words(e.text));
    docVectors.forEach((d, j) => {
      let s = 0;
      for (const [w, x] of p) s += x * (d.get(w) ?? 0);
      f[i * docs.length + j] = s;
    });
  });
  return f;
};
const docAccuracy = await probeAccuracy(docSimilarity(task.train), docSimilarity(task.test), docs.length);

const pct = (a: number) => `${(100 * a).toFixed(1)}%`;
const deepest = Math.max(...rows.map((r) => r.depths.length));
console.log(`| encoder | ${["embeddings", ...Array.from({ length: deepest - 1 }, (_, i) => `block ${i + 1}`)].join(" | ")} |`);
console.log(`|---|${"---|".repeat(deepest)}`);
for (const r of rows) console.log(`| ${r.name} | ${r.depths.map(pct).join(" | ")}${" | –".repeat(deepest - r.depths.length)} |`);
console.log(`\nbag of words (${bagVocab.size} words of the labeled passages): ${pct(bagAccuracy)}`);
console.log(`similarity to the ${docs.length} unlabeled documents (tf-idf cosine): ${pct(docAccuracy)}`);
console.log(`chance: ${pct(1 / classes)}; ${task.train.length} labeled passages, ${task.test.length} test passages`);
if (out) writeFileSync(out, JSON.stringify({ probe: PROBE, rows, bagOfWords: { words: bagVocab.size, accuracy: bagAccuracy }, documentSimilarity: { documents: docs.length, accuracy: docAccuracy } }, null, 2));
