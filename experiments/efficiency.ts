/**
 * data2vec vs data2vec 2.0 for the same pretraining time, in one modality: each objective pretrains from the same
 * unlabeled data for `--minutes` of its own measured update time (the largest budget is one run with its full
 * schedule; smaller budgets are that run's checkpoints on the way), and every checkpoint is evaluated by the same
 * linear probe on the modality's labeled task, for each seed. Minute 0 is each architecture with random weights
 * (the from-scratch reference), and a classic baseline on the same labels sits beside them:
 *
 * - vision: MNIST, 8 labeled digits per class (a different draw per seed), 2,004 test digits; the baseline is
 *   logistic regression on the raw pixels;
 * - text: Brown-corpus genres (`d2v data brown-genre`: 8 genres, 128 labeled passages, 480 test passages from
 *   held-out documents), pretrained on the other documents; the baseline is tf-idf + logistic regression;
 * - audio: spoken command words (`d2v data synth-words`: 480 clips from 16 voices, 240 test clips from 8 other
 *   voices), pretrained on the synthetic corpus (`d2v data synth-speech`); the baseline is logistic regression on
 *   the clip's log-spectrum averaged over time.
 *
 * Budgets are counted in updates from each objective's seconds per update measured by `npm run bench` on an idle
 * machine (`--sec-v1`, `--sec-v2`), so that other work on this shared machine does not change who got how much.
 *
 *   node dist/experiments/efficiency.js --modality vision|text|audio [--minutes 2,4,6] [--seeds 1,2,3]
 *       [--sec-v1 S] [--sec-v2 S] [--out runs/efficiency-<modality>]
 *       [--objectives v1,v2] [--set-v1 JSON] [--set-v2 JSON]   (a variant: settings changed from the presets)
 *
 * Resumable: finished pieces are cached in <out>/results.json; an interrupted pretraining resumes exactly. Each
 * probe runs in a child process (the engine's heap only grows).
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { initEngine } from "../src/engine/runtime.js";
import { disposeTree } from "../src/engine/typed.js";
import { checkpointedUpdates } from "../src/train/pretrain.js";
import { renderSvg } from "../src/experiment/report.js";
import { arg, percentMeanStd } from "./common.js";
import { brownTask, mnistTask, wordsTask, type AccuracyScore, type LabeledTask, type Score } from "./tasks.js";

type Objective = "v1" | "v2";
type RunCfg = { data2vec: { ema: { tauStart: number; tauEnd: number; annealSteps: number } } };

/** A task (experiments/tasks.ts) with the two presets compared on it and their measured seconds per update. */
type Task<Cfg extends RunCfg, Arch, Encoder> = LabeledTask<Cfg, Arch, Encoder> & {
  presets: Record<Objective, string>;
  /** Seconds per update of each preset, idle, native engine (docs/results/bench.md). */
  secPerUpdate: Record<Objective, number>;
};

const MODALITIES: Record<string, () => Task<never, never, never>> = {
  vision: () => ({ ...mnistTask(), presets: { v1: "small", v2: "small-v2" }, secPerUpdate: { v1: 0.367, v2: 1.107 } }) as never,
  // Medians of updates 6–60 of `d2v pretrain` alone on the machine (the bench's text-tiny-v2 step is slower).
  text: () => ({ ...brownTask(), presets: { v1: "tiny", v2: "tiny-v2" }, secPerUpdate: { v1: 0.498, v2: 0.694 } }) as never,
  // Medians of updates 6–60 (v2: 6–40) of `d2v pretrain` on data/speech/pretrain alone on the machine.
  audio: () => ({ ...wordsTask(), presets: { v1: "tiny", v2: "tiny-v2" }, secPerUpdate: { v1: 0.395, v2: 0.774 } }) as never,
};
const log = (m: string) => process.stderr.write(`${m}\n`);

const modality = arg("modality", "");

/** Pretrains, evaluates and reports one modality's comparison (or, with --one, one evaluation). */
async function run<Cfg extends RunCfg, Arch, Encoder>(task: Task<Cfg, Arch, Encoder>) {
  const minutes = arg("minutes", "2,4,6").split(",").map(Number);
  const seeds = arg("seeds", "1,2,3").split(",").map(Number);
  const secPerUpdate: Record<Objective, number> = { v1: Number(arg("sec-v1", String(task.secPerUpdate.v1))), v2: Number(arg("sec-v2", String(task.secPerUpdate.v2))) };
  if (!(secPerUpdate.v1 > 0 && secPerUpdate.v2 > 0)) {
    log(`pass --sec-v1 and --sec-v2: the seconds per update of ${task.presets.v1} and ${task.presets.v2} measured by \`npm run bench\` on an idle machine`);
    process.exit(2);
  }
  const out = resolve(arg("out", join("runs", `efficiency-${modality}`)));
  // Settings changed from the presets (a partial run config as JSON, e.g. --set-v2 '{"train":{"lr":1e-3}}'), to try
  // variants side by side in their own --out folders; recorded in results.json.
  const changes: Record<Objective, unknown> = { v1: JSON.parse(arg("set-v1", "{}")), v2: JSON.parse(arg("set-v2", "{}")) };
  const objectives = arg("objectives", "v1,v2").split(",") as Objective[];

  /** The run config of an objective for the largest budget: schedule, warm-up and teacher annealing fit its updates. */
  function runConfig(objective: Objective, seed: number): Cfg {
    const steps = updatesAt(objective, Math.max(...minutes));
    const base = task.kit.resolve(task.presets[objective], changes[objective]);
    return task.kit.resolve(task.presets[objective], changes[objective], {
      data2vec: { ema: { ...base.data2vec.ema, annealSteps: steps } },
      train: { steps, warmupSteps: Math.round(0.1 * steps), seed, checkpointEvery: steps },
    });
  }
  const updatesAt = (objective: Objective, m: number) => Math.round((m * 60) / secPerUpdate[objective]);
  const snapshotDir = (objective: Objective, seed: number, m: number) => join(out, "snapshots", `${objective}-seed${seed}-${m}min`);

  const one = process.argv.indexOf("--one");
  if (one >= 0) {
    // One evaluation in this process: --one <checkpoint dir | baseline | random:v1 | random:v2> <seed>
    const [what, seedText] = process.argv.slice(one + 1, one + 3);
    const seed = Number(seedText);
    await initEngine();
    let result: Score;
    if (what === "baseline") result = await task.baseline(seed);
    else if (what.startsWith("random:")) {
      // The objective's architecture with the seed's random weights (from its config, or from its first snapshot).
      const objective = what.slice("random:".length) as Objective;
      let arch: Arch;
      if (task.archOf) arch = task.archOf(runConfig(objective, seed));
      else {
        const loaded = task.encoders.load(snapshotDir(objective, seed, minutes[0]));
        disposeTree(loaded.encoder);
        arch = loaded.arch;
      }
      result = await task.probe(arch, task.encoders.fresh(arch, seed), seed);
    } else {
      const loaded = task.encoders.load(what);
      result = await task.probe(loaded.arch, loaded.encoder, seed);
    }
    console.log(JSON.stringify(result));
    process.exit(0);
  }

  type Result = { objective: Objective | "baseline"; seed: number; minutes: number; updates: number; accuracy: number; trainAccuracy: number };
  await initEngine();
  mkdirSync(out, { recursive: true });
  const resultsPath = join(out, "results.json");
  const results: Result[] = existsSync(resultsPath) ? (JSON.parse(readFileSync(resultsPath, "utf8")) as { runs: Result[] }).runs : [];
  const save = () => writeFileSync(resultsPath, JSON.stringify({ modality, minutes, seeds, secPerUpdate, presets: task.presets, changes, probe: `linear probe: ${task.labeledName}`, runs: results }, null, 2));
  const has = (objective: Result["objective"], seed: number, m: number) => results.some((r) => r.objective === objective && r.seed === seed && r.minutes === m);

  function evaluate(what: string[], objective: Result["objective"], seed: number, m: number, updates: number) {
    const child = spawnSync(process.execPath, [process.argv[1], ...process.argv.slice(2), "--one", ...what], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    if (child.status !== 0) throw new Error(`evaluation ${what.join(" ")} failed`);
    const probe = JSON.parse(child.stdout.trim().split("\n").pop()!) as AccuracyScore; // its tasks are classifications
    results.push({ objective, seed, minutes: m, updates, ...probe });
    save();
    log(`${objective} seed ${seed}, ${m} min (${updates} updates): test accuracy ${(100 * probe.accuracy).toFixed(1)}% (train ${(100 * probe.trainAccuracy).toFixed(1)}%)`);
  }

  for (const seed of seeds) {
    if (!has("baseline", seed, 0)) evaluate(["baseline", String(seed)], "baseline", seed, 0, 0);
    for (const objective of objectives) {
      const cfg = runConfig(objective, seed);
      const runDir = join(out, `${objective}-seed${seed}`);
      for (const m of minutes) {
        if (has(objective, seed, m)) continue;
        const updates = updatesAt(objective, m);
        const snapshot = snapshotDir(objective, seed, m);
        if (!existsSync(join(snapshot, "state.json"))) {
          // Train on to this budget (a checkpoint is written where it stops), then keep a copy of that checkpoint.
          const done = checkpointedUpdates(runDir);
          if (done < updates) {
            const t0 = performance.now();
            const r = await task.pretrain(cfg, runDir, done > 0, updates);
            if (r.interrupted) process.exit(130);
            log(`${objective} seed ${seed}: updates ${done} → ${updates} in ${((performance.now() - t0) / 60000).toFixed(1)} min (loss ${r.records[r.records.length - 1]?.loss.toFixed(3)})`);
          }
          rmSync(snapshot, { recursive: true, force: true });
          mkdirSync(join(out, "snapshots"), { recursive: true });
          cpSync(join(runDir, "checkpoint"), snapshot, { recursive: true });
        }
        evaluate([snapshot, String(seed)], objective, seed, m, updates);
      }
      // Minute 0: the same architecture with random weights (the seed's own initialization), probed the same way.
      if (!has(objective, seed, 0)) evaluate([`random:${objective}`, String(seed)], objective, seed, 0, 0);
    }
  }

  // The plot: probe accuracy against pretraining minutes, each seed a dot, the mean ± std over seeds a line, the
  // classic baseline a dashed rule.
  const name = (o: Objective) => (o === "v1" ? `data2vec (${task.presets.v1})` : `data2vec 2.0 (${task.presets.v2})`);
  const ours = results.filter((r) => seeds.includes(r.seed) && r.objective !== "baseline");
  const points = ours.map((r) => ({ objective: name(r.objective as Objective), seed: r.seed, minutes: r.minutes, accuracy: 100 * r.accuracy }));
  const baselineRuns = results.filter((r) => r.objective === "baseline" && seeds.includes(r.seed));
  const baselineMean = (100 * baselineRuns.reduce((s, r) => s + r.accuracy, 0)) / Math.max(1, baselineRuns.length);
  const encoding = {
    x: { field: "minutes", type: "quantitative", title: "pretraining minutes (0: random weights; at each objective's measured update time)" },
    color: { field: "objective", type: "nominal", legend: { labelLimit: 400, orient: "bottom" } },
  } as const;
  const y = { field: "accuracy", type: "quantitative", title: "test accuracy (%)", scale: { zero: false } } as const;
  writeFileSync(
    join(out, "accuracy-vs-minutes.svg"),
    await renderSvg({
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      title: { text: `${task.title}, linear probe: test accuracy vs pretraining time (${seeds.length} seeds)`, subtitle: `dashed: ${task.baselineName} on the same labels (${baselineMean.toFixed(1)}%)` },
      width: 480,
      height: 300,
      layer: [
        { data: { values: points }, mark: { type: "line", point: false }, encoding: { ...encoding, y: { ...y, aggregate: "mean" } } },
        { data: { values: points }, mark: { type: "errorbar", extent: "stdev" }, encoding: { ...encoding, y } },
        { data: { values: points }, mark: { type: "point", filled: true, opacity: 0.6 }, encoding: { ...encoding, y } },
        { data: { values: [{ accuracy: baselineMean }] }, mark: { type: "rule", strokeDash: [4, 4], color: "gray" }, encoding: { y } },
      ],
    }),
  );

  const cell = (o: Objective, m: number) => {
    const sel = seeds.map((s) => results.find((r) => r.objective === o && r.minutes === m && r.seed === s)).filter((r): r is Result => !!r);
    return `${percentMeanStd(sel.map((r) => r.accuracy))} (${sel.map((r) => (100 * r.accuracy).toFixed(1)).join(" / ")}; ${sel[0]?.updates} updates)`;
  };
  console.log(`| pretraining minutes | ${name("v1")}: test accuracy (%) | ${name("v2")}: test accuracy (%) |`);
  console.log(`|---|---|---|`);
  for (const m of [0, ...minutes]) console.log(`| ${m === 0 ? "0 (random weights)" : m} | ${cell("v1", m)} | ${cell("v2", m)} |`);
  console.log(`\n${task.baselineName} (same labels): ${percentMeanStd(baselineRuns.map((r) => r.accuracy))} (${baselineRuns.map((r) => (100 * r.accuracy).toFixed(1)).join(" / ")})`);
  console.log(`${seeds.length} seeds; linear probe on ${task.labeledName}; seconds per update: v1 ${secPerUpdate.v1}, v2 ${secPerUpdate.v2}.`);
}

if (MODALITIES[modality]) await run(MODALITIES[modality]());
else {
  log(`--modality ${modality || "(missing)"}: choose vision, text or audio`);
  process.exit(2);
}
