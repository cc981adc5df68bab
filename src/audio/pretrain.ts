/** data2vec pretraining on unlabeled speech: audio folder or manifest → bucketed random crops + span masks → `pretrain`. */
import { join, resolve } from "node:path";
import { numpy as np, tree } from "../engine/jax.js";
import { ConfigError, DataError, type StopSignal } from "../engine/errors.js";
import { HostRng } from "../engine/random.js";
import { firstEpoch, freshPretrainState, loadPretrainState, nextRows, openPretrainRun, pretrain, runSetup, type EpochOrder, type PretrainData, type PretrainRecord } from "../train/pretrain.js";
import { parseAudioRunConfig, type AudioRunConfig } from "./config.js";
import { lengthBuckets, loadClips, totalSeconds, unlabeledEntries, type Clip } from "./data.js";
import { spanMask, type SpanMaskSettings } from "./masking.js";
import { audioModality, frameMaskArray, framesForSamples, initAudioData2Vec, type AudioPretrainBatch } from "./model.js";

export type AudioPretrainOptions = {
  config: AudioRunConfig;
  /** A folder of WAV/FLAC files (recursive) or a fairseq .tsv manifest. */
  data?: string;
  /** Clips given directly (at the model's rate, normalized as the config says) instead of `data`. */
  clips?: Clip[];
  outDir: string;
  resume?: boolean;
  resumeSteps?: number;
  force?: boolean;
  quiet?: boolean;
  stopAfter?: number;
  onUpdate?: (record: PretrainRecord) => void;
  log?: (msg: string) => void;
};

type AudioSource = { path: string } | { caller: true };
type StreamState = EpochOrder & { rng: number[]; source: AudioSource };

/**
 * Shuffled epochs over length buckets; each clip is cropped at a random offset to the crop length, or padded
 * to it (with a frame mask) when shorter, so every batch has one shape: jax-js keeps working memory per
 * compiled shape, and a handful of shapes would exhaust the 4 GiB of wasm32 memory. Each batch gets span
 * masks with the same count per row. Everything is drawn from a resumable RNG.
 */
export class AudioStream implements PretrainData<AudioPretrainBatch> {
  unitName = "audio-s";
  #units = 0;
  #s: StreamState;
  #buckets: number[][];
  constructor(
    private clips: Clip[],
    private cfg: AudioRunConfig,
    saved: StreamState | null,
    source: AudioSource,
  ) {
    // Whole batches only: a short last bucket would compile one more shape for a few clips.
    const buckets = lengthBuckets(clips.map((c) => c.samples.length), cfg.train.batchSize);
    this.#buckets = buckets.filter((b) => b.length === cfg.train.batchSize);
    if (saved) this.#s = structuredClone(saved);
    else {
      const rng = HostRng.seeded(cfg.train.seed);
      this.#s = { ...firstEpoch(this.#buckets.length, rng), rng: rng.state(), source };
    }
  }
  get unitsPerBatch(): number {
    return this.#units;
  }
  next(): AudioPretrainBatch {
    const m = this.cfg.model;
    const rng = HostRng.fromState(this.#s.rng);
    const rows = this.#buckets[nextRows(this.#s, 1, rng)[0]];
    const crop = Math.round(this.cfg.data.cropSeconds * m.sampleRate);
    const b = rows.length;
    const wave = new Float32Array(b * crop);
    const lengths = rows.map((r, i) => {
      const s = this.clips[r].samples;
      const offset = s.length > crop ? rng.int(0, s.length - crop) : 0;
      const piece = s.subarray(offset, offset + crop);
      wave.set(piece, i * crop);
      return piece.length;
    });
    const frames = framesForSamples(crop, m.convLayers);
    const frameLengths = lengths.map((n) => framesForSamples(n, m.convLayers));
    // Without jitter both views are the real frames (and the RNG is drawn as before jitter existed).
    const views =
      this.cfg.masking.edgeJitter === 0
        ? { student: frameMaskArray(lengths, frames, m), teacher: null, mask: Float32Array.from(spanMask(frameLengths, frames, this.cfg.masking, rng)) }
        : jitteredViews(frameLengths, frames, this.cfg.masking, rng);
    this.#s.rng = rng.state();
    this.#units = lengths.reduce((a, n) => a + n, 0) / m.sampleRate;
    const device = (rows: Float32Array) => np.array(rows).reshape([b, frames]);
    return {
      wave: np.array(wave).reshape([b, crop]),
      frameMask: device(views.student),
      mask: device(views.mask),
      ...(views.teacher ? { teacherFrameMask: device(views.teacher) } : {}),
    };
  }
  state(): StreamState {
    return structuredClone(this.#s);
  }
}

/**
 * The student's and the teacher's frames ([rows × frames], 1 = in the view) when each view drops 0 to
 * `edgeJitter` frames at each end of a row, independently, and span masks ([rows × frames], 1 = masked)
 * placed inside the frames both views keep, with the same count in every row. Rows must be longer than
 * 2 · edgeJitter + spanLength frames (the config checks this against `data.minSeconds`).
 */
export function jitteredViews(frameLengths: number[], frames: number, s: SpanMaskSettings & { edgeJitter: number }, rng: HostRng): { student: Float32Array; teacher: Float32Array; mask: Float32Array } {
  const rows = frameLengths.length;
  const student = new Float32Array(rows * frames);
  const teacher = new Float32Array(rows * frames);
  const common = frameLengths.map((n, i) => {
    const draw = () => [rng.int(0, s.edgeJitter), rng.int(0, s.edgeJitter)];
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

/** Unlabeled clips of a source at the model's rate, without those shorter than `data.minSeconds`. */
export async function loadPretrainClips(cfg: AudioRunConfig, source: AudioSource, clips: Clip[] | undefined, log: (msg: string) => void): Promise<Clip[]> {
  let all: Clip[];
  if ("caller" in source) {
    if (!clips) throw new ConfigError("this run was started with clips passed through the API; pass the same `clips` to resume it");
    all = clips;
  } else {
    const entries = unlabeledEntries(source.path);
    log(`decoding ${entries.length} audio files from ${source.path}`);
    all = await loadClips(entries, cfg.model.sampleRate, cfg.model.normalize, source.path);
  }
  const min = Math.round(cfg.data.minSeconds * cfg.model.sampleRate);
  const kept = all.filter((c) => c.samples.length >= min);
  if (kept.length < all.length) log(`left out ${all.length - kept.length} clips shorter than data.minSeconds = ${cfg.data.minSeconds} s`);
  return kept;
}

export async function pretrainAudio(o: AudioPretrainOptions): Promise<{ records: PretrainRecord[]; checkpoint: string; interrupted: StopSignal | null }> {
  const log = o.log ?? (() => {});
  const { ckpt, saved } = openPretrainRun(o.outDir, o);
  let cfg = o.config;
  if (saved) {
    const savedConfig = parseAudioRunConfig(saved.config, join(ckpt, "config.json"));
    cfg = { ...savedConfig, train: { ...savedConfig.train, steps: o.resumeSteps ?? savedConfig.train.steps } };
  }
  const savedSource = (saved?.source ?? null) as AudioSource | null;
  let source: AudioSource;
  if (o.clips) source = { caller: true };
  else if (o.data) source = { path: resolve(o.data) };
  else if (savedSource) source = savedSource;
  else throw new DataError("speech pretraining needs unlabeled audio: pass --data with a folder of WAV/FLAC files or a .tsv manifest (make a synthetic corpus with `d2v data synth-speech`)");
  const clips = await loadPretrainClips(cfg, source, o.clips, log);
  if (clips.length < cfg.train.batchSize) {
    throw new DataError(`${clips.length} usable clips are fewer than one batch (${cfg.train.batchSize}); add audio or lower train.batchSize`);
  }
  log(`${clips.length} clips, ${(totalSeconds(clips, cfg.model.sampleRate) / 3600).toFixed(2)} h of unlabeled audio`);

  const fresh = initAudioData2Vec(cfg, cfg.train.seed);
  let state;
  let dataState: StreamState | null = null;
  if (o.resume) {
    const loaded = loadPretrainState(ckpt, fresh, cfg.data2vec.emaShared);
    state = loaded.state;
    dataState = loaded.data as StreamState;
    const buckets = Math.floor(clips.length / cfg.train.batchSize);
    if (dataState.order.length !== buckets) {
      throw new DataError(`the audio changed since the checkpoint was written (${dataState.order.length} batches then, ${buckets} now); resume with the original --data or start a new run`);
    }
    log(`resuming at update ${state.step} of ${cfg.train.steps} with the run's saved settings${o.resumeSteps !== undefined ? ` (--steps ${o.resumeSteps} applied)` : ""}`);
  } else state = freshPretrainState(fresh, cfg.data2vec.emaShared);

  const result = await pretrain(
    runSetup(audioModality(cfg.model), cfg, { outDir: o.outDir, quiet: o.quiet, stopAfter: o.stopAfter, onUpdate: o.onUpdate, log: o.log }),
    state,
    new AudioStream(clips, cfg, dataState, source),
  );
  tree.dispose(result.state as never);
  return { records: result.records, checkpoint: ckpt, interrupted: result.interrupted };
}
