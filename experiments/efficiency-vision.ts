/**
 * data2vec vs data2vec 2.0 for the same pretraining time (MNIST): each objective pretrains from the same unlabeled
 * digits for `--minutes` of its own measured update time (the largest budget is one run with its full schedule;
 * smaller budgets are that run's checkpoints on the way), and every checkpoint is evaluated by the same linear probe
 * on 8 labeled digits per class, tested on the 2,004 held-out digits, for each seed.
 *
 * Budgets are counted in updates from each objective's seconds per update measured by `npm run bench` on an idle
 * machine (`--sec-v1`, `--sec-v2`), so that other work on this shared machine does not change who got how much.
 *
 *   node dist/experiments/efficiency-vision.js [--minutes 2,4,6] [--seeds 1,2,3] [--sec-v1 0.367] [--sec-v2 1.107]
 *       [--out runs/efficiency-vision]
 *
 * Resumable: finished pieces are cached in <out>/results.json; an interrupted pretraining resumes exactly.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { HostRng } from "../src/engine/random.js";
import { initEngine } from "../src/engine/runtime.js";
import { accuracy } from "../src/train/metrics.js";
import { checkpointedUpdates } from "../src/train/pretrain.js";
import { imageFeatures, probePredict, trainProbe } from "../src/vision/classify.js";
import { loadVisionCheckpoint } from "../src/vision/checkpoints.js";
import { resolveVisionConfig, type VisionRunConfig } from "../src/vision/config.js";
import { balancedSubset, mnistSplits } from "../src/vision/images.js";
import { pretrainVision } from "../src/vision/pretrain.js";
import { renderSvg } from "../src/experiment/report.js";
import { arg, percentMeanStd } from "./common.js";

const minutes = arg("minutes", "2,4,6").split(",").map(Number);
const seeds = arg("seeds", "1,2,3").split(",").map(Number);
const secPerUpdate = { v1: Number(arg("sec-v1", "0.367")), v2: Number(arg("sec-v2", "1.107")) };
const presets = { v1: "small", v2: "small-v2" } as const;
const out = resolve(arg("out", join("runs", "efficiency-vision")));
const perClass = 8;
const log = (m: string) => process.stderr.write(`${m}\n`);

type Objective = keyof typeof presets;
type Result = { objective: Objective; seed: number; minutes: number; updates: number; accuracy: number; trainAccuracy: number };

/** The run config of an objective for the largest budget: schedule, warm-up and teacher annealing fit its updates. */
function runConfig(objective: Objective, seed: number): VisionRunConfig {
  const steps = Math.round((Math.max(...minutes) * 60) / secPerUpdate[objective]);
  const base = resolveVisionConfig(presets[objective]);
  return resolveVisionConfig(presets[objective], {
    data2vec: { ema: { ...base.data2vec.ema, annealSteps: steps } },
    train: { steps, warmupSteps: Math.round(0.1 * steps), seed, checkpointEvery: steps },
  });
}

const updatesAt = (objective: Objective, m: number) => Math.round((m * 60) / secPerUpdate[objective]);

const one = process.argv.indexOf("--one");
if (one >= 0) {
  // One evaluation: --one <checkpoint dir> <seed>
  const [dir, seedText] = process.argv.slice(one + 1, one + 3);
  const seed = Number(seedText);
  await initEngine();
  const { train: pool, test } = mnistSplits();
  const train = balancedSubset(pool, perClass, (xs) => HostRng.seeded(1000 + seed).shuffle(xs));
  const loaded = loadVisionCheckpoint(dir);
  const dim = loaded.run.model.dim;
  const trainFeats = await imageFeatures(loaded.encoder, loaded.run, train.images, 16);
  const testFeats = await imageFeatures(loaded.encoder, loaded.run, test.images, 16);
  const probe = await trainProbe(trainFeats, train.labels, dim, 10, { steps: 500, lr: 1e-2, weightDecay: 1e-4, seed });
  const pred = await probePredict(probe.head, testFeats, dim);
  console.log(JSON.stringify({ accuracy: accuracy(pred, test.labels), trainAccuracy: probe.trainAccuracy }));
  process.exit(0);
}

await initEngine();
mkdirSync(out, { recursive: true });
const resultsPath = join(out, "results.json");
const results: Result[] = existsSync(resultsPath) ? (JSON.parse(readFileSync(resultsPath, "utf8")) as { runs: Result[] }).runs : [];
const save = () => writeFileSync(resultsPath, JSON.stringify({ minutes, seeds, secPerUpdate, presets, perClass, runs: results }, null, 2));
const images = mnistSplits().train.images;

for (const seed of seeds) {
  for (const objective of ["v1", "v2"] as const) {
    const cfg = runConfig(objective, seed);
    const runDir = join(out, `${objective}-seed${seed}`);
    for (const m of minutes) {
      if (results.some((r) => r.objective === objective && r.seed === seed && r.minutes === m)) continue;
      const updates = updatesAt(objective, m);
      const snapshot = join(out, "snapshots", `${objective}-seed${seed}-${m}min`);
      if (!existsSync(join(snapshot, "state.json"))) {
        // Train on to this budget (a checkpoint is written where it stops), then keep a copy of that checkpoint.
        const done = checkpointedUpdates(runDir);
        if (done < updates) {
          const t0 = performance.now();
          const r = await pretrainVision({ config: cfg, images, outDir: runDir, resume: done > 0, quiet: true, stopAfter: updates, log });
          if (r.interrupted) process.exit(130);
          log(`${objective} seed ${seed}: updates ${done} → ${updates} in ${((performance.now() - t0) / 60000).toFixed(1)} min (loss ${r.records[r.records.length - 1]?.loss.toFixed(3)})`);
        }
        rmSync(snapshot, { recursive: true, force: true });
        mkdirSync(join(out, "snapshots"), { recursive: true });
        cpSync(join(runDir, "checkpoint"), snapshot, { recursive: true });
      }
      const child = spawnSync(process.execPath, [process.argv[1], "--one", snapshot, String(seed)], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
      if (child.status !== 0) throw new Error(`probe of ${snapshot} failed`);
      const probe = JSON.parse(child.stdout.trim().split("\n").pop()!) as { accuracy: number; trainAccuracy: number };
      results.push({ objective, seed, minutes: m, updates, ...probe });
      save();
      log(`${objective} seed ${seed}, ${m} min (${updates} updates): probe test accuracy ${(100 * probe.accuracy).toFixed(1)}%`);
    }
  }
}

// The plot: probe accuracy against pretraining minutes, each seed a dot, the mean ± std over seeds a line.
const points = results.filter((r) => seeds.includes(r.seed)).map((r) => ({ objective: r.objective === "v1" ? `data2vec (${presets.v1})` : `data2vec 2.0 (${presets.v2})`, seed: r.seed, minutes: r.minutes, accuracy: 100 * r.accuracy }));
const encoding = { x: { field: "minutes", type: "quantitative", title: "pretraining minutes (at each objective's measured update time)" }, color: { field: "objective", type: "nominal" } } as const;
writeFileSync(
  join(out, "accuracy-vs-minutes.svg"),
  await renderSvg({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: `MNIST, linear probe on ${perClass * 10} labels: test accuracy vs pretraining time (${seeds.length} seeds)`,
    width: 480,
    height: 300,
    data: { values: points },
    layer: [
      { mark: { type: "line", point: false }, encoding: { ...encoding, y: { aggregate: "mean", field: "accuracy", type: "quantitative", title: "test accuracy (%)", scale: { zero: false } } } },
      { mark: { type: "errorbar", extent: "stdev" }, encoding: { ...encoding, y: { field: "accuracy", type: "quantitative" } } },
      { mark: { type: "point", filled: true, opacity: 0.6 }, encoding: { ...encoding, y: { field: "accuracy", type: "quantitative" } } },
    ],
  }),
);

console.log(`| pretraining minutes | data2vec (${presets.v1}): probe accuracy (%) | data2vec 2.0 (${presets.v2}): probe accuracy (%) |`);
console.log(`|---|---|---|`);
for (const m of minutes) {
  const cell = (o: Objective) => {
    const sel = results.filter((r) => r.objective === o && r.minutes === m && seeds.includes(r.seed));
    return `${percentMeanStd(sel.map((r) => r.accuracy))} (${sel[0]?.updates} updates)`;
  };
  console.log(`| ${m} | ${cell("v1")} | ${cell("v2")} |`);
}
console.log(`\n${seeds.length} seeds; linear probe on ${perClass * 10} labeled digits, 2,004 test digits; seconds per update: v1 ${secPerUpdate.v1}, v2 ${secPerUpdate.v2}.`);
