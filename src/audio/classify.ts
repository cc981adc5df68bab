/**
 * Audio classification (keyword spotting, speaker or sound classes): the mean of the real frames' final states →
 * a linear head, fine-tuned end to end on fixed-length crops, or a linear probe on the frozen encoder's features.
 */
import { numpy as np } from "../engine/jax.js";
import type { HostRng } from "../engine/random.js";
import { layerNorm, linear, maskedMean, type LinearParams } from "../nn/layers.js";
import type { KeyStream } from "../nn/random.js";
import { labelArrays, trainClassifier, type FinetuneBase, type Trained, type TrainingHooks } from "../train/finetune.js";
import { mapExamples } from "../train/inference.js";
import type { AudioModelConfig } from "./config.js";
import type { Clip } from "./data.js";
import { encodeAudio, frameMaskArray, framesForSamples, type AudioEncoderParams } from "./model.js";

/** AdamW for audio classification (fairseq's β2 and ε for speech fine-tuning, no clipping). */
const FINETUNE_ADAM = { beta1: 0.9, beta2: 0.98, eps: 1e-8, clipNorm: 0 };

/**
 * `projector`: transformers' Data2VecAudioForSequenceClassification projects every frame (D → classifier_proj_size)
 * before the mean; models fine-tuned from such a checkpoint keep it (the mean of projected frames is the projection
 * of the mean, so it is applied after pooling).
 */
export type AudioClassifierParams = { encoder: AudioEncoderParams; head: LinearParams; projector?: LinearParams };

/**
 * Logits [B, C] from waveforms [B, L] with frame mask [B, T]. Consumes params and inputs. `poolNorm`: a
 * non-affine layer norm on the pooled state. Pretrained final states share one dominant component across clips
 * (cosine ≈ 0.997 between clips), which a linear head on the raw mean cannot get past in a short fine-tuning.
 */
export function audioClassLogits(p: AudioClassifierParams, wave: np.Array, frameMask: np.Array, m: AudioModelConfig, keys: KeyStream | null, poolNorm = false): np.Array {
  let pooled = pooledStates(p.encoder, wave, frameMask, m, keys);
  if (p.projector) pooled = linear(p.projector, pooled);
  return linear(p.head, poolNorm ? layerNorm(null, pooled, m.layerNormEps) : pooled);
}

/** The mean of the real frames' final states [B, D]. Consumes the encoder and inputs. */
function pooledStates(encoder: AudioEncoderParams, wave: np.Array, frameMask: np.Array, m: AudioModelConfig, keys: KeyStream | null): np.Array {
  return maskedMean(encodeAudio(encoder, wave, frameMask, m, keys), frameMask);
}

/** A fixed-length clip: a random crop in training (when `rng`), else the first `samples`; shorter clips are padded. */
function cropClip(x: Float32Array, samples: number, rng: HostRng | null): Float32Array {
  if (x.length <= samples) return x;
  const offset = rng ? rng.int(0, x.length - samples) : 0;
  return x.subarray(offset, offset + samples);
}

type ClassBatch = { wave: np.Array; frameMask: np.Array; labels: np.Array; weights: np.Array };

function classInputs(clips: Clip[], rows: number[], batchSize: number, samples: number, m: AudioModelConfig, rng: HostRng | null) {
  const wave = new Float32Array(batchSize * samples);
  const lengths = rows.map((r, i) => {
    const x = cropClip(clips[r].samples, samples, rng);
    wave.set(x, i * samples);
    return x.length;
  });
  const frames = framesForSamples(samples, m.convLayers);
  const frameMask = frameMaskArray([...lengths, ...new Array(batchSize - rows.length).fill(samples)], frames, m);
  return { wave: np.array(wave).reshape([batchSize, samples]), frameMask: np.array(frameMask).reshape([batchSize, frames]) };
}

export type AudioClassifySettings = FinetuneBase & {
  maxSeconds: number;
  poolNorm?: boolean;
  /** The width of transformers' projector before the head (models fine-tuned from a Hugging Face classifier or bare model). */
  projector?: number;
  /** Set when the head is a linear probe on the frozen encoder's standardized features (`epochs` is then 0). */
  linearProbe?: { steps: number };
};

export async function finetuneAudioClassifier(params: AudioClassifierParams, m: AudioModelConfig, clips: Clip[], labels: number[], classes: number, s: AudioClassifySettings, opts: TrainingHooks = {}): Promise<Trained<AudioClassifierParams>> {
  const samples = Math.round(s.maxSeconds * m.sampleRate);
  return trainClassifier<AudioClassifierParams, ClassBatch>({
    params,
    examples: clips.length,
    settings: s,
    adam: FINETUNE_ADAM,
    batch: (rows, rng) => ({ ...classInputs(clips, rows, s.batchSize, samples, m, rng), ...labelArrays(labels, rows, s.batchSize, classes) }),
    logits: (p, b, keys) => audioClassLogits(p, b.wave, b.frameMask, m, keys, s.poolNorm ?? false),
    ...opts,
  });
}

/**
 * Runs a jitted `forward(params, wave, frameMask)` over every clip (its first `maxSeconds`) in fixed-size batches,
 * no dropout, and collects `width` outputs per clip. Does not consume params.
 */
function mapClips<P>(params: P, m: AudioModelConfig, clips: Clip[], batchSize: number, maxSeconds: number, width: number, forward: (p: P, wave: np.Array, frameMask: np.Array) => np.Array): Promise<Float32Array> {
  const samples = Math.round(maxSeconds * m.sampleRate);
  return mapExamples(params, clips.length, batchSize, width, (rows) => classInputs(clips, rows, batchSize, samples, m, null), (p, x) => forward(p, x.wave, x.frameMask));
}

/** Predicted class of every clip (its first `maxSeconds`). Does not consume params. */
export async function predictAudioClasses(params: AudioClassifierParams, m: AudioModelConfig, clips: Clip[], batchSize: number, maxSeconds: number, poolNorm = false): Promise<number[]> {
  const pred = await mapClips(params, m, clips, batchSize, maxSeconds, 1, (p, wave, mask) => np.argmax(audioClassLogits(p, wave, mask, m, null, poolNorm), -1));
  return Array.from(pred);
}

/** Mean-pooled final states [clips × D] of a frozen encoder (each clip's first `maxSeconds`). Does not consume it. */
export function pooledAudioFeatures(encoder: AudioEncoderParams, m: AudioModelConfig, clips: Clip[], batchSize: number, maxSeconds: number): Promise<Float32Array> {
  return mapClips(encoder, m, clips, batchSize, maxSeconds, m.dim, (e, wave, mask) => pooledStates(e, wave, mask, m, null));
}
