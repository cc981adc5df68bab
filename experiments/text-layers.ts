/**
 * Which depth of a pretrained text encoder carries the genre? The Brown task's probe reads the student's final
 * states; data2vec trains those only at masked steps, and through a regression head, so the final block need not be
 * where the content is. This probes every depth of the student, of the EMA teacher (the network whose top blocks
 * make the targets) and of random weights, each mean-pooled over a passage and read by the task's standardized
 * linear probe, plus the targets' own form (the layer-normed average of the top K blocks' FFN outputs), and gives
 * the per-token participation ratios. (experiments/text-probes.ts probes the student's depths of several checkpoints
 * beside bag-of-words references; this adds the teacher, the targets and the per-token view for one run.)
 *
 *   node dist/experiments/text-layers.js --checkpoint runs/helps-brown-tiny-rpm-3000/pretrain [--random-seed 1]
 */
import { numpy as np, random, tree } from "../src/engine/jax.js";
import { layerNorm, maskedMean } from "../src/nn/layers.js";
import { runEncoder } from "../src/nn/encoder.js";
import { KeyStream } from "../src/nn/random.js";
import { loadTree, resolveCheckpoint } from "../src/train/checkpoint.js";
import { mapExamples } from "../src/train/inference.js";
import { participationRatio } from "../src/train/probe.js";
import { loadTextCheckpoint } from "../src/text/checkpoints.js";
import { encodeLabeled, type Encoded } from "../src/text/classify.js";
import { padBatch } from "../src/text/data.js";
import { embedText, initTextEncoder, textEncoderSpec, type TextEncoderParams } from "../src/text/model.js";
import { brownReadoutSetup } from "./brown-probe.js";

const { dir, randomSeed, seeds, task, probeAccuracy } = await brownReadoutSetup();
const loaded = loadTextCheckpoint(dir);
const { tok, enc, run } = loaded;
const dim = enc.dim;
const depth = enc.layers;
const topK = run.data2vec.topK;
const seqLen = run.train.seqLen;
// Readouts: depth 0 (the embeddings) … depth L (the final states), then the targets' form.
const names = [...Array.from({ length: depth + 1 }, (_, l) => (l === 0 ? "embeddings" : l === depth ? `block ${l} (final)` : `block ${l}`)), `targets' form (top ${topK} FFN outputs, layer-normed, averaged)`];

type Batch = { ids: np.Array; positions: np.Array; padding: np.Array };
const BATCH = 16;

/** Batches of the encoded passages as the probes read them (filler rows pad the last batch and are dropped). */
function batchesOf(data: Encoded): (rows: number[]) => Batch {
  return (rows) => {
    const seqs = rows.map((r) => data.ids[r]);
    while (seqs.length < BATCH) seqs.push(Int32Array.from([tok.bos, tok.eos]));
    const b = padBatch(seqs, seqLen, tok.pad, tok.eos);
    const shape = [BATCH, seqLen];
    return { ids: np.array(b.ids, { dtype: np.int32 }).reshape(shape), positions: np.array(b.positions, { dtype: np.int32 }).reshape(shape), padding: np.array(b.padding).reshape(shape) };
  };
}

/** Every depth's states [B, T, D]: the embeddings, then each block's output. Consumes the batch. */
function statesAtEveryDepth(p: TextEncoderParams, b: Batch): { states: np.Array[]; padding: np.Array } {
  const x = embedText(p.shared, b.ids, b.positions, enc, null);
  const blocks = runEncoder(p.layers, x.ref, textEncoderSpec(enc), { padding: b.padding, keys: null, capture: "end" });
  blocks.out.dispose();
  return { states: [x, ...blocks.captured], padding: b.padding };
}

/** The targets' form [B, T, D]: the top K blocks' FFN outputs, each layer-normed, averaged. Consumes the batch. */
function targetForm(p: TextEncoderParams, b: Batch): { targets: np.Array; padding: np.Array } {
  const x = embedText(p.shared, b.ids, b.positions, enc, null);
  const r = runEncoder(p.layers, x, textEncoderSpec(enc), { padding: b.padding, keys: null, capture: "ffn", captureFrom: depth - topK });
  r.out.dispose();
  const sum = r.captured.map((c) => layerNorm(null, c, enc.layerNormEps)).reduce((a, c) => a.add(c));
  return { targets: sum.div(r.captured.length), padding: b.padding };
}

/** Mean-pooled features [n × dim] of each readout in `names`, in that order. */
async function features(p: TextEncoderParams, xs: { text: string; label: string }[]): Promise<Float32Array[]> {
  const data = encodeLabeled(xs, tok, task.labels);
  const n = data.ids.length;
  const stacked = await mapExamples(p, n, BATCH, (depth + 1) * dim, batchesOf(data), (q, b) => {
    const { states, padding } = statesAtEveryDepth(q, b);
    const pooled = states.map((h) => maskedMean(h, padding.ref));
    padding.dispose();
    return np.concatenate(pooled, 1);
  });
  const targets = await mapExamples(p, n, BATCH, dim, batchesOf(data), (q, b) => {
    const t = targetForm(q, b);
    return maskedMean(t.targets, t.padding);
  });
  const out: Float32Array[] = [];
  for (let l = 0; l <= depth; l++) {
    const f = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) f.set(stacked.subarray((i * (depth + 1) + l) * dim, (i * (depth + 1) + l + 1) * dim), i * dim);
    out.push(f);
  }
  out.push(targets);
  return out;
}

/**
 * Participation ratio of the per-token states (final block, and the targets' form) over the real tokens of the
 * labeled passages (at most 4,000, evenly spaced): is the low rank a property of every token's state, or only of the
 * passage averages?
 */
async function tokenLevelRatios(p: TextEncoderParams, xs: { text: string; label: string }[]): Promise<[number, number]> {
  const data = encodeLabeled(xs, tok, task.labels);
  const n = data.ids.length;
  const width = seqLen * dim;
  const finals = await mapExamples(p, n, BATCH, width, batchesOf(data), (q, b) => {
    const { states, padding } = statesAtEveryDepth(q, b);
    padding.dispose();
    states.slice(0, -1).forEach((h) => h.dispose());
    return states[states.length - 1].reshape([BATCH, width]);
  });
  const targets = await mapExamples(p, n, BATCH, width, batchesOf(data), (q, b) => {
    const t = targetForm(q, b);
    t.padding.dispose();
    return t.targets.reshape([BATCH, width]);
  });
  const realTokens = (all: Float32Array) => {
    const rows: number[] = [];
    for (let i = 0; i < n; i++) for (let t = 0; t < Math.min(seqLen, data.ids[i].length); t++) rows.push(i * seqLen + t);
    const every = Math.max(1, Math.floor(rows.length / 4000));
    const kept = rows.filter((_, k) => k % every === 0);
    const out = new Float32Array(kept.length * dim);
    kept.forEach((r, k) => out.set(all.subarray(r * dim, (r + 1) * dim), k * dim));
    return out;
  };
  return [participationRatio(realTokens(finals), dim), participationRatio(realTokens(targets), dim)];
}

const log = (m: string) => process.stderr.write(`${m}\n`);
const pct = (xs: number[]) => `${((100 * xs.reduce((s, x) => s + x, 0)) / xs.length).toFixed(1)} (${xs.map((x) => (100 * x).toFixed(1)).join(" / ")})`;
const rows: string[] = [];
const tokenRows: string[] = [];

const encoders: [string, () => TextEncoderParams][] = [
  ["student", () => loadTextCheckpoint(dir).encoder],
  ["teacher (EMA)", () => {
    // The teacher's file holds its blocks, and its own copy of the input side when data2vec.emaShared names it.
    const s = loadTextCheckpoint(dir).encoder;
    const own = run.data2vec.emaShared ?? [];
    const teacher = loadTree(resolveCheckpoint(dir), "teacher", { layers: s.layers, shared: Object.fromEntries(own.map((g) => [g, s.shared[g as keyof typeof s.shared]])) }, { consumeLike: true });
    return { shared: { ...s.shared, ...teacher.shared }, layers: teacher.layers };
  }],
  [`random weights (seed ${randomSeed})`, () => {
    const keys = new KeyStream(random.key(randomSeed));
    const e = initTextEncoder(keys, enc);
    keys.close();
    return e;
  }],
];
tree.dispose(loaded.encoder as never);
for (const [name, make] of encoders) {
  const p = make();
  const [train, test] = [await features(p, task.train), await features(p, task.test)];
  const [finalRatio, targetRatio] = await tokenLevelRatios(p, task.train);
  tree.dispose(p as never);
  const tokenRow = `${name}: per-token participation ratio, final states ${finalRatio.toFixed(1)}, targets' form ${targetRatio.toFixed(1)}`;
  log(tokenRow);
  tokenRows.push(tokenRow);
  for (let r = 0; r < names.length; r++) {
    const accs: number[] = [];
    for (const seed of seeds) accs.push(await probeAccuracy(train[r], test[r], dim, seed));
    const row = `| ${name} | ${names[r]} | ${participationRatio(train[r], dim).toFixed(1)} | ${pct(accs)} |`;
    log(row);
    rows.push(row);
  }
}
console.log(`| encoder | readout (mean-pooled) | participation ratio (128 labeled passages) | probe test accuracy, % (seeds ${seeds.join(", ")}) |`);
console.log("|---|---|---|---|");
for (const r of rows) console.log(r);
console.log("");
for (const r of tokenRows) console.log(`- ${r}`);
