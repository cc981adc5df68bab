/**
 * Loading any data2vec Hugging Face directory, and running inputs through its processor and model exactly as
 * transformers does, with every output under the tensor names the reference fixtures use.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { numpy as np, nn as jnn } from "../engine/jax.js";
import { DataError, VocabError } from "../engine/errors.js";
import { f32Tensor, i32Tensor, i64Tensor, type HostTensor } from "../engine/safetensors.js";
import { readJsonFile, validate } from "../config/validate.js";
import { normalizeClip, readWav, resample } from "../audio/io.js";
import { BpeTokenizer } from "../text/bpe.js";
import { architectureOf } from "./config.js";
import { audioForward, ctcGreedyDecode, loadHfAudio, type HfAudioModel } from "./audio.js";
import { imageProcessorConfig, processImages, tokenizeBatch } from "./processors.js";
import { loadHfText, textForward, type HfTextModel } from "./text.js";
import { loadHfVision, visionForward, type HfVisionModel } from "./vision.js";
import { readHfDirectory, type WeightsFormat } from "./weights.js";

export type HfModel = HfTextModel | HfVisionModel | HfAudioModel;

/** Whether `dir` looks like a Hugging Face data2vec directory (rather than one of our checkpoints). */
export function isHfModelDir(dir: string): boolean {
  const path = join(dir, "config.json");
  if (!existsSync(path)) return false;
  try {
    const c = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    return typeof c.model_type === "string" || Array.isArray(c.architectures);
  } catch {
    return false;
  }
}

export function loadHfModel(dir: string, format?: WeightsFormat): HfModel {
  const d = readHfDirectory(dir, format);
  const { modelType, architecture } = architectureOf(d.config, join(dir, "config.json"));
  if (modelType === "data2vec-text") return loadHfText(d, architecture);
  if (modelType === "data2vec-vision") return loadHfVision(d, architecture);
  return loadHfAudio(d, architecture);
}

const featureExtractorSchema = z.looseObject({
  sampling_rate: z.number().int().positive().default(16000),
  do_normalize: z.boolean().default(true),
  padding_value: z.number().default(0),
  return_attention_mask: z.boolean().default(true),
});

/** Wav2Vec2FeatureExtractor over WAV files: mono, resampled to the extractor's rate, normalized per clip, right-padded. */
export function processAudio(dir: string, files: string[]): { values: Float32Array; batch: number; length: number; lengths: number[]; attentionMask: boolean } {
  const path = join(dir, "preprocessor_config.json");
  const c = validate(featureExtractorSchema, existsSync(path) ? readJsonFile(path, "preprocessor config") : {}, path);
  const clips = files.map((f) => {
    const a = readWav(f);
    const x = a.sampleRate === c.sampling_rate ? a.samples : resample(a.samples, a.sampleRate, c.sampling_rate);
    return c.do_normalize ? normalizeClip(x) : x;
  });
  const length = Math.max(...clips.map((x) => x.length));
  const values = new Float32Array(clips.length * length).fill(c.padding_value);
  clips.forEach((x, i) => values.set(x, i * length));
  return { values, batch: clips.length, length, lengths: clips.map((x) => x.length), attentionMask: c.return_attention_mask };
}

/** The CTC vocabulary (`vocab.json`, id order) of an audio model directory. */
export function ctcVocabulary(dir: string): string[] {
  const path = join(dir, "vocab.json");
  if (!existsSync(path)) throw new VocabError(`${dir} has no vocab.json; transcription needs the model's character vocabulary`);
  const v = readJsonFile(path, "CTC vocabulary") as Record<string, number>;
  const out: string[] = [];
  for (const [tok, id] of Object.entries(v)) out[id] = tok;
  return out;
}

async function f32(a: np.Array): Promise<HostTensor> {
  const shape = a.shape;
  return f32Tensor(shape, (await a.data()) as Float32Array);
}

/** The per-position argmax of logits [..., V], with the shape of the leading axes. Consumes `logits`. */
async function argmaxIds(logits: np.Array): Promise<Int32Array> {
  return (await np.argmax(logits, -1).astype(np.int32).data()) as Int32Array;
}

export type RunResult = { tensors: Map<string, HostTensor>; /** Human-readable results: decoded strings or labels. */ summary: unknown[] };

/**
 * Runs `inputs` (texts, image files or WAV files, by the model's modality) as one batch through the
 * processor and the model, and returns every output under the fixtures' tensor names.
 */
export async function runHfModel(m: HfModel, dir: string, inputs: string[]): Promise<RunResult> {
  if (inputs.length === 0) throw new DataError("no inputs given: pass texts, image files or audio files (by the model's modality)");
  const out = new Map<string, HostTensor>();
  const summary: unknown[] = [];
  if (m.modality === "text") {
    const tok = loadTokenizer(dir);
    const { ids, mask, batch, seqLen } = tokenizeBatch(tok, inputs);
    const r = textForward(m, ids, mask, batch, seqLen);
    out.set("input_ids", i64Tensor([batch, seqLen], ids));
    out.set("attention_mask", i64Tensor([batch, seqLen], mask));
    out.set("hidden_states", await f32(r.hiddenStates));
    out.set("last_hidden_state", await f32(r.lastHiddenState));
    if (r.poolerOutput) out.set("pooler_output", await f32(r.poolerOutput));
    if (r.logits) {
      const logits = r.logits;
      if (m.mlm) {
        out.set("logits_argmax", i64Tensor([batch, seqLen], await argmaxIds(logits.ref)));
        out.set("logits_max", await f32(logits.ref.max(-1)));
        out.set("logits_logsumexp", await f32(jnn.logsumexp(logits.ref, -1)));
      } else {
        const ids = await argmaxIds(logits.ref);
        summary.push(...Array.from(ids, (i) => m.labels?.[i] ?? i));
      }
      out.set("logits", await f32(logits));
    }
    return { tensors: out, summary };
  }
  if (m.modality === "vision") {
    const { pixels, shape } = await processImages(inputs, imageProcessorConfig(dir, m.hf.image_size), m.hf.num_channels);
    out.set("pixel_values", f32Tensor(shape, pixels));
    const r = visionForward(m, np.array(pixels).reshape(shape));
    out.set("hidden_states", await f32(r.hiddenStates));
    out.set("last_hidden_state", await f32(r.lastHiddenState));
    if (r.poolerOutput) out.set("pooler_output", await f32(r.poolerOutput));
    if (r.logits) {
      summary.push(...Array.from(await argmaxIds(r.logits.ref), (i) => m.labels?.[i] ?? i));
      out.set("logits", await f32(r.logits));
    }
    return { tensors: out, summary };
  }
  const a = processAudio(dir, inputs);
  out.set("input_values", f32Tensor([a.batch, a.length], a.values));
  const sampleMask = new Int32Array(a.batch * a.length);
  a.lengths.forEach((n, i) => sampleMask.fill(1, i * a.length, i * a.length + n));
  if (a.attentionMask) out.set("attention_mask", i32Tensor([a.batch, a.length], sampleMask));
  const r = audioForward(m, np.array(a.values).reshape([a.batch, a.length]), a.attentionMask ? a.lengths : null);
  const t = r.lastHiddenState.shape[1];
  out.set("extract_features", await f32(r.extractFeatures));
  const frameMask = new Int32Array(a.batch * t);
  r.frameLengths.forEach((n, i) => frameMask.fill(1, i * t, i * t + n));
  if (a.attentionMask) out.set("frame_attention_mask", i32Tensor([a.batch, t], frameMask));
  out.set("hidden_states", await f32(r.hiddenStates));
  out.set("last_hidden_state", await f32(r.lastHiddenState));
  if (r.logits && m.ctcHead) {
    const ids = await argmaxIds(r.logits.ref);
    out.set("predicted_ids", i64Tensor([a.batch, t], ids));
    const vocab = ctcVocabulary(dir);
    // Decode only each clip's real frames (padded frames carry no speech).
    summary.push(...r.frameLengths.map((n, i) => ctcGreedyDecode(ids.subarray(i * t, i * t + n), vocab, m.hf.pad_token_id)));
  } else if (r.logits) summary.push(...Array.from(await argmaxIds(r.logits.ref), (i) => m.labels?.[i] ?? i));
  if (r.logits) out.set("logits", await f32(r.logits));
  return { tensors: out, summary };
}

export function loadTokenizer(dir: string): BpeTokenizer {
  if (!existsSync(join(dir, "vocab.json")) || !existsSync(join(dir, "merges.txt"))) {
    throw new VocabError(`${dir} lacks vocab.json and merges.txt; copy the model's tokenizer files next to its config.json`);
  }
  return BpeTokenizer.load(dir);
}
