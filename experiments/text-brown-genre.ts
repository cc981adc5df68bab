/**
 * Does data2vec pretraining help? Brown-corpus genre classification with a small labeled subset:
 * pretrain on the unlabeled training documents, then fine-tune the pretrained model and the same
 * architecture from scratch over several seeds and learning rates, and report held-out test accuracy.
 *
 *   node dist/experiments/text-brown-genre.js [--preset small] [--steps N] [--out runs/brown-genre]
 *
 * Finished pieces are kept (pretraining resumes, fine-tuning results are cached), so an interrupted run
 * continues where it stopped. Results: <out>/results.json and a Markdown table on stdout.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { random, tree } from "../src/engine/jax.js";
import { initEngine } from "../src/engine/runtime.js";
import { brownGenreTask } from "../src/text/brown-genre.js";
import { accuracy, encodeLabeled, finetuneClassifier, macroF1, newHead, predictClasses } from "../src/text/classify.js";
import { loadTextCheckpoint } from "../src/text/checkpoints.js";
import { resolveTextConfig } from "../src/text/config.js";
import { initTextEncoder } from "../src/text/model.js";
import { pretrainText } from "../src/text/pretrain.js";
import { arg, ensurePretrained, percentMeanStd } from "./common.js";
import { KeyStream } from "../src/nn/random.js";

const preset = arg("preset", "small");
const out = resolve(arg("out", join("runs", `brown-genre-${preset}`)));
const pretrainOverrides = arg("pretrain-config", "");
const seeds = arg("seeds", "1,2,3").split(",").map(Number);
const lrs = arg("lrs", "1e-4,3e-4").split(",").map(Number);
const epochs = Number(arg("epochs", "10"));
const pooling = arg("pool", "first") as "first" | "mean";
const poolNorm = process.argv.includes("--pool-norm");
const log = (m: string) => process.stderr.write(`${m}\n`);

await initEngine();
const task = brownGenreTask();
log(`task: ${task.labels.length} genres, ${task.train.length} labeled training passages, ${task.test.length} test passages, ${task.pretrainDocs.length} unlabeled documents`);

// 1. Pretraining (resumable).
const config = resolveTextConfig(preset, pretrainOverrides ? JSON.parse(readFileSync(pretrainOverrides, "utf8")) : undefined, {
  train: { steps: Number(arg("steps", String(resolveTextConfig(preset).train.steps))) },
});
const pretrainDir = join(out, "pretrain");
const pretrained = await ensurePretrained(pretrainDir, config.train.steps, (resume) => pretrainText({ config, docs: task.pretrainDocs, outDir: pretrainDir, resume, resumeSteps: config.train.steps, log }), log);

// 2. Fine-tuning, pretrained vs scratch, per seed and learning rate (cached per run).
const base = loadTextCheckpoint(pretrainDir);
const { enc, tok, run } = base;
const seqLen = run.train.seqLen;
const train = encodeLabeled(task.train, tok, task.labels);
const test = encodeLabeled(task.test, tok, task.labels);
const resultsPath = join(out, `results-${pooling}${poolNorm ? "-norm" : ""}.json`);
type Result = { init: "pretrained" | "scratch"; seed: number; lr: number; accuracy: number; macroF1: number; trainAccuracy: number };
const results: Result[] = existsSync(resultsPath) ? JSON.parse(readFileSync(resultsPath, "utf8")).runs : [];
mkdirSync(out, { recursive: true });
const save = () =>
  writeFileSync(
    resultsPath,
    JSON.stringify({ preset, pooling, pretrainUpdates: pretrained.updates, pretrainMinutes: pretrained.minutes, finalPretrainRecord: pretrained.last, epochs, labels: task.labels, trainExamples: task.train.length, testExamples: task.test.length, runs: results }, null, 2),
  );
// Each fine-tuning run is a child process: jax-js's wasm heap only grows, so runs must not share one.
const one = process.argv.indexOf("--one");
if (one >= 0) {
  const [init, seedText, lrText] = process.argv[one + 1].split(":");
  const seed = Number(seedText);
  const lr = Number(lrText);
  let encoder;
  if (init === "pretrained") encoder = base.encoder;
  else {
    tree.dispose(base.encoder as never);
    const keys = new KeyStream(random.key(seed));
    encoder = initTextEncoder(keys, enc);
    keys.close();
  }
  const settings = { epochs, batchSize: 16, lr, warmupFraction: 0.1, weightDecay: 0.01, seed, seqLen, pooling, poolNorm };
  const trained = await finetuneClassifier({ encoder, head: newHead(seed, enc.dim, task.labels.length, { poolNorm }) }, enc, tok, train, task.labels.length, settings, { quiet: true });
  // Predict with the training batch size: jax-js's wasm allocator reuses freed buffers only of the same size.
  const pred = await predictClasses(trained.params, enc, tok, test, task.labels.length, settings.batchSize, seqLen, pooling);
  const r: Result = { init: init as Result["init"], seed, lr, accuracy: accuracy(pred, test.labels), macroF1: macroF1(pred, test.labels, task.labels.length), trainAccuracy: trained.history[trained.history.length - 1].trainAccuracy };
  console.log(JSON.stringify(r));
  process.exit(0);
}
tree.dispose(base.encoder as never);
for (const lr of lrs) {
  for (const seed of seeds) {
    for (const init of ["pretrained", "scratch"] as const) {
      if (results.some((r) => r.init === init && r.seed === seed && r.lr === lr)) continue;
      const t0 = performance.now();
      const child = spawnSync(process.execPath, [...process.argv.slice(1), "--one", `${init}:${seed}:${lr}`], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
      });
      if (child.status !== 0) throw new Error(`fine-tuning ${init} seed ${seed} lr ${lr} failed`);
      const r = JSON.parse(child.stdout.trim().split("\n").pop()!) as Result;
      results.push(r);
      save();
      log(`${init} lr=${lr} seed=${seed}: test accuracy ${(100 * r.accuracy).toFixed(1)}% (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
}
save();

// 3. Report.
console.log(`| fine-tuning lr | pretrained: test accuracy (%) | scratch: test accuracy (%) | pretrained: macro-F1 | scratch: macro-F1 |`);
console.log(`|---|---|---|---|---|`);
for (const lr of lrs) {
  const sel = (init: string) => results.filter((r) => r.lr === lr && r.init === init);
  console.log(`| ${lr} | ${percentMeanStd(sel("pretrained").map((r) => r.accuracy))} | ${percentMeanStd(sel("scratch").map((r) => r.accuracy))} | ${percentMeanStd(sel("pretrained").map((r) => r.macroF1))} | ${percentMeanStd(sel("scratch").map((r) => r.macroF1))} |`);
}
console.log(`\n${seeds.length} seeds; chance = ${(100 / task.labels.length).toFixed(1)}%; pretraining: preset ${preset}, ${pretrained.updates} updates in ${pretrained.minutes.toFixed(1)} min.`);
