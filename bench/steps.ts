/**
 * The benchmarked work: one data2vec pretraining update of each modality's preset (EMA step, student
 * forward and backward, teacher forward, AdamW), on synthetic text, real MNIST batches and synthetic
 * speech-like clips, and the 512³ matmul used as each process's reference rate. Shared by `run.ts` (the
 * table) and `profile.ts` (where a step's time goes).
 */
import type { VisionPretrainBatch } from "../src/vision/model.js";
import type { AudioPretrainBatch } from "../src/audio/model.js";
import { jit, numpy as np, random, tree } from "../src/engine/jax.js";
import { HostRng } from "../src/engine/random.js";
import { resolveTextConfig, type TextRunConfig } from "../src/text/config.js";
import { maskTokens } from "../src/text/masking.js";
import { initTextData2Vec, positionIds, textModality, type TextPretrainBatch } from "../src/text/model.js";
import { data2vecObjective, makeData2VecSteps, makeSteps, stepKey, type ObjectiveLoss } from "../src/data2vec/step.js";
import { studentForEma, type Data2VecParams, type Modality, type Teacher } from "../src/data2vec/model.js";
import { freshPretrainState, optimizerSettings, type PretrainState } from "../src/train/pretrain.js";
import type { AdamWConfig } from "../src/engine/optim.js";
import type { ParamTree } from "../src/engine/tree.js";
import { resolveVisionConfig, gridSize, type VisionRunConfig } from "../src/vision/config.js";
import { initVisionData2Vec, visionModality } from "../src/vision/model.js";
import { visionPretraining } from "../src/vision/pretrain.js";
import { pretrainStream } from "../src/train/pretrain-runner.js";
import { mnistSplits } from "../src/vision/images.js";
import { resolveAudioConfig, type AudioRunConfig } from "../src/audio/config.js";
import { framesForSamples, initAudioData2Vec, audioModality } from "../src/audio/model.js";
import { audioPretraining } from "../src/audio/pretrain.js";
import { cnnWindow } from "../src/audio/logmel.js";
import { textPretraining } from "../src/text/pretrain.js";
import { EpochStream, type AnyPrepared } from "../src/train/pretrain-runner.js";
import type { Data2VecSettings } from "../src/data2vec/config.js";
import type { TrainSettings } from "../src/train/pretrain.js";

/** GFLOP/s of a jitted 512×512×512 matmul in this process. */
export async function matmulGflops(n = 512, reps = 30): Promise<number> {
  const a = random.normal(random.key(1), [n, n]);
  const b = random.normal(random.key(2), [n, n]);
  const mm = jit((x: np.Array, y: np.Array) => np.matmul(x, y));
  for (let i = 0; i < 3; i++) await mm(a.ref, b.ref).data();
  const t = performance.now();
  for (let i = 0; i < reps; i++) await mm(a.ref, b.ref).data();
  const ms = (performance.now() - t) / reps;
  a.dispose();
  b.dispose();
  mm.dispose();
  return (2 * n ** 3) / ms / 1e6;
}

/** One benchmarkable update: `run(i)` performs update i and waits for it. */
export interface BenchStep {
  name: string;
  /** What one update processes, in `unit` (tokens, images, seconds of audio). */
  unitsPerStep: () => number;
  unit: string;
  /** Matmul FLOPs of one update. */
  flops: number;
  /** Updates to time (after two warm-up updates). */
  reps: number;
  shape: Record<string, unknown>;
  run(i: number): Promise<void>;
}

/** Matmul FLOPs of one data2vec text update: student forward + backward (3×) and teacher forward (1×). */
export function textStepFlops(c: TextRunConfig): number {
  const { dim: d, ffnDim: f, layers: l } = c.model;
  const t = c.train.seqLen;
  const perTokenLayer = 2 * (4 * d * d + 2 * d * f) + 4 * t * d; // projections + FFN + attention scores/context
  const head = c.data2vec.headLayers === 2 ? 2 * (d * 2 * d + 2 * d * d) : 2 * d * d;
  const tokens = c.train.batchSize * t;
  return tokens * (3 * (l * perTokenLayer + head) + l * perTokenLayer);
}

/** Matmul FLOPs of one data2vec vision update (tokens = CLS + patches; patch embedding and head included). */
export function visionStepFlops(c: VisionRunConfig): number {
  const { dim: d, ffnDim: f, layers: l, channels, patchSize: p } = c.model;
  const t = gridSize(c.model) ** 2 + 1;
  const perTokenLayer = 2 * (4 * d * d + 2 * d * f) + 4 * t * d;
  const embed = 2 * channels * p * p * d;
  const head = 2 * d * d * c.data2vec.headLayers;
  const tokens = c.train.batchSize * t;
  return tokens * (3 * (l * perTokenLayer + embed + head) + l * perTokenLayer + embed);
}

/**
 * Matmul FLOPs of one data2vec speech update. The feature encoder runs once and is shared by both views;
 * projection, positional conv, blocks and head run for the student (3×), the positional conv and blocks once more
 * for the teacher (1×).
 */
export function audioStepFlops(c: AudioRunConfig): number {
  const m = c.model;
  const crop = Math.round(c.data.cropSeconds * m.sampleRate);
  const t = framesForSamples(crop, m.convLayers);
  // The feature encoder: the CNN forward and backward (3×), or log mel frames (src/audio/logmel.ts), whose windowed
  // DFT and mel filters are two matmuls run forward only (nothing there trains).
  let features = 0;
  let inChannels = 1;
  if (m.frontEnd === "logmel") {
    const { window } = cnnWindow(m.convLayers);
    const bins = Math.floor(window / 2) + 1;
    inChannels = m.melBands ?? 80;
    features = 2 * t * window * 2 * bins + 2 * t * bins * inChannels;
  } else {
    m.convLayers.forEach((layer, i) => {
      features += 3 * 2 * framesForSamples(crop, m.convLayers.slice(0, i + 1)) * layer.kernel * inChannels * layer.channels;
      inChannels = layer.channels;
    });
  }
  const d = m.dim;
  const projection = 2 * t * inChannels * d;
  const posConv = (2 * m.posConvLayers * t * m.posConvKernel * (d * d)) / m.posConvGroups;
  const blocks = m.layers * t * (2 * (4 * d * d + 2 * d * m.ffnDim) + 4 * t * d);
  const head = 2 * t * d * d * c.data2vec.headLayers;
  return c.train.batchSize * (features + 3 * (projection + posConv + blocks + head) + posConv + blocks);
}

/** Random tokens between <s> and </s>, masked as in pretraining (the step's cost does not depend on the text). */
export function syntheticTextBatch(c: TextRunConfig, rng: HostRng): TextPretrainBatch {
  const { batchSize: b, seqLen: t } = c.train;
  const v = c.model.vocabSize;
  const ids = new Int32Array(b * t);
  for (let i = 0; i < b; i++) {
    ids[i * t] = 0;
    for (let j = 1; j < t - 1; j++) ids[i * t + j] = rng.int(4, v - 2);
    ids[i * t + t - 1] = 2;
  }
  const source = new Int32Array(ids.length);
  const weights = new Float32Array(ids.length);
  for (let i = 0; i < b; i++) {
    const m = maskTokens(ids.subarray(i * t, (i + 1) * t), c.masking, rng, { maskId: v - 1, isSpecial: (id) => id < 4, vocabSize: v, firstRegularId: 4 });
    source.set(m.source, i * t);
    weights.set(m.lossWeights, i * t);
  }
  const shape = [b, t];
  return {
    source: np.array(source, { dtype: np.int32 }).reshape(shape),
    target: np.array(ids, { dtype: np.int32 }).reshape(shape),
    positions: np.array(positionIds(ids, b, t, 1), { dtype: np.int32 }).reshape(shape),
    padding: np.ones(shape),
    lossWeights: np.array(weights).reshape(shape),
  };
}

/** One data2vec update (EMA step, then the student's update) on batches from `next`. */
function updater<Shared extends ParamTree, B extends { [k: string]: np.Array }>(
  modality: Modality<Shared, B>,
  data2vec: Parameters<typeof makeData2VecSteps>[1],
  optimizer: AdamWConfig,
  initial: PretrainState<Shared>,
  next: () => B,
): (i: number) => Promise<void> {
  return lossUpdater(data2vecObjective(modality, data2vec), [], optimizer, initial, next);
}

/** Update i of an objective (v1 or data2vec 2.0): EMA over the teacher's groups, then the fused step. */
function lossUpdater<Shared extends ParamTree, Head extends ParamTree, B>(
  loss: ObjectiveLoss<Data2VecParams<Shared, Head>, Teacher<Shared>, B>,
  emaShared: string[],
  optimizer: AdamWConfig,
  initial: PretrainState<Shared, Head>,
  next: () => B,
): (i: number) => Promise<void> {
  const steps = makeSteps(loss, optimizer);
  let state = initial;
  return async (i) => {
    const teacher = steps.ema(state.teacher, studentForEma(state.params, emaShared), np.array(0.999));
    const [params, opt, out] = steps.update(state.params, tree.ref(teacher as never) as typeof teacher, state.opt, next(), stepKey(0, i), np.array(1e-4));
    state = { params, teacher, opt, step: i };
    await out.loss.data();
    tree.dispose([out.targetVar, out.predVar, out.gradNorm, out.maskedSteps] as never);
  };
}

function textStep(preset: string): BenchStep {
  const c = resolveTextConfig(preset);
  const enc = { ...c.model, padId: 1 };
  const rng = HostRng.seeded(0);
  const run = updater(textModality(enc), c.data2vec, { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.01, clipNorm: 5 }, freshPretrainState(initTextData2Vec(c, enc, 0)), () => syntheticTextBatch(c, rng));
  const m = c.model;
  return {
    name: `text-${preset}`,
    unitsPerStep: () => c.train.batchSize * c.train.seqLen,
    unit: "tokens/s",
    flops: textStepFlops(c),
    reps: preset === "tiny" ? 6 : 3,
    shape: { preset, layers: m.layers, dim: m.dim, ffnDim: m.ffnDim, heads: m.heads, batchSize: c.train.batchSize, seqLen: c.train.seqLen, vocabSize: m.vocabSize },
    run,
  };
}

function visionStep(preset: string): BenchStep {
  const c = resolveVisionConfig(preset);
  // Real MNIST batches (augmentation and block masks on the host are part of the step's cost).
  const stream = pretrainStream(visionPretraining(), c, mnistSplits().train.images.slice(0, 512));
  const run = updater(visionModality(c.model), c.data2vec, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, clipNorm: 3 }, freshPretrainState(initVisionData2Vec(c, 0)), () => stream.next() as VisionPretrainBatch);
  const m = c.model;
  return {
    name: `vision-${preset}`,
    unitsPerStep: () => c.train.batchSize,
    unit: "images/s",
    flops: visionStepFlops(c),
    reps: preset === "tiny" ? 20 : 5,
    shape: { preset, layers: m.layers, dim: m.dim, ffnDim: m.ffnDim, heads: m.heads, batchSize: c.train.batchSize, imageSize: m.imageSize, patchSize: m.patchSize, tokens: gridSize(m) ** 2 + 1 },
    run,
  };
}

/** Synthetic speech-like clips (chirps in noise, 1–3 s): the step's cost does not depend on the content. */
export function syntheticClips(n: number, rate: number): { name: string; samples: Float32Array }[] {
  const rng = HostRng.seeded(7);
  return Array.from({ length: n }, (_, i) => {
    const samples = new Float32Array(Math.round((1 + 2 * rng.uniform()) * rate));
    const f0 = 100 + 200 * rng.uniform();
    for (let j = 0; j < samples.length; j++) samples[j] = Math.sin((2 * Math.PI * f0 * j * (1 + j / samples.length)) / rate) + 0.1 * (2 * rng.uniform() - 1);
    return { name: `synthetic-${i}`, samples };
  });
}

function audioStep(preset: string): BenchStep {
  const c = resolveAudioConfig(preset);
  const stream = pretrainStream(audioPretraining(), c, syntheticClips(4 * c.train.batchSize, c.model.sampleRate));
  const run = updater(audioModality(c.model), c.data2vec, optimizerSettings(c.train), freshPretrainState(initAudioData2Vec(c, 0)), () => stream.next() as AudioPretrainBatch);
  const m = c.model;
  return {
    name: `audio-${preset}`,
    unitsPerStep: () => stream.unitsPerBatch,
    unit: "audio-s/s",
    flops: audioStepFlops(c),
    reps: preset.startsWith("tiny") ? 6 : 4,
    shape: { preset, layers: m.layers, dim: m.dim, ffnDim: m.ffnDim, heads: m.heads, cnnChannels: m.convLayers[0].channels, batchSize: c.train.batchSize, cropSeconds: c.data.cropSeconds, frames: framesForSamples(Math.round(c.data.cropSeconds * m.sampleRate), m.convLayers) },
    run,
  };
}

/**
 * Matmul FLOPs of one data2vec 2.0 update: the student's blocks on N = B·M views of K visible steps (+ extra
 * tokens) and the decoder on every step of every view (3×), the teacher's on B samples of T steps (1×).
 */
export function v2StepFlops(o: { samples: number; clones: number; steps: number; visible: number; extra: number; dim: number; ffnDim: number; layers: number; prenet: number; decoder: { dim: number; kernel: number; groups: number; layers: number; taps: number } }): number {
  const { dim: d, ffnDim: f } = o;
  const block = (t: number) => t * (2 * (4 * d * d + 2 * d * f) + 4 * t * d);
  const views = o.samples * o.clones;
  const dec = o.decoder;
  const decoder = views * o.steps * (2 * dec.taps * (d * dec.dim + (dec.layers - 1) * dec.dim * dec.dim) / dec.groups + 2 * dec.dim * d);
  const student = views * (o.layers + o.prenet) * block(o.visible + o.extra) + decoder;
  const teacher = o.samples * (o.layers + o.prenet) * block(o.steps + o.extra);
  return 3 * student + teacher;
}

/** A data2vec 2.0 preset through its pretraining adapter: the same batches, model and loss as `d2v pretrain`. */
function v2Step(modality: string, preset: string): BenchStep {
  const v2 = (c: { data2vec: Data2VecSettings }) => c.data2vec.v2!;
  let prepared: AnyPrepared<unknown>;
  let shape: Record<string, unknown>;
  let flops: number;
  let unit: string;
  let units: () => number;
  if (modality === "vision") {
    const c = resolveVisionConfig(preset);
    prepared = visionPretraining().prepare(c, mnistSplits().train.images.slice(0, 512), { checkpoint: null, log: () => {} });
    const steps = gridSize(c.model) ** 2;
    const m = c.model;
    const d = v2(c).decoder;
    flops = v2StepFlops({ samples: c.train.batchSize, clones: v2(c).cloneBatch, steps, visible: Math.floor(steps * (1 - c.masking.ratio)), extra: 1, dim: m.dim, ffnDim: m.ffnDim, layers: m.layers, prenet: v2(c).prenetDepth ?? 0, decoder: { ...d, taps: d.kernel * d.kernel } });
    shape = { preset, layers: m.layers, dim: m.dim, batchSize: c.train.batchSize, cloneBatch: v2(c).cloneBatch, patches: steps };
    unit = "images/s";
    units = () => c.train.batchSize;
  } else if (modality === "text") {
    const c = resolveTextConfig(preset);
    // One long document: a block that holds a document boundary has fewer maskable tokens, and a batch whose fewest
    // differs masks another count, a new shape that compiles once; many short documents put compiles in the timing.
    const docs = [syntheticDocument(0, 80000)];
    prepared = textPretraining().prepare(c, docs, { checkpoint: null, log: () => {} });
    const m = c.model;
    const d = v2(c).decoder;
    const t = c.train.seqLen;
    flops = v2StepFlops({ samples: c.train.batchSize, clones: v2(c).cloneBatch, steps: t, visible: t - Math.round(c.masking.ratio * (t - 2)), extra: 0, dim: m.dim, ffnDim: m.ffnDim, layers: m.layers, prenet: 0, decoder: { ...d, taps: d.kernel } });
    shape = { preset, layers: m.layers, dim: m.dim, batchSize: c.train.batchSize, cloneBatch: v2(c).cloneBatch, seqLen: t };
    unit = "tokens/s";
    units = () => c.train.batchSize * t;
  } else {
    const c = resolveAudioConfig(preset);
    prepared = audioPretraining().prepare(c, syntheticClips(4 * c.train.batchSize, c.model.sampleRate), { checkpoint: null, log: () => {} });
    const m = c.model;
    const d = v2(c).decoder;
    const t = framesForSamples(Math.round(c.data.cropSeconds * m.sampleRate), m.convLayers);
    flops = v2StepFlops({ samples: c.train.batchSize, clones: v2(c).cloneBatch, steps: t, visible: t - Math.floor(t * c.masking.ratio), extra: 0, dim: m.dim, ffnDim: m.ffnDim, layers: m.layers, prenet: 0, decoder: { ...d, taps: d.kernel } });
    shape = { preset, layers: m.layers, dim: m.dim, batchSize: c.train.batchSize, cloneBatch: v2(c).cloneBatch, cropSeconds: c.data.cropSeconds, frames: t };
    unit = "audio-s/s";
    units = () => stream.unitsPerBatch;
  }
  const stream = new EpochStream(prepared.batches, 1, null, { caller: true });
  const cfg = prepared.cfg as { data2vec: Data2VecSettings; train: TrainSettings };
  const run = lossUpdater(prepared.loss, cfg.data2vec.emaShared ?? [], optimizerSettings(cfg.train), freshPretrainState(prepared.init(0), cfg.data2vec.emaShared), () => stream.next());
  return { name: `${modality}-${preset}`, unitsPerStep: units, unit, flops, reps: preset.startsWith("tiny") ? 6 : 3, shape, run };
}

/** A document of random words (the step's cost does not depend on the text). */
function syntheticDocument(seed: number, words: number): string {
  const rng = HostRng.seeded(seed);
  const vocabulary = ["the", "data", "model", "teacher", "student", "mask", "learns", "of", "a", "from", "targets", "every", "step"];
  return Array.from({ length: words }, () => vocabulary[rng.int(0, vocabulary.length - 1)]).join(" ");
}

/** `text-tiny`, `vision-small`, `audio-tiny`, `vision-tiny-v2`, …: the modality's preset as a benchmark step. */
export function benchStep(name: string): BenchStep {
  const [modality, ...rest] = name.split("-");
  const preset = rest.join("-");
  if (preset.endsWith("-v2")) return v2Step(modality, preset);
  if (modality === "text") return textStep(preset);
  if (modality === "vision") return visionStep(preset);
  if (modality === "audio") return audioStep(preset);
  throw new Error(`unknown benchmark ${name} (expected text-, vision- or audio-<preset>)`);
}
