/** data2vec pretraining on unlabeled speech: audio folder or manifest → bucketed random crops + span masks, through `runPretraining`. */
import { numpy as np } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import type { HostRng } from "../engine/random.js";
import { exampleBatches, runPretraining, type PretrainAdapter, type PretrainRunOptions, type PretrainRunResult } from "../train/pretrain-runner.js";
import { audioRunConfig, spanMaskSettings, type AudioRunConfig } from "./config.js";
import { lengthBuckets, loadClips, totalSeconds, unlabeledEntries, type Clip } from "./data.js";
import { spanMask, type SpanMaskSettings } from "./masking.js";
import { audioModality, frameMaskArray, framesForSamples, initAudioData2Vec, type AudioPretrainBatch, type AudioShared } from "./model.js";

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
  const crop = Math.round(cfg.data.cropSeconds * m.sampleRate);
  const b = rows.length;
  const wave = new Float32Array(b * crop);
  const lengths = rows.map((r, i) => {
    const s = clips[r].samples;
    const offset = s.length > crop ? rng.int(0, s.length - crop) : 0;
    const piece = s.subarray(offset, offset + crop);
    wave.set(piece, i * crop);
    return piece.length;
  });
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
export function audioPretraining(): PretrainAdapter<AudioRunConfig, Clip, AudioShared, AudioPretrainBatch> {
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
      return {
        cfg,
        modality: audioModality(cfg.model),
        init: (seed) => initAudioData2Vec(cfg, seed),
        // One item is a whole bucket of clips of similar length.
        batches: exampleBatches(buckets.length, 1, { item: "batches", unit: "audio-s" }, ([bucket], rng) => {
          const { batch, seconds } = clipBatch(clips, buckets[bucket], cfg, rng);
          return { batch, units: seconds };
        }),
      };
    },
  };
}

export async function pretrainAudio(o: AudioPretrainOptions): Promise<PretrainRunResult> {
  return runPretraining(audioPretraining(), { ...o, given: o.clips });
}
