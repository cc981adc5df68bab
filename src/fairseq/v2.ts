/**
 * fairseq's data2vec 2.0 (`Data2VecMultiModel`, text / audio / image) as ours: the settings read from its config, the
 * key maps, the student and teacher trees, and a batch with the exact masks fairseq used (`precomputed_mask`).
 */
import { z } from "zod";
import { numpy as np } from "../engine/jax.js";
import { CheckpointError } from "../engine/errors.js";
import { disposeTree, refTree } from "../engine/typed.js";
import { toFloat32 } from "../engine/safetensors.js";
import type { ParamTree } from "../engine/tree.js";
import { initAudioEncoder } from "../audio/model.js";
import { initLinear } from "../nn/init.js";
import { initTextEncoder, positionIds, type TextEncoderConfig } from "../text/model.js";
import type { Data2VecSettings } from "../data2vec/config.js";
import { emaSharedOf, stepStatistics, studentForEma } from "../data2vec/model.js";
import { data2vec2Loss, data2vec2Outputs, viewArrays, type Data2Vec2Params, type Modality2, type Teacher2, type V2Batch } from "../data2vec2/model.js";
import { audioModality2, imageModality2, initContext, initData2Vec2, sinCosPositions, textModality2, type AudioV2Config } from "../data2vec2/modalities.js";
import { viewLayout } from "../data2vec2/views.js";
import { altBlockEntries, buildTree, layerNormEntries, linearEntries, same, type KeyEntry } from "./keys.js";
import { parseFairseqModel, parseFixtureField, type Fixture } from "./fixture.js";
import { data2vecSettingsFrom, fairseqTargetFields, ints } from "./text.js";
import { parseConvLayers } from "./audio.js";
import { maskedRows, type FairseqCase } from "./check.js";

const decoderFields = z.looseObject({
  decoder_dim: z.number().int(),
  decoder_groups: z.number().int(),
  decoder_kernel: z.number().int(),
  decoder_layers: z.number().int(),
  input_dropout: z.number(),
  add_positions_masked: z.boolean(),
  add_positions_all: z.boolean(),
  decoder_residual: z.boolean(),
  projection_layers: z.number().int(),
  projection_ratio: z.number(),
});

const modalityFields = {
  prenet_depth: z.number().int(),
  num_extra_tokens: z.number().int(),
  mask_noise_std: z.number(),
  keep_masked_pct: z.number(),
  encoder_zero_mask: z.boolean(),
  ema_local_encoder: z.boolean(),
  local_grad_mult: z.number(),
  use_alibi_encoder: z.boolean(),
  learned_alibi: z.boolean(),
  learned_alibi_scale: z.boolean(),
  learned_alibi_scale_per_head: z.boolean(),
  learned_alibi_scale_per_layer: z.boolean(),
  decoder: decoderFields,
};

const fairseqV2Model = z.looseObject({
  ...fairseqTargetFields,
  depth: z.number().int(),
  num_heads: z.number().int(),
  norm_eps: z.number(),
  norm_affine: z.boolean(),
  embed_dim: z.number().int(),
  mlp_ratio: z.number(),
  layer_norm_first: z.boolean(),
  end_of_block_targets: z.boolean(),
  batch_norm_target_layer: z.boolean(),
  clone_batch: z.number().int(),
  ema_encoder_only: z.boolean(),
  cls_loss: z.number(),
  recon_loss: z.number(),
  d2v_loss: z.number(),
  shared_decoder: z.unknown().nullable(),
  modalities: z.looseObject({
    text: z.looseObject({ ...modalityFields, max_source_positions: z.number().int(), no_scale_embedding: z.boolean(), layernorm_embedding: z.boolean(), learned_pos: z.boolean() }),
    audio: z.looseObject({ ...modalityFields, extractor_mode: z.string(), feature_encoder_spec: z.string(), conv_pos_width: z.number().int(), conv_pos_groups: z.number().int(), conv_pos_depth: z.number().int(), conv_pos_pre_ln: z.boolean() }),
    image: z.looseObject({ ...modalityFields, input_size: z.number().int(), in_chans: z.number().int(), patch_size: z.number().int(), embed_dim: z.number().int(), fixed_positions: z.boolean(), transformer_decoder: z.boolean() }),
  }),
});
type FairseqV2 = z.infer<typeof fairseqV2Model>;
type ModalityName = "text" | "audio" | "image";

/** What this implementation reproduces of the config, or a CheckpointError naming the first setting it does not. */
function checkSupported(f: Fixture, m: FairseqV2, name: ModalityName): void {
  const mod = m.modalities[name];
  const unsupported: [boolean, string][] = [
    [m.layer_norm_first, "layer_norm_first: true (pre-LN blocks)"],
    [m.end_of_block_targets, "end_of_block_targets: true"],
    [m.batch_norm_target_layer, "batch_norm_target_layer"],
    [m.recon_loss > 0, "recon_loss > 0"],
    [m.d2v_loss !== 1, "d2v_loss other than 1"],
    [m.shared_decoder != null, "shared_decoder"],
    [!m.norm_affine, "norm_affine: false"],
    [mod.keep_masked_pct > 0, "keep_masked_pct > 0"],
    [mod.local_grad_mult !== 1, "local_grad_mult other than 1"],
    [mod.learned_alibi || mod.learned_alibi_scale_per_layer, "learned ALiBi biases or per-layer ALiBi scales"],
    [mod.use_alibi_encoder && !(mod.learned_alibi_scale && mod.learned_alibi_scale_per_head), "a fixed or shared ALiBi scale (we learn one per head)"],
    [mod.decoder.add_positions_all || mod.decoder.add_positions_masked, "decoder positions (add_positions_*)"],
    [!mod.encoder_zero_mask, "encoder_zero_mask: false"],
  ];
  const hit = unsupported.find(([bad]) => bad);
  if (hit) throw new CheckpointError(`${f.dir}: ${hit[1]} is not implemented here`);
}

/** Our data2vec settings for a fairseq data2vec 2.0 config. */
function v2Settings(m: FairseqV2, name: ModalityName, emaShared: string[]): Data2VecSettings {
  const mod = m.modalities[name];
  const d = mod.decoder;
  return {
    ...data2vecSettingsFrom(m, 1),
    objective: "data2vec2",
    // fairseq's F.instance_norm takes padded steps into the statistics.
    targetNormPadding: "include",
    emaShared,
    v2: {
      cloneBatch: m.clone_batch,
      clsLoss: m.cls_loss,
      decoder: {
        dim: d.decoder_dim,
        kernel: d.decoder_kernel,
        groups: d.decoder_groups,
        layers: d.decoder_layers,
        residual: d.decoder_residual,
        projectionLayers: d.projection_layers,
        projectionRatio: d.projection_ratio,
        maskNoiseStd: mod.mask_noise_std,
        inputDropout: d.input_dropout,
      },
      prenetDepth: mod.prenet_depth,
    },
  };
}

/** The decoder under `prefix`: conv layers `blocks.i.0`, the projection `proj` (one Linear) or `proj.0`, `proj.2`, … */
function decoderEntries(prefix: string, layers: number, projectionLayers: number, groups: number): KeyEntry[] {
  return [
    ...Array.from({ length: layers }, (_, i): KeyEntry[] => [
      { fairseq: `${prefix}.blocks.${i}.0.weight`, path: ["head", "layers", i, "weight"], layout: { kind: "conv", groups } },
      same(`${prefix}.blocks.${i}.0.bias`, ["head", "layers", i, "bias"]),
    ]).flat(),
    ...(projectionLayers === 1 ? linearEntries(`${prefix}.proj`, ["head", "projection", 0]) : Array.from({ length: projectionLayers }, (_, j) => linearEntries(`${prefix}.proj.${2 * j}`, ["head", "projection", j])).flat()),
  ];
}

const blockEntries = (prefix: string, layers: number, dim: number) => Array.from({ length: layers }, (_, i) => altBlockEntries(`${prefix}${i}`, ["layers", i], dim)).flat();

/** A check case from the key maps, fresh trees of the fixture's architecture, and the modality and batch. */
function v2Case<Local extends ParamTree, Batch extends V2Batch>(
  f: Fixture,
  o: {
    modality: Modality2<Local, Batch>;
    d2v: Data2VecSettings;
    fresh: (seed: number) => Data2Vec2Params<Local>;
    student: KeyEntry[];
    /** Teacher entries (fairseq keys with `teacher.`), paths in our teacher tree. */
    teacher: KeyEntry[];
    /** fairseq's teacher key → student key prefix (`fixture.ema.stepped_module`): "blocks." for text, "" otherwise. */
    batch: () => Batch;
    settings: Record<string, unknown>;
  },
): FairseqCase<Data2Vec2Params<Local>, Teacher2<Local>> {
  const what = `${f.dir}/weights.safetensors`;
  const emaShared = o.d2v.emaShared ?? [];
  const params = buildTree(o.student, f.weights, what, o.fresh(0));
  const like = o.fresh(1);
  const teacherLike: Teacher2<Local> = { layers: like.layers, shared: emaSharedOf(like.shared, emaShared) };
  disposeTree([like.head, ...Object.entries(like.shared).filter(([k]) => !emaShared.includes(k)).map(([, v]) => v)]);
  const teacher = buildTree(o.teacher, f.weights, what, teacherLike);
  const { modality, d2v, batch } = o;
  const lossOf = (p: Data2Vec2Params<Local>, t: Teacher2<Local>) => {
    const [loss, metrics] = data2vec2Loss(modality, d2v, p, t, batch(), null);
    disposeTree(metrics);
    return loss;
  };
  return {
    params,
    teacher,
    student: o.student,
    teacherKeys: o.teacher.map((entry) => ({ key: entry.fairseq.slice("teacher.".length), where: "teacher" as const, entry })),
    settings: o.settings,
    objective: {
      async forward(p, t) {
        const out = data2vec2Outputs(modality, d2v, refTree(p), refTree(t), batch(), null);
        disposeTree([out.sampleTargets, out.padding, out.positionShare]);
        const statistics = stepStatistics(out);
        disposeTree([statistics.maskedSteps, statistics.targetRank]);
        const targetVar = (await statistics.targetVar.data()) as Float32Array;
        const predVar = (await statistics.predVar.data()) as Float32Array;
        const extra: Record<string, Float32Array> = {};
        if (out.cls) {
          extra.cls_pred = (await out.cls.pred.data()) as Float32Array;
          extra.cls_target = (await out.cls.target.data()) as Float32Array;
        }
        const x = await maskedRows(out.pred, out.weights.ref);
        const y = await maskedRows(out.target, out.weights);
        const loss = (await lossOf(p, t).data()) as Float32Array;
        return { loss, x, y, targetVar, predVar, extra };
      },
      loss: lossOf,
      studentForEma: (p) => studentForEma(p, emaShared),
    },
  };
}

/** The views of the fixture's `precomputed_mask` ([B·M, T], repeat_interleave order). */
function fixtureViews(f: Fixture, samples: number, clones: number) {
  const t = f.inputs.get("precomputed_mask");
  if (!t) throw new CheckpointError(`${f.dir}/inputs.safetensors lacks precomputed_mask`);
  if (t.shape[0] !== samples * clones) throw new CheckpointError(`${f.dir}: precomputed_mask has ${t.shape[0]} rows, not ${samples} samples × ${clones} clones`);
  return viewLayout(ints(t, "precomputed_mask"), samples, clones, t.shape[1]);
}

const notPadded = (mask: Int32Array) => Float32Array.from(mask, (p) => 1 - p);

export function v2TextCase(f: Fixture) {
  const m = parseFairseqModel(fairseqV2Model, f);
  checkSupported(f, m, "text");
  const mod = m.modalities.text;
  if (!mod.no_scale_embedding || !mod.layernorm_embedding || !mod.learned_pos || mod.prenet_depth !== 0 || mod.num_extra_tokens !== 0 || mod.use_alibi_encoder || !m.ema_encoder_only) {
    throw new CheckpointError(`${f.dir}: only data2vec 2.0's text layout (unscaled embeddings, learned positions, embedding layer norm, no prenet, teacher = blocks) is implemented`);
  }
  const dict = parseFixtureField(z.object({ size: z.number().int(), pad: z.number().int() }), f, "dictionary");
  const enc: TextEncoderConfig = {
    vocabSize: dict.size,
    maxPositions: mod.max_source_positions,
    dim: m.embed_dim,
    layers: m.depth,
    heads: m.num_heads,
    ffnDim: Math.round(m.embed_dim * m.mlp_ratio),
    dropout: 0,
    attentionDropout: 0,
    activationDropout: 0,
    layerNormEps: m.norm_eps,
    padId: dict.pad,
  };
  const d2v = v2Settings(m, "text", []);
  const prefix = "modality_encoders.TEXT";
  const student = [
    same(`${prefix}.local_encoder.embed_tokens.weight`, ["shared", "local", "tokens"]),
    same(`${prefix}.local_encoder.embed_positions.weight`, ["shared", "local", "positions"]),
    ...layerNormEntries(`${prefix}.local_encoder.layernorm_embedding`, ["shared", "local", "norm"]),
    ...blockEntries("blocks.", m.depth, m.embed_dim),
    ...decoderEntries(`${prefix}.decoder`, d2v.v2!.decoder.layers, d2v.v2!.decoder.projectionLayers, d2v.v2!.decoder.groups),
  ];
  const fresh = (seed: number) =>
    initData2Vec2(seed, {
      local: (keys) => {
        const { shared, layers } = initTextEncoder(keys, { ...enc, layers: 0 });
        disposeTree(layers);
        return shared;
      },
      context: () => ({ prenet: [] }),
      dim: enc.dim,
      ffnDim: enc.ffnDim,
      layers: enc.layers,
      decoder: d2v.v2!.decoder,
      decoderShape: { kind: "1d" },
    });
  const source = ints(f.inputs.get("source"), "source");
  const padding = ints(f.inputs.get("padding_mask"), "padding_mask");
  const [b, t] = f.inputs.get("source")!.shape;
  const layout = fixtureViews(f, b, m.clone_batch);
  const batch = () => ({
    source: np.array(source, { dtype: np.int32 }).reshape([b, t]),
    positions: np.array(positionIds(source, b, t, dict.pad), { dtype: np.int32 }).reshape([b, t]),
    padding: np.array(notPadded(padding)).reshape([b, t]),
    views: viewArrays(layout),
  });
  // The teacher is a copy of the blocks only (ema_encoder_only): keys `0.*`, `1.*`, … → our teacher's layers.
  const teacher = Array.from({ length: m.depth }, (_, i) => altBlockEntries(`teacher.${i}`, ["layers", i], m.embed_dim)).flat();
  return v2Case(f, { modality: textModality2(enc), d2v, fresh, student, teacher, batch, settings: { "data2vec.targetNormPadding": "include" } });
}

export function v2AudioCase(f: Fixture) {
  const m = parseFairseqModel(fairseqV2Model, f);
  checkSupported(f, m, "audio");
  const mod = m.modalities.audio;
  if (mod.extractor_mode !== "layer_norm" || mod.conv_pos_pre_ln || mod.prenet_depth !== 0 || mod.num_extra_tokens !== 0 || mod.ema_local_encoder || m.ema_encoder_only || !mod.use_alibi_encoder) {
    throw new CheckpointError(`${f.dir}: only data2vec 2.0's speech layout (layer-norm CNN, ALiBi, no prenet, teacher without the CNN) is implemented`);
  }
  const depth = mod.conv_pos_depth;
  const c: AudioV2Config = {
    convLayers: parseConvLayers(mod.feature_encoder_spec),
    dim: m.embed_dim,
    heads: m.num_heads,
    layerNormEps: m.norm_eps,
    posConvLayers: depth,
    posConvKernel: Math.max(3, Math.floor(mod.conv_pos_width / depth)),
    posConvGroups: mod.conv_pos_groups,
    dropout: 0,
    attentionDropout: 0,
    activationDropout: 0,
  };
  const ffnDim = Math.round(m.embed_dim * m.mlp_ratio);
  // The teacher averages the context encoder (positions, ALiBi scale, norm) and the blocks; it reads the student's CNN features.
  const d2v = v2Settings(m, "audio", ["context"]);
  const prefix = "modality_encoders.AUDIO";
  const contextEntries = (p: string): KeyEntry[] => [
    ...Array.from({ length: depth }, (_, i): KeyEntry[] => [
      { fairseq: `${p}.relative_positional_encoder.${i + 1}.0.weight`, path: ["shared", "context", "posConv", i, "weight"], layout: { kind: "conv", groups: c.posConvGroups } },
      same(`${p}.relative_positional_encoder.${i + 1}.0.bias`, ["shared", "context", "posConv", i, "bias"]),
    ]).flat(),
    { fairseq: `${p}.alibi_scale`, path: ["shared", "context", "alibiScale"], layout: { kind: "reshape", shape: [c.heads] } },
    ...layerNormEntries(`${p}.context_encoder.norm`, ["shared", "context", "norm"]),
  ];
  const student = [
    ...c.convLayers.flatMap((_, i): KeyEntry[] => [
      { fairseq: `${prefix}.local_encoder.conv_layers.${i}.0.weight`, path: ["shared", "local", "features", i, "conv", "weight"], layout: { kind: "conv", groups: 1 } },
      ...layerNormEntries(`${prefix}.local_encoder.conv_layers.${i}.2.1`, ["shared", "local", "features", i, "norm"]),
    ]),
    ...layerNormEntries(`${prefix}.project_features.1`, ["shared", "local", "projectionNorm"]),
    ...linearEntries(`${prefix}.project_features.2`, ["shared", "local", "projection"]),
    ...contextEntries(prefix),
    ...blockEntries("blocks.", m.depth, m.embed_dim),
    ...decoderEntries(`${prefix}.decoder`, d2v.v2!.decoder.layers, d2v.v2!.decoder.projectionLayers, d2v.v2!.decoder.groups),
  ];
  const fresh = (seed: number) =>
    initData2Vec2(seed, {
      local: (keys) => {
        const { shared, layers } = initAudioEncoder(keys, { ...c, layers: 0, ffnDim, sampleRate: 16000, normalize: true, featureDropout: 0, posConvPadding: "leak", frontEnd: "cnn", melBands: 80 });
        const { features, projectionNorm, projection, ...rest } = shared;
        disposeTree([layers, rest]);
        return { features, projectionNorm, projection };
      },
      context: (keys) => initContext(keys, { dim: c.dim, ffnDim, posConv: { layers: depth, kernel: c.posConvKernel, groups: c.posConvGroups }, alibiHeads: c.heads, norm: true }),
      dim: c.dim,
      ffnDim,
      layers: m.depth,
      decoder: d2v.v2!.decoder,
      decoderShape: { kind: "1d" },
    });
  const wave = toFloat32(f.inputs.get("source") ?? missing(f, "source"));
  const [b, l] = f.inputs.get("source")!.shape;
  const framePadding = ints(f.inputs.get("frame_padding_mask"), "frame_padding_mask");
  const t = f.inputs.get("frame_padding_mask")!.shape[1];
  const layout = fixtureViews(f, b, m.clone_batch);
  const batch = () => ({ wave: np.array(wave).reshape([b, l]), frameMask: np.array(notPadded(framePadding)).reshape([b, t]), views: viewArrays(layout) });
  const teacher = [...blockEntries("teacher.blocks.", m.depth, m.embed_dim), ...contextEntries(`teacher.${prefix}`)];
  return v2Case(f, { modality: audioModality2(c), d2v, fresh, student, teacher, batch, settings: { "data2vec.targetNormPadding": "include", "data2vec.emaShared": ["context"] } });
}

export function v2ImageCase(f: Fixture) {
  const m = parseFairseqModel(fairseqV2Model, f);
  checkSupported(f, m, "image");
  const mod = m.modalities.image;
  if (mod.num_extra_tokens !== 1 || !mod.fixed_positions || mod.transformer_decoder || mod.use_alibi_encoder || !mod.ema_local_encoder || m.ema_encoder_only || mod.embed_dim !== m.embed_dim) {
    throw new CheckpointError(`${f.dir}: only data2vec 2.0's image layout (one CLS token, fixed positions, conv decoder, teacher with its own patch embedding) is implemented`);
  }
  const c = { imageSize: mod.input_size, patchSize: mod.patch_size, channels: mod.in_chans, dim: m.embed_dim, heads: m.num_heads, layerNormEps: m.norm_eps, dropout: 0, attentionDropout: 0, activationDropout: 0 };
  const ffnDim = Math.round(m.embed_dim * m.mlp_ratio);
  const grid = c.imageSize / c.patchSize;
  const prefix = "modality_encoders.IMAGE";
  // The fixed positions are not weights here: ours must be fairseq's.
  const stored = toFloat32(f.weights.get(`${prefix}.fixed_positional_encoder.positions`) ?? missing(f, "fixed_positional_encoder.positions"));
  const ours = sinCosPositions(grid, c.dim);
  const off = stored.reduce((worst, v, i) => Math.max(worst, Math.abs(v - ours[i])), 0);
  if (!(off <= 1e-5) || stored.length !== ours.length) throw new CheckpointError(`${f.dir}: the fixture's fixed positions differ from MAE's 2-D sin-cos table by ${off}`);
  // The teacher averages everything but the decoder: its own patch embedding, CLS token, context encoder and blocks.
  const d2v = v2Settings(m, "image", ["local", "context"]);
  const shared = (p: string): KeyEntry[] => [
    ...linearEntries(`${p}.local_encoder.proj`, ["shared", "local", "patch"]),
    same(`${p}.extra_tokens`, ["shared", "context", "extraTokens"]),
    ...Array.from({ length: mod.prenet_depth }, (_, i) => altBlockEntries(`${p}.context_encoder.blocks.${i}`, ["shared", "context", "prenet", i], c.dim)).flat(),
    ...layerNormEntries(`${p}.context_encoder.norm`, ["shared", "context", "norm"]),
  ];
  const student = [...shared(prefix), ...blockEntries("blocks.", m.depth, m.embed_dim), ...decoderEntries(`${prefix}.decoder`, d2v.v2!.decoder.layers, d2v.v2!.decoder.projectionLayers, d2v.v2!.decoder.groups)];
  const fresh = (seed: number) =>
    initData2Vec2(seed, {
      local: (keys) => ({ patch: initLinear(keys, c.channels * c.patchSize * c.patchSize, c.dim) }),
      context: (keys) => initContext(keys, { dim: c.dim, ffnDim, extraTokens: 1, norm: true, prenet: mod.prenet_depth }),
      dim: c.dim,
      ffnDim,
      layers: m.depth,
      decoder: d2v.v2!.decoder,
      decoderShape: { kind: "2d", height: grid, width: grid },
    });
  const source = f.inputs.get("source") ?? missing(f, "source");
  const images = toFloat32(source);
  const b = source.shape[0];
  const layout = fixtureViews(f, b, m.clone_batch);
  const batch = () => ({ images: np.array(images).reshape(source.shape), views: viewArrays(layout) });
  const teacher = [...shared(`teacher.${prefix}`), ...blockEntries("teacher.blocks.", m.depth, m.embed_dim)];
  return v2Case(f, { modality: imageModality2(c), d2v, fresh, student, teacher, batch, settings: { "data2vec.targetNormPadding": "include", "data2vec.emaShared": ["local", "context"] } });
}

function missing(f: Fixture, name: string): never {
  throw new CheckpointError(`${f.dir}: ${name} is missing`);
}
