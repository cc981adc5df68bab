import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import sharp from "sharp";
import { mnistSplits } from "../../src/vision/images.js";
import { ROOT } from "../helpers.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");

function d2v(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, D2V_THREADS: "2" } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const MICRO = {
  model: { dim: 16, layers: 2, heads: 2, ffnDim: 32 },
  train: { batchSize: 8, steps: 4, warmupSteps: 1, checkpointEvery: 2 },
};

/** An ImageFolder of MNIST 3s and 7s written as PNG files. */
async function digitFolder(perClass: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "d2v-digits-"));
  const { train } = mnistSplits();
  for (const digit of [3, 7]) {
    mkdirSync(join(dir, `digit-${digit}`));
    const rows = train.labels.flatMap((l, i) => (l === digit ? [i] : [])).slice(0, perClass);
    for (const r of rows) {
      const img = train.images[r];
      await sharp(Buffer.from(img.data), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(join(dir, `digit-${digit}`, `${r}.png`));
    }
  }
  return dir;
}

test("vision end to end on the command line: pretrain → finetune → eval → classify, and a linear probe", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-vcli-"));
  const data = await digitFolder(8);
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify(MICRO));
  const run = join(dir, "pre");
  let r = d2v("pretrain", "--modality", "vision", "--data", data, "--config", cfg, "--out", run, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout.trim().split("\n").pop()!).step, 4);
  assert.match(r.stderr, /16 unlabeled images/);

  const clf = join(dir, "clf");
  r = d2v("finetune", "--init", run, "--data", data, "--eval-data", data, "--out", clf, "--epochs", "2", "--batch-size", "4", "--quiet");
  assert.equal(r.code, 0, r.stderr);
  const ft = JSON.parse(r.stdout.trim().split("\n").pop()!);
  assert.equal(ft.examples, 16);
  assert.ok(ft.accuracy >= 0 && ft.accuracy <= 1);
  // Augmented views are the default (few labels otherwise get memorized); --no-augment turns them off.
  const finetuneSettings = (d: string) => JSON.parse(readFileSync(join(d, "config.json"), "utf8")).finetune;
  assert.equal(finetuneSettings(clf).augment, true);
  r = d2v("finetune", "--init", run, "--data", data, "--out", join(dir, "plain"), "--no-augment", "--epochs", "1", "--batch-size", "4");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /on 16 images, 2 classes, 1 epochs/);
  assert.doesNotMatch(r.stderr, /augmented views/);
  assert.equal(finetuneSettings(join(dir, "plain")).augment, false);

  r = d2v("eval", "--model", clf, "--data", data);
  assert.equal(r.code, 0, r.stderr);
  const ev = JSON.parse(r.stdout.trim().split("\n").pop()!);
  assert.equal(ev.task, "classification");
  assert.equal(ev.accuracy, ft.accuracy, "eval reproduces the accuracy measured after fine-tuning");

  const image = join(data, "digit-3", (await import("node:fs")).readdirSync(join(data, "digit-3"))[0]);
  r = d2v("classify", "--model", clf, image, "--top", "2");
  assert.equal(r.code, 0, r.stderr);
  const c = JSON.parse(r.stdout.trim());
  assert.ok(["digit-3", "digit-7"].includes(c.label));
  assert.equal(c.top.length, 2);
  assert.ok(Math.abs(c.top[0].probability + c.top[1].probability - 1) < 1e-4);

  r = d2v("finetune", "--init", run, "--data", data, "--eval-data", data, "--out", join(dir, "probe"), "--linear-probe", "--quiet");
  assert.equal(r.code, 0, r.stderr);
  assert.ok(JSON.parse(r.stdout.trim().split("\n").pop()!).trainAccuracy > 0.5);

  // A pretrained model has no classifier head; an unknown class folder is refused.
  assert.match(d2v("classify", "--model", run, image).stderr, /without a classifier head/);
  mkdirSync(join(data, "digit-5"));
  assert.match(d2v("eval", "--model", clf, "--data", data).stderr, /digit-5 is not one of the model's classes/);
});

test("vision bad input: missing folder, folder without images", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-vbad-"));
  let r = d2v("pretrain", "--modality", "vision", "--data", join(dir, "nope"), "--out", join(dir, "run"));
  assert.equal(r.code, 2);
  assert.match(r.stderr, /does not exist/);
  mkdirSync(join(dir, "empty"));
  writeFileSync(join(dir, "empty", "notes.txt"), "no images here");
  r = d2v("pretrain", "--modality", "vision", "--data", join(dir, "empty"), "--out", join(dir, "run"));
  assert.equal(r.code, 2);
  assert.match(r.stderr, /holds no images/);
  assert.ok(!existsSync(join(dir, "run", "checkpoint")));
});
