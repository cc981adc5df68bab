/** Round trip: our checkpoints exported with `d2v export --hf`, loaded back by the HF loader, same outputs. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import sharp from "sharp";
import { numpy as np, tree } from "../../src/engine/jax.js";
import { loadHfModel } from "../../src/hf/model.js";
import { textForward, type HfTextModel } from "../../src/hf/text.js";
import { visionForward, type HfVisionModel } from "../../src/hf/vision.js";
import { tokenizeBatch } from "../../src/hf/processors.js";
import { classifierLogits } from "../../src/text/classify.js";
import { loadTextCheckpoint } from "../../src/text/checkpoints.js";
import { encodeText, positionIds } from "../../src/text/model.js";
import { visionLogits } from "../../src/vision/classify.js";
import { loadVisionCheckpoint } from "../../src/vision/checkpoints.js";
import { encodeImages, visionRelativeIndex } from "../../src/vision/model.js";
import { mnistSplits } from "../../src/vision/images.js";
import { corpusDir } from "../train/fixtures.js";
import { ROOT } from "../helpers.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");
function d2v(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, D2V_THREADS: "2" } });
  assert.equal(r.status, 0, `d2v ${args.join(" ")}: ${r.stderr}`);
  return r;
}

async function maxDiff(a: np.Array, b: np.Array): Promise<number> {
  const [x, y] = [(await a.data()) as Float32Array, (await b.data()) as Float32Array];
  assert.equal(x.length, y.length);
  return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
}

test("text: pretrained and fine-tuned checkpoints export to HF and load back with identical outputs", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-export-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify({ model: { vocabSize: 400, maxPositions: 32, dim: 32, layers: 2, heads: 2, ffnDim: 64 }, data2vec: { topK: 2 }, train: { batchSize: 4, seqLen: 32, steps: 3, warmupSteps: 1 } }));
  d2v("pretrain", "--config", cfg, "--data", corpusDir(), "--out", join(dir, "pre"), "--quiet");
  const train = join(dir, "train.jsonl");
  writeFileSync(train, ["the dog barks", "a cat sleeps", "dogs bark loudly", "cats sleep all day"].map((t, i) => JSON.stringify({ text: t, label: i % 2 ? "cat" : "dog" })).join("\n"));
  d2v("finetune", "--init", join(dir, "pre"), "--data", train, "--out", join(dir, "clf"), "--epochs", "1", "--batch-size", "2", "--quiet");
  const texts = ["The jury said the election was conducted well.", "short <mask> text"];

  // Pretrained encoder → Data2VecTextModel.
  const out = JSON.parse(d2v("export", "--model", join(dir, "pre"), "--hf", join(dir, "hf-pre")).stdout.trim());
  assert.equal(out.architecture, "Data2VecTextModel");
  const ours = loadTextCheckpoint(join(dir, "pre"));
  const hf = loadHfModel(join(dir, "hf-pre")) as HfTextModel;
  assert.deepEqual(hf.unusedKeys, []);
  const { ids, mask, batch, seqLen } = tokenizeBatch(ours.tok, texts);
  const r = textForward(hf, ids, mask, batch, seqLen);
  r.hiddenStates.dispose();
  const pos = positionIds(ids, batch, seqLen, ours.tok.pad);
  const expected = encodeText(ours.encoder, np.array(ids, { dtype: np.int32 }).reshape([batch, seqLen]), np.array(pos, { dtype: np.int32 }).reshape([batch, seqLen]), np.array(Float32Array.from(mask)).reshape([batch, seqLen]), ours.enc, null);
  assert.ok((await maxDiff(r.lastHiddenState, expected)) < 1e-5);
  // The tokenizer travels with the model.
  assert.equal(readFileSync(join(dir, "hf-pre", "vocab.json"), "utf8"), readFileSync(join(dir, "pre", "checkpoint", "vocab.json"), "utf8"));

  // Fine-tuned classifier (<s> pooling) → Data2VecTextForSequenceClassification.
  const clfOut = JSON.parse(d2v("export", "--model", join(dir, "clf"), "--hf", join(dir, "hf-clf")).stdout.trim());
  assert.equal(clfOut.architecture, "Data2VecTextForSequenceClassification");
  const clf = loadTextCheckpoint(join(dir, "clf"));
  const hfClf = loadHfModel(join(dir, "hf-clf")) as HfTextModel;
  assert.deepEqual(hfClf.labels, ["cat", "dog"]);
  const rc = textForward(hfClf, ids, mask, batch, seqLen);
  rc.hiddenStates.dispose();
  rc.lastHiddenState.dispose();
  const logits = classifierLogits(clf.classifier!.params, np.array(ids, { dtype: np.int32 }).reshape([batch, seqLen]), np.array(pos, { dtype: np.int32 }).reshape([batch, seqLen]), np.array(Float32Array.from(mask)).reshape([batch, seqLen]), clf.enc, null);
  assert.ok((await maxDiff(rc.logits!, logits)) < 1e-5);
  tree.dispose([hf.encoder, hfClf.encoder, hfClf.classifier] as never);
});

test("vision: a fine-tuned classifier exports to HF; loader and CLI give the same logits and labels", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-vexport-"));
  const data = join(dir, "digits");
  const { train } = mnistSplits();
  for (const digit of [3, 7]) {
    mkdirSync(join(data, `digit-${digit}`), { recursive: true });
    const rows = train.labels.flatMap((l, i) => (l === digit ? [i] : [])).slice(0, 4);
    for (const r of rows) await sharp(Buffer.from(train.images[r].data), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(join(data, `digit-${digit}`, `${r}.png`));
  }
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify({ model: { dim: 16, layers: 2, heads: 2, ffnDim: 32 }, train: { batchSize: 4, steps: 2, warmupSteps: 1 } }));
  d2v("pretrain", "--modality", "vision", "--data", data, "--config", cfg, "--out", join(dir, "pre"), "--quiet");
  d2v("finetune", "--init", join(dir, "pre"), "--data", data, "--out", join(dir, "clf"), "--epochs", "1", "--batch-size", "4", "--quiet");
  // The pretrained encoder → the bare Data2VecVisionModel (no pooler, no final layer norm with mean pooling).
  assert.equal(JSON.parse(d2v("export", "--model", join(dir, "pre"), "--hf", join(dir, "hf-pre")).stdout.trim()).architecture, "Data2VecVisionModel");
  const bare = loadHfModel(join(dir, "hf-pre")) as HfVisionModel;
  assert.deepEqual(bare.unusedKeys, []);
  const pre = loadVisionCheckpoint(join(dir, "pre"));
  const rb = visionForward(bare, np.array(Float32Array.from({ length: 28 * 28 }, (_, i) => Math.cos(i))).reshape([1, 1, 28, 28]));
  rb.hiddenStates.dispose();
  assert.equal(rb.poolerOutput, undefined);
  const states = encodeImages(pre.encoder, np.array(Float32Array.from({ length: 28 * 28 }, (_, i) => Math.cos(i))).reshape([1, 1, 28, 28]), pre.run.model, null, visionRelativeIndex(pre.run.model));
  assert.ok((await maxDiff(rb.lastHiddenState, states)) < 1e-5);
  tree.dispose(bare.encoder as never);
  const out = JSON.parse(d2v("export", "--model", join(dir, "clf"), "--hf", join(dir, "hf")).stdout.trim());
  assert.equal(out.architecture, "Data2VecVisionForImageClassification");
  const hf = loadHfModel(join(dir, "hf")) as HfVisionModel;
  assert.deepEqual(hf.unusedKeys, []);
  const ours = loadVisionCheckpoint(join(dir, "clf"));
  const pixels = () => np.array(Float32Array.from({ length: 2 * 28 * 28 }, (_, i) => Math.sin(i * 0.37))).reshape([2, 1, 28, 28]);
  const r = visionForward(hf, pixels());
  r.hiddenStates.dispose();
  r.lastHiddenState.dispose();
  r.poolerOutput?.dispose();
  const expected = visionLogits(ours.classifier!.params, pixels(), ours.run, null, visionRelativeIndex(ours.run.model));
  assert.ok((await maxDiff(r.logits!, expected)) < 1e-5);
  // The same images through both CLIs: our checkpoint and the exported HF directory.
  const files = [join(data, "digit-3"), join(data, "digit-7")].map((d) => join(d, readdirFirst(d)));
  const a = d2v("classify", "--model", join(dir, "clf"), ...files).stdout.trim().split("\n").map((l) => JSON.parse(l));
  const b = d2v("classify", "--model", join(dir, "hf"), ...files).stdout.trim().split("\n").map((l) => JSON.parse(l));
  a.forEach((x, i) => {
    assert.equal(x.label, b[i].label);
    x.top.forEach((t: { probability: number }, k: number) => assert.ok(Math.abs(t.probability - b[i].top[k].probability) < 1e-5));
  });
  tree.dispose(hf.encoder as never);
});

const readdirFirst = (dir: string) => readdirSync(dir).sort()[0];
