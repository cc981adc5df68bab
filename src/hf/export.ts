/**
 * Export of our checkpoints in the Hugging Face layout (`config.json` with HF fields + `model.safetensors`
 * with HF key names + processor/tokenizer files), so that transformers' `from_pretrained` loads them:
 * text → Data2VecTextModel or Data2VecTextForSequenceClassification, vision → Data2VecVisionModel or
 * Data2VecVisionForImageClassification. The data2vec regression head is pretraining-only and is not exported.
 */
import { writeFileSync } from "node:fs";
import { writeOutput } from "../train/output.js";
import { join, resolve } from "node:path";
import { numpy as np } from "../engine/jax.js";
import { ConfigError } from "../engine/errors.js";
import { encodeSafetensors, f32Tensor, i64Tensor, type HostTensor } from "../engine/safetensors.js";
import type { PostLnBlockParams, PreLnBlockParams } from "../nn/blocks.js";
import type { LayerNormParams, LinearParams } from "../nn/layers.js";
import { relativePositionIndex } from "../nn/relpos.js";
import { checkpointModality } from "../train/checkpoint.js";
import { loadTextCheckpoint } from "../text/checkpoints.js";
import { gridSize } from "../vision/config.js";
import { loadVisionCheckpoint } from "../vision/checkpoints.js";

/** The transformers release whose modeling code the exported layout was verified against. */
const TRANSFORMERS_VERSION = "4.30.2";

class TensorSink {
  readonly tensors = new Map<string, HostTensor>();
  constructor(readonly prefix: string) {}
  async put(name: string, a: np.Array, opts: { raw?: boolean } = {}): Promise<void> {
    const shape = a.shape;
    this.tensors.set((opts.raw ? "" : this.prefix) + name, f32Tensor(shape, (await a.data()) as Float32Array));
  }
  /** Our [in, out] linear as torch's weight [out, in] and bias. */
  async linear(name: string, p: LinearParams, opts: { raw?: boolean } = {}): Promise<void> {
    await this.put(`${name}.weight`, p.weight.transpose([1, 0]), opts);
    if (p.bias) await this.put(`${name}.bias`, p.bias, opts);
  }
  async layerNorm(name: string, p: LayerNormParams, opts: { raw?: boolean } = {}): Promise<void> {
    await this.put(`${name}.weight`, p.weight!, opts);
    await this.put(`${name}.bias`, p.bias!, opts);
  }
  int64(name: string, shape: number[], values: ArrayLike<number>): void {
    this.tensors.set(this.prefix + name, i64Tensor(shape, values));
  }
}

export type ExportResult = { architecture: string; outDir: string; tensors: number; notes: string[] };

/** Writes `files` into `outDir` atomically (a temporary sibling renamed into place). */
async function writeDirectory(outDir: string, files: Record<string, string | Uint8Array>): Promise<void> {
  await writeOutput(outDir, "dir", (tmp) => {
    for (const [name, data] of Object.entries(files)) writeFileSync(join(tmp, name), data);
  });
}

const labelMaps = (labels: string[]) => ({
  id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
  label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
});

async function exportText(checkpoint: string, outDir: string): Promise<ExportResult> {
  const loaded = loadTextCheckpoint(checkpoint);
  const { enc, tok } = loaded;
  const notes: string[] = [];
  let classifier = loaded.classifier;
  if (classifier && (classifier.config.finetune.pooling === "mean" || classifier.params.head.norm)) {
    notes.push("the classifier pools by mean or normalizes the pooled state, which Data2VecTextForSequenceClassification cannot express; only the encoder was exported");
    classifier = undefined;
  }
  const architecture = classifier ? "Data2VecTextForSequenceClassification" : "Data2VecTextModel";
  const sink = new TensorSink(classifier ? "data2vec_text." : "");
  const { shared, layers } = loaded.encoder;
  const maxPositions = shared.positions.shape[0];
  await sink.put("embeddings.word_embeddings.weight", shared.tokens);
  await sink.put("embeddings.position_embeddings.weight", shared.positions);
  // RoBERTa-style models use token type 0 only; HF's table is kept with one zero row.
  await sink.put("embeddings.token_type_embeddings.weight", np.zeros([1, enc.dim]));
  await sink.layerNorm("embeddings.LayerNorm", shared.norm);
  sink.int64("embeddings.position_ids", [1, maxPositions], Array.from({ length: maxPositions }, (_, i) => i));
  for (const [i, b] of (layers as PostLnBlockParams[]).entries()) {
    const l = `encoder.layer.${i}`;
    await sink.linear(`${l}.attention.self.query`, b.attn.q);
    await sink.linear(`${l}.attention.self.key`, b.attn.k);
    await sink.linear(`${l}.attention.self.value`, b.attn.v);
    await sink.linear(`${l}.attention.output.dense`, b.attn.out);
    await sink.layerNorm(`${l}.attention.output.LayerNorm`, b.attnNorm);
    await sink.linear(`${l}.intermediate.dense`, b.ffn.fc1);
    await sink.linear(`${l}.output.dense`, b.ffn.fc2);
    await sink.layerNorm(`${l}.output.LayerNorm`, b.ffnNorm);
  }
  if (classifier) {
    await sink.linear("classifier.dense", classifier.params.head.dense, { raw: true });
    await sink.linear("classifier.out_proj", classifier.params.head.out, { raw: true });
  } else if (loaded.classifier) {
    const head = loaded.classifier.params.head;
    for (const p of [head.dense, head.out, head.norm]) for (const a of Object.values(p ?? {})) (a as np.Array).dispose();
  }
  const config = {
    architectures: [architecture],
    model_type: "data2vec-text",
    vocab_size: enc.vocabSize,
    hidden_size: enc.dim,
    num_hidden_layers: enc.layers,
    num_attention_heads: enc.heads,
    intermediate_size: enc.ffnDim,
    hidden_act: "gelu",
    hidden_dropout_prob: enc.dropout,
    attention_probs_dropout_prob: enc.attentionDropout,
    max_position_embeddings: maxPositions,
    type_vocab_size: 1,
    layer_norm_eps: enc.layerNormEps,
    pad_token_id: tok.pad,
    bos_token_id: tok.bos,
    eos_token_id: tok.eos,
    position_embedding_type: "absolute",
    initializer_range: 0.02,
    ...(classifier ? labelMaps(classifier.labels) : {}),
    torch_dtype: "float32",
    transformers_version: TRANSFORMERS_VERSION,
  };
  const special = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", sep_token: "</s>", pad_token: "<pad>", cls_token: "<s>", mask_token: { content: "<mask>", lstrip: true, normalized: false, rstrip: false, single_word: false } };
  await writeDirectory(outDir, {
    "config.json": JSON.stringify(config, null, 2),
    "model.safetensors": encodeSafetensors(sink.tensors, { format: "pt" }),
    ...tok.files(),
    "tokenizer_config.json": JSON.stringify({ tokenizer_class: "RobertaTokenizer", model_max_length: maxPositions - tok.pad - 1, errors: "replace", add_prefix_space: false, ...special }, null, 2),
    "special_tokens_map.json": JSON.stringify(special, null, 2),
  });
  return { architecture, outDir, tensors: sink.tensors.size, notes };
}

async function exportVision(checkpoint: string, outDir: string): Promise<ExportResult> {
  const loaded = loadVisionCheckpoint(checkpoint);
  const m = loaded.run.model;
  const classifier = loaded.classifier;
  const architecture = classifier ? "Data2VecVisionForImageClassification" : "Data2VecVisionModel";
  const sink = new TensorSink(classifier ? "data2vec_vision." : "");
  const { shared, layers } = loaded.encoder;
  const p = m.patchSize;
  const g = gridSize(m);
  const index = relativePositionIndex(g, g);
  const tokens = 1 + g * g;
  // Patch matmul weight [C·p·p, D] → Conv2d weight [D, C, p, p].
  await sink.put("embeddings.patch_embeddings.projection.weight", shared.patch.weight.transpose([1, 0]).reshape([m.dim, m.channels, p, p]));
  await sink.put("embeddings.patch_embeddings.projection.bias", shared.patch.bias!);
  await sink.put("embeddings.cls_token", shared.cls);
  shared.maskToken.dispose(); // pretraining-only
  if (shared.positions) await sink.put("embeddings.position_embeddings", shared.positions);
  if (shared.relativeTable) {
    await sink.put("encoder.relative_position_bias.relative_position_bias_table", shared.relativeTable);
    sink.int64("encoder.relative_position_bias.relative_position_index", [tokens, tokens], index);
  }
  for (const [i, b] of (layers as PreLnBlockParams[]).entries()) {
    const l = `encoder.layer.${i}`;
    if (b.lambda1) await sink.put(`${l}.lambda_1`, b.lambda1);
    if (b.lambda2) await sink.put(`${l}.lambda_2`, b.lambda2);
    await sink.linear(`${l}.attention.attention.query`, b.attn.q);
    // BEiT's key has no bias, and none is needed: a key bias adds q·b to every score of a query's row, which
    // the softmax cancels exactly. Ours is dropped.
    b.attn.k.bias?.dispose();
    await sink.linear(`${l}.attention.attention.key`, { weight: b.attn.k.weight });
    await sink.linear(`${l}.attention.attention.value`, b.attn.v);
    if (b.relativeTable) {
      await sink.put(`${l}.attention.attention.relative_position_bias.relative_position_bias_table`, b.relativeTable);
      sink.int64(`${l}.attention.attention.relative_position_bias.relative_position_index`, [tokens, tokens], index);
    }
    await sink.linear(`${l}.attention.output.dense`, b.attn.out);
    await sink.linear(`${l}.intermediate.dense`, b.ffn.fc1);
    await sink.linear(`${l}.output.dense`, b.ffn.fc2);
    await sink.layerNorm(`${l}.layernorm_before`, b.attnNorm);
    await sink.layerNorm(`${l}.layernorm_after`, b.ffnNorm);
  }
  // Our classifier is LN(mean of patch tokens) → linear: HF's mean-pooling pooler and classifier. The bare
  // model (pretrained only) has neither, and with mean pooling no final layer norm either.
  if (classifier) {
    await sink.layerNorm("pooler.layernorm", classifier.params.head.norm);
    await sink.linear("classifier", classifier.params.head.out, { raw: true });
  }
  const a = loaded.run.augment;
  const config = {
    architectures: [architecture],
    model_type: "data2vec-vision",
    image_size: m.imageSize,
    patch_size: p,
    num_channels: m.channels,
    hidden_size: m.dim,
    num_hidden_layers: m.layers,
    num_attention_heads: m.heads,
    intermediate_size: m.ffnDim,
    hidden_act: "gelu",
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    layer_norm_eps: m.layerNormEps,
    layer_scale_init_value: m.layerScale,
    use_mask_token: false,
    use_absolute_position_embeddings: m.absolutePositions,
    use_relative_position_bias: m.relativePositionBias === "per_layer",
    use_shared_relative_position_bias: m.relativePositionBias === "shared",
    use_mean_pooling: true,
    drop_path_rate: 0,
    initializer_range: 0.02,
    ...(classifier ? labelMaps(classifier.labels) : {}),
    torch_dtype: "float32",
    transformers_version: TRANSFORMERS_VERSION,
  };
  const preprocessor = {
    image_processor_type: "BeitImageProcessor",
    do_resize: true,
    size: { height: m.imageSize, width: m.imageSize },
    resample: 3,
    do_center_crop: false,
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: a.mean,
    image_std: a.std,
    do_reduce_labels: false,
  };
  await writeDirectory(outDir, {
    "config.json": JSON.stringify(config, null, 2),
    "model.safetensors": encodeSafetensors(sink.tensors, { format: "pt" }),
    "preprocessor_config.json": JSON.stringify(preprocessor, null, 2),
  });
  const notes = m.channels === 1 ? ["single-channel model: feed grayscale images (HF's processor keeps a PNG's mode, so use mode L images)"] : [];
  return { architecture, outDir, tensors: sink.tensors.size, notes };
}

/** Exports a `d2v pretrain` or `d2v finetune` checkpoint as a Hugging Face model directory. */
export async function exportHf(checkpoint: string, outDir: string): Promise<ExportResult> {
  const modality = checkpointModality(checkpoint);
  const out = resolve(outDir);
  if (modality === "text") return exportText(checkpoint, out);
  if (modality === "vision") return exportVision(checkpoint, out);
  throw new ConfigError(`cannot export a ${modality} checkpoint: only text and vision models are trained here so far`);
}
