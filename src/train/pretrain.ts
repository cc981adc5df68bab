/**
 * The data2vec pretraining loop, modality-agnostic: EMA step (when due) → update → metrics → collapse
 * check → periodic atomic checkpoints. Resuming from a checkpoint continues exactly: parameters, teacher,
 * optimizer moments, data order and masking RNG are restored, and per-update dropout keys depend only on
 * (seed, update).
 */
import { mapTree, refTree } from "../engine/typed.js";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { numpy as np } from "../engine/jax.js";
import type { Data2VecSettings } from "../data2vec/config.js";
import { emaDecay, emaStepDue } from "../data2vec/ema.js";
import { emaSharedOf, studentForEma, type Data2VecParams, type RegressionHead, type StepMetrics, type Teacher } from "../data2vec/model.js";
import { checkCollapse, DEFAULT_DIVERGENCE, DivergenceGuard, type DivergenceState } from "../data2vec/monitor.js";
import { makeSteps, stepKey, type ObjectiveLoss, type StepOutput } from "../data2vec/step.js";
import { adamwInit, learningRate, type AdamWConfig, type AdamWState, type ScheduleConfig } from "../engine/optim.js";
import { copyTree, type ParamTree } from "../engine/tree.js";
import type { HostRng } from "../engine/random.js";
import { ConfigError, DataError, OutputError, type StopSignal } from "../engine/errors.js";
import { loadTree, readCheckpointJson, saveCheckpoint } from "./checkpoint.js";
import { MetricsLog, Progress, readJsonLines } from "./progress.js";
import { checkOutput, recoverInterruptedReplace, staleTemporaries } from "./output.js";

export type PretrainData<Batch> = {
  next(): Batch;
  /** Serializable data-order and masking state (restored by the caller on resume). */
  state(): unknown;
  /** Units (tokens, seconds of audio, images) per batch, for throughput. */
  unitsPerBatch: number;
  unitName: string;
};

/** Shuffled passes over a dataset's examples: the part of a data stream's state that orders them. */
export type EpochOrder = { order: number[]; cursor: number; epoch: number };

export function firstEpoch(count: number, rng: HostRng): EpochOrder {
  return { order: rng.shuffle(Array.from({ length: count }, (_, i) => i)), cursor: 0, epoch: 0 };
}

/** The next batch's example indices (mutates `s`); a new shuffled epoch starts when the current one cannot fill a batch. */
export function nextRows(s: EpochOrder, batchSize: number, rng: HostRng): number[] {
  if (s.cursor + batchSize > s.order.length) {
    s.order = rng.shuffle(Array.from({ length: s.order.length }, (_, i) => i));
    s.cursor = 0;
    s.epoch++;
  }
  const rows = s.order.slice(s.cursor, s.cursor + batchSize);
  s.cursor += batchSize;
  return rows;
}

export type PretrainSetup<Shared extends ParamTree, Batch, Head extends ParamTree = RegressionHead> = {
  /** The objective's loss: data2vec (v1) or data2vec 2.0 (`cfg.data2vec.objective`). */
  loss: ObjectiveLoss<Data2VecParams<Shared, Head>, Teacher<Shared>, Batch>;
  d2v: Data2VecSettings;
  optim: AdamWConfig;
  schedule: ScheduleConfig;
  steps: number;
  accumSteps: number;
  seed: number;
  checkpointEvery: number;
  outDir: string;
  /** Written to the checkpoint's config.json. */
  config: unknown;
  /** Side files stored with every checkpoint (tokenizer files). */
  files?: Record<string, string>;
  quiet?: boolean;
  /** Stop after this update index (exclusive) without finishing the schedule: used to test resume. */
  stopAfter?: number;
  /** Called after every update (experiments, tests). */
  onUpdate?: (record: PretrainRecord) => void;
  /** Warnings about the settings (e.g. a run shorter than its warm-up). */
  log?: (msg: string) => void;
};

export type PretrainState<Shared extends ParamTree, Head extends ParamTree = RegressionHead> = {
  params: Data2VecParams<Shared, Head>;
  teacher: Teacher<Shared>;
  opt: AdamWState;
  step: number;
  /** The divergence guard's state (absent: rebuilt from the run's metrics, or fresh). */
  divergence?: DivergenceState;
};

/** One update's log line. `positionShare` is null when it is undefined (a batch of one). */
export type PretrainRecord = { step: number; loss: number; targetVar: number; predVar: number; targetRank: number; positionShare: number | null; gradNorm: number; lr: number; tau: number; maskedSteps: number; sec: number };

/** The training fields every modality's run config shares. */
export type TrainSettings = {
  lr: number;
  steps: number;
  schedule: "cosine" | "tri_stage" | "constant";
  warmupSteps: number;
  minLr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  clipNorm: number;
};

export function optimizerSettings(t: TrainSettings): AdamWConfig {
  return { beta1: t.beta1, beta2: t.beta2, eps: t.eps, weightDecay: t.weightDecay, clipNorm: t.clipNorm };
}

/** The learning-rate schedule of a run (tri-stage uses the paper's 5/80/15% phases). */
export function scheduleSettings(t: TrainSettings): ScheduleConfig {
  if (t.schedule === "tri_stage") return { kind: "tri_stage", peakLr: t.lr, totalSteps: t.steps, phases: [0.05, 0.8, 0.15] };
  if (t.schedule === "constant") return { kind: "constant", peakLr: t.lr, warmupSteps: t.warmupSteps };
  return { kind: "cosine", peakLr: t.lr, warmupSteps: t.warmupSteps, totalSteps: t.steps, minLr: t.minLr };
}

/**
 * The setup of a pretraining run from its settings (data2vec, optimizer, schedule), checkpointed with the whole
 * run config as a `data2vec-pretrain` config.
 */
export function runSetup<Shared extends ParamTree, Batch, Head extends ParamTree = RegressionHead>(
  loss: ObjectiveLoss<Data2VecParams<Shared, Head>, Teacher<Shared>, Batch>,
  cfg: { data2vec: Data2VecSettings; train: TrainSettings & { accumSteps: number; seed: number; checkpointEvery: number } },
  o: { outDir: string; quiet?: boolean; stopAfter?: number; onUpdate?: (record: PretrainRecord) => void; files?: Record<string, string>; log?: (msg: string) => void },
): PretrainSetup<Shared, Batch, Head> {
  const t = cfg.train;
  return {
    loss,
    d2v: cfg.data2vec,
    optim: optimizerSettings(t),
    schedule: scheduleSettings(t),
    steps: t.steps,
    accumSteps: t.accumSteps,
    seed: t.seed,
    checkpointEvery: t.checkpointEvery,
    outDir: o.outDir,
    config: { kind: "data2vec-pretrain", ...cfg },
    files: o.files,
    quiet: o.quiet,
    stopAfter: o.stopAfter,
    onUpdate: o.onUpdate,
    log: o.log,
  };
}

/** What in a run's settings would surprise: a schedule whose warm-up is not over when the run ends. */
export function scheduleWarnings(setup: { schedule: ScheduleConfig; steps: number }): string[] {
  const s = setup.schedule;
  if (s.kind !== "tri_stage" && s.warmupSteps >= setup.steps) {
    return [`the run is ${setup.steps} updates but the learning-rate warm-up is ${s.warmupSteps} (train.warmupSteps): it ends before the learning rate reaches train.lr; lower train.warmupSteps or raise --steps`];
  }
  return [];
}

export function checkpointDir(outDir: string): string {
  return join(outDir, "checkpoint");
}

/** Updates the run in `outDir` has checkpointed (0 before its first checkpoint). */
export function checkpointedUpdates(outDir: string): number {
  const dir = checkpointDir(outDir);
  return existsSync(join(dir, "state.json")) ? (readCheckpointJson(dir, "state.json") as { step: number }).step : 0;
}

/** The run's per-update records (`metrics.jsonl`); none before its first update. */
export function readPretrainRecords(outDir: string): PretrainRecord[] {
  const path = join(outDir, "metrics.jsonl");
  if (!existsSync(path)) return [];
  return readJsonLines<PretrainRecord>(path);
}

/** Whether `dir` is a pretraining run: it has a checkpoint, metrics, or a checkpoint being written. */
export function isPretrainRun(dir: string): boolean {
  const ckpt = checkpointDir(dir);
  return existsSync(ckpt) || existsSync(join(dir, "metrics.jsonl")) || staleTemporaries(ckpt).length > 0;
}

/** Finishes a checkpoint swap that a stopped process left half done and removes its temporaries, saying so. */
export function recoverCheckpoint(outDir: string, log?: (msg: string) => void): void {
  const ckpt = checkpointDir(outDir);
  const { recovered, removed } = recoverInterruptedReplace(ckpt);
  if (recovered) log?.(`note: finished a checkpoint swap that a stopped process left half done (${recovered} → ${ckpt})`);
  if (removed.length) log?.(`note: removed ${removed.length} temporary checkpoint cop${removed.length === 1 ? "y" : "ies"} left by a stopped process`);
}

/** Checks a run directory before any work: a file, a protected path, or a folder of other files (without `force`) is refused. */
export function checkPretrainOutput(outDir: string, o: { resume?: boolean; force?: boolean }): void {
  if (existsSync(outDir) && !statSync(outDir).isDirectory()) {
    throw new OutputError(`--out ${outDir} is a file; a pretraining run is a folder (checkpoint/, metrics.jsonl): choose a new --out`);
  }
  checkOutput(outDir, { flag: "--out", what: "pretraining run", kind: "dir", force: o.force || o.resume }, isPretrainRun);
}

/**
 * Opens a run directory for pretraining: `resume` needs a checkpoint there, a fresh start refuses to overwrite
 * one unless `force`, and a folder of other files needs `force` too (the run is then written beside them). A
 * checkpoint swap that a killed process left half done is finished first, and its stale temporaries removed.
 * On resume, returns the saved run config (for the caller to validate) and where the data came from.
 */
export function openPretrainRun(
  outDir: string,
  o: { resume?: boolean; force?: boolean; log?: (msg: string) => void },
): { ckpt: string; saved: { config: unknown; source: unknown } | null } {
  const ckpt = checkpointDir(outDir);
  checkPretrainOutput(outDir, o);
  recoverCheckpoint(outDir, o.log);
  const hasCheckpoint = existsSync(join(ckpt, "state.json"));
  if (o.resume && !hasCheckpoint) throw new DataError(`--resume: ${outDir} holds no checkpoint to resume from`);
  if (!o.resume && hasCheckpoint && !o.force) {
    throw new ConfigError(`${outDir} already holds a checkpoint; pass --resume to continue it or --force to start over`);
  }
  if (!o.resume) return { ckpt, saved: null };
  const state = readCheckpointJson(ckpt, "state.json") as { data?: { source?: unknown } };
  return { ckpt, saved: { config: readCheckpointJson(ckpt, "config.json"), source: state.data?.source ?? null } };
}

/** A fresh state: the teacher starts as a copy of the student's blocks (and of its `emaShared` groups). */
export function freshPretrainState<Shared extends ParamTree, Head extends ParamTree = RegressionHead>(params: Data2VecParams<Shared, Head>, emaShared: readonly string[] = []): PretrainState<Shared, Head> {
  const teacher: Teacher<Shared> = copyTree({ layers: params.layers, shared: emaSharedOf(params.shared, emaShared) });
  return { params, teacher, opt: adamwInit(params), step: 0 };
}

/** Restores a state saved by `pretrain` into the structure of `like` (consumed). Returns it with the data state. */
export function loadPretrainState<Shared extends ParamTree, Head extends ParamTree = RegressionHead>(dir: string, like: Data2VecParams<Shared, Head>, emaShared: readonly string[] = []): { state: PretrainState<Shared, Head>; data: unknown } {
  const saved = readCheckpointJson(dir, "state.json") as { step: number; data: unknown; divergence?: DivergenceState };
  const opt = adamwInit(like);
  const params = loadTree(dir, "model", like, { consumeLike: true });
  // Without emaShared groups the teacher's file holds its blocks only, as checkpoints always have.
  const teacher: Teacher<Shared> = loadTree(dir, "teacher", { layers: params.layers, shared: emaSharedOf(params.shared, emaShared) });
  const optimizer = loadTree(dir, "optimizer", opt, { consumeLike: true });
  return { state: { params, teacher, opt: optimizer, step: saved.step, divergence: saved.divergence }, data: saved.data };
}

export async function pretrain<Shared extends ParamTree, Batch, Head extends ParamTree = RegressionHead>(
  setup: PretrainSetup<Shared, Batch, Head>,
  state: PretrainState<Shared, Head>,
  data: PretrainData<Batch>,
): Promise<{ state: PretrainState<Shared, Head>; records: PretrainRecord[]; interrupted: StopSignal | null }> {
  const steps = makeSteps(setup.loss, setup.optim);
  mkdirSync(setup.outDir, { recursive: true });
  const metrics = new MetricsLog(join(setup.outDir, "metrics.jsonl"));
  if (state.step === 0) metrics.reset();
  else metrics.truncateAfter(state.step);
  const end = Math.min(setup.steps, setup.stopAfter ?? Infinity);
  const progress = new Progress("pretrain", setup.steps, state.step, { quiet: setup.quiet });
  const records: PretrainRecord[] = [];
  let { params, teacher, opt } = state;
  const guardSettings = { ...DEFAULT_DIVERGENCE, ...setup.d2v.divergence };
  // A fresh run starts the guard empty; a checkpoint from before the guard existed has its state rebuilt from the
  // run's logged updates.
  const divergence =
    state.step === 0
      ? new DivergenceGuard(guardSettings)
      : state.divergence
        ? new DivergenceGuard(guardSettings, state.divergence)
        : DivergenceGuard.replay(guardSettings, readPretrainRecords(setup.outDir).filter((r) => r.step <= state.step));
  if (state.step === 0) for (const w of scheduleWarnings(setup)) setup.log?.(`warning: ${w}`);
  let interrupted: StopSignal | null = null;
  const onSigint = (signal: StopSignal) => {
    interrupted = signal;
  };
  // Ctrl-C or a polite kill: finish the current update, save a checkpoint, return.
  process.once("SIGINT", onSigint);
  process.once("SIGTERM", onSigint);

  const save = async (step: number) =>
    saveCheckpoint(checkpointDir(setup.outDir), {
      config: setup.config,
      trees: { model: params, teacher, optimizer: opt },
      state: { step, data: data.state(), seed: setup.seed, divergence: divergence.state() },
      files: setup.files,
    });

  let unitsDone = 0;
  const t0 = performance.now();
  try {
    for (let update = state.step; update < end; update++) {
      const started = performance.now();
      const tau = emaDecay(setup.d2v.ema, update);
      if (emaStepDue(setup.d2v.ema, update)) {
        teacher = steps.ema(teacher, studentForEma(params, setup.d2v.emaShared ?? []), np.array(tau));
      }
      const lr = learningRate(setup.schedule, update);
      let out: StepOutput;
      if (setup.accumSteps === 1) {
        [params, opt, out] = steps.update(params, refTree(teacher), opt, data.next(), stepKey(setup.seed, update), np.array(lr));
      } else {
        // Gradient accumulation: average the micro-batch gradients, then one AdamW step.
        let gradSum: Data2VecParams<Shared, Head> | null = null;
        const parts: (StepMetrics & { loss: np.Array })[] = [];
        for (let micro = 0; micro < setup.accumSteps; micro++) {
          const [grads, m] = steps.microStep(refTree(params), refTree(teacher), data.next(), stepKey(setup.seed, update, micro));
          gradSum = gradSum ? mapTree((a, b) => a.add(b), gradSum, grads) : grads;
          parts.push(m);
        }
        const meanGrads = mapTree((g) => g.div(setup.accumSteps), gradSum!);
        let gradNorm: np.Array;
        [params, opt, gradNorm] = steps.apply(params, meanGrads, opt, np.array(lr));
        const mean = (k: keyof StepMetrics | "loss") => parts.map((p) => p[k]).reduce((a, b) => a.add(b)).div(parts.length);
        out = { loss: mean("loss"), targetVar: mean("targetVar"), predVar: mean("predVar"), targetRank: mean("targetRank"), maskedSteps: mean("maskedSteps"), positionShare: mean("positionShare"), gradNorm };
      }
      const [loss, targetVar, predVar, targetRank, gradNorm, maskedSteps, share] = await Promise.all(
        [out.loss, out.targetVar, out.predVar, out.targetRank, out.gradNorm, out.maskedSteps, out.positionShare].map(async (a) => (await a.data())[0]),
      );
      const positionShare = Number.isFinite(share) ? share : null;
      const sec = (performance.now() - started) / 1000;
      const record: PretrainRecord = { step: update + 1, loss, targetVar, predVar, targetRank, positionShare, gradNorm, lr, tau, maskedSteps, sec };
      records.push(record);
      metrics.write(record);
      setup.onUpdate?.(record);
      unitsDone += data.unitsPerBatch * setup.accumSteps;
      const elapsed = (performance.now() - t0) / 1000;
      await progress.update(update + 1, {
        loss: loss.toFixed(4),
        tvar: targetVar.toFixed(3),
        pvar: predVar.toFixed(3),
        rank: targetRank.toFixed(1),
        ...(positionShare === null ? {} : { pos: positionShare.toFixed(2) }),
        [`${data.unitName}/s`]: (unitsDone / elapsed).toFixed(0),
      });
      divergence.observe(update + 1, loss, targetVar);
      checkCollapse(setup.d2v, update, targetVar, predVar, positionShare ?? NaN, targetRank);
      const done = update + 1;
      if (done % setup.checkpointEvery === 0 || done === end || interrupted) await save(done);
      if (interrupted) break;
    }
  } finally {
    progress.stop();
    process.removeListener("SIGINT", onSigint);
    process.removeListener("SIGTERM", onSigint);
  }
  return { state: { params, teacher, opt, step: state.step + records.length, divergence: divergence.state() }, records, interrupted };
}
