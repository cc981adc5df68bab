/** The `d2v` subcommands. Each validates its input first, so bad input fails before any output is written. */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { jit, numpy as np, random, tree } from "../engine/jax.js";
import { readJsonFile } from "../config/validate.js";
import { ConfigError, DataError } from "../engine/errors.js";
import { initEngine } from "../engine/runtime.js";
import { maskedMean } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import { BpeTokenizer } from "../text/bpe.js";
import { brownGenreTask } from "../text/brown-genre.js";
import { accuracy, encodeLabeled, finetuneClassifier, macroF1, newHead, predictClasses, type Pooling, type TextClassifierParams } from "../text/classify.js";
import { loadTextCheckpoint, saveClassifier, type ClassifierConfig } from "../text/checkpoints.js";
import { checkpointModality, resolveCheckpoint } from "../train/checkpoint.js";
import { resolveTextConfig, type TextRunConfig } from "../text/config.js";
import { padBatch, readLabeledText } from "../text/data.js";
import { encodeText, initTextEncoder, type TextEncoderConfig, type TextEncoderParams } from "../text/model.js";
import { pretrainText } from "../text/pretrain.js";
import { resolveVisionConfig } from "../vision/config.js";
import { isHfModelDir } from "../hf/model.js";
import { runHfEmbed } from "./hf-commands.js";
import { resolveAudioConfig } from "../audio/config.js";
import { runAudioEmbed, runAudioEval, runAudioFinetune, runAudioPretrain, type AudioFinetuneOptions } from "./audio-commands.js";
import { runVisionEval, runVisionFinetune, runVisionPretrain, type VisionFinetuneOptions } from "./vision-commands.js";

const log = (msg: string) => process.stderr.write(`${msg}\n`);

function loadConfigFile(path: string | undefined): unknown {
  return path ? readJsonFile(path, "config file") : undefined;
}

export async function runPretrain(o: {
  modality: string;
  data?: string;
  preset: string;
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
}) {
  if (o.modality === "vision") return runVisionPretrain(o);
  if (o.modality === "audio") return runAudioPretrain(o);
  const overrides = { train: { steps: o.steps, batchSize: o.batchSize, lr: o.lr, seed: o.seed } };
  const config = resolveTextConfig(o.preset, loadConfigFile(o.config), overrides, o.config ?? `preset ${o.preset}`);
  if (o.data && !existsSync(o.data)) throw new DataError(`--data ${o.data} does not exist`);
  const outDir = resolve(o.out ?? join("runs", `pretrain-${o.modality}-${o.preset}`));
  await initEngine();
  if (!o.resume) {
    log(`data2vec ${o.modality} pretraining, preset ${config.preset}: ${config.model.layers} layers × ${config.model.dim}, ${config.train.steps} updates of ${config.train.batchSize} × ${config.train.seqLen} tokens → ${outDir}`);
  }
  const r = await pretrainText({ config, data: o.data, tokenizer: o.tokenizer, outDir, resume: o.resume, resumeSteps: o.steps, force: o.force, quiet: o.quiet, log });
  const last = r.records[r.records.length - 1];
  if (r.interrupted) log(`interrupted; checkpoint saved in ${r.checkpoint} (continue with --resume)`);
  else log(`done: checkpoint in ${r.checkpoint}`);
  if (last) console.log(JSON.stringify({ step: last.step, loss: last.loss, targetVar: last.targetVar, predVar: last.predVar, checkpoint: r.checkpoint }));
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
  modality: string;
  init?: string;
  scratch?: boolean;
  preset: string;
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
  pool: Pooling;
  poolNorm?: boolean;
  quiet?: boolean;
} & Omit<VisionFinetuneOptions, "data" | "init" | "scratch" | "preset" | "config" | "evalData" | "out" | "epochs" | "batchSize" | "lr" | "weightDecay" | "seed" | "quiet"> &
  Pick<AudioFinetuneOptions, "task" | "maxSeconds" | "freezeFeatureEncoder" | "maskProb">;

export async function runFinetune(opts: FinetuneOptions) {
  const modality = opts.init ? checkpointModality(opts.init) : opts.task ? "audio" : opts.modality;
  if (modality === "vision") return runVisionFinetune(opts);
  if (modality === "audio") return runAudioFinetune(opts);
  if (!opts.data) throw new ConfigError("text fine-tuning needs --data (labeled .jsonl or a folder per class)");
  const o = { ...opts, data: opts.data, epochs: opts.epochs ?? 10, batchSize: opts.batchSize ?? 16, lr: opts.lr ?? 1e-4, weightDecay: opts.weightDecay ?? 0.01 };
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
  if (checkpointModality(opts.model) === "vision") return runVisionEval(opts);
  if (checkpointModality(opts.model) === "audio") return runAudioEval(opts);
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
  if (o.file) all.push(...readFileSync(o.file, "utf8").split("\n").filter((l) => l.trim()));
  if (isHfModelDir(o.model)) return runHfEmbed(all, o);
  if (checkpointModality(o.model) === "audio") return runAudioEmbed(all, o);
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

export async function runData(o: { out: string; perClass: number; testPerClass: number; seed: number }) {
  const task = brownGenreTask({ perClass: o.perClass, testPerClass: o.testPerClass, seed: o.seed });
  const out = resolve(o.out);
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, "pretrain"), { recursive: true });
  const jsonl = (xs: { text: string; label: string }[]) => xs.map((x) => JSON.stringify(x)).join("\n") + "\n";
  writeFileSync(join(tmp, "train.jsonl"), jsonl(task.train));
  writeFileSync(join(tmp, "test.jsonl"), jsonl(task.test));
  task.pretrainDocs.forEach((d, i) => writeFileSync(join(tmp, "pretrain", `doc${String(i).padStart(3, "0")}.txt`), d));
  writeFileSync(join(tmp, "README.json"), JSON.stringify({ labels: task.labels, train: task.train.length, test: task.test.length, pretrainDocuments: task.pretrainDocs.length, testDocuments: task.testDocIds }, null, 2));
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
  log(`wrote ${out}: ${task.train.length} labeled training passages, ${task.test.length} test passages, ${task.pretrainDocs.length} unlabeled training documents`);
}
