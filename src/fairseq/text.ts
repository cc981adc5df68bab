/**
 * fairseq's data2vec v1 text model (`Data2VecTextModel`) as ours: the key map, the settings, and a batch from
 * the fixture's inputs (the mask is the `<mask>` tokens already in `src_tokens`).
 */
import { z } from "zod";
import { numpy as np } from "../engine/jax.js";
import { CheckpointError } from "../engine/errors.js";
import { toFloat32, type HostTensor } from "../engine/safetensors.js";
import { DEFAULT_DIVERGENCE } from "../data2vec/monitor.js";
import type { Data2VecSettings } from "../data2vec/config.js";

import { initTextEncoder, positionIds, textModality, type TextEncoderConfig, type TextPretrainBatch, type TextShared } from "../text/model.js";
import { fairseqStudentAndTeacher, layerNormEntries, linearEntries, postLnBlockEntries, same, type KeyEntry } from "./keys.js";
import { parseFairseqModel, parseFixtureField, type FairseqVariant, type Fixture } from "./fixture.js";

/** The target and loss fields v1 text and audio configs share. */
export const fairseqTargetFields = {
  loss_beta: z.number(),
  loss_scale: z.number().nullable(),
  average_top_k_layers: z.number().int(),
  layer_norm_target_layer: z.boolean(),
  instance_norm_target_layer: z.boolean(),
  instance_norm_targets: z.boolean(),
  layer_norm_targets: z.boolean(),
};
export type FairseqTargetFields = z.infer<z.ZodObject<typeof fairseqTargetFields>>;

const fairseqTextModel = z.looseObject({
  ...fairseqTargetFields,
  max_positions: z.number().int(),
  head_layers: z.number().int(),
  transformer: z.looseObject({
    encoder: z.looseObject({ embed_dim: z.number().int(), ffn_embed_dim: z.number().int(), layers: z.number().int(), attention_heads: z.number().int(), normalize_before: z.boolean() }),
    layernorm_embedding: z.boolean(),
    no_scale_embedding: z.boolean(),
  }),
});

const ENCODER = "encoder.sentence_encoder";

/** Our data2vec settings from a fairseq model config (v1 text or audio field names). */
export function data2vecSettingsFrom(m: FairseqTargetFields, headLayers: 1 | 2): Data2VecSettings {
  return {
    topK: m.average_top_k_layers,
    targetLayer: "ffn",
    targetNorm: m.layer_norm_target_layer ? "layer" : m.instance_norm_target_layer ? "instance" : "none",
    targetNormAfterAverage: m.layer_norm_targets ? "layer" : m.instance_norm_targets ? "instance" : "none",
    loss: m.loss_beta === 0 ? "l2" : "smooth_l1",
    lossBeta: m.loss_beta,
    lossScale: m.loss_scale,
    headLayers,
    ema: { tauStart: 0.9, tauEnd: 0.9, annealSteps: 0 },
    teacherContext: null,
    minTargetVar: 0,
    minPredVar: 0,
    maxPositionShare: null,
    minTargetRank: null,
    collapseWarmupSteps: 0,
    divergence: DEFAULT_DIVERGENCE,
  };
}

export function textKeyMap(layers: number, headLayers: number): KeyEntry[] {
  return [
    same(`${ENCODER}.embed_tokens.weight`, ["shared", "tokens"]),
    same(`${ENCODER}.embed_positions.weight`, ["shared", "positions"]),
    ...layerNormEntries(`${ENCODER}.layernorm_embedding`, ["shared", "norm"]),
    ...Array.from({ length: layers }, (_, i) => postLnBlockEntries(`${ENCODER}.layers.${i}`, ["layers", i])).flat(),
    // regression_head: Linear(D, 2D) → GELU → Linear(2D, D) is Sequential indices 0 and 2; one layer is a Linear.
    ...(headLayers === 2 ? [...linearEntries("encoder.regression_head.0", ["head", "layers", 0]), ...linearEntries("encoder.regression_head.2", ["head", "layers", 1])] : linearEntries("encoder.regression_head", ["head", "layers", 0])),
  ];
}

/** An integer tensor (I64, I32 or BOOL) as int32. */
export function ints(t: HostTensor | undefined, name: string): Int32Array {
  if (!t) throw new CheckpointError(`inputs.safetensors lacks ${name}`);
  const v = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.dtype === "I64") return Int32Array.from({ length: n }, (_, i) => Number(v.getBigInt64(i * 8, true)));
  if (t.dtype === "I32") return Int32Array.from({ length: n }, (_, i) => v.getInt32(i * 4, true));
  if (t.dtype === "BOOL" || t.dtype === "U8") return Int32Array.from(t.data.subarray(0, n));
  return Int32Array.from(toFloat32(t));
}

export function textVariant(f: Fixture): FairseqVariant<TextShared, TextPretrainBatch> {
  const m = parseFairseqModel(fairseqTextModel, f);
  const e = m.transformer.encoder;
  if (e.normalize_before || !m.transformer.layernorm_embedding || !m.transformer.no_scale_embedding) {
    throw new CheckpointError(`${f.dir}: only the data2vec text layout (post-LN, embedding layer norm, unscaled embeddings) is implemented`);
  }
  const dict = parseFixtureField(z.object({ size: z.number().int(), pad: z.number().int(), mask: z.number().int() }), f, "dictionary");
  const enc: TextEncoderConfig = {
    vocabSize: dict.size,
    maxPositions: m.max_positions,
    dim: e.embed_dim,
    layers: e.layers,
    heads: e.attention_heads,
    ffnDim: e.ffn_embed_dim,
    dropout: 0,
    attentionDropout: 0,
    activationDropout: 0,
    layerNormEps: 1e-5,
    padId: dict.pad,
  };
  const headLayers = m.head_layers === 1 ? 1 : 2;
  const student = textKeyMap(e.layers, headLayers);
  // The teacher's own copy of the blocks (`teacher.layers.*`); fairseq copies its embeddings from the student at
  // every EMA step (ema_transformer_layers_only), which is what sharing them does.
  const teacherEntries = Array.from({ length: e.layers }, (_, i) => postLnBlockEntries(`teacher.layers.${i}`, ["layers", i])).flat();
  const { params, teacher } = fairseqStudentAndTeacher(f, (keys) => initTextEncoder(keys, enc), enc.dim, headLayers, { student, teacher: teacherEntries });
  const teacherKeys = [
    ...teacherEntries.map((entry) => ({ key: entry.fairseq.slice("teacher.".length), where: "teacher" as const, entry })),
    ...student
      .filter((s) => s.fairseq.startsWith(`${ENCODER}.`) && !s.fairseq.includes(".layers."))
      .map((entry) => ({ key: entry.fairseq.slice(ENCODER.length + 1), where: "student" as const, entry })),
  ];
  const src = ints(f.inputs.get("src_tokens"), "src_tokens");
  const tgt = ints(f.inputs.get("target_tokens"), "target_tokens");
  const [b, t] = f.inputs.get("src_tokens")!.shape;
  const batch = () => {
    const padding = Float32Array.from(tgt, (id) => (id === dict.pad ? 0 : 1));
    const weights = Float32Array.from(src, (id) => (id === dict.mask ? 1 : 0));
    return {
      source: np.array(src, { dtype: np.int32 }).reshape([b, t]),
      target: np.array(tgt, { dtype: np.int32 }).reshape([b, t]),
      positions: np.array(positionIds(tgt, b, t, dict.pad), { dtype: np.int32 }).reshape([b, t]),
      padding: np.array(padding).reshape([b, t]),
      lossWeights: np.array(weights).reshape([b, t]),
    };
  };
  return {
    modality: textModality(enc),
    d2v: data2vecSettingsFrom(m, headLayers),
    params,
    teacher,
    batch,
    student,
    teacherKeys,
    settings: {},
  };
}
