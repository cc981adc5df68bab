/** The `d2v` subcommands. Each validates its input first, so bad input fails before any output is written. */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { jit, numpy as np, random, tree } from "../engine/jax.js";
import { readJsonFile } from "../config/validate.js";
import { ConfigError, DataError } from "../engine/errors.js";
import { reportPretrainRun } from "./pretrain-report.js";
import { checkPretrainOutput, recoverCheckpoint } from "../train/pretrain.js";
import { initEngine } from "../engine/runtime.js";
import { maskedMean } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import { BpeTokenizer } from "../text/bpe.js";
import { brownGenreTask } from "../text/brown-genre.js";
import { accuracy, encodeLabeled, finetuneClassifier, macroF1, newHead, predictClasses, textClassProbabilities, type Pooling, type TextClassifierParams } from "../text/classify.js";
import { loadTextCheckpoint, saveClassifier, type ClassifierConfig } from "../text/checkpoints.js";
import { checkpointModality, resolveCheckpoint } from "../train/checkpoint.js";
import { checkOutput, writeOutput } from "../train/output.js";
import { resolveTextConfig, type TextRunConfig } from "../text/config.js";
import { padBatch, readLabeledText, readUtf8 } from "../text/data.js";
import { encodeText, initTextEncoder, type TextEncoderConfig, type TextEncoderParams } from "../text/model.js";
import { pretrainText } from "../text/pretrain.js";
import { resolveVisionConfig } from "../vision/config.js";
import { isHfModelDir } from "../hf/model.js";
import { runHfClassify, runHfEmbed } from "./hf-commands.js";
import { resolveAudioConfig } from "../audio/config.js";
import { runAudioEmbed, runAudioEval, runAudioFinetune, runAudioPretrain, type AudioFinetuneOptions } from "./audio-commands.js";
import { runVisionClassify, runVisionEval, runVisionFinetune, runVisionPretrain, type VisionFinetuneOptions } from "./vision-commands.js";

const log = (msg: string) => process.stderr.write(`${msg}\n`);

function loadConfigFile(path: string | undefined): unknown {
  return path ? readJsonFile(path, "config file") : undefined;
}

type PretrainOptions = {
  modality?: string;
  data?: string;
  preset?: string;
  config?: string;
  out?: string;
  tokenizer?: string;
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
function resumedModality(o: PretrainOptions): string {
  const ignored = (
    [
      ["--config", o.config],
      ["--preset", o.preset],
      ["--batch-size", o.batchSize],
      ["--lr", o.lr],
      ["--seed", o.seed],
      ["--tokenizer", o.tokenizer],
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

export async function runPretrain(options: PretrainOptions) {
  const modality = options.resume ? resumedModality(options) : (options.modality ?? "text");
  const o = { ...options, modality, preset: options.preset ?? "tiny" };
  if (modality === "vision") return runVisionPretrain(o);
  if (modality === "audio") return runAudioPretrain(o);
  const overrides = { train: { steps: o.steps, batchSize: o.batchSize, lr: o.lr, seed: o.seed } };
  const config = resolveTextConfig(o.preset, loadConfigFile(o.config), overrides, o.config ?? `preset ${o.preset}`);
  if (o.data && !existsSync(o.data)) throw new DataError(`--data ${o.data} does not exist`);
  const outDir = resolve(o.out ?? join("runs", `pretrain-${o.modality}-${o.preset}`));
  checkPretrainOutput(outDir, o);
  await initEngine();
  if (!o.resume) {
    log(`data2vec ${o.modality} pretraining, preset ${config.preset}: ${config.model.layers} layers × ${config.model.dim}, ${config.train.steps} updates of ${config.train.batchSize} × ${config.train.seqLen} tokens → ${outDir}`);
  }
  const r = await pretrainText({ config, data: o.data, tokenizer: o.tokenizer, outDir, resume: o.resume, resumeSteps: o.steps, force: o.force, quiet: o.quiet, log });
  reportPretrainRun(r, log);
}

function labelsOf(examples: { label: string }[]): string[] {
  const labels = [...new Set(examples.map((e) => e.label))].sort();
  if (labels.length < 2) throw new DataError(`the labeled data has ${labels.length} class; classification needs at least two`);
  return labels;
}

function freshEncoder(run: TextRunConfig, enc: TextEncoderConfig, seed: number): TextEncoderParams {
  const keys = new KeyStream(random.key(seed));
  const e = initTextEncoder(keys, enc);
  keys.close();
  return e;
}

type FinetuneOptions = {
  data?: string;
  modality?: string;
  init?: string;
  scratch?: boolean;
  preset?: string;
  config?: string;
  tokenizer?: string;
  evalData?: string;
  out: string;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  weightDecay?: number;
  maxLen?: number;
  seed: number;
  pool?: Pooling;
  poolNorm?: boolean;
  quiet?: boolean;
  force?: boolean;
} & Omit<VisionFinetuneOptions, "data" | "init" | "scratch" | "preset" | "config" | "evalData" | "out" | "epochs" | "batchSize" | "lr" | "weightDecay" | "seed" | "quiet"> &
  Pick<AudioFinetuneOptions, "task" | "maxSeconds" | "freezeFeatureEncoder" | "maskProb">;

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
  const only: [string, unknown, string[]][] = [
    ["--per-class", o.perClass, ["vision"]],
    ["--augment", o.augment, ["vision"]],
    ["--linear-probe", o.linearProbe, ["vision", "audio"]],
    ["--task", o.task, ["audio"]],
    ["--max-seconds", o.maxSeconds, ["audio"]],
    ["--no-freeze-feature-encoder", o.freezeFeatureEncoder === false ? true : undefined, ["audio"]],
    ["--mask-prob", o.maskProb, ["audio"]],
    ["--max-len", o.maxLen, ["text"]],
    ["--pool", o.pool, ["text"]],
    ["--pool-norm", o.poolNorm, ["text", "audio"]],
  ];
  for (const [flag, value, modalities] of only) {
    if (given(value) && !modalities.includes(modality)) problems.push(`${flag} (${modalities.join(" and ")} only; this is a ${modality} model)`);
  }
  // A linear probe trains its head for a fixed number of full-batch steps on frozen, unaugmented features.
  if (o.linearProbe) {
    for (const [flag, value] of [["--epochs", o.epochs], ["--augment", o.augment]] as const) {
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
  if (!opts.data) throw new ConfigError("text fine-tuning needs --data (labeled .jsonl or a folder per class)");
  const o = { ...opts, preset: opts.preset ?? "tiny", pool: opts.pool ?? "first", data: opts.data, epochs: opts.epochs ?? 10, batchSize: opts.batchSize ?? 16, lr: opts.lr ?? 1e-4, weightDecay: opts.weightDecay ?? 0.01 };
  const train = readLabeledText(o.data);
  const evalSet = o.evalData ? readLabeledText(o.evalData) : null;
  const labels = labelsOf(train);
  if (!o.init && !o.scratch) throw new ConfigError("pass --init <pretrained run> to fine-tune a pretrained model, or --scratch to train from random weights");
  if (!o.init && !o.tokenizer) throw new ConfigError("--scratch without --init needs --tokenizer <dir> (vocab.json + merges.txt)");
  await initEngine();
  let run: TextRunConfig;
  let enc: TextEncoderConfig;
  let tok: BpeTokenizer;
  let encoder: TextEncoderParams;
  if (o.init) {
    const loaded = loadTextCheckpoint(o.init);
    ({ run, enc, tok } = loaded);
    if (o.scratch) {
      tree.dispose(loaded.encoder as never);
      if (loaded.classifier) tree.dispose(loaded.classifier.params.head as never);
      encoder = freshEncoder(run, enc, o.seed);
    } else {
      encoder = loaded.encoder;
      if (loaded.classifier) tree.dispose(loaded.classifier.params.head as never);
    }
  } else {
    tok = BpeTokenizer.load(o.tokenizer!);
    run = resolveTextConfig(o.preset, loadConfigFile(o.config), { model: { vocabSize: tok.size } });
    enc = { ...run.model, padId: tok.pad };
    encoder = freshEncoder(run, enc, o.seed);
  }
  const seqLen = Math.min(o.maxLen ?? run.train.seqLen, run.model.maxPositions);
  const settings = { epochs: o.epochs, batchSize: o.batchSize, lr: o.lr, warmupFraction: 0.1, weightDecay: o.weightDecay, seed: o.seed, seqLen, pooling: o.pool, poolNorm: !!o.poolNorm };
  const params: TextClassifierParams = { encoder, head: newHead(o.seed, enc.dim, labels.length, { poolNorm: settings.poolNorm }) };
  log(`fine-tuning ${o.scratch ? "from scratch" : `from ${o.init}`} on ${train.length} examples, ${labels.length} classes, ${o.epochs} epochs`);
  const trained = await finetuneClassifier(params, enc, tok, encodeLabeled(train, tok, labels), labels.length, settings, { quiet: o.quiet });
  const config: ClassifierConfig = { kind: "text-classifier", run, labels, finetune: settings, initializedFrom: o.scratch ? null : (o.init ?? null) };
  await saveClassifier(resolve(o.out), trained.params, config, tok);
  log(`saved the classifier in ${resolve(o.out)}`);
  const last = trained.history[trained.history.length - 1];
  const result: Record<string, unknown> = { trainLoss: last.loss, trainAccuracy: last.trainAccuracy };
  // Same batch size as training: jax-js's wasm allocator reuses freed buffers only of the same size.
  if (evalSet) Object.assign(result, await evaluate(trained.params, enc, tok, labels, evalSet, o.batchSize, seqLen, o.pool));
  tree.dispose(trained.params as never);
  console.log(JSON.stringify(result));
}

async function evaluate(
  params: TextClassifierParams,
  enc: TextEncoderConfig,
  tok: BpeTokenizer,
  labels: string[],
  data: { text: string; label: string }[],
  batchSize: number,
  seqLen: number,
  pooling: Pooling = "first",
) {
  const encoded = encodeLabeled(data, tok, labels);
  const pred = await predictClasses(params, enc, tok, encoded, labels.length, batchSize, seqLen, pooling);
  return { accuracy: accuracy(pred, encoded.labels), macroF1: macroF1(pred, encoded.labels, labels.length), examples: data.length };
}

export async function runEval(opts: { model: string; data?: string; batchSize?: number; beam?: number }) {
  const modality = checkpointModality(opts.model);
  if (opts.beam !== undefined && modality !== "audio") throw new ConfigError(`--beam is for speech transcribers; ${opts.model} is a ${modality} model, so it would be ignored`);
  if (modality === "vision") return runVisionEval(opts);
  if (modality === "audio") return runAudioEval(opts);
  if (!opts.data) throw new ConfigError("evaluating a text model needs --data (labeled .jsonl or a folder per class)");
  const o = { ...opts, data: opts.data, batchSize: opts.batchSize ?? 32 };
  const data = readLabeledText(o.data);
  await initEngine();
  const loaded = loadTextCheckpoint(o.model);
  if (!loaded.classifier) throw new ConfigError(`${o.model} is a pretrained model without a classifier head; fine-tune it first (\`d2v finetune --init ${o.model} ...\`)`);
  const { params, labels, config } = loaded.classifier;
  const metrics = await evaluate(params, loaded.enc, loaded.tok, labels, data, o.batchSize, config.finetune.seqLen, config.finetune.pooling ?? "first");
  tree.dispose(params as never);
  console.log(JSON.stringify({ task: "classification", ...metrics }));
}

export async function runEmbed(texts: string[], o: { model: string; file?: string; pool: "mean" | "first" }) {
  const all = [...texts];
  if (o.file) {
    if (!existsSync(o.file)) throw new DataError(`--file ${o.file} does not exist; pass a UTF-8 text file with one text per line`);
    for (const line of readUtf8(o.file).split("\n")) if (line.trim()) all.push(line);
  }
  if (isHfModelDir(o.model)) return runHfEmbed(all, o);
  const modality = checkpointModality(o.model);
  if (modality === "audio") return runAudioEmbed(all, o);
  if (modality !== "text") throw new ConfigError(`${o.model} is a ${modality} model; d2v embed takes our text and speech checkpoints, and Hugging Face directories of any modality`);
  if (all.length === 0) throw new DataError("nothing to embed: pass texts as arguments or --file");
  await initEngine();
  const loaded = loadTextCheckpoint(o.model);
  if (loaded.classifier) tree.dispose(loaded.classifier.params.head as never);
  const { enc, tok, run } = loaded;
  const seqLen = run.train.seqLen;
  const forward = jit((p: TextEncoderParams, ids: np.Array, positions: np.Array, padding: np.Array) => {
    const h = encodeText(p, ids, positions, padding.ref, enc, null); // [B, T, D]
    if (o.pool === "first") {
      padding.dispose();
      return h.slice([], 0);
    }
    return maskedMean(h, padding);
  });
  for (const text of all) {
    const { ids, padding, positions } = padBatch([Int32Array.from(tok.encode(text))], seqLen, tok.pad, tok.eos);
    const v = await forward(
      tree.ref(loaded.encoder as never) as TextEncoderParams,
      np.array(ids, { dtype: np.int32 }).reshape([1, seqLen]),
      np.array(positions, { dtype: np.int32 }).reshape([1, seqLen]),
      np.array(padding).reshape([1, seqLen]),
    ).data();
    console.log(JSON.stringify(Array.from(v as Float32Array, (x) => Number(x.toFixed(6)))));
  }
  tree.dispose(loaded.encoder as never);
}

/** `d2v classify`: the top classes of each input (texts or images by the model), one JSON line per input. */
export async function runClassify(inputs: string[], o: { model: string; top: number }) {
  if (isHfModelDir(o.model)) return runHfClassify(inputs, o);
  const modality = checkpointModality(o.model);
  if (modality === "vision") return runVisionClassify(inputs, o);
  if (modality !== "text") {
    throw new ConfigError(`${o.model} is a ${modality} model; d2v classify takes our text and vision classifiers and Hugging Face classifiers (speech: d2v eval --model ${o.model} --data <folder per class>)`);
  }
  if (inputs.length === 0) throw new DataError("pass at least one text to classify");
  await initEngine();
  const loaded = loadTextCheckpoint(o.model);
  if (!loaded.classifier) {
    tree.dispose(loaded.encoder as never);
    throw new ConfigError(`${o.model} is a pretrained model without a classifier head; fine-tune it first (\`d2v finetune --init ${o.model} ...\`)`);
  }
  const { params, labels, config } = loaded.classifier;
  const encoded = { ids: inputs.map((t) => Int32Array.from(loaded.tok.encode(t))), labels: inputs.map(() => 0) };
  const probs = await textClassProbabilities(params, loaded.enc, loaded.tok, encoded, labels.length, Math.min(16, inputs.length), config.finetune.seqLen, config.finetune.pooling ?? "first");
  tree.dispose(params as never);
  inputs.forEach((text, i) => {
    const top = Array.from(probs.subarray(i * labels.length, (i + 1) * labels.length))
      .map((p, k) => ({ label: labels[k], probability: Number(p.toFixed(6)) }))
      .sort((a, b) => b.probability - a.probability)
      .slice(0, o.top);
    console.log(JSON.stringify({ text, top }));
  });
}

export async function runTokenize(texts: string[], o: { tokenizer: string; special: boolean }) {
  let dir = o.tokenizer;
  if (!existsSync(join(dir, "vocab.json"))) {
    try {
      dir = resolveCheckpoint(dir);
    } catch {
      /* BpeTokenizer.load reports the missing files */
    }
  }
  const tok = BpeTokenizer.load(dir);
  for (const t of texts) console.log(JSON.stringify(tok.encode(t, { addSpecial: o.special })));
}

export async function runConfig(o: { preset: string; modality: string }) {
  const config = o.modality === "vision" ? resolveVisionConfig(o.preset) : o.modality === "audio" ? resolveAudioConfig(o.preset) : resolveTextConfig(o.preset);
  console.log(JSON.stringify(config, null, 2));
}

export async function runData(o: { out: string; perClass: number; testPerClass: number; seed: number; force?: boolean }) {
  const out = checkOutput(o.out, { flag: "--out", what: "dataset", kind: "dir", force: o.force });
  const task = brownGenreTask({ perClass: o.perClass, testPerClass: o.testPerClass, seed: o.seed });
  const jsonl = (xs: { text: string; label: string }[]) => xs.map((x) => JSON.stringify(x)).join("\n") + "\n";
  await writeOutput(out, "dir", (tmp) => {
    mkdirSync(join(tmp, "pretrain"));
    writeFileSync(join(tmp, "train.jsonl"), jsonl(task.train));
    writeFileSync(join(tmp, "test.jsonl"), jsonl(task.test));
    task.pretrainDocs.forEach((d, i) => writeFileSync(join(tmp, "pretrain", `doc${String(i).padStart(3, "0")}.txt`), d));
    writeFileSync(join(tmp, "README.json"), JSON.stringify({ labels: task.labels, train: task.train.length, test: task.test.length, pretrainDocuments: task.pretrainDocs.length, testDocuments: task.testDocIds }, null, 2));
  });
  log(`wrote ${out}: ${task.train.length} labeled training passages, ${task.test.length} test passages, ${task.pretrainDocs.length} unlabeled training documents`);
}
