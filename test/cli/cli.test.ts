import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, truncateSync, statSync, writeFileSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { HF_FIXTURES, ROOT } from "../helpers.js";
import { corpusDir } from "../train/fixtures.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");

function d2v(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, D2V_THREADS: "2" } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const MICRO = {
  model: { vocabSize: 400, maxPositions: 32, dim: 32, layers: 2, heads: 2, ffnDim: 64 },
  data2vec: { topK: 2 },
  train: { batchSize: 4, seqLen: 32, steps: 4, warmupSteps: 1, checkpointEvery: 2 },
};

test("tokenize prints the ids of each text as a JSON array", () => {
  const r = d2v("tokenize", "--tokenizer", join(HF_FIXTURES, "text-mlm"), "Hello world! cécé herlolip", "The capital of France is <mask>.");
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split("\n").map((l) => JSON.parse(l)), [
    [0, 31414, 232, 328, 740, 1140, 12695, 69, 46078, 1588, 2],
    [0, 133, 812, 9, 1470, 16, 50264, 4, 2],
  ]);
});

test("a config with an unknown or invalid field is refused with the field's name, and nothing is written", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-cli-"));
  const cfg = join(dir, "bad.json");
  writeFileSync(cfg, JSON.stringify({ model: { layerz: 3, heads: 0 }, data2vec: { loss: "huber" } }));
  const out = join(dir, "run");
  const r = d2v("pretrain", "--config", cfg, "--out", out);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /model: unknown field "layerz"/);
  assert.match(r.stderr, /model\.heads: Too small/);
  assert.match(r.stderr, /data2vec\.loss: Invalid option: expected one of "l2"\|"smooth_l1"/);
  assert.ok(!existsSync(out));
  writeFileSync(cfg, "{ not json");
  assert.match(d2v("pretrain", "--config", cfg).stderr, /not valid JSON/);
  assert.match(d2v("pretrain", "--preset", "huge").stderr, /unknown text preset "huge"; choose one of tiny, small, base, large/);
});

test("missing, empty and non-UTF-8 corpora give clear errors", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-cli-"));
  assert.match(d2v("pretrain", "--data", join(dir, "nope")).stderr, /does not exist/);
  mkdirSync(join(dir, "empty"));
  const empty = d2v("pretrain", "--data", join(dir, "empty"), "--out", join(dir, "r1"));
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /holds no \.txt files/);
  writeFileSync(join(dir, "blank.txt"), "  \n\n");
  assert.match(d2v("pretrain", "--data", join(dir, "blank.txt"), "--out", join(dir, "r2")).stderr, /is empty/);
  writeFileSync(join(dir, "latin1.txt"), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x6f, 0x6b]));
  const bad = d2v("pretrain", "--data", join(dir, "latin1.txt"), "--out", join(dir, "r3"));
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /not valid UTF-8 \(first bad byte near offset 3\)/);
  assert.ok(!existsSync(join(dir, "r3", "checkpoint")));
});

test("pretrain → finetune (pretrained and scratch) → eval → embed, end to end", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-cli-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify(MICRO));
  const run = join(dir, "pre");
  const pre = d2v("pretrain", "--config", cfg, "--data", corpusDir(), "--out", run, "--quiet");
  assert.equal(pre.code, 0, pre.stderr);
  const summary = JSON.parse(pre.stdout.trim().split("\n").pop()!);
  assert.equal(summary.step, 4);
  for (const f of ["config.json", "model.safetensors", "teacher.safetensors", "optimizer.safetensors", "state.json", "vocab.json", "merges.txt"]) {
    assert.ok(existsSync(join(run, "checkpoint", f)), f);
  }
  assert.equal(readFileSync(join(run, "metrics.jsonl"), "utf8").trim().split("\n").length, 4);
  // An existing run is not overwritten by accident.
  assert.match(d2v("pretrain", "--config", cfg, "--data", corpusDir(), "--out", run).stderr, /already holds a checkpoint; pass --resume/);

  const train = join(dir, "train.jsonl");
  const rows = Array.from({ length: 12 }, (_, i) => JSON.stringify({ text: i % 2 ? `the jury said the election was fair ${i}` : `the recipe needs sugar and butter ${i}`, label: i % 2 ? "news" : "food" }));
  writeFileSync(train, rows.join("\n") + "\n");
  const ft = join(dir, "ft");
  // Mean pooling with a layer norm on the pooled state: eval must rebuild the same head from the checkpoint.
  const fine = d2v("finetune", "--init", run, "--data", train, "--eval-data", train, "--out", ft, "--epochs", "2", "--batch-size", "4", "--pool", "mean", "--pool-norm", "--quiet");
  assert.equal(fine.code, 0, fine.stderr);
  const ftMetrics = JSON.parse(fine.stdout.trim().split("\n").pop()!);
  assert.equal(ftMetrics.examples, 12);
  const scratch = d2v("finetune", "--init", run, "--scratch", "--data", train, "--out", join(dir, "scratch"), "--epochs", "1", "--batch-size", "4", "--quiet");
  assert.equal(scratch.code, 0, scratch.stderr);

  const ev = d2v("eval", "--model", ft, "--data", train);
  assert.equal(ev.code, 0, ev.stderr);
  const metrics = JSON.parse(ev.stdout.trim().split("\n").pop()!);
  assert.equal(metrics.task, "classification");
  assert.equal(metrics.examples, 12);
  assert.ok(metrics.accuracy >= 0 && metrics.accuracy <= 1);
  assert.equal(metrics.accuracy, ftMetrics.accuracy, "eval reproduces the accuracy measured right after fine-tuning");

  const emb = d2v("embed", "--model", run, "first text", "second text");
  assert.equal(emb.code, 0, emb.stderr);
  const vectors = emb.stdout.trim().split("\n").map((l) => JSON.parse(l) as number[]);
  assert.equal(vectors.length, 2);
  assert.equal(vectors[0].length, 32);
  assert.notDeepEqual(vectors[0], vectors[1]);

  // A label the model does not know, a pretrained model in eval, a corrupt checkpoint, a foreign vocabulary.
  const other = join(dir, "other.jsonl");
  writeFileSync(other, JSON.stringify({ text: "x", label: "sports" }) + "\n");
  assert.match(d2v("eval", "--model", ft, "--data", other).stderr, /label "sports" is not one of the model's labels/);
  assert.match(d2v("eval", "--model", run, "--data", train).stderr, /without a classifier head; fine-tune it first/);
  const broken = join(dir, "broken");
  mkdirSync(broken);
  for (const f of ["config.json", "model.safetensors", "vocab.json", "merges.txt"]) copyFileSync(join(ft, f), join(broken, f));
  truncateSync(join(broken, "model.safetensors"), statSync(join(broken, "model.safetensors")).size - 100);
  const corrupt = d2v("eval", "--model", broken, "--data", train);
  assert.equal(corrupt.code, 2);
  assert.match(corrupt.stderr, /model\.safetensors is not a valid safetensors file: .*corrupt or truncated/);
  copyFileSync(join(ft, "model.safetensors"), join(broken, "model.safetensors"));
  copyFileSync(join(HF_FIXTURES, "text-mlm", "vocab.json"), join(broken, "vocab.json"));
  copyFileSync(join(HF_FIXTURES, "text-mlm", "merges.txt"), join(broken, "merges.txt"));
  assert.match(d2v("eval", "--model", broken, "--data", train).stderr, /has 50265 entries but the model was built for \d+; the vocabulary does not match this checkpoint/);
});
