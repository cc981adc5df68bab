/**
 * Data2VecVision (Model / ForImageClassification) from a Hugging Face directory, built on the project's
 * BEiT-layout ViT (`vision/model.ts`): patch embedding as a matmul, CLS, pre-LN blocks with layer scale, a
 * key projection without bias, and a relative position bias shared by all blocks or one per block.
 */
import { z } from "zod";
import { numpy as np, tree } from "../engine/jax.js";
import { validate } from "../config/validate.js";
import type { PreLnBlockParams } from "../nn/blocks.js";
import { runEncoder } from "../nn/encoder.js";
import { layerNorm, linear, type LayerNormParams, type LinearParams } from "../nn/layers.js";
import { relativeTableSize } from "../nn/relpos.js";
import { meanPatchTokens } from "../vision/classify.js";
import { embedImages, relativeIndexArray, visionEncoderSpec, type VisionEncoder1Params, type VisionModelConfig } from "../vision/model.js";
import { checkHeads, classCount, encoderFieldsFromHf, geluOnly, labelMap, labelNames, positiveInt, sizeFields, type Architecture, type HfModelBase } from "./config.js";
import { StateDict, type HfDirectory } from "./weights.js";

export const hfVisionConfigSchema = z
  .looseObject({
    ...sizeFields,
    image_size: positiveInt,
    patch_size: positiveInt,
    num_channels: z.union([z.literal(1), z.literal(3)]).default(3),
    layer_norm_eps: z.number().positive().default(1e-12),
    layer_scale_init_value: z.number().min(0).default(0.1),
    use_absolute_position_embeddings: z.boolean().default(false),
    use_relative_position_bias: z.boolean().default(false),
    use_shared_relative_position_bias: z.boolean().default(false),
    use_mean_pooling: z.boolean().default(true),
    hidden_act: geluOnly,
    id2label: labelMap,
  })
  .superRefine(checkHeads)
  .superRefine((c, ctx) => {
    if (c.image_size % c.patch_size !== 0) ctx.addIssue({ code: "custom", path: ["patch_size"], message: `image_size ${c.image_size} is not a multiple of patch_size ${c.patch_size}` });
  });
export type HfVisionConfig = z.infer<typeof hfVisionConfigSchema>;

export type HfVisionModel = HfModelBase<"vision", HfVisionConfig> & {
  config: VisionModelConfig;
  encoder: VisionEncoder1Params;
  /** Final layer norm on the sequence output (models without mean pooling). */
  finalNorm?: LayerNormParams;
  /** Layer norm on the mean of the patch tokens (mean pooling). */
  poolerNorm?: LayerNormParams;
  classifier?: LinearParams;
};

export function visionConfigFromHf(c: HfVisionConfig): VisionModelConfig {
  return {
    imageSize: c.image_size,
    patchSize: c.patch_size,
    channels: c.num_channels,
    ...encoderFieldsFromHf(c),
    layerScale: c.layer_scale_init_value,
    // HF adds the shared table when use_shared_relative_position_bias, else per-layer tables when asked.
    relativePositionBias: c.use_shared_relative_position_bias ? "shared" : c.use_relative_position_bias ? "per_layer" : "none",
    absolutePositions: c.use_absolute_position_embeddings,
  };
}

export function loadHfVision(d: HfDirectory, architecture: Architecture): HfVisionModel {
  const hf = validate(hfVisionConfigSchema, d.config, `${d.dir}/config.json`);
  const config = visionConfigFromHf(hf);
  const D = hf.hidden_size;
  const P = hf.patch_size;
  const C = hf.num_channels;
  const grid = hf.image_size / P;
  const tableShape = [relativeTableSize(grid, grid), hf.num_attention_heads];
  const sd = new StateDict(d.tensors, "data2vec_vision.", d.weightsFile);
  const encoder: VisionEncoder1Params = {
    shared: {
      // Conv2d weight [D, C, p, p] → patch matmul weight [C·p·p, D] (rows in (channel, y, x) order).
      patch: {
        weight: sd.array("embeddings.patch_embeddings.projection.weight", [D, C, P, P]).reshape([D, C * P * P]).transpose([1, 0]).add(0),
        bias: sd.array("embeddings.patch_embeddings.projection.bias", [D]),
      },
      cls: sd.array("embeddings.cls_token", [1, 1, D]),
      maskToken: sd.has("embeddings.mask_token") ? sd.array("embeddings.mask_token", [1, 1, D]) : np.zeros([1, 1, D]),
    },
    layers: [],
  };
  if (hf.use_absolute_position_embeddings) encoder.shared.positions = sd.array("embeddings.position_embeddings", [1, 1 + grid * grid, D]);
  const rel = "relative_position_bias";
  if (config.relativePositionBias === "shared") {
    encoder.shared.relativeTable = sd.array(`encoder.${rel}.${rel}_table`, tableShape);
    sd.markBuffer(`encoder.${rel}.relative_position_index`);
  }
  for (let i = 0; i < hf.num_hidden_layers; i++) {
    const l = `encoder.layer.${i}`;
    const block: PreLnBlockParams = {
      attnNorm: sd.layerNorm(`${l}.layernorm_before`, D),
      attn: {
        q: sd.linear(`${l}.attention.attention.query`, D, D),
        k: sd.linear(`${l}.attention.attention.key`, D, D, false),
        v: sd.linear(`${l}.attention.attention.value`, D, D),
        out: sd.linear(`${l}.attention.output.dense`, D, D),
      },
      ffnNorm: sd.layerNorm(`${l}.layernorm_after`, D),
      ffn: { fc1: sd.linear(`${l}.intermediate.dense`, D, hf.intermediate_size), fc2: sd.linear(`${l}.output.dense`, hf.intermediate_size, D) },
    };
    if (hf.layer_scale_init_value > 0) {
      block.lambda1 = sd.array(`${l}.lambda_1`, [D]);
      block.lambda2 = sd.array(`${l}.lambda_2`, [D]);
    }
    if (config.relativePositionBias === "per_layer") {
      block.relativeTable = sd.array(`${l}.attention.attention.${rel}.${rel}_table`, tableShape);
      sd.markBuffer(`${l}.attention.attention.${rel}.relative_position_index`);
    }
    encoder.layers.push(block);
  }
  const model: HfVisionModel = { modality: "vision", architecture, hf, config, encoder, labels: labelNames(hf.id2label), unusedKeys: [] };
  // The bare Data2VecVisionModel has no pooler (HF builds it with add_pooling_layer=False); the classifier
  // pools with LN(mean of patch tokens), or takes CLS after the final layer norm.
  const classifies = architecture === "Data2VecVisionForImageClassification";
  if (hf.use_mean_pooling) {
    if (classifies) model.poolerNorm = sd.layerNorm("pooler.layernorm", D);
  } else model.finalNorm = sd.layerNorm("layernorm", D);
  if (classifies) {
    model.classifier = sd.linear("classifier", D, classCount(d.config, model.labels));
  }
  model.unusedKeys = sd.unused();
  return model;
}

export type VisionOutputs = {
  hiddenStates: np.Array; // [layers + 1, B, 1 + N, D]
  lastHiddenState: np.Array;
  poolerOutput?: np.Array;
  logits?: np.Array;
};

/** The forward pass on normalized pixels [B, C, S, S]. Consumes `pixels`; borrows the model. */
export function visionForward(m: HfVisionModel, pixels: np.Array): VisionOutputs {
  const c = m.config;
  // Eager inference gathers with the int32 index (the one-hot constant would be 113 MB at base size).
  const index = relativeIndexArray(c, false);
  const e = embedImages(tree.ref(m.encoder.shared), pixels, c, null, null, index);
  const run = runEncoder(tree.ref(m.encoder.layers), e.x.ref, visionEncoderSpec(c, index), { bias: e.bias, keys: null, capture: "end" });
  index?.dispose();
  e.bias?.dispose();
  run.out.dispose();
  let last = run.captured[run.captured.length - 1].ref;
  if (m.finalNorm) last = layerNorm(tree.ref(m.finalNorm), last, c.layerNormEps);
  const out: VisionOutputs = { hiddenStates: np.stack([e.x, ...run.captured]), lastHiddenState: last };
  if (m.poolerNorm) {
    out.poolerOutput = layerNorm(tree.ref(m.poolerNorm), meanPatchTokens(out.lastHiddenState.ref), c.layerNormEps);
  } else if (m.classifier) out.poolerOutput = out.lastHiddenState.ref.slice([], 0);
  if (m.classifier && out.poolerOutput) out.logits = linear(tree.ref(m.classifier), out.poolerOutput.ref);
  return out;
}
