/** data2vec pretraining on unlabeled speech: audio folder or manifest → bucketed random crops + span masks, through `runPretraining`. */
import { numpy as np } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import type { HostRng } from "../engine/random.js";
import { anyPrepared, exampleBatches, runPretraining, type PretrainAdapter, type PretrainRunOptions, type PretrainRunResult } from "../train/pretrain-runner.js";
import type { ParamTree } from "../engine/tree.js";
import { disposeTree } from "../engine/typed.js";
import { data2vecObjective } from "../data2vec/step.js";
import { data2vec2Objective, settingsV2, viewArrays, type Data2Vec2Params } from "../data2vec2/model.js";
import { audioModality2, initContext, initData2Vec2, type AudioLocal, type AudioV2Batch, type AudioV2Config } from "../data2vec2/modalities.js";
import { viewLayout } from "../data2vec2/views.js";
import { spanBlockMasks } from "../data2vec2/masking.js";
import { v2UpdateShape } from "../data2vec2/decoder.js";
import { type V2StepShape } from "../train/memory-plan.js";
import { audioRunConfig, spanMaskSettings, type AudioRunConfig } from "./config.js";
import { lengthBuckets, loadClips, totalSeconds, unlabeledEntries, type Clip } from "./data.js";
import { spanMask, type SpanMaskSettings } from "./masking.js";
import { audioModality, frameMaskArray, framesForSamples, initAudioData2Vec, initAudioEncoder, type AudioPretrainBatch } from "./model.js";
import { featureActivations } from "./logmel.js";

export type AudioPretrainOptions = Omit<PretrainRunOptions<AudioRunConfig, Clip>, "given"> & {
  /** Clips given directly (at the model's rate, normalized as the config says) instead of `data` (a folder of WAV/FLAC files or a fairseq .tsv manifest). */
  clips?: Clip[];
};

/**
 * A batch of these clips (one length bucket): each is cropped at a random offset to the crop length, or padded to
 * it (with a frame mask) when shorter, so every batch has one shape: jax-js keeps working memory per compiled
 * shape, and a handful of shapes would exhaust the 4 GiB of wasm32 memory. Span masks have the same count per row.
 */
export function clipBatch(clips: Clip[], rows: number[], cfg: AudioRunConfig, rng: HostRng): { batch: AudioPretrainBatch; seconds: number } {
  const m = cfg.model;
  const { wave, lengths, crop } = cropClips(clips, rows, cfg, rng);
  const b = rows.length;
  const frames = framesForSamples(crop, m.convLayers);
  const frameLengths = lengths.map((n) => framesForSamples(n, m.convLayers));
  const masking = spanMaskSettings(cfg.masking);
  // Without jitter both views are the real frames (and the RNG is drawn as before jitter existed).
  const views =
    cfg.masking.edgeJitter === 0
      ? { student: frameMaskArray(lengths, frames, m), teacher: null, mask: Float32Array.from(spanMask(frameLengths, frames, masking, rng)) }
      : jitteredViews(frameLengths, frames, masking, cfg.masking.edgeJitter, rng);
  const device = (rows: Float32Array) => np.array(rows).reshape([b, frames]);
  const batch = {
    wave: np.array(wave).reshape([b, crop]),
    frameMask: device(views.student),
    mask: device(views.mask),
    ...(views.teacher ? { teacherFrameMask: device(views.teacher) } : {}),
  };
  return { batch, seconds: lengths.reduce((a, n) => a + n, 0) / m.sampleRate };
}

/** The clips of `rows` cropped at random offsets to the crop length (shorter ones zero-padded): [B·crop] and their lengths. */
function cropClips(clips: Clip[], rows: number[], cfg: AudioRunConfig, rng: HostRng): { wave: Float32Array; lengths: number[]; crop: number } {
  const crop = Math.round(cfg.data.cropSeconds * cfg.model.sampleRate);
  const wave = new Float32Array(rows.length * crop);
  const lengths = rows.map((r, i) => {
    const s = clips[r].samples;
    const offset = s.length > crop ? rng.int(0, s.length - crop) : 0;
    const piece = s.subarray(offset, offset + crop);
    wave.set(piece, i * crop);
    return piece.length;
  });
  return { wave, lengths, crop };
}

/**
 * The student's and the teacher's frames ([rows × frames], 1 = in the view) when each view drops 0 to
 * `edgeJitter` frames at each end of a row, independently, and span masks ([rows × frames], 1 = masked)
 * placed inside the frames both views keep, with the same count in every row. Rows must be longer than
 * 2 · edgeJitter + spanLength frames (the config checks this against `data.minSeconds`).
 */
export function jitteredViews(frameLengths: number[], frames: number, s: SpanMaskSettings, edgeJitter: number, rng: HostRng): { student: Float32Array; teacher: Float32Array; mask: Float32Array } {
  const rows = frameLengths.length;
  const student = new Float32Array(rows * frames);
  const teacher = new Float32Array(rows * frames);
  const common = frameLengths.map((n, i) => {
    const draw = () => [rng.int(0, edgeJitter), rng.int(0, edgeJitter)];
    const [sa, sb] = draw();
    const [ta, tb] = draw();
    student.fill(1, i * frames + sa, i * frames + n - sb);
    teacher.fill(1, i * frames + ta, i * frames + n - tb);
    return { start: Math.max(sa, ta), length: n - Math.max(sa, ta) - Math.max(sb, tb) };
  });
  const inner = spanMask(common.map((c) => c.length), frames, s, rng);
  const mask = new Float32Array(rows * frames);
  common.forEach(({ start, length }, i) => {
    for (let t = 0; t < length; t++) mask[i * frames + start + t] = inner[i * frames + t];
  });
  return { student, teacher, mask };
}

/** Speech for the pretraining runner: clips (no shorter than `data.minSeconds`) shuffled as whole length buckets. */
export function audioPretraining(): PretrainAdapter<AudioRunConfig, Clip, ParamTree, unknown> {
  return {
    config: audioRunConfig,
    describe: (c) => `${c.model.convLayers.length}-layer CNN, ${c.model.layers} blocks × ${c.model.dim}, ${c.train.steps} updates of ${c.train.batchSize} × ${c.data.cropSeconds} s`,
    dataName: "audio",
    givenName: "clips",
    defaultSource: { missing: "speech pretraining needs unlabeled audio: pass --data with a folder of WAV/FLAC files or a .tsv manifest (make a synthetic corpus with `d2v data synth-speech`)" },
    async load(cfg, source, given, log) {
      let all: Clip[];
      if ("caller" in source) all = given ?? [];
      else {
        const path = source.path as string;
        const entries = unlabeledEntries(path);
        log(`decoding ${entries.length} audio files from ${path}`);
        all = await loadClips(entries, cfg.model.sampleRate, cfg.model.normalize, path);
      }
      const min = Math.round(cfg.data.minSeconds * cfg.model.sampleRate);
      const clips = all.filter((c) => c.samples.length >= min);
      if (clips.length < all.length) log(`left out ${all.length - clips.length} clips shorter than data.minSeconds = ${cfg.data.minSeconds} s`);
      if (clips.length < cfg.train.batchSize) {
        throw new DataError(`${clips.length} usable clips are fewer than one batch (${cfg.train.batchSize}); add audio or lower train.batchSize`);
      }
      log(`${clips.length} clips, ${(totalSeconds(clips, cfg.model.sampleRate) / 3600).toFixed(2)} h of unlabeled audio`);
      return clips;
    },
    prepare(cfg, clips) {
      // Whole batches only: a short last bucket would compile one more shape for a few clips.
      const buckets = lengthBuckets(clips.map((c) => c.samples.length), cfg.train.batchSize).filter((b) => b.length === cfg.train.batchSize);
      if (cfg.data2vec.objective === "data2vec2") {
        return anyPrepared({
          cfg,
          loss: data2vec2Objective(audioModality2(audioV2Config(cfg.model)), cfg.data2vec),
          init: (seed) => initAudioData2Vec2(cfg, seed),
          batches: exampleBatches(buckets.length, 1, { item: "batches", unit: "audio-s" }, ([bucket], rng) => {
            const { batch, seconds } = clipViewsBatch(clips, buckets[bucket], cfg, rng);
            return { batch, units: seconds };
          }),
          v2Shape: audioV2Shape(cfg),
        });
      }
      return anyPrepared({
        cfg,
        loss: data2vecObjective(audioModality(cfg.model), cfg.data2vec),
        init: (seed) => initAudioData2Vec(cfg, seed),
        // One item is a whole bucket of clips of similar length.
        batches: exampleBatches(buckets.length, 1, { item: "batches", unit: "audio-s" }, ([bucket], rng) => {
          const { batch, seconds } = clipBatch(clips, buckets[bucket], cfg, rng);
          return { batch, units: seconds };
        }),
      });
    },
  };
}

/**
 * A data2vec 2.0 batch: the clips cropped (or padded) as for v1, and `cloneBatch` span masks of each clip's real
 * frames for the student, the same count in every view.
 */
export function clipViewsBatch(clips: Clip[], rows: number[], cfg: AudioRunConfig, rng: HostRng): { batch: AudioV2Batch; seconds: number } {
  const m = cfg.model;
  const { wave, lengths, crop } = cropClips(clips, rows, cfg, rng);
  const b = rows.length;
  const clones = settingsV2(cfg.data2vec).cloneBatch;
  const frames = framesForSamples(crop, m.convLayers);
  const viewLengths = lengths.flatMap((n) => Array.from({ length: clones }, () => framesForSamples(n, m.convLayers)));
  const mask = spanBlockMasks(viewLengths, frames, { ratio: cfg.masking.ratio, blockLength: cfg.masking.spanLength, probAdjust: cfg.masking.probAdjust }, rng);
  const batch = {
    wave: np.array(wave).reshape([b, crop]),
    frameMask: np.array(frameMaskArray(lengths, frames, m)).reshape([b, frames]),
    views: viewArrays(viewLayout(mask, b, clones, frames)),
  };
  return { batch, seconds: lengths.reduce((a, n) => a + n, 0) / m.sampleRate };
}

/** The largest data2vec 2.0 update of a run (full crops) for the memory plan: the positional conv runs on every view. */
function audioV2Shape(cfg: AudioRunConfig): Omit<V2StepShape, "params"> {
  const m = cfg.model;
  const crop = Math.round(cfg.data.cropSeconds * m.sampleRate);
  const steps = framesForSamples(crop, m.convLayers);
  return v2UpdateShape({
    samples: cfg.train.batchSize,
    v2: settingsV2(cfg.data2vec),
    encoder: m,
    steps,
    visible: steps - Math.floor(steps * cfg.masking.ratio),
    extra: 0,
    decoderShape: { kind: "1d" },
    viewConvs: Array.from({ length: m.posConvLayers }, () => ({ taps: m.posConvKernel * m.dim, out: m.dim })),
    localFloats: featureActivations(crop, m),
  });
}

/** data2vec 2.0's speech model for a run config (the v1 model fields it shares). */
export function audioV2Config(m: AudioRunConfig["model"]): AudioV2Config {
  return {
    convLayers: m.convLayers,
    frontEnd: m.frontEnd,
    melBands: m.melBands,
    sampleRate: m.sampleRate,
    dim: m.dim,
    heads: m.heads,
    layerNormEps: m.layerNormEps,
    posConvLayers: m.posConvLayers,
    posConvKernel: m.posConvKernel,
    posConvGroups: m.posConvGroups,
    posConvPadding: m.posConvPadding,
    dropout: m.dropout,
    attentionDropout: m.attentionDropout,
    activationDropout: m.activationDropout,
  };
}

/** Fresh data2vec 2.0 parameters for speech: the CNN and projection, the context encoder (positions, ALiBi scale, norm), blocks, decoder. */
export function initAudioData2Vec2(cfg: AudioRunConfig, seed: number): Data2Vec2Params<AudioLocal> {
  const m = cfg.model;
  const v2 = settingsV2(cfg.data2vec);
  return initData2Vec2(seed, {
    local: (keys) => {
      const { shared, layers } = initAudioEncoder(keys, { ...m, layers: 0 });
      const { features, projectionNorm, projection, ...rest } = shared;
      disposeTree([layers, rest]);
      return { features, projectionNorm, projection };
    },
    context: (keys) => initContext(keys, { dim: m.dim, ffnDim: m.ffnDim, posConv: { layers: m.posConvLayers, kernel: m.posConvKernel, groups: m.posConvGroups }, alibiHeads: m.heads, norm: true, prenet: v2.prenetDepth ?? 0 }),
    dim: m.dim,
    ffnDim: m.ffnDim,
    layers: m.layers,
    decoder: v2.decoder,
    decoderShape: { kind: "1d" },
  });
}

export async function pretrainAudio(o: AudioPretrainOptions): Promise<PretrainRunResult> {
  return runPretraining(audioPretraining(), { ...o, given: o.clips });
}
