/**
 * CTC fine-tuning of speech models (transcription): a linear head over the frames to the character vocabulary.
 *
 * CTC step: the jitted model gives logits; the host computes each utterance's CTC loss and its exact
 * gradient with respect to the logits (`ctc.ts`); a second jitted function backpropagates that gradient
 * through the model (the same dropout key, so the same network) and applies AdamW. With the feature encoder
 * frozen (the paper's setting when starting from a pretrained model) its outputs are computed once and
 * cached, and it is left out of the optimizer.
 */
import { compile, disposeTree, gradOf, refTree } from "../engine/typed.js";
import { fillTree } from "../engine/tree.js";
import { numpy as np, random } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import { adamwUpdate, learningRate, type AdamWConfig, type AdamWState, type ScheduleConfig } from "../engine/optim.js";
import { AdamWUpdates } from "../train/updates.js";
import { HostRng } from "../engine/random.js";
import { stepKey } from "../data2vec/step.js";
import { initLinear } from "../nn/init.js";
import { linear, type LinearParams } from "../nn/layers.js";
import { KeyStream } from "../nn/random.js";
import type { FinetuneBase } from "../train/finetune.js";
import { charErrorRate, wordErrorRate } from "../train/metrics.js";
import { Progress } from "../train/progress.js";
import type { AudioModelConfig } from "./config.js";
import { BLANK, ctcBeamSearch, ctcGreedyDecode, ctcLoss, encodeTranscript, labelsToText, logSoftmax } from "./ctc.js";
import type { Clip } from "./data.js";
import { spanMask } from "./masking.js";
import { audioFeatures, embedFeatures, featureChannels, runAudioBlocks, frameMaskArray, framesForSamples, type AudioEncoderParams, type AudioShared } from "./model.js";

export type CtcParams = { encoder: AudioEncoderParams; head: LinearParams };

export function newCtcHead(seed: number, dim: number, vocabSize: number): LinearParams {
  const keys = new KeyStream(random.key(seed + 7919));
  const head = initLinear(keys, dim, vocabSize);
  keys.close();
  return head;
}

export type CtcSettings = FinetuneBase & {
  /** Keep the CNN feature encoder fixed (fairseq's feature_grad_mult 0). */
  freezeFeatureEncoder: boolean;
  /** Audio per batch (padding included) is kept under this many seconds: the bound on memory. */
  maxBatchSeconds: number;
  /** Time masking during fine-tuning (span starts per frame; 0 turns it off), spans of `maskLength`. */
  maskProb: number;
  maskLength: number;
  /**
   * Head-only warm-up (fairseq's freeze_finetune_updates): for this many updates only the CTC head learns. The
   * encoder's learning rate (step and weight decay) is 0 meanwhile; unlike fairseq, its gradients are still computed
   * and kept in AdamW's moments, so they are warm when it starts to learn.
   */
  headOnlyUpdates?: number;
};

export type Utterance = { clip: Clip; labels: number[] };

/** Clips with transcripts → label ids; characters outside the vocabulary are an error naming the clip. */
export function toUtterances(clips: Clip[], vocab: string[]): Utterance[] {
  return clips.map((clip) => {
    if (clip.transcript === undefined) throw new DataError(`${clip.name} has no transcript`);
    return { clip, labels: encodeTranscript(clip.transcript, vocab, `the transcript of ${clip.name}`) };
  });
}

/** Clips longer than the audio budget get a batch of their own, padded to a multiple of half a second. */
const PAD_SECONDS = 0.5;

/**
 * One compiled function at a time: jax-js keeps working memory per compiled input shape, so a few shapes
 * of long audio would exhaust the 4 GiB of wasm32 memory. Batches are processed grouped by shape, and the
 * compiled function is dropped when the shape changes.
 */
class PerShape<F extends ((...a: never[]) => unknown) & { dispose(): void }> {
  #key = "";
  #fn: F | null = null;
  constructor(private make: () => F) {}
  get(key: string): F {
    if (key !== this.#key || !this.#fn) {
      this.#fn?.dispose();
      this.#fn = this.make();
      this.#key = key;
    }
    return this.#fn;
  }
  dispose(): void {
    this.#fn?.dispose();
    this.#fn = null;
  }
}

/** A batch's device shape: `rows` clips of `samples` samples (filler rows and padding included). */
export type BatchShape = { rows: number; samples: number };

/**
 * The shape ladder: rung k pads clips to budget / √2^k samples, with ⌊√2^k⌋ rows (at most `maxRows`); a clip
 * goes to the shortest rung that holds it. Rungs hold 71–100% of the budget, so an epoch compiles a handful
 * of shapes with buffers of similar sizes (jax-js reuses freed buffers only within a size class; many shapes
 * would exhaust the 4 GiB of wasm32), and a clip is padded by at most 41%. Clips longer than the budget are
 * batches of one, padded to half a second.
 */
export function ladderShape(samples: number, sampleRate: number, maxRows: number, maxBatchSeconds: number): BatchShape {
  const budget = Math.round(maxBatchSeconds * sampleRate);
  if (samples > budget) {
    const quantum = Math.round(PAD_SECONDS * sampleRate);
    return { rows: 1, samples: Math.ceil(samples / quantum) * quantum };
  }
  const rung = (k: number): BatchShape => ({ rows: Math.floor(Math.SQRT2 ** k + 1e-9), samples: Math.floor(budget / Math.SQRT2 ** k + 1e-6) });
  let k = 0;
  while (rung(k + 1).rows <= maxRows && samples <= rung(k + 1).samples) k++;
  return rung(k);
}

/** Batches by duration: clips sorted by length fill the rows of their rung of the shape ladder. */
export function durationBatches(lengths: number[], m: AudioModelConfig, maxRows: number, maxBatchSeconds: number): { rows: number[]; shape: BatchShape }[] {
  const order = lengths.map((n, i) => [n, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, i]) => i);
  const batches: { rows: number[]; shape: BatchShape }[] = [];
  let current: { rows: number[]; shape: BatchShape } | null = null;
  for (const i of order) {
    const shape = ladderShape(lengths[i], m.sampleRate, maxRows, maxBatchSeconds);
    if (!current || current.shape.samples !== shape.samples || current.rows.length === current.shape.rows) {
      current = { rows: [], shape };
      batches.push(current);
    }
    current.rows.push(i);
  }
  return batches;
}

type Inputs = { features?: np.Array; wave?: np.Array; frameMask: np.Array; timeMask?: np.Array };
type HostBatch = { size: number; rows: number[]; samples: number; frames: number; frameLengths: number[]; wave: Float32Array; frameMask: Float32Array; timeMask: Float32Array | null };

function hostBatch(clips: Clip[], rows: number[], shape: BatchShape, m: AudioModelConfig, mask: { spanStartProb: number; length: number; rng: HostRng } | null): HostBatch {
  const { rows: batchSize, samples } = shape;
  const frames = framesForSamples(samples, m.convLayers);
  const wave = new Float32Array(batchSize * samples);
  rows.forEach((r, i) => wave.set(clips[r].samples, i * samples));
  const lengths = rows.map((r) => clips[r].samples.length);
  const frameLengths = lengths.map((n) => Math.min(frames, framesForSamples(n, m.convLayers)));
  // Filler rows (a short last batch) are all padding: one real frame keeps their softmax finite.
  const frameMask = frameMaskArray([...lengths, ...new Array(batchSize - rows.length).fill(Math.min(samples, m.sampleRate))], frames, m);
  let timeMask: Float32Array | null = null;
  if (mask && mask.spanStartProb > 0) {
    const spans = spanMask(frameLengths, frames, { spanStartProb: mask.spanStartProb, spanLength: mask.length, minSpans: 1 }, mask.rng);
    timeMask = new Float32Array(batchSize * frames);
    timeMask.set(spans);
  }
  return { size: batchSize, rows, samples, frames, frameLengths, wave, frameMask, timeMask };
}

/** The CNN outputs of every clip (frozen feature encoder), computed once: [frames × C] per clip. */
export async function cacheFeatures(features: AudioShared["features"], m: AudioModelConfig, clips: Clip[], batchSize: number, maxBatchSeconds: number): Promise<Float32Array[]> {
  const cnn = new PerShape(() => compile((f: AudioShared["features"], wave: np.Array) => audioFeatures(f, m, wave)));
  const channels = featureChannels(m);
  const out: Float32Array[] = new Array(clips.length);
  for (const { rows, shape } of durationBatches(clips.map((c) => c.samples.length), m, batchSize, maxBatchSeconds)) {
    const b = hostBatch(clips, rows, shape, m, null);
    const y = (await cnn.get(`${shape.rows}x${shape.samples}`)(refTree(features), np.array(b.wave).reshape([shape.rows, shape.samples])).data()) as Float32Array;
    rows.forEach((r, i) => {
      const n = b.frameLengths[i];
      out[r] = y.slice(i * b.frames * channels, (i * b.frames + n) * channels);
    });
  }
  cnn.dispose();
  return out;
}

/** Device inputs of a host batch: cached CNN outputs (padded with zeros) when given, else the waveforms. */
function deviceInputs(b: HostBatch, cached: Float32Array[] | null, channels: number): Inputs {
  const batchSize = b.size;
  const inputs: Inputs = { frameMask: np.array(b.frameMask).reshape([batchSize, b.frames]) };
  if (cached) {
    const x = new Float32Array(batchSize * b.frames * channels);
    b.rows.forEach((r, i) => x.set(cached[r].subarray(0, Math.min(cached[r].length, b.frames * channels)), i * b.frames * channels));
    inputs.features = np.array(x).reshape([batchSize, b.frames, channels]);
  } else inputs.wave = np.array(b.wave).reshape([batchSize, b.samples]);
  if (b.timeMask) inputs.timeMask = np.array(b.timeMask).reshape([batchSize, b.frames]);
  return inputs;
}

/** Hidden states [B, T, D]. `shared.features` may be absent when the inputs carry cached CNN outputs. Consumes all. */
function encodeInputs(enc: { shared: Partial<AudioShared> & Omit<AudioShared, "features">; layers: AudioEncoderParams["layers"] }, x: Inputs, m: AudioModelConfig, keys: KeyStream | null): np.Array {
  const { features, alibiScale, ...rest } = enc.shared;
  let cnnOut: np.Array;
  if (x.features) {
    if (features) disposeTree(features);
    cnnOut = x.features;
  } else cnnOut = audioFeatures(features!, m, x.wave!);
  const h = embedFeatures(rest, cnnOut, x.frameMask, x.timeMask ?? null, m, keys);
  x.timeMask?.dispose();
  const out = runAudioBlocks(enc.layers, h, alibiScale, x.frameMask, m, keys);
  x.frameMask.dispose();
  return out;
}

type Trainable = { encoder: { shared: Omit<AudioShared, "features"> & Partial<Pick<AudioShared, "features">>; layers: AudioEncoderParams["layers"] }; head: LinearParams };

const FINETUNE_ADAM = { beta1: 0.9, beta2: 0.98, eps: 1e-8, clipNorm: 0 };

export type CtcEpochRecord = { epoch: number; step: number; loss: number; skipped: number };

/**
 * CTC fine-tuning. Loss per utterance is divided by its label count and averaged over the batch (PyTorch's
 * "mean" reduction); utterances with no feasible alignment contribute nothing (zero_infinity) and are counted.
 */
export async function finetuneCtc(params: CtcParams, m: AudioModelConfig, train: Utterance[], s: CtcSettings, opts: { quiet?: boolean; onEpoch?: (r: CtcEpochRecord) => void } = {}): Promise<{ params: CtcParams; history: CtcEpochRecord[] }> {
  if (train.length === 0) throw new DataError("no training utterances");
  const clips = train.map((u) => u.clip);
  const vocabSize = params.head.weight.shape[1];
  const channels = featureChannels(m);
  const frozenFeatures = s.freezeFeatureEncoder ? params.encoder.shared.features : null;
  const cached = frozenFeatures ? await cacheFeatures(frozenFeatures, m, clips, s.batchSize, s.maxBatchSeconds) : null;
  let trainable: Trainable;
  if (frozenFeatures) {
    const { features: _f, ...rest } = params.encoder.shared;
    trainable = { encoder: { shared: rest, layers: params.encoder.layers }, head: params.head };
  } else trainable = params as Trainable;

  const logitsOf = (t: Trainable, x: Inputs, key: np.Array) => {
    const keys = new KeyStream(key);
    const h = encodeInputs(t.encoder, x, m, keys);
    keys.close();
    return linear(t.head, h);
  };
  const forward = new PerShape(() => compile(logitsOf));
  const opt: AdamWConfig = { ...FINETUNE_ADAM, weightDecay: s.weightDecay };
  // The surrogate Σ logits · ∂L/∂logits has the same parameter gradient as the CTC loss.
  const surrogateGrad = gradOf((t: Trainable, x: Inputs, key: np.Array, cotangent: np.Array) => logitsOf(t, x, key).mul(cotangent).sum());
  /** A fused update (gradients and AdamW); `lrScales`, captured as constants, scales each parameter's learning rate. */
  const updateStep =
    (lrScales: Trainable | undefined) =>
    (t: Trainable, o: AdamWState, x: Inputs, key: np.Array, cotangent: np.Array, lr: np.Array): [Trainable, AdamWState] => {
      const grads = surrogateGrad(refTree(t), x, key, cotangent);
      const [t2, o2] = adamwUpdate(grads, o, t, lr, opt, lrScales && refTree(lrScales));
      return [t2, o2];
    };
  const step = new PerShape(() => compile(updateStep(undefined)));
  // The head-only warm-up: the encoder's learning rate (step and weight decay) is 0, the head's 1.
  const headOnly = s.headOnlyUpdates ?? 0;
  const warmScales = headOnly > 0 ? fillTree(trainable, (name) => np.array(name.startsWith("encoder.") ? 0 : 1)) : null;
  const warmStep = new PerShape(() => compile(updateStep(warmScales ?? undefined)));
  // Without a fused update (accumulation, or the moments on the host) the compiled step computes gradients only.
  const gradStep = new PerShape(() => compile((t: Trainable, x: Inputs, key: np.Array, cotangent: np.Array): Trainable => surrogateGrad(t, x, key, cotangent)));

  const rng = HostRng.seeded(s.seed);
  const buckets = durationBatches(clips.map((c) => c.samples.length), m, s.batchSize, s.maxBatchSeconds);
  const accumulate = s.accumulate ?? 1;
  // The schedule counts optimizer updates: with accumulation, one per `accumulate` batches (and one at an epoch's end).
  const total = Math.ceil(buckets.length / accumulate) * s.epochs;
  const schedule: ScheduleConfig = { kind: "cosine", peakLr: s.lr, warmupSteps: Math.round(s.warmupFraction * total), totalSteps: total };
  const updates = await AdamWUpdates.create(trainable, opt, s);
  const progress = new Progress("finetune-ctc", buckets.length * s.epochs, 0, { quiet: opts.quiet });
  const history: CtcEpochRecord[] = [];
  let update = 0;
  let batchIndex = 0;
  try {
    for (let epoch = 0; epoch < s.epochs; epoch++) {
      let lossSum = 0;
      let counted = 0;
      let skipped = 0;
      // Shuffled batches, grouped by shape (the groups in a shuffled order).
      const shapeKey = (k: number) => `${buckets[k].shape.rows}x${buckets[k].shape.samples}`;
      const groupRank = new Map(rng.shuffle([...new Set(buckets.map((_, k) => shapeKey(k)))]).map((key, i) => [key, i]));
      const order = rng.shuffle(buckets.map((_, i) => i)).sort((a, b) => groupRank.get(shapeKey(a))! - groupRank.get(shapeKey(b))!);
      for (const [position, k] of order.entries()) {
        const { rows, shape: batchShape } = buckets[k];
        const size = batchShape.rows;
        const b = hostBatch(clips, rows, batchShape, m, { spanStartProb: s.maskProb, length: s.maskLength, rng });
        const key = stepKey(s.seed, batchIndex);
        const shape = shapeKey(k);
        const logits = (await forward.get(shape)(refTree(trainable), deviceInputs(b, cached, channels), key.ref).data()) as Float32Array;
        const cotangent = new Float32Array(size * b.frames * vocabSize);
        b.rows.forEach((r, i) => {
          const rowLogits = logits.subarray(i * b.frames * vocabSize, (i * b.frames + b.frameLengths[i]) * vocabSize);
          const { loss, grad: g } = ctcLoss(rowLogits, b.frameLengths[i], vocabSize, train[r].labels, BLANK);
          if (!Number.isFinite(loss)) {
            skipped++;
            return;
          }
          const scale = 1 / (Math.max(1, train[r].labels.length) * b.rows.length);
          lossSum += loss / Math.max(1, train[r].labels.length);
          counted++;
          const base = i * b.frames * vocabSize;
          for (let j = 0; j < g.length; j++) cotangent[base + j] = g[j] * scale;
        });
        const cot = np.array(cotangent).reshape([size, b.frames, vocabSize]);
        const warm = update < headOnly;
        if (updates.fused) {
          [trainable, updates.state] = (warm ? warmStep : step).get(shape)(trainable, updates.state!, deviceInputs(b, cached, channels), key, cot, np.array(learningRate(schedule, update)));
          update++;
        } else {
          const grads = gradStep.get(shape)(refTree(trainable), deviceInputs(b, cached, channels), key, cot);
          if (await updates.add(grads, position === order.length - 1)) {
            trainable = await updates.apply(trainable, learningRate(schedule, update), warm ? refTree(warmScales!) : undefined);
            update++;
          }
        }
        batchIndex++;
        await progress.update(batchIndex, { epoch: String(epoch + 1), loss: (lossSum / Math.max(1, counted)).toFixed(3) });
      }
      const record = { epoch: epoch + 1, step: update, loss: lossSum / Math.max(1, counted), skipped };
      history.push(record);
      opts.onEpoch?.(record);
    }
  } finally {
    progress.stop();
    updates.dispose();
    if (warmScales) disposeTree(warmScales);
    forward.dispose();
    step.dispose();
    warmStep.dispose();
    gradStep.dispose();
  }
  const encoder = { shared: { ...trainable.encoder.shared, features: frozenFeatures ?? trainable.encoder.shared.features! }, layers: trainable.encoder.layers } as AudioEncoderParams;
  return { params: { encoder, head: trainable.head }, history };
}

/** Runs `head ∘ encoder` over the clips in duration batches (no dropout, no masking); rows [frames × width] per clip. */
async function framewise<P>(params: P, apply: (p: P, h: np.Array) => np.Array, encoderOf: (p: P) => AudioEncoderParams, width: number, m: AudioModelConfig, clips: Clip[], batchSize: number, maxBatchSeconds: number): Promise<{ rows: Float32Array; frames: number }[]> {
  const forward = new PerShape(() => compile((p: P, x: Inputs) => apply(p, encodeInputs(encoderOf(p), x, m, null))));
  const out: { rows: Float32Array; frames: number }[] = new Array(clips.length);
  try {
    for (const { rows, shape } of durationBatches(clips.map((c) => c.samples.length), m, batchSize, maxBatchSeconds)) {
      const b = hostBatch(clips, rows, shape, m, null);
      const y = (await forward.get(`${shape.rows}x${shape.samples}`)(refTree(params), deviceInputs(b, null, 0)).data()) as Float32Array;
      rows.forEach((r, i) => {
        const n = b.frameLengths[i];
        out[r] = { rows: y.slice(i * b.frames * width, (i * b.frames + n) * width), frames: n };
      });
    }
  } finally {
    forward.dispose();
  }
  return out;
}

/** Per-frame log-probabilities of each clip ([frames × V] rows), no dropout. Does not consume params. */
export async function ctcLogProbs(params: CtcParams, m: AudioModelConfig, clips: Clip[], batchSize: number, maxBatchSeconds = 8): Promise<{ logProbs: Float64Array; frames: number }[]> {
  const vocabSize = params.head.weight.shape[1];
  const logits = await framewise(params, (p, h) => linear(p.head, h), (p) => p.encoder, vocabSize, m, clips, batchSize, maxBatchSeconds);
  return logits.map(({ rows, frames }) => ({ logProbs: logSoftmax(rows, frames, vocabSize), frames }));
}

/** The encoder's final states of each clip ([frames × D] rows), no dropout or masking. Does not consume it. */
export async function encoderStates(encoder: AudioEncoderParams, m: AudioModelConfig, clips: Clip[], batchSize: number, maxBatchSeconds = 8): Promise<{ rows: Float32Array; frames: number }[]> {
  return framewise(encoder, (_p, h) => h, (p) => p, m.dim, m, clips, batchSize, maxBatchSeconds);
}

/** Transcripts of each clip: greedy decoding, or prefix beam search with `beam` > 1. Does not consume params. */
export async function transcribeClips(params: CtcParams, m: AudioModelConfig, vocab: string[], clips: Clip[], o: { batchSize?: number; maxBatchSeconds?: number; beam?: number } = {}): Promise<string[]> {
  const all = await ctcLogProbs(params, m, clips, o.batchSize ?? 8, o.maxBatchSeconds);
  const v = vocab.length;
  return all.map(({ logProbs, frames }) => {
    if ((o.beam ?? 1) > 1) return labelsToText(ctcBeamSearch(logProbs, frames, v, o.beam!, BLANK), vocab);
    const ids = Array.from({ length: frames }, (_, t) => {
      let best = 0;
      for (let k = 1; k < v; k++) if (logProbs[t * v + k] > logProbs[t * v + best]) best = k;
      return best;
    });
    return ctcGreedyDecode(ids, vocab, BLANK);
  });
}

/** The clips' transcripts as hypotheses are written (upper case, single spaces): what CER and WER compare against. */
export function referenceTranscripts(clips: Clip[]): string[] {
  return clips.map((c) => (c.transcript ?? "").toUpperCase().trim().replace(/\s+/g, " "));
}

/** CER and WER (corpus level) of the model's transcripts against the clips' transcripts. */
export async function evaluateCtc(params: CtcParams, m: AudioModelConfig, vocab: string[], clips: Clip[], o: { batchSize?: number; maxBatchSeconds?: number; beam?: number } = {}) {
  const hyps = await transcribeClips(params, m, vocab, clips, o);
  const refs = referenceTranscripts(clips);
  return { cer: charErrorRate(refs, hyps), wer: wordErrorRate(refs, hyps), utterances: clips.length, hypotheses: hyps };
}

// ---------------------------------------------------------------------------------------------------------
// Audio classification: the mean of the real frames' final states → linear head.
