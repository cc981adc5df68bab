/**
 * Data2VecText (Model / ForMaskedLM / ForSequenceClassification) from a Hugging Face directory, built on the
 * project's RoBERTa-style encoder (`text/model.ts`): same embeddings, post-LN blocks, scale after Q·Kᵀ.
 */
import { z } from "zod";
import { numpy as np, tree } from "../engine/jax.js";
import { validate } from "../config/validate.js";
import type { LayerNormParams, LinearParams } from "../nn/layers.js";
import { gelu, layerNorm, linear } from "../nn/layers.js";
import { runEncoder, type BlockParams } from "../nn/encoder.js";
import type { PostLnBlockParams } from "../nn/blocks.js";
import { embedText, positionIds, textEncoderSpec, type TextEncoderConfig, type TextEncoderParams } from "../text/model.js";
import { checkHeads, classCount, encoderFieldsFromHf, geluOnly, labelMap, labelNames, positiveInt, sizeFields, type Architecture, type HfModelBase } from "./config.js";
import { StateDict, type HfDirectory } from "./weights.js";

export const hfTextConfigSchema = z
  .looseObject({
    ...sizeFields,
    vocab_size: positiveInt,
    max_position_embeddings: positiveInt,
    type_vocab_size: z.number().int().min(0).default(2),
    layer_norm_eps: z.number().positive().default(1e-12),
    pad_token_id: z.number().int().min(0).default(1),
    hidden_act: geluOnly,
    position_embedding_type: z.literal("absolute", { message: 'only "absolute" positions are supported' }).default("absolute"),
    id2label: labelMap,
  })
  .superRefine(checkHeads);
export type HfTextConfig = z.infer<typeof hfTextConfigSchema>;

export type MaskedLmHead = { dense: LinearParams; norm: LayerNormParams; /** The tied decoder: word embeddingsᵀ [D, V] + bias. */ decoder: LinearParams };
export type SequenceClassifierHead = { dense: LinearParams; out: LinearParams };

export type HfTextModel = HfModelBase<"text", HfTextConfig> & {
  config: TextEncoderConfig;
  encoder: TextEncoderParams;
  mlm?: MaskedLmHead;
  classifier?: SequenceClassifierHead;
  pooler?: LinearParams;
};

/** Our encoder config from the HF fields. RoBERTa's table has padId + 1 rows before the first real position. */
export function textEncoderConfigFromHf(c: HfTextConfig): TextEncoderConfig {
  return {
    vocabSize: c.vocab_size,
    maxPositions: c.max_position_embeddings - c.pad_token_id - 1,
    ...encoderFieldsFromHf(c),
    activationDropout: 0,
    padId: c.pad_token_id,
  };
}

export function loadHfText(d: HfDirectory, architecture: Architecture): HfTextModel {
  const hf = validate(hfTextConfigSchema, d.config, `${d.dir}/config.json`);
  const config = textEncoderConfigFromHf(hf);
  const D = hf.hidden_size;
  const sd = new StateDict(d.tensors, "data2vec_text.", d.weightsFile);
  // Token type 0 is the only one RoBERTa-style models use: fold its row into every position embedding.
  let positions = sd.array("embeddings.position_embeddings.weight", [hf.max_position_embeddings, D]);
  if (hf.type_vocab_size > 0 && sd.has("embeddings.token_type_embeddings.weight")) {
    positions = positions.add(sd.array("embeddings.token_type_embeddings.weight", [hf.type_vocab_size, D]).slice([0, 1]));
  }
  sd.markBuffer("embeddings.position_ids");
  const encoder: TextEncoderParams = {
    shared: {
      tokens: sd.array("embeddings.word_embeddings.weight", [hf.vocab_size, D]),
      positions,
      norm: sd.layerNorm("embeddings.LayerNorm", D),
    },
    layers: Array.from({ length: hf.num_hidden_layers }, (_, i): PostLnBlockParams => {
      const l = `encoder.layer.${i}`;
      return {
        attn: {
          q: sd.linear(`${l}.attention.self.query`, D, D),
          k: sd.linear(`${l}.attention.self.key`, D, D),
          v: sd.linear(`${l}.attention.self.value`, D, D),
          out: sd.linear(`${l}.attention.output.dense`, D, D),
        },
        attnNorm: sd.layerNorm(`${l}.attention.output.LayerNorm`, D),
        ffn: { fc1: sd.linear(`${l}.intermediate.dense`, D, hf.intermediate_size), fc2: sd.linear(`${l}.output.dense`, hf.intermediate_size, D) },
        ffnNorm: sd.layerNorm(`${l}.output.LayerNorm`, D),
      };
    }),
  };
  const model: HfTextModel = { modality: "text", architecture, hf, config, encoder, labels: labelNames(hf.id2label), unusedKeys: [] };
  if (architecture === "Data2VecTextForMaskedLM") {
    // The decoder is tied to the word embeddings (HF does not save it); its bias is lm_head.bias.
    const decoderWeight = sd.key("lm_head.decoder.weight") ? sd.array("lm_head.decoder.weight", [hf.vocab_size, D]) : encoder.shared.tokens.ref;
    model.mlm = {
      dense: sd.linear("lm_head.dense", D, D),
      norm: sd.layerNorm("lm_head.layer_norm", D),
      decoder: { weight: decoderWeight.transpose([1, 0]).add(0), bias: sd.array("lm_head.bias", [hf.vocab_size]) },
    };
    sd.markBuffer("lm_head.decoder.bias");
  } else if (architecture === "Data2VecTextForSequenceClassification") {
    model.classifier = { dense: sd.linear("classifier.dense", D, D), out: sd.linear("classifier.out_proj", D, classCount(d.config, model.labels)) };
  }
  if (sd.has("pooler.dense.weight")) model.pooler = sd.linear("pooler.dense", D, D);
  model.unusedKeys = sd.unused();
  return model;
}

export type TextOutputs = {
  /** [layers + 1, B, T, D]: embeddings output, then every layer's output. */
  hiddenStates: np.Array;
  lastHiddenState: np.Array;
  logits?: np.Array;
  poolerOutput?: np.Array;
};

/** The forward pass on a padded batch of ids (`attentionMask` 1 = real token). Borrows the model. */
export function textForward(m: HfTextModel, ids: Int32Array, attentionMask: Int32Array, batch: number, seqLen: number): TextOutputs {
  const c = m.config;
  const positions = positionIds(ids, batch, seqLen, c.padId);
  const enc = tree.ref(m.encoder);
  const x = embedText(enc.shared, np.array(ids, { dtype: np.int32 }).reshape([batch, seqLen]), np.array(positions, { dtype: np.int32 }).reshape([batch, seqLen]), c, null);
  const padding = np.array(Float32Array.from(attentionMask)).reshape([batch, seqLen]);
  const run = runEncoder(enc.layers as BlockParams[], x.ref, textEncoderSpec(c), { padding, keys: null, capture: "end" });
  padding.dispose();
  run.out.dispose();
  const last = run.captured[run.captured.length - 1].ref;
  const out: TextOutputs = { hiddenStates: np.stack([x, ...run.captured]), lastHiddenState: last };
  if (m.mlm) {
    const h = tree.ref(m.mlm);
    const z = layerNorm(h.norm, gelu(linear(h.dense, out.lastHiddenState.ref)), c.layerNormEps);
    out.logits = linear(h.decoder, z);
  }
  const first = () => out.lastHiddenState.ref.slice([], 0); // [B, D], the <s> state
  if (m.classifier) {
    const h = tree.ref(m.classifier);
    out.logits = linear(h.out, np.tanh(linear(h.dense, first())));
  }
  if (m.pooler) out.poolerOutput = np.tanh(linear(tree.ref(m.pooler), first()));
  return out;
}
