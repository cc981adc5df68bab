/**
 * Does data2vec pretraining help on images? MNIST with 1% of the labels: pretrain a ViT on the unlabeled
 * training digits, then fine-tune (and linear-probe) the pretrained model and the same architecture from
 * scratch over several seeds, and report held-out test accuracy.
 *
 *   node dist/experiments/vision-mnist.js [--preset small] [--steps N] [--pretrain-config FILE.json] [--per-class 8]
 *       [--seeds 1,2,3] [--epochs 40] [--lr 1e-3] [--augment] [--out runs/vision-mnist-small]
 *
 * Pretraining resumes and finished runs are cached in <out>/results.json, so an interrupted experiment
 * continues where it stopped. Each run is a child process (jax-js's wasm heap only grows).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { random, tree } from "../src/engine/jax.js";
import { HostRng } from "../src/engine/random.js";
import { initEngine } from "../src/engine/runtime.js";
import { KeyStream } from "../src/nn/random.js";
import { accuracy } from "../src/train/metrics.js";
import { finetuneVision, imageFeatures, newVisionHead, predictVision, probePredict, trainProbe } from "../src/vision/classify.js";
import { loadVisionCheckpoint } from "../src/vision/checkpoints.js";
import { resolveVisionConfig } from "../src/vision/config.js";
import { balancedSubset, mnistSplits } from "../src/vision/images.js";
import { initVisionEncoder } from "../src/vision/model.js";
import { pretrainVision } from "../src/vision/pretrain.js";
import { arg, ensurePretrained, percentMeanStd } from "./common.js";

const preset = arg("preset", "small");
const out = resolve(arg("out", join("runs", `vision-mnist-${preset}`)));
const seeds = arg("seeds", "1,2,3").split(",").map(Number);
const perClass = Number(arg("per-class", "8"));
const epochs = Number(arg("epochs", "40"));
const lr = Number(arg("lr", "1e-3"));
const augment = process.argv.includes("--augment");
const pretrainOverrides = arg("pretrain-config", "");
const batchSize = 16;
const log = (m: string) => process.stderr.write(`${m}\n`);

await initEngine();
const config = resolveVisionConfig(preset, pretrainOverrides ? JSON.parse(readFileSync(pretrainOverrides, "utf8")) : undefined, { train: { steps: Number(arg("steps", String(resolveVisionConfig(preset).train.steps))) } });
const pretrainDir = join(out, "pretrain");

/** `lr` is the fine-tuning learning rate (probes always use theirs). */
type Result = { mode: "finetune" | "probe"; init: "pretrained" | "scratch"; seed: number; lr?: number; accuracy: number; trainAccuracy: number };

const one = process.argv.indexOf("--one");
if (one >= 0) {
  // One run: --one mode:init:seed
  const [mode, init, seedText] = process.argv[one + 1].split(":");
  const seed = Number(seedText);
  const { train: pool, test } = mnistSplits();
  const train = balancedSubset(pool, perClass, (xs) => HostRng.seeded(1000 + seed).shuffle(xs));
  const loaded = loadVisionCheckpoint(pretrainDir);
  let encoder = loaded.encoder;
  if (init === "scratch") {
    tree.dispose(encoder as never);
    const keys = new KeyStream(random.key(seed));
    encoder = initVisionEncoder(keys, loaded.run.model);
    keys.close();
  }
  let r: Result;
  if (mode === "probe") {
    const dim = loaded.run.model.dim;
    const trainFeats = await imageFeatures(encoder, loaded.run, train.images, batchSize);
    const testFeats = await imageFeatures(encoder, loaded.run, test.images, batchSize);
    const probe = await trainProbe(trainFeats, train.labels, dim, 10, { steps: 500, lr: 1e-2, weightDecay: 1e-4, seed });
    const pred = await probePredict(probe.head, testFeats, dim);
    r = { mode: "probe", init: init as Result["init"], seed, accuracy: accuracy(pred, test.labels), trainAccuracy: probe.trainAccuracy };
  } else {
    const settings = { epochs, batchSize, lr, warmupFraction: 0.1, weightDecay: 0.05, seed, augment };
    const trained = await finetuneVision({ encoder, head: newVisionHead(seed, loaded.run.model.dim, 10) }, loaded.run, train, settings, { quiet: true });
    const pred = await predictVision(trained.params, loaded.run, test.images, batchSize);
    r = { mode: "finetune", init: init as Result["init"], seed, lr, accuracy: accuracy(pred, test.labels), trainAccuracy: trained.history[trained.history.length - 1].trainAccuracy };
  }
  console.log(JSON.stringify(r));
  process.exit(0);
}

// 1. Pretraining (resumable).
const pretrained = await ensurePretrained(pretrainDir, config.train.steps, (resume) => pretrainVision({ config, outDir: pretrainDir, resume, resumeSteps: config.train.steps, log }), log);

// 2. Fine-tuning and linear probes, pretrained vs scratch (cached per run).
const resultsPath = join(out, "results.json");
const results: Result[] = existsSync(resultsPath) ? (JSON.parse(readFileSync(resultsPath, "utf8")) as { runs: Result[] }).runs : [];
mkdirSync(out, { recursive: true });
const save = () =>
  writeFileSync(resultsPath, JSON.stringify({ preset, augment, pretrainConfig: config, pretrainUpdates: pretrained.updates, pretrainMinutes: pretrained.minutes, finalPretrainLoss: pretrained.finalLoss, perClass, epochs, lr, runs: results }, null, 2));
for (const mode of ["probe", "finetune"] as const) {
  for (const seed of seeds) {
    for (const init of ["pretrained", "scratch"] as const) {
      const sameLr = (r: Result) => mode === "probe" || (r.lr ?? 1e-3) === lr;
      if (results.some((r) => r.mode === mode && r.init === init && r.seed === seed && sameLr(r))) continue;
      const t0 = performance.now();
      const child = spawnSync(process.execPath, [...process.argv.slice(1), "--one", `${mode}:${init}:${seed}`], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
      if (child.status !== 0) throw new Error(`${mode} ${init} seed ${seed} failed`);
      const r = JSON.parse(child.stdout.trim().split("\n").pop()!) as Result;
      results.push(r);
      save();
      log(`${mode} ${init} seed ${seed}: test accuracy ${(100 * r.accuracy).toFixed(1)}% (train ${(100 * r.trainAccuracy).toFixed(0)}%, ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
}
save();

// 3. Report.
console.log(`| evaluation | pretrained: test accuracy (%) | scratch: test accuracy (%) |`);
console.log(`|---|---|---|`);
const lrs = [...new Set(results.filter((r) => r.mode === "finetune").map((r) => r.lr ?? 1e-3))].sort((a, b) => a - b);
for (const [mode, rowLr] of [...lrs.map((l) => ["finetune", l] as const), ["probe", 0] as const]) {
  const sel = (init: string) => results.filter((r) => r.mode === mode && r.init === init && (mode === "probe" || (r.lr ?? 1e-3) === rowLr) && seeds.includes(r.seed)).map((r) => r.accuracy);
  console.log(`| ${mode === "finetune" ? `fine-tuning, lr ${rowLr}` : "linear probe"} | ${percentMeanStd(sel("pretrained"))} | ${percentMeanStd(sel("scratch"))} |`);
}
console.log(`\n${seeds.length} seeds; ${perClass * 10} labeled training images; 2,000 test images; pretraining: preset ${preset}, ${pretrained.updates} updates in ${pretrained.minutes.toFixed(1)} min.`);
