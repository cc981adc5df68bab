/** The `d2v` subcommands for text. Each validates its input first, so bad input fails before any output is written. */
import { configFileSettings, type FinetuneOptions } from "./pretrain-command.js";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { numpy as np } from "../engine/jax.js";
import { compile, disposeTree, refTree } from "../engine/typed.js";
import { ConfigError, DataError } from "../engine/errors.js";
import { initEngine } from "../engine/runtime.js";
import { maskedMean } from "../nn/layers.js";
import { BpeTokenizer } from "../text/bpe.js";
import { brownGenreTask } from "../text/brown-genre.js";
import { debianDescriptions, debianSectionTask, parseStanzas, readAptDescriptions } from "../text/debian-sections.js";
import { accuracy, encodeLabeled, finetuneClassifier, macroF1, newHead, predictClasses, textClassProbabilities, type Pooling, type TextClassifierParams } from "../text/classify.js";
import { loadTextCheckpoint, textEncoders, type ClassifierConfig } from "../text/checkpoints.js";
import { classNames, headFor, startingEncoder } from "../train/finetune.js";
import { floatsOf, planOptimizer } from "../train/memory-plan.js";
import { hfTextEncoder, orHf } from "../hf/sources.js";
import { isHfModelDir } from "../hf/model.js";
import { resolveCheckpoint, saveModel } from "../train/checkpoint.js";
import { checkOutput, writeOutput } from "../train/output.js";
import { resolveTextConfig } from "../text/config.js";
import { padBatch, readLabeledText, readUtf8 } from "../text/data.js";
import { encodeText, type TextEncoderConfig, type TextEncoderParams } from "../text/model.js";

const log = (msg: string) => process.stderr.write(`${msg}\n`);

function labelsOf(examples: { label: string }[]): string[] {
  const labels = [...new Set(examples.map((e) => e.label))].sort();
  if (labels.length < 2) throw new DataError(`the labeled data has ${labels.length} class; classification needs at least two`);
  return labels;
}


export type TextFinetuneOptions = FinetuneOptions & {
  tokenizer?: string;
  maxLen?: number;
  pool?: Pooling;
  poolNorm?: boolean;
};

export async function runTextFinetune(opts: TextFinetuneOptions) {
  if (!opts.data) throw new ConfigError("text fine-tuning needs --data (labeled .jsonl or a folder per class)");
  const o = { ...opts, preset: opts.preset ?? "tiny", pool: opts.pool ?? "first", data: opts.data, epochs: opts.epochs ?? 10, batchSize: opts.batchSize ?? 16, lr: opts.lr ?? 1e-4, weightDecay: opts.weightDecay ?? 0.01 };
  const train = readLabeledText(o.data);
  const evalSet = o.evalData ? readLabeledText(o.evalData) : null;
  const dataLabels = labelsOf(train);
  if (o.scratch && !o.init && !o.tokenizer) throw new ConfigError("--scratch without --init needs --tokenizer <dir> (vocab.json + merges.txt)");
  await initEngine();
  const start = startingEncoder(orHf(textEncoders, hfTextEncoder), o, () => {
    const tok = BpeTokenizer.load(o.tokenizer!);
    const run = resolveTextConfig(o.preset, configFileSettings(o.config), { model: { vocabSize: tok.size } });
    return { run, enc: { ...run.model, padId: tok.pad }, tok };
  });
  const { encoder, arch: { run, enc, tok } } = start;
  const seqLen = Math.min(o.maxLen ?? run.train.seqLen, run.model.maxPositions);
  const chosen = headFor(start.head, dataLabels, () => newHead(o.seed, enc.dim, dataLabels.length, { poolNorm: !!o.poolNorm }), { newHead: o.newHead, from: start.from });
  if (chosen.kept && (o.pool === "mean" || o.poolNorm)) {
    disposeTree({ encoder, head: chosen.head });
    throw new ConfigError(`the classification head of ${start.from} reads the <s> state without a norm, so --pool mean / --pool-norm would not apply to it; pass --new-head to train a new head that does`);
  }
  const labels = chosen.labels;
  const params: TextClassifierParams = { encoder, head: chosen.head };
  const n = floatsOf(params);
  const accumulate = o.accumulate ?? 1;
  const optimizer = planOptimizer({ params: n, trained: n, rows: o.batchSize, positions: seqLen, dim: enc.dim, ffnDim: enc.ffnDim, heads: enc.heads, layers: enc.layers, accumulates: accumulate > 1 }, "this fine-tuning", "lower --batch-size (with --accumulate to keep the effective batch) or --max-len", log);
  const settings = { epochs: o.epochs, batchSize: o.batchSize, lr: o.lr, warmupFraction: 0.1, weightDecay: o.weightDecay, seed: o.seed, seqLen, pooling: o.pool, poolNorm: !!chosen.head.norm, optimizer, accumulate };
  log(`fine-tuning ${start.from ? `from ${start.from}` : "from scratch"}${chosen.kept ? " (keeping its classification head)" : ""} on ${train.length} examples, ${labels.length} classes, ${o.epochs} epochs`);
  const trained = await finetuneClassifier(params, enc, tok, encodeLabeled(train, tok, labels), labels.length, settings, { quiet: o.quiet });
  const config: ClassifierConfig = { kind: "text-classifier", run, labels, finetune: settings, initializedFrom: start.from };
  await saveModel(resolve(o.out), trained.params, config, tok.files());
  log(`saved the classifier in ${resolve(o.out)}`);
  const last = trained.history[trained.history.length - 1];
  const result: Record<string, unknown> = { trainLoss: last.loss, trainAccuracy: last.trainAccuracy };
  // Same batch size as training: jax-js's wasm allocator reuses freed buffers only of the same size.
  if (evalSet) Object.assign(result, await evaluate(trained.params, enc, tok, labels, evalSet, o.batchSize, seqLen, o.pool));
  disposeTree(trained.params);
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

export async function runTextEval(opts: { model: string; data?: string; batchSize?: number }) {
  if (!opts.data) throw new ConfigError("evaluating a text model needs --data (labeled .jsonl or a folder per class)");
  const o = { ...opts, data: opts.data, batchSize: opts.batchSize ?? 32 };
  const data = readLabeledText(o.data);
  await initEngine();
  if (isHfModelDir(o.model)) {
    // A released classifier as it is: its head on the <s> state, texts up to the model's length.
    const h = hfTextEncoder(o.model);
    if (!h.head) {
      disposeTree(h.encoder);
      throw new ConfigError(`${o.model} has no sequence-classification head; fine-tune it first (\`d2v finetune --init ${o.model} --data …\`)`);
    }
    const labels = classNames(h.head);
    const longest = Math.max(...data.map((e) => h.arch.tok.encode(e.text).length));
    const params = { encoder: h.encoder, head: h.head.params };
    const metrics = await evaluate(params, h.arch.enc, h.arch.tok, labels, data, o.batchSize, Math.min(longest, h.arch.enc.maxPositions), "first");
    disposeTree(params);
    console.log(JSON.stringify({ task: "classification", ...metrics }));
    return;
  }
  const loaded = loadTextCheckpoint(o.model);
  if (!loaded.classifier) throw new ConfigError(`${o.model} is a pretrained model without a classifier head; fine-tune it first (\`d2v finetune --init ${o.model} ...\`)`);
  const { params, labels, config } = loaded.classifier;
  const metrics = await evaluate(params, loaded.enc, loaded.tok, labels, data, o.batchSize, config.finetune.seqLen, config.finetune.pooling ?? "first");
  disposeTree(params);
  console.log(JSON.stringify({ task: "classification", ...metrics }));
}

/** Our text checkpoints: one embedding (mean over tokens, or the <s> state) per text. */
export async function runTextEmbed(all: string[], o: { model: string; pool: "mean" | "first" }) {
  if (all.length === 0) throw new DataError("nothing to embed: pass texts as arguments or --file");
  await initEngine();
  const loaded = loadTextCheckpoint(o.model);
  if (loaded.classifier) disposeTree(loaded.classifier.params.head);
  const { enc, tok, run } = loaded;
  const seqLen = run.train.seqLen;
  const forward = compile((p: TextEncoderParams, ids: np.Array, positions: np.Array, padding: np.Array) => {
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
      refTree(loaded.encoder),
      np.array(ids, { dtype: np.int32 }).reshape([1, seqLen]),
      np.array(positions, { dtype: np.int32 }).reshape([1, seqLen]),
      np.array(padding).reshape([1, seqLen]),
    ).data();
    console.log(JSON.stringify(Array.from(v as Float32Array, (x) => Number(x.toFixed(6)))));
  }
  disposeTree(loaded.encoder);
}

/** `d2v classify` with a text classifier: the top classes of each text, one JSON line per text. */
export async function runTextClassify(inputs: string[], o: { model: string; top: number }) {
  if (inputs.length === 0) throw new DataError("pass at least one text to classify");
  await initEngine();
  const loaded = loadTextCheckpoint(o.model);
  if (!loaded.classifier) {
    disposeTree(loaded.encoder);
    throw new ConfigError(`${o.model} is a pretrained model without a classifier head; fine-tune it first (\`d2v finetune --init ${o.model} ...\`)`);
  }
  const { params, labels, config } = loaded.classifier;
  const encoded = { ids: inputs.map((t) => Int32Array.from(loaded.tok.encode(t))), labels: inputs.map(() => 0) };
  const probs = await textClassProbabilities(params, loaded.enc, loaded.tok, encoded, labels.length, Math.min(16, inputs.length), config.finetune.seqLen, config.finetune.pooling ?? "first");
  disposeTree(params);
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

export async function runDebianSections(o: { out: string; packages?: string; translations?: string; perClass: number; testPerClass: number; seed: number; force?: boolean }) {
  const out = checkOutput(o.out, { flag: "--out", what: "dataset", kind: "dir", force: o.force });
  if (!o.packages !== !o.translations) throw new ConfigError("pass both --packages and --translations, or neither (to read this machine's apt lists)");
  const files = o.packages && o.translations ? { packages: readUtf8(o.packages), translations: readUtf8(o.translations) } : readAptDescriptions();
  const descriptions = debianDescriptions(parseStanzas(files.packages, o.packages ?? "apt-cache dumpavail"), parseStanzas(files.translations, o.translations ?? "Translation-en"));
  const task = debianSectionTask(descriptions, { perClass: o.perClass, testPerClass: o.testPerClass, seed: o.seed });
  const jsonl = (xs: { text: string; label: string }[]) => xs.map((x) => JSON.stringify(x)).join("\n") + "\n";
  await writeOutput(out, "dir", (tmp) => {
    mkdirSync(join(tmp, "pretrain"));
    writeFileSync(join(tmp, "train.jsonl"), jsonl(task.train));
    writeFileSync(join(tmp, "test.jsonl"), jsonl(task.test));
    // One description per paragraph (blank lines between), the corpus format `d2v pretrain --data` reads.
    writeFileSync(join(tmp, "pretrain", "descriptions.txt"), task.pretrainDocs.join("\n\n") + "\n");
    writeFileSync(join(tmp, "README.json"), JSON.stringify({ labels: task.labels, train: task.train.length, test: task.test.length, ...task.counts, pretrainDescriptions: task.pretrainDocs.length }, null, 2));
  });
  log(`wrote ${out}: ${task.train.length} labeled training descriptions, ${task.test.length} test descriptions (${task.labels.join(", ")}), ${task.pretrainDocs.length} unlabeled descriptions of ${task.counts.trainSources} training source packages`);
}
