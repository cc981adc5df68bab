/**
 * The `d2v` commands that every modality has, dispatched by modality: `pretrain` (one command over the modality's
 * pretraining adapter), `finetune`, `eval`, `embed`, `classify` and `config`. What a modality does differently lives
 * in its own file: text-commands.ts, vision-commands.ts, audio-commands.ts (and hf-commands.ts for Hugging Face
 * directories).
 */
import { existsSync } from "node:fs";
import { ConfigError, DataError } from "../engine/errors.js";
import { readUtf8 } from "../text/data.js";
import { textPretraining } from "../text/pretrain.js";
import { textRunConfig } from "../text/config.js";
import { visionPretraining } from "../vision/pretrain.js";
import { visionRunConfig, type VisionRunConfig } from "../vision/config.js";
import type { VisionClassifierHead } from "../vision/classify.js";
import type { ParamTree } from "../engine/tree.js";
import { audioPretraining } from "../audio/pretrain.js";
import { audioRunConfig } from "../audio/config.js";
import { checkpointModality, resolveCheckpoint } from "../train/checkpoint.js";
import { textEncoders } from "../text/checkpoints.js";
import { visionEncoders } from "../vision/checkpoints.js";
import { audioEncoders } from "../audio/checkpoints.js";
import { hfAudioEncoder, hfTextEncoder, hfVisionEncoder, orHf } from "../hf/sources.js";
import { checkOutput } from "../train/output.js";
import { isHfModelDir } from "../hf/model.js";
import { runHfClassify, runHfEmbed } from "./hf-commands.js";
import { presetFor, pretrainCommand, pretrainStart, resumedModality, type PretrainOptions } from "./pretrain-command.js";
import { runTextClassify, runTextEmbed, runTextEval, runTextFinetune, type TextFinetuneOptions } from "./text-commands.js";
import { runVisionClassify, runVisionEval, runVisionFinetune, type VisionFinetuneOptions } from "./vision-commands.js";
import { runAudioEmbed, runAudioEval, runAudioFinetune, type AudioFinetuneOptions } from "./audio-commands.js";

export const MODALITIES = ["text", "vision", "audio"] as const;
export type ModalityName = (typeof MODALITIES)[number];

type EvalOptions = { model: string; data?: string; batchSize?: number; beam?: number };
/** Every modality's `d2v finetune` options; the preset defaults to tiny. */
type FinetuneOptions = Omit<TextFinetuneOptions & VisionFinetuneOptions & AudioFinetuneOptions, "preset"> & { preset?: string; modality?: string; force?: boolean };

/** What each modality does for each command; absent: the command does not take that modality's models. */
const COMMANDS: Record<ModalityName, {
  pretrain(o: PretrainOptions & { modality: string; preset: string }): Promise<void>;
  finetune(o: FinetuneOptions & { preset: string }): Promise<void>;
  eval(o: EvalOptions): Promise<void>;
  embed?(inputs: string[], o: { model: string; pool: "mean" | "first" }): Promise<void>;
  classify?(inputs: string[], o: { model: string; top: number }): Promise<void>;
  config: { resolve(preset: string): unknown; presets: Record<string, unknown> };
}> = {
  text: {
    // Continued pretraining keeps the checkpoint's tokenizer (a Hugging Face directory's vocab.json + merges.txt, or a run's).
    pretrain: (o) => pretrainCommand(textPretraining({ tokenizer: o.tokenizer ?? (o.init && resolveCheckpoint(o.init)) }), o, o.init ? () => pretrainStart(orHf(textEncoders, hfTextEncoder), o.init!, (a) => a.run) : undefined),
    finetune: runTextFinetune,
    eval: runTextEval,
    embed: runTextEmbed,
    classify: runTextClassify,
    config: textRunConfig,
  },
  vision: {
    pretrain: (o) => pretrainCommand(visionPretraining(), o, o.init ? () => pretrainStart<VisionRunConfig, VisionRunConfig, ParamTree, VisionClassifierHead>(orHf(visionEncoders, hfVisionEncoder), o.init!, (run) => run) : undefined),
    finetune: runVisionFinetune,
    eval: runVisionEval,
    classify: runVisionClassify,
    config: visionRunConfig,
  },
  audio: {
    pretrain: (o) => pretrainCommand(audioPretraining(), o, o.init ? () => pretrainStart(orHf(audioEncoders, hfAudioEncoder), o.init!, (run) => run) : undefined),
    finetune: runAudioFinetune,
    eval: runAudioEval,
    embed: runAudioEmbed,
    config: audioRunConfig,
  },
};

function commandsOf(modality: string): (typeof COMMANDS)[ModalityName] {
  if (!(MODALITIES as readonly string[]).includes(modality)) throw new ConfigError(`unknown modality "${modality}"; choose one of ${MODALITIES.join(", ")}`);
  return COMMANDS[modality as ModalityName];
}

export async function runPretrain(options: PretrainOptions) {
  const modality = options.resume ? resumedModality(options) : options.init ? checkpointModality(options.init) : (options.modality ?? "text");
  if (options.init) {
    const given = ([["--preset", options.preset], ["--tokenizer", options.tokenizer]] as const).filter(([, v]) => v !== undefined).map(([f]) => f);
    if (given.length) throw new ConfigError(`${given.join(" and ")} would be ignored: with --init ${options.init} the network and the tokenizer are the checkpoint's`);
    if (options.modality && options.modality !== modality) throw new ConfigError(`--init ${options.init} is a ${modality} model; drop --modality ${options.modality}`);
  }
  if (options.tokenizer && modality !== "text") throw new ConfigError(`--tokenizer is for text; a ${modality} run would ignore it`);
  return commandsOf(modality).pretrain({ ...options, modality, preset: options.preset ?? "tiny" });
}

/**
 * Fine-tuning options that the chosen model would not use are refused, never silently ignored: the architecture
 * options (`--preset`, `--config`, `--tokenizer`, `--modality`) when `--init` decides it, and options of another
 * modality (e.g. `--augment` for text).
 */
function refuseIgnoredFinetuneOptions(o: FinetuneOptions, modality: string): void {
  const given = (v: unknown) => v !== undefined && v !== false;
  const problems: string[] = [];
  if (o.init) {
    const arch = (
      [
        ["--preset", o.preset],
        ["--config", o.config],
        ["--tokenizer", o.tokenizer],
      ] as const
    ).filter(([, v]) => given(v));
    if (arch.length) problems.push(`${arch.map(([f]) => f).join(", ")} (the architecture and tokenizer come from --init ${o.init})`);
    if (o.modality && o.modality !== modality) problems.push(`--modality ${o.modality} (--init ${o.init} is a ${modality} model)`);
  }
  // --augment and --no-augment: either is a choice the model must be able to use.
  const augmentFlag = [o.augment === false ? "--no-augment" : "--augment", o.augment === undefined ? undefined : true] as const;
  const only: [string, unknown, string[]][] = [
    ["--per-class", o.perClass, ["vision"]],
    [...augmentFlag, ["vision"]],
    ["--layer-decay", o.layerDecay, ["vision"]],
    ["--linear-probe", o.linearProbe, ["vision", "audio"]],
    ["--task", o.task, ["audio"]],
    ["--max-seconds", o.maxSeconds, ["audio"]],
    ["--no-freeze-feature-encoder", o.freezeFeatureEncoder === false ? true : undefined, ["audio"]],
    ["--mask-prob", o.maskProb, ["audio"]],
    ["--head-only-updates", o.headOnlyUpdates, ["audio"]],
    ["--max-len", o.maxLen, ["text"]],
    ["--pool", o.pool, ["text"]],
    ["--pool-norm", o.poolNorm, ["text", "audio"]],
  ];
  for (const [flag, value, modalities] of only) {
    if (given(value) && !modalities.includes(modality)) problems.push(`${flag} (${modalities.join(" and ")} only; this is a ${modality} model)`);
  }
  if (o.accumulate !== undefined && o.accumulate < 1) throw new ConfigError(`--accumulate ${o.accumulate}: it counts batches per optimizer update, 1 or more`);
  if (o.layerDecay !== undefined && !(o.layerDecay > 0 && o.layerDecay <= 1)) throw new ConfigError(`--layer-decay ${o.layerDecay}: a factor in (0, 1] (the paper fine-tunes base models with 0.65)`);
  // A linear probe trains its head for a fixed number of full-batch steps on frozen, unaugmented features.
  if (o.linearProbe) {
    for (const [flag, value] of [["--epochs", o.epochs], augmentFlag, ["--accumulate", o.accumulate], ["--layer-decay", o.layerDecay]] as const) {
      if (given(value)) problems.push(`${flag} (a linear probe trains its head for a fixed 500 full-batch steps on frozen features)`);
    }
  }
  if (problems.length) throw new ConfigError(`these options would be ignored, so they are refused: ${problems.join("; ")}`);
}

export async function runFinetune(opts: FinetuneOptions) {
  // Checked before anything trains: an existing --out, or one that is an input, is refused (see train/output.ts).
  checkOutput(opts.out, { flag: "--out", what: "fine-tuned checkpoint", kind: "dir", force: opts.force, inputs: [opts.init, opts.data, opts.evalData, opts.tokenizer, opts.config] });
  const modality = opts.init ? checkpointModality(opts.init) : opts.task ? "audio" : (opts.modality ?? "text");
  refuseIgnoredFinetuneOptions(opts, modality);
  if (modality === "vision") return runVisionFinetune({ ...opts, preset: opts.preset ?? "tiny" });
  if (modality === "audio") return runAudioFinetune({ ...opts, preset: opts.preset ?? "tiny" });
  return commandsOf(modality).finetune({ ...opts, preset: opts.preset ?? "tiny" });
}

export async function runEval(opts: { model: string; data?: string; batchSize?: number; beam?: number }) {
  const modality = checkpointModality(opts.model);
  if (opts.beam !== undefined && modality !== "audio") throw new ConfigError(`--beam is for speech transcribers; ${opts.model} is a ${modality} model, so it would be ignored`);
  if (modality === "vision") return runVisionEval(opts);
  if (modality === "audio") return runAudioEval(opts);
  return commandsOf(modality).eval(opts);
}

export async function runEmbed(texts: string[], o: { model: string; file?: string; pool: "mean" | "first" }) {
  const all = [...texts];
  if (o.file) {
    if (!existsSync(o.file)) throw new DataError(`--file ${o.file} does not exist; pass a UTF-8 text file with one text per line`);
    for (const line of readUtf8(o.file).split("\n")) if (line.trim()) all.push(line);
  }
  if (isHfModelDir(o.model)) return runHfEmbed(all, o);
  const modality = checkpointModality(o.model);
  const embed = commandsOf(modality).embed;
  if (!embed) throw new ConfigError(`${o.model} is a ${modality} model; d2v embed takes our text and speech checkpoints, and Hugging Face directories of any modality`);
  return embed(all, o);
}

/** `d2v classify`: the top classes of each input (texts or images by the model), one JSON line per input. */
export async function runClassify(inputs: string[], o: { model: string; top: number }) {
  if (isHfModelDir(o.model)) return runHfClassify(inputs, o);
  const modality = checkpointModality(o.model);
  const classify = commandsOf(modality).classify;
  if (!classify) {
    throw new ConfigError(`${o.model} is a ${modality} model; d2v classify takes our text and vision classifiers and Hugging Face classifiers (speech: d2v eval --model ${o.model} --data <folder per class>)`);
  }
  return classify(inputs, o);
}

export async function runConfig(o: { preset: string; modality: string; objective?: string }) {
  const kit = commandsOf(o.modality).config;
  console.log(JSON.stringify(kit.resolve(presetFor(o.preset, o.objective, Object.keys(kit.presets))), null, 2));
}
