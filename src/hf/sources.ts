/**
 * Released Hugging Face checkpoints as starting points for fine-tuning and continued pretraining. The HF loaders
 * already build our networks (`HfTextModel.encoder` is a `TextEncoderParams`, and so on); this file turns a loaded
 * directory into what training needs: a run config that describes the same network (sizes, epsilons, dropout and
 * the processor's settings from `config.json` and the processor files), the encoder, and the checkpoint's own head
 * when it has one. The data2vec, masking and training settings of that run config come from the `small` preset
 * (short runs on this machine) with K scaled to the depth as the paper's base models have it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { numpy as np, random } from "../engine/jax.js";
import { disposeTree } from "../engine/typed.js";
import { CheckpointError } from "../engine/errors.js";
import { readJsonFile } from "../config/validate.js";
import type { EncoderSource, FoundHead, LoadedEncoder } from "../train/finetune.js";
import type { LinearParams } from "../nn/layers.js";
import { textRunConfig, TEXT_PRESETS } from "../text/config.js";
import type { ClassifierHead } from "../text/classify.js";
import type { TextArch } from "../text/checkpoints.js";
import type { TextEncoderParams } from "../text/model.js";
import { visionRunConfig, VISION_PRESETS, type VisionRunConfig } from "../vision/config.js";
import type { VisionClassifierHead } from "../vision/classify.js";
import type { VisionEncoderParams } from "../vision/model.js";
import { audioRunConfig, AUDIO_PRESETS, type AudioRunConfig } from "../audio/config.js";
import type { AudioEncoderParams } from "../audio/model.js";
import { imageProcessorConfig } from "./processors.js";
import { ctcVocabulary, isHfModelDir, loadHfModel, loadTokenizer, type HfModel } from "./model.js";
import type { HfTextModel } from "./text.js";
import type { HfVisionModel } from "./vision.js";
import type { HfAudioModel } from "./audio.js";

/** HF's `id2label` placeholders (LABEL_0, LABEL_1, …) name no classes: a head with them fits any labels of its size. */
function namedLabels(labels: string[] | null): string[] | null {
  return labels && !labels.every((l, i) => l === `LABEL_${i}`) ? labels : null;
}

function loadAs<M extends HfModel["modality"]>(dir: string, modality: M): Extract<HfModel, { modality: M }> {
  const m = loadHfModel(dir);
  if (m.modality !== modality) throw new CheckpointError(`${dir} is a ${m.modality} model (${m.architecture}), not a ${modality} one`);
  return m as Extract<HfModel, { modality: M }>;
}

/** K for a network of `layers` blocks, in the proportion the paper's base model of the modality uses (text 10 of 12). */
function scaledTopK(layers: number, base: { model: { layers: number }; data2vec: { topK: number } }): number {
  return Math.max(1, Math.min(layers, Math.round((layers * base.data2vec.topK) / base.model.layers)));
}

// ---------------------------------------------------------------------------------------------------------
// Text: Data2VecText{Model, ForMaskedLM, ForSequenceClassification}

export function textArchFromHf(dir: string, m: HfTextModel): TextArch {
  const tok = loadTokenizer(dir);
  if (tok.size !== m.hf.vocab_size) throw new CheckpointError(`${dir}: the tokenizer has ${tok.size} entries but config.json says vocab_size ${m.hf.vocab_size}; restore the model's own vocab.json and merges.txt`);
  if (tok.pad !== m.hf.pad_token_id) throw new CheckpointError(`${dir}: the tokenizer's <pad> is ${tok.pad} but config.json says pad_token_id ${m.hf.pad_token_id}`);
  const hf = m.hf as HfTextModel["hf"] & { hidden_dropout_prob?: number; attention_probs_dropout_prob?: number };
  const small = TEXT_PRESETS.small;
  const { padId: _padId, ...encoderSettings } = m.config;
  const run = textRunConfig.resolve("small", undefined, {
    preset: `hf:${m.architecture}`,
    model: {
      ...encoderSettings,
      dropout: hf.hidden_dropout_prob ?? 0.1,
      attentionDropout: hf.attention_probs_dropout_prob ?? 0.1,
      activationDropout: 0,
    },
    data2vec: { topK: scaledTopK(m.config.layers, TEXT_PRESETS.base) },
    train: { seqLen: Math.min(small.train.seqLen, m.config.maxPositions) },
  }, `${dir}/config.json`);
  return { run, enc: m.config, tok };
}

export function hfTextEncoder(dir: string): LoadedEncoder<TextArch, TextEncoderParams, ClassifierHead> {
    const m = loadAs(dir, "text");
    const arch = textArchFromHf(dir, m);
    if (m.mlm) disposeTree(m.mlm);
    if (m.pooler) disposeTree(m.pooler);
    const head: FoundHead<ClassifierHead> | undefined = m.classifier ? { params: m.classifier, labels: namedLabels(m.labels), classes: m.classifier.out.weight.shape[1] } : undefined;
    return { arch, encoder: m.encoder, head };
}

// ---------------------------------------------------------------------------------------------------------
// Vision: Data2VecVision{Model, ForImageClassification}

export function visionArchFromHf(dir: string, m: HfVisionModel): VisionRunConfig {
  const processor = imageProcessorConfig(dir, m.hf.image_size);
  const channels = m.hf.num_channels;
  const perChannel = (v: number[]) => (v.length === channels ? v : new Array(channels).fill(v[0]));
  const hf = m.hf as HfVisionModel["hf"] & { hidden_dropout_prob?: number; attention_probs_dropout_prob?: number };
  return visionRunConfig.resolve("small", undefined, {
    preset: `hf:${m.architecture}`,
    model: { ...m.config, dropout: hf.hidden_dropout_prob ?? 0, attentionDropout: hf.attention_probs_dropout_prob ?? 0 },
    data2vec: { topK: scaledTopK(m.config.layers, VISION_PRESETS.base) },
    augment: { mean: perChannel(processor.image_mean), std: perChannel(processor.image_std) },
  }, `${dir}/config.json`);
}

/**
 * BEiT's key projection has no bias; ours has one, which changes nothing: a key bias adds q·b to every score of a
 * query's row, which the softmax cancels (its gradient is zero too). A zero bias makes the trees the same shape.
 */
function withKeyBias(e: VisionEncoderParams): VisionEncoderParams {
  for (const l of e.layers) if (!l.attn.k.bias) l.attn.k.bias = np.zeros([l.attn.k.weight.shape[1]]);
  return e;
}

export function hfVisionEncoder(dir: string): LoadedEncoder<VisionRunConfig, VisionEncoderParams, VisionClassifierHead> {
    const m = loadAs(dir, "vision");
    const arch = visionArchFromHf(dir, m);
    if (m.finalNorm) disposeTree(m.finalNorm);
    let head: FoundHead<VisionClassifierHead> | undefined;
    // HF's mean-pooling classifier is ours: LN(mean of the patch tokens) → linear. Without mean pooling it reads the
    // CLS token after a final norm, which our classifier does not; such a head is replaced by a new one.
    if (m.classifier && m.poolerNorm) head = { params: { norm: m.poolerNorm, out: m.classifier }, labels: namedLabels(m.labels), classes: m.classifier.weight.shape[1] };
    else if (m.classifier) disposeTree(m.classifier);
    return { arch, encoder: withKeyBias(m.encoder), head };
}

// ---------------------------------------------------------------------------------------------------------
// Speech: Data2VecAudio{Model, ForCTC, ForSequenceClassification}

/** The speech heads an HF checkpoint may carry: CTC's `lm_head`, or the classifier's projector and output layer. */
export type HfAudioHead = { ctc?: LinearParams; projector?: LinearParams; out?: LinearParams };

export function audioArchFromHf(dir: string, m: HfAudioModel): AudioRunConfig {
  const hf = m.hf as HfAudioModel["hf"] & { hidden_dropout?: number; attention_dropout?: number; activation_dropout?: number; feat_proj_dropout?: number };
  if (m.hf.conv_bias) throw new CheckpointError(`${dir}: conv_bias true (a CNN with biases) is not supported; data2vec-audio checkpoints have conv_bias false`);
  if (m.hf.use_weighted_layer_sum) throw new CheckpointError(`${dir}: use_weighted_layer_sum (a classifier over a weighted sum of every layer) cannot be fine-tuned here; it can only be run (d2v run / classify)`);
  const path = join(dir, "preprocessor_config.json");
  const processor = (existsSync(path) ? readJsonFile(path, "preprocessor config") : {}) as { sampling_rate?: number; do_normalize?: boolean };
  const f = m.frontEnd;
  return audioRunConfig.resolve("small", undefined, {
    preset: `hf:${m.architecture}`,
    model: {
      sampleRate: processor.sampling_rate ?? 16000,
      normalize: processor.do_normalize ?? true,
      convLayers: f.convLayers,
      dim: f.dim,
      layers: m.hf.num_hidden_layers,
      heads: m.hf.num_attention_heads,
      ffnDim: m.hf.intermediate_size,
      posConvLayers: f.posConvLayers,
      posConvKernel: f.posConvKernel,
      posConvGroups: f.posConvGroups,
      featureDropout: hf.feat_proj_dropout ?? 0,
      dropout: hf.hidden_dropout ?? 0.1,
      attentionDropout: hf.attention_dropout ?? 0.1,
      activationDropout: hf.activation_dropout ?? 0,
      layerNormEps: f.layerNormEps,
      // transformers zeroes padded frames once before the positional convolutions: keep its network exactly.
      posConvPadding: "leak",
    },
    data2vec: { topK: scaledTopK(m.hf.num_hidden_layers, AUDIO_PRESETS.base) },
  }, `${dir}/config.json`);
}

export function hfAudioEncoder(dir: string): LoadedEncoder<AudioRunConfig, AudioEncoderParams, HfAudioHead> {
    const m = loadAs(dir, "audio");
    const arch = audioArchFromHf(dir, m);
    const { maskEmbedding, layers, ...frontEnd } = m.params;
    // transformers keeps masked_spec_embed for SpecAugment-style masking; a checkpoint without it gets fairseq's U[0, 1).
    const encoder: AudioEncoderParams = { shared: { ...frontEnd, maskEmbedding: maskEmbedding ?? random.uniform(random.key(0), [arch.model.dim]) }, layers };
    let head: FoundHead<HfAudioHead> | undefined;
    if (m.ctcHead) {
      const vocabulary = existsSync(join(dir, "vocab.json")) ? ctcVocabulary(dir) : null;
      head = { params: { ctc: m.ctcHead }, labels: vocabulary, classes: m.ctcHead.weight.shape[1] };
    } else if (m.classifier) {
      head = { params: { projector: m.classifier.projector, out: m.classifier.out }, labels: namedLabels(m.labels), classes: m.classifier.out.weight.shape[1] };
    }
    return { arch, encoder, head };
}

/** The width of transformers' projector before an audio classifier (`classifier_proj_size`, 256 by default). */
export function hfClassifierProjection(dir: string): number {
  const c = readJsonFile(join(dir, "config.json"), "Hugging Face config") as { classifier_proj_size?: number };
  return c.classifier_proj_size ?? 256;
}

/**
 * `source` for our own checkpoints, and the HF loader of the same modality for a Hugging Face directory: what
 * `--init` accepts. Fresh weights always come from `source` (an HF directory's architecture is a run config too).
 */
export function orHf<A, E, H>(source: EncoderSource<A, E>, hfLoad: (dir: string) => LoadedEncoder<A, E, H>): EncoderSource<A, E, H> {
  return { load: (dir) => (isHfModelDir(dir) ? hfLoad(dir) : source.load(dir)), fresh: source.fresh };
}
