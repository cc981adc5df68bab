/**
 * `d2v pretrain` for every modality: the options become a run config (preset, config file, overrides), the run
 * directory is checked before any work, the modality's adapter trains, and the end is reported the same way:
 * how the run stopped (stderr), its exit status, and its last update as JSON (stdout).
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { readJsonFile } from "../config/validate.js";
import { ConfigError, DataError, SIGNAL_EXIT_STATUS } from "../engine/errors.js";
import { initEngine } from "../engine/runtime.js";
import type { ParamTree } from "../engine/tree.js";
import { checkpointModality } from "../train/checkpoint.js";
import { checkPretrainOutput, recoverCheckpoint } from "../train/pretrain.js";
import { runPretraining, type PretrainAdapter, type PretrainRunConfig, type PretrainRunResult } from "../train/pretrain-runner.js";
import { disposeTree } from "../engine/typed.js";
import type { EncoderSource } from "../train/finetune.js";
import type { BlockParams } from "../nn/encoder.js";

const log = (msg: string) => process.stderr.write(`${msg}\n`);

/** The options `d2v finetune` takes for every modality (each modality adds its own). */
export type FinetuneOptions = {
  data?: string;
  init?: string;
  scratch?: boolean;
  /** Replace the classification (or CTC) head that --init has with a new one. */
  newHead?: boolean;
  preset: string;
  config?: string;
  evalData?: string;
  out: string;
  epochs?: number;
  batchSize?: number;
  /** Gradient accumulation: batches per optimizer update. */
  accumulate?: number;
  lr?: number;
  weightDecay?: number;
  seed: number;
  quiet?: boolean;
};

export type PretrainOptions = {
  modality?: string;
  /** Continue pretraining from this checkpoint: a Hugging Face data2vec directory or one of our runs. */
  init?: string;
  data?: string;
  preset?: string;
  config?: string;
  out?: string;
  tokenizer?: string;
  /** "data2vec2": the data2vec 2.0 version of the preset (`<preset>-v2`). */
  objective?: string;
  steps?: number;
  batchSize?: number;
  lr?: number;
  seed?: number;
  resume?: boolean;
  force?: boolean;
  quiet?: boolean;
};

/**
 * `--resume` continues a run with the settings saved in its checkpoint: options that would change them are refused
 * rather than silently ignored, and the modality is the run's. Returns that modality.
 */
export function resumedModality(o: PretrainOptions): string {
  const ignored = (
    [
      ["--config", o.config],
      ["--preset", o.preset],
      ["--batch-size", o.batchSize],
      ["--lr", o.lr],
      ["--seed", o.seed],
      ["--tokenizer", o.tokenizer],
      ["--init", o.init],
      ["--objective", o.objective],
      ["--force", o.force],
    ] as const
  )
    .filter(([, v]) => v !== undefined && v !== false)
    .map(([flag]) => flag);
  if (ignored.length > 0) {
    throw new ConfigError(
      `--resume continues a run with the settings it was started with, so ${ignored.join(", ")} would be ignored: drop ${ignored.length > 1 ? "them" : "it"}, ` +
        "or start a new run with another --out (on resume, --steps sets the total updates and --data the corpus)",
    );
  }
  if (!o.out) throw new ConfigError("--resume needs --out: the run directory to continue");
  const saved = join(resolve(o.out), "checkpoint");
  if (!existsSync(resolve(o.out))) throw new DataError(`--resume: ${o.out} does not exist`);
  recoverCheckpoint(resolve(o.out), log);
  let modality: string;
  try {
    modality = checkpointModality(resolve(o.out));
  } catch {
    throw new DataError(`--resume: ${o.out} holds no checkpoint to resume from (${saved} is missing)`);
  }
  if (o.modality && o.modality !== modality) throw new ConfigError(`--resume: ${o.out} is a ${modality} run, not ${o.modality}; drop --modality`);
  return modality;
}

/** The settings of `--config <file.json>` (merged over the preset), or none. */
export function configFileSettings(path: string | undefined): unknown {
  return path ? readJsonFile(path, "config file") : undefined;
}

/** Where continued pretraining starts: the checkpoint's run config (its network) and its encoder. */
export type PretrainStart<Cfg, Shared> = { cfg: Cfg; encoder: { shared: Shared; layers: BlockParams[] } };

/**
 * The start of continued pretraining from `dir` through a modality's encoder source (our runs and Hugging Face
 * directories): the network's run config and the encoder; a head the checkpoint has is freed.
 */
export function pretrainStart<Arch, Cfg, Shared, Head>(source: EncoderSource<Arch, { shared: Shared; layers: BlockParams[] }, Head>, dir: string, runOf: (a: Arch) => Cfg): PretrainStart<Cfg, Shared> {
  const loaded = source.load(dir);
  if (loaded.head) disposeTree(loaded.head.params);
  return { cfg: runOf(loaded.arch), encoder: loaded.encoder };
}

/**
 * Pretrains (or resumes) with a modality's adapter from the command line's options (modality and preset decided).
 * `start` (with --init) gives the network and the starting encoder; --config and the options then change the data2vec,
 * masking and training settings only.
 */
export async function pretrainCommand<Cfg extends PretrainRunConfig & { preset: string }, Example, Shared extends ParamTree, Batch, Head extends ParamTree>(
  adapter: PretrainAdapter<Cfg, Example, Shared, Batch, Head>,
  o: PretrainOptions & { modality: string; preset: string },
  start?: () => PretrainStart<Cfg, Shared>,
): Promise<void> {
  const overrides = { train: { steps: o.steps, batchSize: o.batchSize, lr: o.lr, seed: o.seed } };
  if (start && o.objective === "data2vec2") throw new ConfigError("--objective data2vec2 with --init: continued data2vec 2.0 pretraining from a checkpoint is not implemented; pretrain from scratch with --preset, or continue with data2vec (v1)");
  const preset = presetFor(o.preset, o.objective, Object.keys(adapter.config.presets));
  const file = configFileSettings(o.config) as { model?: unknown } | undefined;
  if (start && file?.model !== undefined) throw new ConfigError(`--config sets model settings, but with --init ${o.init} the network is the checkpoint's; drop "model" from ${o.config}`);
  if (o.data && !existsSync(o.data)) throw new DataError(`--data ${o.data} does not exist`);
  const outDir = resolve(o.out ?? join("runs", `pretrain-${o.modality}-${o.init ? "init" : o.preset}`));
  checkPretrainOutput(outDir, o);
  await initEngine();
  const from = start?.();
  const config = from
    ? adapter.config.resolveOver(from.cfg, file, overrides, o.config ?? `${o.init}`)
    : adapter.config.resolve(preset, file, overrides, o.config ?? `preset ${preset}`);
  if (!o.resume) log(`data2vec ${o.modality} pretraining, ${from ? `continued from ${o.init}` : `preset ${config.preset}`}: ${adapter.describe(config)} → ${outDir}`);
  const r = await runPretraining(adapter, { config, data: o.data, outDir, resume: o.resume, resumeSteps: o.steps, force: o.force, quiet: o.quiet, log, initialEncoder: from?.encoder });
  reportPretrainRun(r, log);
}

/**
 * The preset `--objective` picks: data2vec 2.0's version of a preset is `<preset>-v2`; "data2vec" (or no switch)
 * keeps the preset as named.
 */
export function presetFor(preset: string, objective: string | undefined, presets: string[]): string {
  if (objective === undefined || objective === "data2vec") return preset;
  if (objective !== "data2vec2") throw new ConfigError(`--objective ${objective}: choose data2vec (v1) or data2vec2 (data2vec 2.0)`);
  const v2 = preset.endsWith("-v2") ? preset : `${preset}-v2`;
  if (!presets.includes(v2)) throw new ConfigError(`--objective data2vec2: there is no data2vec 2.0 version of preset "${preset}"; choose one of ${presets.filter((p) => p.endsWith("-v2")).map((p) => p.slice(0, -3)).join(", ")}`);
  return v2;
}

export function reportPretrainRun(r: PretrainRunResult, log: (msg: string) => void): void {
  if (r.interrupted) {
    log(`interrupted; checkpoint saved in ${r.checkpoint} (continue with --resume)`);
    process.exitCode = SIGNAL_EXIT_STATUS[r.interrupted];
  } else log(`done: checkpoint in ${r.checkpoint}`);
  const last = r.records[r.records.length - 1];
  if (last) console.log(JSON.stringify({ step: last.step, loss: last.loss, targetVar: last.targetVar, predVar: last.predVar, checkpoint: r.checkpoint }));
}
