/**
 * The supervised fine-tuning loop shared by the modalities: shuffled epochs of fixed-size batches, one jitted
 * AdamW step per batch (cross-entropy on the weighted rows, warm-up + cosine schedule), a progress bar, and
 * per-epoch loss and training accuracy.
 */
import { compile, disposeTree, refTree, valueAndGradOf } from "../engine/typed.js";
import { fillTree } from "../engine/tree.js";
import { numpy as np } from "../engine/jax.js";
import { ConfigError, DataError } from "../engine/errors.js";
import { adamwUpdate, learningRate, type AdamWConfig, type AdamWState, type ScheduleConfig } from "../engine/optim.js";
import { AdamWUpdates } from "./updates.js";
import { HostRng } from "../engine/random.js";
import { stepKey } from "../data2vec/step.js";
import { KeyStream } from "../nn/random.js";
import { correctCount, crossEntropy } from "./metrics.js";
import { Progress } from "./progress.js";

/** A classification batch: model inputs plus one-hot labels [B, C] and row weights [B] (0 for filler rows). */
export type LabeledBatch = { labels: np.Array; weights: np.Array; [input: string]: np.Array };

/** One-hot labels [B, C] of the given example rows and row weights [B]: 1 per example, 0 for filler rows. */
export function labelArrays(labels: number[], rows: number[], batchSize: number, classes: number): { labels: np.Array; weights: np.Array } {
  const oneHot = new Float32Array(batchSize * classes);
  const weights = new Float32Array(batchSize);
  rows.forEach((r, i) => {
    oneHot[i * classes + labels[r]] = 1;
    weights[i] = 1;
  });
  return { labels: np.array(oneHot).reshape([batchSize, classes]), weights: np.array(weights) };
}

/** The settings every fine-tuning shares (AdamW with warm-up then cosine decay); each task adds its own. */
export type FinetuneBase = {
  epochs: number;
  batchSize: number;
  lr: number;
  warmupFraction: number;
  weightDecay: number;
  seed: number;
  /** Where AdamW keeps its moments: in the compiled step (default), or on the host for models too large for the heap (`HostAdamW`). */
  optimizer?: OptimizerPlace;
  /** Gradient accumulation: one optimizer update per this many batches, with their mean gradient (default 1). */
  accumulate?: number;
};

export type OptimizerPlace = "device" | "host";

export type ClassifierTraining<P, B extends LabeledBatch> = {
  params: P;
  examples: number;
  /** Epochs, batch size, peak learning rate, warm-up, seed and AdamW's weight decay. */
  settings: FinetuneBase;
  /** AdamW's other settings (β1, β2, ε, gradient clipping): each task's own. */
  adam: Omit<AdamWConfig, "weightDecay">;
  /** The batch of these example indices (fewer than batchSize in the last batch: pad with weight-0 rows). */
  batch: (rows: number[], rng: HostRng) => B;
  /** Logits [B, C] with dropout from `keys`. Consumes params and the batch's inputs (not labels or weights). */
  logits: (params: P, batch: B, keys: KeyStream) => np.Array;
  /** The learning-rate multiplier of each parameter by its name ("encoder.layers.3.attn.q.weight"): layer-wise decay. */
  lrScale?: (name: string) => number;
} & TrainingHooks;

export type EpochRecord = { epoch: number; step: number; loss: number; trainAccuracy: number };

/** What a caller may watch of a fine-tuning: no progress bar, and each epoch's record. */
export type TrainingHooks = { quiet?: boolean; onEpoch?: (r: EpochRecord) => void };

/** A fine-tuning's result: the trained parameters and one record per epoch. */
export type Trained<P> = { params: P; history: EpochRecord[] };

export async function trainClassifier<P, B extends LabeledBatch>(c: ClassifierTraining<P, B>): Promise<Trained<P>> {
  const o = { ...c, ...c.settings, opt: { ...c.adam, weightDecay: c.settings.weightDecay } };
  if (o.examples === 0) throw new DataError("no training examples");
  const accumulate = o.accumulate ?? 1;
  const batchesPerEpoch = Math.ceil(o.examples / o.batchSize);
  // The schedule counts optimizer updates: with accumulation, one per `accumulate` batches (and one at an epoch's end).
  const total = Math.ceil(batchesPerEpoch / accumulate) * o.epochs;
  const schedule: ScheduleConfig = { kind: "cosine", peakLr: o.lr, warmupSteps: Math.round(o.warmupFraction * total), totalSteps: total };
  const lossFn = (p: P, b: B, key: np.Array): [np.Array, np.Array] => {
    const keys = new KeyStream(key);
    const { labels, weights } = b;
    const logits = o.logits(p, b, keys);
    keys.close();
    const correct = correctCount(logits.ref, labels.ref, weights.ref);
    return [crossEntropy(logits, labels, weights), correct];
  };
  const gradFn = valueAndGradOf(lossFn, { hasAux: true });
  // Per-parameter learning-rate multipliers as a tree of scalars shaped like the parameters (constants of the steps).
  const lrScales = o.lrScale ? fillTree(o.params, (name) => np.array(o.lrScale!(name))) : undefined;
  const scalesArg = () => (lrScales ? refTree(lrScales) : undefined);
  const step = compile((p: P, s: AdamWState, b: B, key: np.Array, lr: np.Array): [P, AdamWState, np.Array, np.Array] => {
    const [[loss, correct], grads] = gradFn(refTree(p), b, key);
    const [p2, s2] = adamwUpdate(grads, s, p, lr, o.opt, scalesArg());
    return [p2, s2, loss, correct];
  });
  const gradStep = compile((p: P, b: B, key: np.Array): [P, np.Array, np.Array] => {
    const [[loss, correct], grads] = gradFn(p, b, key);
    return [grads, loss, correct];
  });

  let params = o.params;
  const updates = await AdamWUpdates.create(params, o.opt, o);
  const rng = HostRng.seeded(o.seed);
  const progress = new Progress("finetune", batchesPerEpoch * o.epochs, 0, { quiet: o.quiet });
  const history: EpochRecord[] = [];
  let update = 0;
  let batchIndex = 0;
  try {
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      const order = rng.shuffle(Array.from({ length: o.examples }, (_, i) => i));
      let lossSum = 0;
      let correctSum = 0;
      for (let i = 0; i < order.length; i += o.batchSize) {
        const rows = order.slice(i, i + o.batchSize);
        const key = stepKey(o.seed, batchIndex);
        let loss: np.Array, correct: np.Array;
        if (updates.fused) {
          [params, updates.state, loss, correct] = step(params, updates.state!, o.batch(rows, rng), key, np.array(learningRate(schedule, update)));
          update++;
        } else {
          let grads: P;
          [grads, loss, correct] = gradStep(refTree(params), o.batch(rows, rng), key);
          if (await updates.add(grads, i + o.batchSize >= order.length)) {
            params = await updates.apply(params, learningRate(schedule, update), scalesArg());
            update++;
          }
        }
        lossSum += (await loss.data())[0] * rows.length;
        correctSum += (await correct.data())[0];
        batchIndex++;
        await progress.update(batchIndex, { epoch: String(epoch + 1), loss: (lossSum / Math.min(order.length, i + rows.length)).toFixed(4) });
      }
      const record = { epoch: epoch + 1, step: update, loss: lossSum / order.length, trainAccuracy: correctSum / order.length };
      history.push(record);
      o.onEpoch?.(record);
    }
  } finally {
    progress.stop();
    updates.dispose();
    if (lrScales) disposeTree(lrScales);
    step.dispose(); // compiled steps hold constants of their own
    gradStep.dispose();
  }
  return { params, history };
}

/** A classification (or CTC) head found in a checkpoint: its parameters, its class names if it names them, and its class count. */
export type FoundHead<H> = { params: H; labels: string[] | null; classes: number };

/** A found head's class names: its own, or HF's placeholders LABEL_0, LABEL_1, … when it names none. */
export function classNames(found: FoundHead<unknown>): string[] {
  return found.labels ?? Array.from({ length: found.classes }, (_, i) => `LABEL_${i}`);
}

/** A checkpoint's architecture and encoder, and its head when it has one that fine-tuning may keep (Hugging Face ones). */
export type LoadedEncoder<Arch, Encoder, Head = never> = { arch: Arch; encoder: Encoder; head?: FoundHead<Head> };

/** How fine-tuning reads a modality's encoder: `Arch` is what describes the network (the run config, and text's tokenizer). */
export type EncoderSource<Arch, Encoder, Head = never> = {
  /** The architecture and the encoder of a checkpoint: a pretraining run, a fine-tuned model (its head freed), or a Hugging Face directory. */
  load(dir: string): LoadedEncoder<Arch, Encoder, Head>;
  /** Fresh encoder weights of an architecture. */
  fresh(arch: Arch, seed: number): Encoder;
};

/**
 * The encoder a fine-tuning starts from: `--init`'s (or, with `--scratch`, fresh weights of its architecture), or
 * without `--init`, fresh weights of `scratchArch()` (the preset and config options). `from` is the checkpoint
 * the weights come from (null from scratch); `head` is the checkpoint's own head, if it has one to keep.
 */
export function startingEncoder<Arch, Encoder, Head>(
  source: EncoderSource<Arch, Encoder, Head>,
  o: { init?: string; scratch?: boolean; seed: number },
  scratchArch: () => Arch,
): LoadedEncoder<Arch, Encoder, Head> & { from: string | null } {
  if (!o.init && !o.scratch) throw new ConfigError("pass --init <pretrained run or Hugging Face directory> to fine-tune a pretrained model, or --scratch to train from random weights");
  if (!o.init) {
    const arch = scratchArch();
    return { arch, encoder: source.fresh(arch, o.seed), from: null };
  }
  const loaded = source.load(o.init);
  if (!o.scratch) return { ...loaded, from: o.init };
  disposeTree(loaded.encoder);
  if (loaded.head) disposeTree(loaded.head.params);
  return { arch: loaded.arch, encoder: source.fresh(loaded.arch, o.seed), from: null };
}

/**
 * The head a fine-tuning trains and the class order it uses. A checkpoint's own head is kept when it fits the data:
 * the same class names (the data's labels are then put in the head's order), or unnamed classes (HF's LABEL_i) of
 * the same count. A head for other classes is an error unless `newHead` asks for a fresh one (the encoder is kept).
 */
export function headFor<H>(found: FoundHead<H> | undefined, labels: string[], fresh: () => H, o: { newHead?: boolean; from: string | null; what?: string; discarded?: boolean }): { head: H; labels: string[]; kept: boolean } {
  // --new-head where there is no head to replace would be ignored: refused, as every ignored option is.
  if (!found && o.newHead && !o.discarded) throw new ConfigError(`--new-head: ${o.from ?? "a model from scratch"} has no head to replace here (a new head is made anyway); drop the option`);
  if (!found) return { head: fresh(), labels, kept: false };
  if (o.newHead) {
    disposeTree(found.params);
    return { head: fresh(), labels, kept: false };
  }
  const what = o.what ?? "classes";
  const sameNames = found.labels !== null && found.labels.length === labels.length && [...found.labels].sort().join("\u0000") === [...labels].sort().join("\u0000");
  if (sameNames) return { head: found.params, labels: found.labels!, kept: true };
  if (found.labels === null && found.classes === labels.length) return { head: found.params, labels, kept: true };
  disposeTree(found.params);
  const named = found.labels ? ` (${found.labels.slice(0, 8).join(", ")}${found.labels.length > 8 ? ", …" : ""})` : "";
  throw new ConfigError(
    `${o.from} has a head for ${found.classes} ${what}${named}, but the data has ${labels.length} (${labels.slice(0, 8).join(", ")}${labels.length > 8 ? ", …" : ""}); ` +
      "pass --new-head to train a new head for the data's classes on the pretrained encoder, or start from the checkpoint's bare model",
  );
}

/**
 * Layer-wise learning-rate decay (BEiT, data2vec's image fine-tuning): block i of L (1-based) learns at decay^(L + 1 − i)
 * of the rate, the input side (embeddings) at decay^(L + 1), the head at the full rate. Names are the fine-tuned
 * tree's ("encoder.shared.…", "encoder.layers.<i>.…", "head.…").
 */
export function layerDecayScale(layers: number, decay: number): (name: string) => number {
  return (name) => {
    const block = /^encoder\.layers\.(\d+)\./.exec(name);
    const depth = block ? Number(block[1]) + 1 : name.startsWith("encoder.") ? 0 : layers + 1;
    return decay ** (layers + 1 - depth);
  };
}
