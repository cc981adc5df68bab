/**
 * `d2v experiment FILE.json`: every (setting, seed) job is pretrain → fine-tune → evaluate, each step a child
 * `d2v` process (jax-js's wasm heap only grows, so one process per step keeps memory flat). A job's result is
 * written atomically when it ends, and a rerun skips finished jobs; an interrupted pretraining resumes from its
 * last checkpoint. A run the collapse monitor stops is recorded as collapsed, not retried.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { COLLAPSE_EXIT_STATUS, ExperimentError, InterruptedError, SIGNAL_EXIT_STATUS, type StopSignal } from "../engine/errors.js";
import { writeFileAtomic } from "../train/checkpoint.js";
import { checkpointedUpdates, readPretrainRecords } from "../train/pretrain.js";
import { experimentDir, settingPretrainConfig, settingSlug, type ExperimentSpec, type SettingSpec } from "./spec.js";

/** One job's outcome, as stored in `<setting>/seed-<n>/result.json`. */
export type JobResult = {
  setting: string;
  seed: number;
  /** Hash of everything that determines the job (see `jobRecipe`). */
  recipe?: string;
  status: "ok" | "collapsed";
  /** The compared metric (absent when collapsed). */
  metric?: number;
  /** Everything `d2v eval` printed. */
  evalMetrics?: Record<string, unknown>;
  /** Pretraining summary (absent for scratch). */
  pretrain?: { updates: number; minutes: number; finalLoss: number; finalTargetVar: number; finalPredVar: number };
  /** The collapse monitor's message. */
  collapse?: string;
  seconds: { pretrain: number; finetune: number; eval: number };
};

export type RunOptions = {
  out?: string;
  /** The `d2v` command as argv (default: this installation's CLI under the current Node). */
  cli?: string[];
  log?: (line: string) => void;
};

const CLI_MAIN = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");

export const jobDir = (root: string, setting: string, seed: number) => join(root, settingSlug(setting), `seed-${seed}`);
export const pretrainDir = (root: string, setting: string, seed: number) => join(jobDir(root, setting, seed), "pretrain");

/**
 * What determines a job's outcome besides its seed, as two hashes: `pretraining` (the setting's pretraining
 * config, for a scratch setting the reference setting's, whose architecture it borrows; the steps and data) and
 * `recipe` (that plus the fine-tuning and evaluation commands). A folder whose pretraining differs is refused
 * rather than mixed into the report; one where only the downstream changed keeps its pretrained model and is
 * fine-tuned and evaluated again.
 */
export function jobRecipe(spec: ExperimentSpec, setting: SettingSpec, reference: SettingSpec): { recipe: string; pretraining: string } {
  const pretrained = setting.scratch ? reference : setting;
  const pretraining = {
    modality: spec.modality,
    preset: spec.preset,
    pretrain: { steps: spec.pretrain.steps, data: spec.pretrain.data ?? null, args: spec.pretrain.args, config: settingPretrainConfig(spec, pretrained) },
  };
  const parts = {
    ...pretraining,
    scratch: setting.scratch,
    finetune: { data: spec.finetune.data ?? null, args: [...spec.finetune.args, ...setting.finetuneArgs] },
    eval: { data: spec.eval.data ?? null, args: spec.eval.args, metric: spec.eval.metric },
  };
  const hash = (x: unknown) => createHash("sha256").update(JSON.stringify(x)).digest("hex").slice(0, 16);
  return { recipe: hash(parts), pretraining: hash(pretraining) };
}

/** Runs the grid (seed by seed, so the first full comparison is there early) and returns every job's result. */
export async function runExperiment(spec: ExperimentSpec, o: RunOptions = {}): Promise<JobResult[]> {
  const root = experimentDir(spec, o.out);
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const cli = o.cli ?? [process.execPath, CLI_MAIN];
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, "experiment.json"), JSON.stringify(spec, null, 2) + "\n");

  let interrupted: StopSignal | null = null;
  let child: ReturnType<typeof spawn> | null = null;
  // Ctrl-C reaches the child through the process group; SIGTERM is forwarded. Either way the child saves
  // its checkpoint and the grid stops after it.
  const onSignal = (signal: StopSignal) => {
    interrupted = signal;
    if (signal === "SIGTERM") child?.kill("SIGTERM");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  /** Runs `d2v args…`; stdout is returned, stderr appended to the job's log. */
  const d2v = (args: string[], logFile: string): Promise<{ status: number | null; stdout: string; stderr: string }> =>
    new Promise((resolvePromise, reject) => {
      appendFileSync(logFile, `\n$ d2v ${args.join(" ")}\n`);
      const c = spawn(cli[0], [...cli.slice(1), ...args], { stdio: ["ignore", "pipe", "pipe"] });
      child = c;
      let stdout = "";
      let stderr = "";
      c.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
      c.stderr!.on("data", (d: Buffer) => {
        stderr += d.toString();
        appendFileSync(logFile, d);
      });
      c.on("error", reject);
      c.on("close", (status) => {
        child = null;
        resolvePromise({ status, stdout, stderr });
      });
    });
  const stopIfInterrupted = () => {
    if (interrupted) throw new InterruptedError(`interrupted; run the same command again to continue (finished jobs are kept, pretraining resumes)`, interrupted);
  };
  const failed = (what: string, logFile: string, stderr: string) =>
    new ExperimentError(`${what} failed; its output is in ${logFile}:\n${stderr.trim().split("\n").slice(-6).join("\n")}`);

  // Data first.
  const prepLog = join(root, "prepare.log");
  for (const p of spec.prepare) {
    if (existsSync(p.creates)) continue;
    log(`prepare: d2v ${p.args.join(" ")}`);
    const r = await d2v(p.args, prepLog);
    stopIfInterrupted();
    if (r.status !== 0 || !existsSync(p.creates)) throw failed(`d2v ${p.args.join(" ")}`, prepLog, r.stderr);
  }

  const reference = spec.settings.find((s) => !s.scratch)!;
  const results: JobResult[] = [];
  const total = spec.settings.length * spec.seeds.length;
  let index = 0;
  const t0 = performance.now();
  let ran = 0;
  try {
    for (const seed of spec.seeds) {
      // Scratch settings borrow the reference setting's architecture, so it runs first.
      const ordered = [reference, ...spec.settings.filter((s) => s !== reference)];
      for (const setting of ordered) {
        index++;
        const dir = jobDir(root, setting.name, seed);
        const resultPath = join(dir, "result.json");
        const recipePath = join(dir, "recipe.json");
        const { recipe, pretraining } = jobRecipe(spec, setting, reference);
        const previous = existsSync(recipePath) ? (JSON.parse(readFileSync(recipePath, "utf8")) as { recipe: string; pretraining?: string }) : null;
        if (previous && previous.recipe !== recipe) {
          if (previous.pretraining !== pretraining) {
            throw new ExperimentError(
              `${dir} was pretrained with other settings than "${setting.name}" has now (its pretraining config or data changed); ` +
                `give the changed setting a new name, use another --out, or delete that folder to rerun it`,
            );
          }
          // Only the fine-tuning or evaluation changed: the pretrained model stays, the downstream runs again.
          // A collapse happened in pretraining, so it stands.
          const old = existsSync(resultPath) ? (JSON.parse(readFileSync(resultPath, "utf8")) as JobResult) : null;
          if (old?.status === "collapsed") writeFileAtomic(resultPath, JSON.stringify({ ...old, recipe }, null, 2) + "\n");
          else rmSync(resultPath, { force: true });
          writeFileSync(recipePath, JSON.stringify({ recipe, pretraining }) + "\n");
          log(`${settingSlug(setting.name)}/seed-${seed}: fine-tuning or evaluation changed; the pretrained model is kept`);
        }
        if (existsSync(resultPath)) {
          results.push(JSON.parse(readFileSync(resultPath, "utf8")) as JobResult);
          continue;
        }
        const eta = ran > 0 ? `, ≈${(((performance.now() - t0) / ran) * (total - index + 1) / 60000).toFixed(0)} min left` : "";
        log(`[${index}/${total}] ${setting.name}, seed ${seed}${eta}`);
        mkdirSync(dir, { recursive: true });
        writeFileSync(recipePath, JSON.stringify({ recipe, pretraining }) + "\n");
        const r = await runJob(spec, setting, seed, root, reference, d2v, stopIfInterrupted, failed);
        writeFileAtomic(resultPath, JSON.stringify({ ...r, recipe }, null, 2) + "\n");
        results.push(r);
        ran++;
        log(`  ${r.status === "collapsed" ? `collapsed: ${r.collapse}` : `${spec.eval.metric} ${r.metric}`}`);
      }
    }
  } finally {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }
  return results;
}

type D2v = (args: string[], logFile: string) => Promise<{ status: number | null; stdout: string; stderr: string }>;

async function runJob(
  spec: ExperimentSpec,
  setting: SettingSpec,
  seed: number,
  root: string,
  reference: SettingSpec,
  d2v: D2v,
  stopIfInterrupted: () => void,
  failed: (what: string, logFile: string, stderr: string) => ExperimentError,
): Promise<JobResult> {
  const dir = jobDir(root, setting.name, seed);
  const logFile = join(dir, "log.txt");
  const seconds = { pretrain: 0, finetune: 0, eval: 0 };
  const timed = async <T>(k: keyof typeof seconds, f: () => Promise<T>) => {
    const t = performance.now();
    const r = await f();
    seconds[k] = Math.round((performance.now() - t) / 100) / 10;
    return r;
  };

  // 1. Pretraining (resumed when a checkpoint is there; skipped when it is complete).
  let pretrain: JobResult["pretrain"];
  const initDir = pretrainDir(root, setting.scratch ? reference.name : setting.name, seed);
  if (!setting.scratch) {
    const configPath = join(dir, "pretrain-config.json");
    writeFileSync(configPath, JSON.stringify(settingPretrainConfig(spec, setting), null, 2) + "\n");
    const checkpointed = checkpointedUpdates(initDir);
    if (checkpointed < spec.pretrain.steps) {
      // A resumed run keeps the settings saved in its checkpoint (the recipe check above guards against a changed file).
      const args =
        checkpointed > 0
          ? ["pretrain", "--out", initDir, "--resume", "--steps", String(spec.pretrain.steps), "--quiet"]
          : ["pretrain", "--modality", spec.modality, "--preset", spec.preset, "--config", configPath, "--steps", String(spec.pretrain.steps), "--seed", String(seed), "--out", initDir, "--quiet", "--force"];
      if (spec.pretrain.data) args.push("--data", spec.pretrain.data);
      if (checkpointed === 0) args.push(...spec.pretrain.args); // extra settings, saved with the run's config
      const r = await timed("pretrain", () => d2v(args, logFile));
      stopIfInterrupted();
      if (r.status === COLLAPSE_EXIT_STATUS) {
        // Collapse or divergence: a finding of this setting, recorded as its result.
        const message = r.stderr.split("\n").find((l) => l.startsWith("error: "))?.slice(7).split(". ")[0] ?? "collapsed";
        return { setting: setting.name, seed, status: "collapsed", collapse: message, pretrain: pretrainSummary(initDir), seconds };
      }
      const reached = checkpointedUpdates(initDir);
      // A pretraining stopped by a signal of its own saves a partial checkpoint and exits 130/143: never fine-tune that.
      if (r.status === SIGNAL_EXIT_STATUS.SIGINT || r.status === SIGNAL_EXIT_STATUS.SIGTERM || (r.status === 0 && reached < spec.pretrain.steps)) {
        throw new ExperimentError(`pretraining (${setting.name}, seed ${seed}) stopped at update ${reached} of ${spec.pretrain.steps}; run the same command again to continue`);
      }
      if (r.status !== 0) throw failed(`pretraining (${setting.name}, seed ${seed})`, logFile, r.stderr);
    }
    pretrain = pretrainSummary(initDir);
  }

  // 2. Fine-tuning (not resumable: an interrupted one starts over).
  const finetuneDir = join(dir, "finetune");
  rmSync(finetuneDir, { recursive: true, force: true });
  const ftArgs = ["finetune", "--init", initDir, "--seed", String(seed), "--out", finetuneDir, "--quiet"];
  if (setting.scratch) ftArgs.push("--scratch");
  if (spec.finetune.data) ftArgs.push("--data", spec.finetune.data);
  ftArgs.push(...spec.finetune.args, ...setting.finetuneArgs);
  const ft = await timed("finetune", () => d2v(ftArgs, logFile));
  stopIfInterrupted();
  if (ft.status !== 0) throw failed(`fine-tuning (${setting.name}, seed ${seed})`, logFile, ft.stderr);

  // 3. Evaluation: `d2v eval` ends with its metrics as one JSON line.
  const evArgs = ["eval", "--model", finetuneDir];
  if (spec.eval.data) evArgs.push("--data", spec.eval.data);
  evArgs.push(...spec.eval.args);
  const ev = await timed("eval", () => d2v(evArgs, logFile));
  stopIfInterrupted();
  if (ev.status !== 0) throw failed(`evaluation (${setting.name}, seed ${seed})`, logFile, ev.stderr);
  const lastLine = ev.stdout.trim().split("\n").pop() ?? "";
  let evalMetrics: Record<string, unknown>;
  try {
    evalMetrics = JSON.parse(lastLine) as Record<string, unknown>;
  } catch {
    throw new ExperimentError(`d2v eval did not end with a JSON line (got "${lastLine.slice(0, 200)}"); see ${logFile}`);
  }
  const metric = evalMetrics[spec.eval.metric];
  if (typeof metric !== "number") {
    throw new ExperimentError(`d2v eval printed no numeric "${spec.eval.metric}" (fields: ${Object.keys(evalMetrics).join(", ")}); set eval.metric to one of them`);
  }
  return { setting: setting.name, seed, status: "ok", metric, evalMetrics, pretrain, seconds };
}

function pretrainSummary(dir: string): NonNullable<JobResult["pretrain"]> {
  const records = readPretrainRecords(dir);
  const last = records[records.length - 1];
  if (!last) throw new ExperimentError(`${dir}/metrics.jsonl holds no pretraining updates`);
  return {
    updates: records.length,
    minutes: Math.round(records.reduce((s, r) => s + r.sec, 0) / 6) / 10,
    finalLoss: last.loss,
    finalTargetVar: last.targetVar,
    finalPredVar: last.predVar,
  };
}
