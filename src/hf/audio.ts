/**
 * Data2VecAudio (Model / ForCTC / ForSequenceClassification) from a Hugging Face directory, built on the
 * project's speech front end (`audio/model.ts`) and post-LN blocks with the query scaled before Q·Kᵀ.
 */
import { z } from "zod";
import { numpy as np, tree } from "../engine/jax.js";
import { nn as jnn } from "../engine/jax.js";
import { validate } from "../config/validate.js";
import type { PostLnBlockParams } from "../nn/blocks.js";
import { convWeightFromTorch, type ConvParams } from "../nn/conv.js";
import { runEncoder, type EncoderSpec } from "../nn/encoder.js";
import { linear, maskedMean, type LinearParams } from "../nn/layers.js";
import { addPositions, framesForSamples, projectFeatures, type AudioFrontEnd, type AudioFrontEndConfig } from "../audio/model.js";
import { checkHeads, classCount, geluOnly, labelMap, labelNames, positiveInt, sizeFields, type Architecture, type HfModelBase } from "./config.js";
import { StateDict, type HfDirectory } from "./weights.js";

const intList = z.array(positiveInt).min(1);

export const hfAudioConfigSchema = z
  .looseObject({
    ...sizeFields,
    conv_dim: intList,
    conv_kernel: intList,
    conv_stride: intList,
    conv_bias: z.boolean().default(false),
    num_conv_pos_embeddings: positiveInt.default(5),
    conv_pos_kernel_size: positiveInt.default(19),
    num_conv_pos_embedding_groups: positiveInt.default(16),
    layer_norm_eps: z.number().positive().default(1e-5),
    hidden_act: geluOnly,
    feat_extract_activation: geluOnly,
    vocab_size: positiveInt.default(32),
    pad_token_id: z.number().int().min(0).default(0),
    classifier_proj_size: positiveInt.default(256),
    use_weighted_layer_sum: z.boolean().default(false),
    add_adapter: z.literal(false, { message: "adapter layers are not supported" }).default(false),
    id2label: labelMap,
  })
  .superRefine(checkHeads)
  .superRefine((c, ctx) => {
    if (c.conv_kernel.length !== c.conv_dim.length || c.conv_stride.length !== c.conv_dim.length) {
      ctx.addIssue({ code: "custom", path: ["conv_kernel"], message: `conv_dim, conv_kernel and conv_stride must have the same length (${c.conv_dim.length}, ${c.conv_kernel.length}, ${c.conv_stride.length})` });
    }
    if (c.hidden_size % c.num_conv_pos_embedding_groups !== 0) {
      ctx.addIssue({ code: "custom", path: ["num_conv_pos_embedding_groups"], message: `hidden_size ${c.hidden_size} is not divisible by ${c.num_conv_pos_embedding_groups} groups` });
    }
  });
export type HfAudioConfig = z.infer<typeof hfAudioConfigSchema>;

export type AudioClassifierHead = { projector: LinearParams; out: LinearParams; layerWeights?: np.Array };

export type HfAudioModel = HfModelBase<"audio", HfAudioConfig> & {
  frontEnd: AudioFrontEndConfig;
  params: AudioFrontEnd & { layers: PostLnBlockParams[]; maskEmbedding?: np.Array };
  ctcHead?: LinearParams;
  classifier?: AudioClassifierHead;
};

export function audioFrontEndFromHf(c: HfAudioConfig): AudioFrontEndConfig {
  return {
    convLayers: c.conv_dim.map((channels, i) => ({ channels, kernel: c.conv_kernel[i], stride: c.conv_stride[i] })),
    dim: c.hidden_size,
    posConvLayers: c.num_conv_pos_embeddings,
    posConvKernel: c.conv_pos_kernel_size,
    posConvGroups: c.num_conv_pos_embedding_groups,
    layerNormEps: c.layer_norm_eps,
  };
}

export function audioEncoderSpec(c: HfAudioConfig): EncoderSpec {
  return { kind: "post_ln", heads: c.num_attention_heads, eps: c.layer_norm_eps, dropout: 0, attentionDropout: 0, activationDropout: 0, scaleQueryFirst: true };
}

function conv(sd: StateDict, name: string, out: number, inPerGroup: number, kernel: number, groups: number, bias: boolean): ConvParams {
  const w = sd.host(`${name}.weight`, [out, inPerGroup, kernel]);
  const p: ConvParams = { weight: convWeightFromTorch(w, out, inPerGroup, kernel, groups) };
  if (bias) p.bias = sd.array(`${name}.bias`, [out]);
  return p;
}

export function loadHfAudio(d: HfDirectory, architecture: Architecture): HfAudioModel {
  const hf = validate(hfAudioConfigSchema, d.config, `${d.dir}/config.json`);
  const frontEnd = audioFrontEndFromHf(hf);
  const D = hf.hidden_size;
  const sd = new StateDict(d.tensors, "data2vec_audio.", d.weightsFile);
  const lastChannels = hf.conv_dim[hf.conv_dim.length - 1];
  const features = frontEnd.convLayers.map((l, i) => ({
    conv: conv(sd, `feature_extractor.conv_layers.${i}.conv`, l.channels, i === 0 ? 1 : hf.conv_dim[i - 1], l.kernel, 1, hf.conv_bias),
    norm: sd.layerNorm(`feature_extractor.conv_layers.${i}.layer_norm`, l.channels),
  }));
  const groups = hf.num_conv_pos_embedding_groups;
  const params: HfAudioModel["params"] = {
    features,
    projectionNorm: sd.layerNorm("feature_projection.layer_norm", lastChannels),
    projection: sd.linear("feature_projection.projection", lastChannels, D),
    posConv: Array.from({ length: hf.num_conv_pos_embeddings }, (_, i) =>
      conv(sd, `encoder.pos_conv_embed.layers.${i}.conv`, D, D / groups, hf.conv_pos_kernel_size, groups, true),
    ),
    encoderNorm: sd.layerNorm("encoder.layer_norm", D),
    layers: Array.from({ length: hf.num_hidden_layers }, (_, i) => {
      const l = `encoder.layers.${i}`;
      return {
        attn: {
          q: sd.linear(`${l}.attention.q_proj`, D, D),
          k: sd.linear(`${l}.attention.k_proj`, D, D),
          v: sd.linear(`${l}.attention.v_proj`, D, D),
          out: sd.linear(`${l}.attention.out_proj`, D, D),
        },
        attnNorm: sd.layerNorm(`${l}.layer_norm`, D),
        ffn: { fc1: sd.linear(`${l}.feed_forward.intermediate_dense`, D, hf.intermediate_size), fc2: sd.linear(`${l}.feed_forward.output_dense`, hf.intermediate_size, D) },
        ffnNorm: sd.layerNorm(`${l}.final_layer_norm`, D),
      };
    }),
  };
  if (sd.has("masked_spec_embed")) params.maskEmbedding = sd.array("masked_spec_embed", [D]);
  const model: HfAudioModel = { modality: "audio", architecture, hf, frontEnd, params, labels: labelNames(hf.id2label), unusedKeys: [] };
  if (architecture === "Data2VecAudioForCTC") model.ctcHead = sd.linear("lm_head", D, hf.vocab_size);
  if (architecture === "Data2VecAudioForSequenceClassification") {
    model.classifier = { projector: sd.linear("projector", D, hf.classifier_proj_size), out: sd.linear("classifier", hf.classifier_proj_size, classCount(d.config, model.labels)) };
    if (hf.use_weighted_layer_sum) model.classifier.layerWeights = sd.array("layer_weights", [hf.num_hidden_layers + 1]);
  }
  model.unusedKeys = sd.unused();
  return model;
}

export type AudioOutputs = {
  extractFeatures: np.Array; // [B, T, C]
  hiddenStates: np.Array; // [layers + 1, B, T, D]
  lastHiddenState: np.Array;
  logits?: np.Array; // CTC [B, T, V] or classification [B, classes]
  /** Frames per clip (all T when there is no attention mask). */
  frameLengths: number[];
};

/**
 * The forward pass on normalized, right-padded waveforms [B, L]. `sampleLengths` (the attention mask's row
 * sums) gives the real samples per clip; null runs without a mask, as HF does when none is passed.
 * Borrows the model.
 */
export function audioForward(m: HfAudioModel, wave: np.Array, sampleLengths: number[] | null): AudioOutputs {
  const [b] = wave.shape;
  const p = tree.ref(m.params);
  const { features, projected } = projectFeatures(p, m.frontEnd, wave);
  const t = projected.shape[1];
  const frameLengths = sampleLengths ? sampleLengths.map((n) => Math.min(t, Math.max(0, framesForSamples(n, m.frontEnd.convLayers)))) : new Array(b).fill(t);
  let frameMask: np.Array | null = null;
  if (sampleLengths) {
    const mask = new Float32Array(b * t);
    frameLengths.forEach((n, i) => mask.fill(1, i * t, i * t + n));
    frameMask = np.array(mask).reshape([b, t]);
  }
  p.maskEmbedding?.dispose(); // only used in pretraining-style masked runs
  const h0 = addPositions(p, m.frontEnd, projected, frameMask);
  const run = runEncoder(p.layers, h0.ref, audioEncoderSpec(m.hf), { padding: frameMask, keys: null, capture: "end" });
  run.out.dispose();
  const lastHiddenState = run.captured[run.captured.length - 1].ref;
  const out: AudioOutputs = { extractFeatures: features, hiddenStates: np.stack([h0, ...run.captured]), lastHiddenState, frameLengths };
  if (m.ctcHead) out.logits = linear(tree.ref(m.ctcHead), out.lastHiddenState.ref);
  if (m.classifier) {
    const head = tree.ref(m.classifier);
    let h = out.lastHiddenState.ref;
    if (head.layerWeights) {
      const w = jnn.softmax(head.layerWeights, -1).reshape([-1, 1, 1, 1]);
      h.dispose();
      h = out.hiddenStates.ref.mul(w).sum(0);
    }
    const x = linear(head.projector, h); // [B, T, P]
    const pooled = frameMask ? maskedMean(x, frameMask.ref) : x.mean(1);
    out.logits = linear(head.out, pooled);
  }
  frameMask?.dispose();
  return out;
}

export { ctcGreedyDecode } from "../audio/ctc.js";
