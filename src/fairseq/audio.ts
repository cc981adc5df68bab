/**
 * fairseq's data2vec v1 audio model (`Data2VecAudioModel`) as ours: the key map, the settings (with the two
 * switches that reproduce fairseq's handling of padded frames), and a batch from the fixture's inputs.
 */
import { numpy as np } from "../engine/jax.js";
import { CheckpointError } from "../engine/errors.js";
import { toFloat32 } from "../engine/safetensors.js";

import { audioModality, initAudioEncoder, type AudioPretrainBatch, type AudioShared } from "../audio/model.js";
import type { AudioModelConfig } from "../audio/config.js";
import { fairseqStudentAndTeacher, layerNormEntries, linearEntries, postLnBlockEntries, same, type KeyEntry } from "./keys.js";
import { data2vecSettingsFrom, fairseqTargetFields, ints } from "./text.js";
import { z } from "zod";
import { parseFairseqModel, type FairseqVariant, type Fixture } from "./fixture.js";

const fairseqAudioModel = z.looseObject({
  ...fairseqTargetFields,
  extractor_mode: z.string(),
  encoder_layers: z.number().int(),
  encoder_embed_dim: z.number().int(),
  encoder_ffn_embed_dim: z.number().int(),
  encoder_attention_heads: z.number().int(),
  layer_norm_first: z.boolean(),
  conv_feature_layers: z.string(),
  conv_bias: z.boolean(),
  conv_pos: z.number().int(),
  conv_pos_groups: z.number().int(),
  pos_conv_depth: z.number().int(),
  final_dim: z.number().int(),
});

/** fairseq's `conv_feature_layers`, e.g. "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2". */
export function parseConvLayers(spec: string): AudioModelConfig["convLayers"] {
  const out: AudioModelConfig["convLayers"] = [];
  for (const term of spec.split("+")) {
    const m = /^\s*\[\s*\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)\s*\]\s*(?:\*\s*(\d+))?\s*$/.exec(term);
    if (!m) throw new CheckpointError(`conv_feature_layers: cannot read "${term.trim()}" (expected "[(dim, kernel, stride)] * n" terms joined by +)`);
    for (let i = 0; i < Number(m[4] ?? 1); i++) out.push({ channels: Number(m[1]), kernel: Number(m[2]), stride: Number(m[3]) });
  }
  return out;
}

export function audioKeyMap(m: AudioModelConfig): KeyEntry[] {
  const groups = m.posConvGroups;
  return [
    ...m.convLayers.flatMap((_, i) => [
      { fairseq: `feature_extractor.conv_layers.${i}.0.weight`, path: ["shared", "features", i, "conv", "weight"], layout: { kind: "conv" as const, groups: 1 } },
      ...layerNormEntries(`feature_extractor.conv_layers.${i}.2.1`, ["shared", "features", i, "norm"]),
    ]),
    ...layerNormEntries("layer_norm", ["shared", "projectionNorm"]),
    ...linearEntries("post_extract_proj", ["shared", "projection"]),
    same("mask_emb", ["shared", "maskEmbedding"]),
    ...Array.from({ length: m.posConvLayers }, (_, i) => [
      { fairseq: `encoder.pos_conv.${i}.0.weight`, path: ["shared", "posConv", i, "weight"], layout: { kind: "conv" as const, groups } },
      same(`encoder.pos_conv.${i}.0.bias`, ["shared", "posConv", i, "bias"]),
    ]).flat(),
    ...layerNormEntries("encoder.layer_norm", ["shared", "encoderNorm"]),
    ...Array.from({ length: m.layers }, (_, i) => postLnBlockEntries(`encoder.layers.${i}`, ["layers", i])).flat(),
    ...linearEntries("final_proj", ["head", "layers", 0]),
  ];
}

export function audioVariant(f: Fixture): FairseqVariant<AudioShared, AudioPretrainBatch> {
  const fm = parseFairseqModel(fairseqAudioModel, f);
  if (fm.extractor_mode !== "layer_norm" || fm.layer_norm_first || fm.conv_bias || fm.final_dim !== 0) {
    throw new CheckpointError(`${f.dir}: only data2vec audio's layout (layer-norm feature extractor, post-LN, no conv bias, final_dim 0) is implemented`);
  }
  const depth = fm.pos_conv_depth;
  const m: AudioModelConfig = {
    sampleRate: 16000,
    normalize: true,
    convLayers: parseConvLayers(fm.conv_feature_layers),
    dim: fm.encoder_embed_dim,
    layers: fm.encoder_layers,
    heads: fm.encoder_attention_heads,
    ffnDim: fm.encoder_ffn_embed_dim,
    posConvLayers: depth,
    posConvKernel: Math.max(3, Math.floor(fm.conv_pos / depth)),
    posConvGroups: fm.conv_pos_groups,
    featureDropout: 0,
    dropout: 0,
    attentionDropout: 0,
    activationDropout: 0,
    layerNormEps: 1e-5,
    // fairseq zeroes padded frames once before the positional convolutions.
    posConvPadding: "leak",
    frontEnd: "cnn",
    melBands: 80,
  };
  const student = audioKeyMap(m);
  // fairseq's teacher averages its encoder.layer_norm (ema_layers_only skips pos_conv only): data2vec.emaShared ["encoderNorm"].
  const emaShared = ["encoderNorm"];
  const teacherEntries = [
    ...Array.from({ length: m.layers }, (_, i) => postLnBlockEntries(`teacher.layers.${i}`, ["layers", i])).flat(),
    ...layerNormEntries("teacher.layer_norm", ["shared", "encoderNorm"]),
  ];
  const { params, teacher } = fairseqStudentAndTeacher(f, (keys) => initAudioEncoder(keys, m), m.dim, 1, { student, teacher: teacherEntries }, emaShared);
  const teacherKeys = [
    ...teacherEntries.map((entry) => ({ key: entry.fairseq.slice("teacher.".length), where: "teacher" as const, entry })),
    // pos_conv is copied from the student at every EMA step (ema_layers_only): sharing it is the same.
    ...student.filter((s) => s.fairseq.startsWith("encoder.pos_conv.")).map((entry) => ({ key: entry.fairseq.slice("encoder.".length), where: "student" as const, entry })),
  ];
  const source = f.inputs.get("source");
  if (!source) throw new CheckpointError(`${f.dir}/inputs.safetensors lacks source`);
  const [b, l] = source.shape;
  const wave = toFloat32(source);
  const framePadding = ints(f.inputs.get("frame_padding_mask"), "frame_padding_mask");
  const mask = ints(f.inputs.get("mask_indices"), "mask_indices");
  const t = f.inputs.get("mask_indices")!.shape[1];
  const batch = () => ({
    wave: np.array(wave).reshape([b, l]),
    frameMask: np.array(Float32Array.from(framePadding, (p) => 1 - p)).reshape([b, t]),
    mask: np.array(Float32Array.from(mask)).reshape([b, t]),
  });
  const d2v = { ...data2vecSettingsFrom(fm, 1), targetNormPadding: "include" as const, emaShared };
  return {
    modality: audioModality(m),
    d2v,
    params,
    teacher,
    batch,
    student,
    teacherKeys,
    settings: { "model.posConvPadding": "leak", "data2vec.targetNormPadding": "include", "data2vec.emaShared": ["encoderNorm"] },
  };
}
