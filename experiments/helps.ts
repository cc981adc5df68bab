/**
 * Does pretraining help on a task? Pretrain on the task's own unlabeled data (experiments/tasks.ts), then, for each
 * seed, evaluate the pretrained encoder and the same architecture from scratch (the seed's random weights; text
 * keeps the pretraining run's tokenizer) with a linear probe and with full fine-tuning, beside the classic baseline
 * on the same labels. "Helps" means ahead in every seed and by at least 5 points of accuracy on the mean (for
 * transcription: a lower CER in every seed, and by at least 15% relative on the mean).
 *
 *   node dist/experiments/helps.js --task mnist|fashion|brown|debian|words|ctc [--preset tiny] [--objective data2vec2]
 *       [--steps N] [--set JSON] [--finetune JSON] [--pretrained DIR] [--seeds 1,2,3] [--evals probe,finetune]
 *       [--jobs N] [--out runs/helps-<task>-<preset>]
 *
 * `--set` changes settings of the preset (a partial run config as JSON). `--steps N` stretches the preset's warm-up,
 * EMA anneal and collapse-monitor warm-up with the run, except the ones `--set` gives. `--finetune` changes the task's
 * fine-tuning settings (e.g. '{"augment":true,"epochs":80}'). `--pretrained DIR` evaluates the pretraining of another
 * run of the same task (its <out>/pretrain) instead of pretraining again. Resumable: the pretraining resumes exactly,
 * and each finished evaluation is cached in <out>/results.json; each runs in its own process (the engine's heap only
 * grows). `--jobs N` runs N evaluations at a time, each on one BLAS thread (on 2 cores, `--jobs 2` halves the time
 * of the slow ones, CTC fine-tuning above all). The report is printed and written to <out>/report.md.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { D2vError, ExperimentError, isHeapFull, userErrorStatus } from "../src/engine/errors.js";
import { initEngine } from "../src/engine/runtime.js";
import { disposeTree } from "../src/engine/typed.js";
import { checkpointedUpdates, readPretrainRecords } from "../src/train/pretrain.js";
import { arg, helpsVerdict, helpsVerdictErrorRate, percentMeanStd } from "./common.js";
import { scoreValue, TASKS, type LabeledTask, type Score } from "./tasks.js";

const log = (m: string) => process.stderr.write(`${m}\n`);
// A stopped pretraining (collapse, bad data, a full heap) or a failed evaluation ends the experiment with one line,
// not a stack trace; what finished is kept, and the same command continues.
process.on("uncaughtException", (e) => {
  if (e instanceof D2vError) {
    log(`\nerror: ${e.message}`);
    process.exit(userErrorStatus(e));
  }
  if (isHeapFull(e)) {
    log(`\nerror: the engine's 4 GiB heap is full (${e.message}); lower the batch or the model's size with --set or --finetune`);
    process.exit(2);
  }
  throw e;
});
const taskName = arg("task", "");
if (!TASKS[taskName]) {
  log(`--task ${taskName || "(missing)"}: choose one of ${Object.keys(TASKS).join(", ")}`);
  process.exit(2);
}
const task = TASKS[taskName]() as LabeledTask<never, unknown, unknown>;
const preset = arg("preset", "tiny");
const objective = arg("objective", "");
const changes = JSON.parse(arg("set", "{}")) as Record<string, unknown>;
const finetuneChanges = JSON.parse(arg("finetune", "{}")) as Record<string, unknown>;
const seeds = arg("seeds", "1,2,3").split(",").map(Number);
const jobs = Number(arg("jobs", "1"));
if (!Number.isInteger(jobs) || jobs < 1) {
  log(`--jobs ${arg("jobs", "")}: give a whole number of evaluations to run at a time, e.g. --jobs 2`);
  process.exit(2);
}
const evals = arg("evals", "probe,finetune").split(",") as Evaluation[];
const out = resolve(arg("out", join("runs", `helps-${taskName}-${preset}${objective === "data2vec2" ? "-v2" : ""}`)));
const pretrainedRun = arg("pretrained", "");
const pretrainDir = pretrainedRun ? join(resolve(pretrainedRun), "pretrain") : join(out, "pretrain");

type Evaluation = "probe" | "finetune";
type Init = "pretrained" | "scratch";
type Result = { evaluation: Evaluation | "baseline"; init: Init | null; seed: number } & Score;

/** The pretraining run config: the preset (or its data2vec 2.0 version), `--set`, and `--steps` with a schedule to fit. */
function pretrainConfig() {
  const presetName = objective === "data2vec2" && !preset.endsWith("-v2") ? `${preset}-v2` : preset;
  const base = task.kit.resolve(presetName, changes) as unknown as { train: { steps: number; warmupSteps: number }; data2vec: { ema: { annealSteps: number }; collapseWarmupSteps: number } };
  const steps = Number(arg("steps", String(base.train.steps)));
  const scaled = steps / base.train.steps;
  // The schedules stretch with the run: the learning-rate warm-up, the teacher's EMA anneal, and the updates before
  // the collapse monitor judges (a longer warm-up leaves the student near its zero prediction for longer). A value
  // given in --set is the run's own and is kept as given.
  const set = changes as { train?: { warmupSteps?: number }; data2vec?: { ema?: { annealSteps?: number }; collapseWarmupSteps?: number } };
  return task.kit.resolve(presetName, changes, {
    train: { steps, warmupSteps: set.train?.warmupSteps ?? Math.round(base.train.warmupSteps * scaled), checkpointEvery: Math.min(100, steps) },
    data2vec: {
      ema: { ...base.data2vec.ema, annealSteps: set.data2vec?.ema?.annealSteps ?? Math.round((base.data2vec.ema.annealSteps ?? steps) * scaled) },
      collapseWarmupSteps: set.data2vec?.collapseWarmupSteps ?? Math.round(base.data2vec.collapseWarmupSteps * Math.max(1, scaled)),
    },
  });
}

const one = process.argv.indexOf("--one");
if (one >= 0) {
  // One evaluation in this process: --one <probe|finetune|baseline>:<pretrained|scratch|->:<seed>
  const [evaluation, init, seedText] = process.argv[one + 1].split(":");
  const seed = Number(seedText);
  await initEngine();
  let score: Score;
  if (evaluation === "baseline") score = await task.baseline(seed);
  else {
    const loaded = task.encoders.load(join(pretrainDir, "checkpoint"));
    let encoder = loaded.encoder;
    if (init === "scratch") {
      disposeTree(encoder);
      encoder = task.encoders.fresh(loaded.arch, seed);
    }
    score = evaluation === "probe" ? await task.probe(loaded.arch, encoder, seed) : await task.finetune(loaded.arch, encoder, seed, finetuneChanges);
  }
  console.log(JSON.stringify(score));
  process.exit(0);
}

await initEngine();
mkdirSync(out, { recursive: true });

// 1. Pretraining (resumable).
const config = pretrainConfig() as { train: { steps: number } };
const done = checkpointedUpdates(pretrainDir);
if (pretrainedRun && done < config.train.steps) {
  log(`--pretrained ${pretrainedRun}: its pretraining holds ${done} of the ${config.train.steps} updates asked for; finish it with its own command, or pass the same --steps`);
  process.exit(2);
}
if (done < config.train.steps) {
  log(`${task.title}: pretraining ${preset}${objective ? ` (${objective})` : ""} for ${config.train.steps} updates${done ? `, resuming at ${done}` : ""}`);
  const r = await task.pretrain(config as never, pretrainDir, done > 0);
  if (r.interrupted) {
    log("interrupted; run the same command again to continue");
    process.exit(130);
  }
}
const records = readPretrainRecords(pretrainDir);
const pretraining = { updates: records.length, minutes: records.reduce((s, r) => s + r.sec, 0) / 60, last: records[records.length - 1] };
log(`pretraining: ${pretraining.updates} updates, ${pretraining.minutes.toFixed(1)} min of steps`);

// 2. Evaluations, pretrained vs scratch, per seed, and the baseline (each cached as it finishes).
const resultsPath = join(out, "results.json");
const results: Result[] = existsSync(resultsPath) ? (JSON.parse(readFileSync(resultsPath, "utf8")) as { runs: Result[] }).runs : [];
const save = () => writeFileSync(resultsPath, JSON.stringify({ task: taskName, preset, objective: objective || "data2vec", changes, finetuneChanges, pretrainedIn: pretrainDir, pretraining, pretrainConfig: config, runs: results }, null, 2));
save();
/** Runs one evaluation in a child process (the engine's heap only grows) and caches its score. */
async function evaluate(evaluation: Result["evaluation"], init: Init | null, seed: number): Promise<void> {
  const t0 = performance.now();
  // Side by side, each child keeps to one BLAS thread, or they would fight over the cores.
  const env = jobs > 1 ? { ...process.env, OPENBLAS_NUM_THREADS: process.env.OPENBLAS_NUM_THREADS ?? "1" } : process.env;
  const child = spawn(process.execPath, [...process.argv.slice(1), "--one", `${evaluation}:${init ?? "-"}:${seed}`], { env, stdio: ["ignore", "pipe", "inherit"] });
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  const status = await new Promise<number | null>((done) => child.on("close", done));
  if (status !== 0) throw new ExperimentError(`${evaluation} ${init ?? ""} seed ${seed} failed (status ${status}; its error is above). The evaluations that finished are kept in ${resultsPath}: the same command continues from them`);
  const score = JSON.parse(stdout.trim().split("\n").pop()!) as Score;
  results.push({ evaluation, init, seed, ...score });
  save();
  const seconds = ((performance.now() - t0) / 1000).toFixed(0);
  if ("cer" in score) log(`${evaluation}${init ? ` ${init}` : ""} seed ${seed}: test CER ${(100 * score.cer).toFixed(1)}%, WER ${(100 * score.wer).toFixed(1)}% (train loss ${score.trainLossPerChar.toFixed(3)} per character, ${seconds} s)`);
  else log(`${evaluation}${init ? ` ${init}` : ""} seed ${seed}: test accuracy ${(100 * score.accuracy).toFixed(1)}% (train ${(100 * score.trainAccuracy).toFixed(0)}%, ${seconds} s)`);
}
const pending: [Result["evaluation"], Init | null, number][] = [];
for (const seed of seeds) {
  pending.push(["baseline", null, seed]);
  for (const evaluation of evals) for (const init of ["pretrained", "scratch"] as const) pending.push([evaluation, init, seed]);
}
const todo = pending.filter(([evaluation, init, seed]) => !results.some((r) => r.evaluation === evaluation && r.init === init && r.seed === seed));
// `jobs` workers take the evaluations in order; the first failure ends the experiment (uncaughtException above)
// once the others running have finished and been cached.
let failure: unknown = null;
await Promise.all(
  Array.from({ length: Math.min(jobs, todo.length) }, async () => {
    for (let next = todo.shift(); next && failure === null; next = todo.shift()) {
      try {
        await evaluate(...next);
      } catch (e) {
        failure ??= e;
      }
    }
  }),
);
if (failure !== null) throw failure;

// 3. Report.
const pick = (evaluation: Result["evaluation"], init: Init | null) => seeds.map((s) => scoreValue(results.find((r) => r.evaluation === evaluation && r.init === init && r.seed === s)!, task.metric));
const measure = task.metric === "cer" ? "test CER" : "test accuracy";
/** The task's verdict (accuracy: points; CER: relative), with how far short of "helps" it falls, in words. */
function verdictOf(p: number[], s: number[]): { helps: boolean; everySeed: boolean; diffs: number[]; short: string } {
  if (task.metric === "cer") {
    const v = helpsVerdictErrorRate(p, s);
    return { ...v, short: `${(100 * v.relative).toFixed(0)}% < 15% relative` };
  }
  const v = helpsVerdict(p, s);
  return { ...v, short: `${v.meanPoints.toFixed(1)} < 5 points` };
}
const perSeed = (xs: number[]) => xs.map((x) => (100 * x).toFixed(1)).join(" / ");
const lines = [
  `## ${task.title}: pretrained vs from scratch (${seeds.length} seeds)`,
  "",
  `Pretraining: \`${preset}\`${objective ? ` (${objective})` : ""}${Object.keys(changes).length ? ` with ${JSON.stringify(changes)}` : ""}, ${pretraining.updates} updates in ${pretraining.minutes.toFixed(1)} min of steps (final loss ${pretraining.last.loss.toFixed(3)}, target variance ${pretraining.last.targetVar.toFixed(2)}${pretraining.last.targetRank != null ? `, target rank ${pretraining.last.targetRank.toFixed(1)}` : ""}${pretraining.last.positionShare != null ? `, position share ${pretraining.last.positionShare.toFixed(2)}` : ""}).`,
  `Labels: ${task.labeledName}.${Object.keys(finetuneChanges).length ? ` Fine-tuning changed: ${JSON.stringify(finetuneChanges)}.` : ""}`,
  "",
  `| evaluation | pretrained: ${measure} (%) | from scratch (%) | difference per seed (points) | helps? |`,
  "|---|---|---|---|---|",
];
for (const evaluation of evals) {
  const p = pick(evaluation, "pretrained");
  const s = pick(evaluation, "scratch");
  const { helps: yes, everySeed, diffs, short } = verdictOf(p, s);
  const helps = yes ? "**yes**" : everySeed ? `ahead in every seed, by ${short}` : "no";
  lines.push(`| ${evaluation === "probe" ? "linear probe" : "fine-tuning"} | ${percentMeanStd(p)} (${perSeed(p)}) | ${percentMeanStd(s)} (${perSeed(s)}) | ${diffs.map((d) => (d >= 0 ? "+" : "") + d.toFixed(1)).join(", ")} | ${helps} |`);
}
const base = pick("baseline", null);
lines.push(`| ${task.baselineName} | ${percentMeanStd(base)} (${perSeed(base)}) | | | |`);
// The probes' feature dimensionality: a pooled representation collapsed to a line cannot be probed, however well
// its per-step targets look (train/probe.ts participationRatio).
const dims = (init: Init) => seeds.map((s) => (results.find((r) => r.evaluation === "probe" && r.init === init && r.seed === s) as { featureDims?: number } | undefined)?.featureDims);
if (evals.includes("probe") && [...dims("pretrained"), ...dims("scratch")].every((d) => d !== undefined))
  lines.push("", `Effective dimensions of the probe's standardized training features (participation ratio): pretrained ${dims("pretrained").map((d) => d!.toFixed(1)).join(" / ")}, from scratch ${dims("scratch").map((d) => d!.toFixed(1)).join(" / ")}.`);
const report = lines.join("\n") + "\n";
writeFileSync(join(out, "report.md"), report);
console.log(report);
