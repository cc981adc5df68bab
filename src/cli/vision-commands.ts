/** The `d2v` subcommands for images. Input is validated before any output is written. */
import { saveModel } from "../train/checkpoint.js";
import { configFileSettings, type FinetuneOptions } from "./pretrain-command.js";
import { disposeTree } from "../engine/typed.js";
import { existsSync } from "node:fs";
import { basename, resolve } from "node:path";
import { ConfigError, DataError } from "../engine/errors.js";
import { HostRng } from "../engine/random.js";
import { initEngine } from "../engine/runtime.js";
import { accuracy, macroF1 } from "../train/metrics.js";
import { classProbabilities, finetuneVision, imageFeatures, newVisionHead, predictVision, trainProbe, type VisionClassifierParams } from "../vision/classify.js";
import { loadVisionCheckpoint, visionEncoders, type VisionClassifierConfig } from "../vision/checkpoints.js";
import { classNames, headFor, startingEncoder } from "../train/finetune.js";
import { floatsOf, planOptimizer, relativeIndexFloats } from "../train/memory-plan.js";
import { hfVisionEncoder, orHf } from "../hf/sources.js";
import { isHfModelDir } from "../hf/model.js";
import { resolveVisionConfig, type VisionRunConfig } from "../vision/config.js";
import { balancedSubset, decodeImage, mnistSplits, readImageFolder, withChannels, type LabeledImages } from "../vision/images.js";

const log = (msg: string) => process.stderr.write(`${msg}\n`);

/** Labeled images from an ImageFolder, or the MNIST training pool / test split when no folder is given. */
async function labeledImages(run: VisionRunConfig, path: string | undefined, split: "train" | "test", classes?: string[]): Promise<LabeledImages> {
  const m = run.model;
  const set = path ? await readImageFolder(path, { channels: m.channels, size: m.imageSize, minSide: m.patchSize }, classes) : mnistSplits()[split];
  if (!path && classes && classes.join() !== set.classes.join()) {
    throw new DataError(`the model's classes are ${classes.join(", ")}, not MNIST's digits; pass --data with a labeled image folder`);
  }
  return { ...set, images: set.images.map((img) => withChannels(img, m.channels)) };
}


/** The same images with their labels renumbered to `classes` (a permutation of the set's classes). */
function inClassOrder(set: LabeledImages, classes: string[]): LabeledImages {
  if (classes.join("\u0000") === set.classes.join("\u0000")) return set;
  const index = set.classes.map((c) => classes.indexOf(c));
  return { ...set, classes, labels: set.labels.map((l) => index[l]) };
}

export type VisionFinetuneOptions = FinetuneOptions & {
  perClass?: number;
  layerDecay?: number;
  linearProbe?: boolean;
  augment?: boolean;
};

export async function runVisionFinetune(o: VisionFinetuneOptions) {
  if (o.data && !existsSync(o.data)) throw new DataError(`--data ${o.data} does not exist`);
  await initEngine();
  const start = startingEncoder(orHf(visionEncoders, hfVisionEncoder), o, () => resolveVisionConfig(o.preset, configFileSettings(o.config)));
  const { arch: run, encoder } = start;
  let train = await labeledImages(run, o.data, "train");
  const perClass = o.perClass ?? (o.data ? undefined : 8);
  if (perClass) train = balancedSubset(train, perClass, (xs) => HostRng.seeded(1000 + o.seed).shuffle(xs));
  // A linear probe always fits a new head; fine-tuning keeps the checkpoint's when it is for these classes.
  const found = o.linearProbe ? undefined : start.head;
  if (o.linearProbe && start.head) disposeTree(start.head.params);
  const chosen = headFor(found, train.classes, () => newVisionHead(o.seed, run.model.dim, train.classes.length), { newHead: o.newHead, from: start.from, discarded: !!start.head });
  train = inClassOrder(train, chosen.labels);
  const evalSet = o.evalData || !o.data ? await labeledImages(run, o.evalData, "test", train.classes) : null;
  const classes = train.classes.length;
  // Augmented views are the default: with few labels, fine-tuning on the images as they are lets the encoder memorize
  // them (MNIST, 80 labels: 50% without, 83% with; docs/results/pretraining-helps.md). Varied views need more passes.
  const augment = o.augment !== false && !o.linearProbe;
  const settings = {
    epochs: o.epochs ?? (augment ? 80 : 40),
    batchSize: o.batchSize ?? 16,
    lr: o.lr ?? (o.linearProbe ? 1e-2 : 1e-3),
    warmupFraction: 0.1,
    weightDecay: o.weightDecay ?? (o.linearProbe ? 1e-4 : 0.05),
    seed: o.seed,
    augment,
    accumulate: o.accumulate ?? 1,
    // The paper's layer-wise decay for fine-tuning released checkpoints; our own runs keep one rate unless asked
    // (the results in docs/results were made that way).
    layerDecay: o.layerDecay ?? (start.from && isHfModelDir(start.from) ? 0.65 : 1),
  };
  const source = start.from ? `from ${start.from}` : "from scratch";
  let params: VisionClassifierParams;
  const result: Record<string, unknown> = {};
  if (o.linearProbe) {
    log(`linear probe ${source} on ${train.images.length} images, ${classes} classes`);
    const features = await imageFeatures(encoder, run, train.images, settings.batchSize);
    disposeTree(chosen.head);
    const probe = await trainProbe(features, train.labels, run.model.dim, classes, { steps: 500, lr: settings.lr, weightDecay: settings.weightDecay, seed: o.seed });
    params = { encoder, head: probe.head };
    result.trainAccuracy = probe.trainAccuracy;
  } else {
    log(`fine-tuning ${source} on ${train.images.length} images, ${classes} classes, ${settings.epochs} epochs${settings.augment ? " on augmented views" : ""}${settings.layerDecay !== 1 ? `, layer-wise learning-rate decay ${settings.layerDecay}` : ""}`);
    const n = floatsOf({ encoder, head: chosen.head });
    const grid = run.model.imageSize / run.model.patchSize;
    const optimizer = planOptimizer({ params: n, trained: n, rows: settings.batchSize, positions: 1 + grid * grid, dim: run.model.dim, ffnDim: run.model.ffnDim, heads: run.model.heads, layers: run.model.layers, accumulates: settings.accumulate > 1, constantFloats: relativeIndexFloats(grid, run.model.relativePositionBias !== "none") }, "this fine-tuning", "lower --batch-size (with --accumulate to keep the effective batch)", log);
    if (chosen.kept) log("keeping the classification head of the checkpoint");
    const trained = await finetuneVision({ encoder, head: chosen.head }, run, train, { ...settings, optimizer }, { quiet: o.quiet });
    params = trained.params;
    const last = trained.history[trained.history.length - 1];
    Object.assign(result, { trainLoss: last.loss, trainAccuracy: last.trainAccuracy });
  }
  const config: VisionClassifierConfig = { kind: "vision-classifier", run, labels: train.classes, finetune: { ...settings, linearProbe: !!o.linearProbe }, initializedFrom: start.from };
  await saveModel(resolve(o.out), params, config);
  log(`saved the classifier in ${resolve(o.out)}`);
  if (evalSet) Object.assign(result, await evaluateVision(params, run, evalSet, settings.batchSize));
  disposeTree(params);
  console.log(JSON.stringify(result));
}

async function evaluateVision(params: VisionClassifierParams, run: VisionRunConfig, data: LabeledImages, batchSize: number) {
  const pred = await predictVision(params, run, data.images, batchSize);
  return { accuracy: accuracy(pred, data.labels), macroF1: macroF1(pred, data.labels, data.classes.length), examples: data.images.length };
}

export async function runVisionEval(o: { model: string; data?: string; batchSize?: number }) {
  await initEngine();
  if (isHfModelDir(o.model)) {
    // A released classifier as it is (mean-pooling heads: LN of the mean patch token → linear).
    const h = hfVisionEncoder(o.model);
    if (!h.head) {
      disposeTree(h.encoder);
      throw new ConfigError(`${o.model} has no mean-pooling image-classification head (a bare model, or one that classifies from the CLS token); fine-tune it first (\`d2v finetune --init ${o.model} --data …\`)`);
    }
    const labels = classNames(h.head);
    const params = { encoder: h.encoder, head: h.head.params };
    const data = await labeledImages(h.arch, o.data, "test", labels);
    const metrics = await evaluateVision(params, h.arch, data, o.batchSize ?? 8);
    disposeTree(params);
    console.log(JSON.stringify({ task: "classification", ...metrics }));
    return;
  }
  const loaded = loadVisionCheckpoint(o.model);
  if (!loaded.classifier) throw new ConfigError(`${o.model} is a pretrained model without a classifier head; fine-tune it first (\`d2v finetune --init ${o.model} ...\`)`);
  const { params, labels, config } = loaded.classifier;
  const data = await labeledImages(loaded.run, o.data, "test", labels);
  const metrics = await evaluateVision(params, loaded.run, data, o.batchSize ?? config.finetune.batchSize);
  disposeTree(params);
  console.log(JSON.stringify({ task: "classification", ...metrics }));
}

/** `d2v classify`: the top classes of each image, one JSON line per image. */
export async function runVisionClassify(files: string[], o: { model: string; top: number }) {
  if (files.length === 0) throw new DataError("pass at least one image file");
  for (const f of files) if (!existsSync(f)) throw new DataError(`${f} does not exist`);
  await initEngine();
  const loaded = loadVisionCheckpoint(o.model);
  if (!loaded.classifier) throw new ConfigError(`${o.model} is a pretrained model without a classifier head; fine-tune it first (\`d2v finetune --init ${o.model} ...\`)`);
  const { params, labels } = loaded.classifier;
  const m = loaded.run.model;
  const images = [];
  for (const f of files) images.push(await decodeImage(f, { channels: m.channels, size: m.imageSize, minSide: m.patchSize }));
  const probs = await classProbabilities(params, loaded.run, images, Math.min(16, images.length), labels.length);
  disposeTree(params);
  files.forEach((f, i) => {
    const row = Array.from(probs.subarray(i * labels.length, (i + 1) * labels.length));
    const top = row
      .map((p, k) => ({ label: labels[k], probability: Number(p.toFixed(6)) }))
      .sort((a, b) => b.probability - a.probability)
      .slice(0, o.top);
    console.log(JSON.stringify({ file: basename(f), label: top[0].label, top }));
  });
}
