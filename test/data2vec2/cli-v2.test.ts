/**
 * data2vec 2.0 on the command line, every modality: `--objective data2vec2` picks the -v2 preset, pretraining runs,
 * and the checkpoint goes on to fine-tuning, evaluation and embedding; export converts what Hugging Face can hold
 * (text) and refuses, saying why, what it cannot (images, speech).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT } from "../helpers.js";
import { corpusDir } from "../train/fixtures.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const LIBRI = join(ROOT, "test", "fixtures", "audio", "librispeech");

function d2v(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, D2V_THREADS: "2" } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const lastJson = (s: string) => JSON.parse(s.trim().split("\n").pop()!);

test("d2v config --objective data2vec2 prints the preset's data2vec 2.0 version; a preset without one is refused", () => {
  const c = d2v("config", "--modality", "audio", "--preset", "small", "--objective", "data2vec2");
  assert.equal(c.code, 0, c.stderr);
  const cfg = JSON.parse(c.stdout);
  assert.equal(cfg.preset, "small-v2");
  assert.equal(cfg.data2vec.objective, "data2vec2");
  assert.deepEqual(cfg.data2vec.emaShared, ["context"]);
  const large = d2v("config", "--modality", "text", "--preset", "large", "--objective", "data2vec2");
  assert.equal(large.code, 2);
  assert.match(large.stderr, /no data2vec 2\.0 version of preset "large"; choose one of tiny, small, base/);
});

test("text: pretrain with data2vec 2.0 → fine-tune → eval → embed → export as Data2VecText", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v2-text-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify({ model: { vocabSize: 400, maxPositions: 32, dim: 32, layers: 2, heads: 2, ffnDim: 64 }, data2vec: { topK: 2, v2: { cloneBatch: 2, decoder: { dim: 32, layers: 2 } } }, train: { batchSize: 4, seqLen: 32, steps: 3, warmupSteps: 1, checkpointEvery: 3 } }));
  const run = join(dir, "pre");
  const pre = d2v("pretrain", "--objective", "data2vec2", "--config", cfg, "--data", corpusDir(), "--out", run, "--quiet");
  assert.equal(pre.code, 0, pre.stderr);
  assert.equal(lastJson(pre.stdout).step, 3);
  assert.equal(JSON.parse(readFileSync(join(run, "checkpoint", "config.json"), "utf8")).data2vec.objective, "data2vec2");
  const train = join(dir, "train.jsonl");
  writeFileSync(train, Array.from({ length: 8 }, (_, i) => JSON.stringify({ text: i % 2 ? `the jury said ${i}` : `the recipe needs sugar ${i}`, label: i % 2 ? "news" : "food" })).join("\n") + "\n");
  const ft = d2v("finetune", "--init", run, "--data", train, "--eval-data", train, "--out", join(dir, "ft"), "--epochs", "1", "--batch-size", "4", "--quiet");
  assert.equal(ft.code, 0, ft.stderr);
  const ev = d2v("eval", "--model", join(dir, "ft"), "--data", train);
  assert.equal(ev.code, 0, ev.stderr);
  assert.equal(lastJson(ev.stdout).accuracy, lastJson(ft.stdout).accuracy);
  const emb = d2v("embed", "--model", run, "one text");
  assert.equal(emb.code, 0, emb.stderr);
  assert.equal((JSON.parse(emb.stdout.trim()) as number[]).length, 32);
  const ex = d2v("export", "--model", run, "--hf", join(dir, "hf"));
  assert.equal(ex.code, 0, ex.stderr);
  assert.equal(JSON.parse(readFileSync(join(dir, "hf", "config.json"), "utf8")).architectures[0], "Data2VecTextModel");
});

test("vision: export of a data2vec 2.0 run says why Hugging Face cannot hold it and writes nothing", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v2-vision-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify({ model: { dim: 16, heads: 2, ffnDim: 32 }, data2vec: { v2: { decoder: { dim: 16 } } }, train: { batchSize: 4, steps: 2, warmupSteps: 1 } }));
  const run = join(dir, "pre");
  const pre = d2v("pretrain", "--modality", "vision", "--objective", "data2vec2", "--config", cfg, "--out", run, "--quiet");
  assert.equal(pre.code, 0, pre.stderr);
  const ex = d2v("export", "--model", run, "--hf", join(dir, "hf"));
  assert.equal(ex.code, 2);
  assert.match(ex.stderr, /data2vec 2\.0 image model.*Data2VecVision \(BEiT: pre-LN blocks, relative position bias\) cannot hold it/);
  assert.ok(!existsSync(join(dir, "hf")));
});

test("speech: pretrain with data2vec 2.0 → CTC fine-tuning → eval; export refused (ALiBi)", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v2-audio-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify({ model: { layers: 2, dim: 64, heads: 2, ffnDim: 128, posConvLayers: 2 }, data2vec: { topK: 2, v2: { cloneBatch: 2, decoder: { dim: 32, layers: 2 } } }, train: { steps: 2, warmupSteps: 1, checkpointEvery: 2, batchSize: 2 } }));
  const run = join(dir, "pre");
  const pre = d2v("pretrain", "--modality", "audio", "--objective", "data2vec2", "--data", LIBRI, "--config", cfg, "--out", run, "--quiet");
  assert.equal(pre.code, 0, pre.stderr);
  assert.ok(Number.isFinite(lastJson(pre.stdout).loss));
  const ft = d2v("finetune", "--task", "ctc", "--init", run, "--data", LIBRI, "--eval-data", LIBRI, "--epochs", "1", "--out", join(dir, "ctc"), "--quiet");
  assert.equal(ft.code, 0, ft.stderr);
  const ev = d2v("eval", "--model", join(dir, "ctc"), "--data", LIBRI);
  assert.equal(ev.code, 0, ev.stderr);
  assert.equal(lastJson(ev.stdout).cer, lastJson(ft.stdout).cer, "eval reproduces the fine-tuning's own evaluation (the ALiBi scales are saved and used)");
  const ex = d2v("export", "--model", join(dir, "ctc"), "--hf", join(dir, "hf"));
  assert.equal(ex.code, 2);
  assert.match(ex.stderr, /ALiBi bias, which Hugging Face's Data2VecAudio cannot hold/);
});
