/**
 * Export of our checkpoints in the Hugging Face layout (`config.json` with HF fields + `model.safetensors`
 * with HF key names + processor/tokenizer files), so that transformers' `from_pretrained` loads them:
 * text → Data2VecTextModel or Data2VecTextForSequenceClassification, vision → Data2VecVisionModel or
 * Data2VecVisionForImageClassification, speech → Data2VecAudioModel, Data2VecAudioForCTC or
 * Data2VecAudioForSequenceClassification. The data2vec regression head is pretraining-only and is not exported.
 */
import { writeFileSync } from "node:fs";
import { writeOutput } from "../train/output.js";
import { join, resolve } from "node:path";
import { numpy as np } from "../engine/jax.js";
import { ConfigError } from "../engine/errors.js";
import { isVisionV2 } from "../vision/model.js";
import { encodeSafetensors, f32Tensor, i64Tensor, type HostTensor } from "../engine/safetensors.js";
import type { PostLnBlockParams, PreLnBlockParams } from "../nn/blocks.js";
import type { LayerNormParams, LinearParams } from "../nn/layers.js";
import { relativePositionIndex } from "../nn/relpos.js";
import { checkpointModality } from "../train/checkpoint.js";
import { loadTextCheckpoint } from "../text/checkpoints.js";
import { gridSize } from "../vision/config.js";
import { loadVisionCheckpoint } from "../vision/checkpoints.js";
import { loadAudioCheckpoint } from "../audio/checkpoints.js";
import { disposeTree } from "../engine/typed.js";
import { isHfModelDir } from "./model.js";

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
  if (isVisionV2(loaded.encoder)) {
    disposeTree([loaded.encoder, classifier?.params.head]);
    throw new ConfigError(
      `${checkpoint} is a data2vec 2.0 image model: post-LN blocks, fixed sin-cos positions, a layer norm and prenet blocks before them; Hugging Face's Data2VecVision (BEiT: pre-LN blocks, relative position bias) cannot hold it. Use it with d2v finetune / eval / classify, or export a data2vec (v1) model`,
    );
  }
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

/** Our conv weight (see `ConvParams`) as torch's Conv1d weight [Cout, Cin/G, k]: the inverse of `convWeightFromTorch`. */
function torchConvWeight(w: np.Array, kernel: number, groups: number): np.Array {
  if (groups === 1) {
    const [rows, cout] = w.shape;
    return w.reshape([kernel, rows / kernel, cout]).transpose([2, 1, 0]);
  }
  const [g, rows, outPerGroup] = w.shape;
  return w.reshape([g, kernel, rows / kernel, outPerGroup]).transpose([0, 3, 2, 1]).reshape([g * outPerGroup, rows / kernel, kernel]);
}

async function exportAudio(checkpoint: string, outDir: string): Promise<ExportResult> {
  const loaded = loadAudioCheckpoint(checkpoint);
  const m = loaded.run.model;
  const notes: string[] = [];
  const head = loaded.head;
  let architecture = "Data2VecAudioModel";
  if (head?.config.kind === "audio-ctc") architecture = "Data2VecAudioForCTC";
  else if (head?.config.kind === "audio-classifier") {
    if (head.config.finetune.poolNorm) notes.push("the classifier normalizes the pooled state (--pool-norm), which Data2VecAudioForSequenceClassification cannot express; only the encoder was exported");
    else architecture = "Data2VecAudioForSequenceClassification";
  }
  if (m.posConvPadding === "circular") {
    disposeTree([loaded.encoder, head?.params.head, head?.params.projector]);
    throw new ConfigError(`${checkpoint} pads its positional convolutions circularly (model.posConvPadding "circular"), which Hugging Face's Data2VecAudio cannot express: it pads with zeros. Use the model with d2v finetune / eval / embed`);
  }
  if (m.frontEnd === "logmel") {
    disposeTree([loaded.encoder, head?.params.head, head?.params.projector]);
    throw new ConfigError(`${checkpoint} reads log mel frames (model.frontEnd "logmel"), which Hugging Face's Data2VecAudio cannot express: it starts from a CNN over the waveform. Use the model with d2v finetune / eval / embed`);
  }
  if (loaded.encoder.shared.alibiScale) {
    disposeTree([loaded.encoder, head?.params.head, head?.params.projector]);
    throw new ConfigError(`${checkpoint} is a data2vec 2.0 speech model: its attention has an ALiBi bias, which Hugging Face's Data2VecAudio cannot hold. Use it with d2v finetune / eval / embed, or export a data2vec (v1) model`);
  }
  const sink = new TensorSink(architecture === "Data2VecAudioModel" ? "" : "data2vec_audio.");
  const { shared, layers } = loaded.encoder;
  for (const [i, l] of shared.features.entries()) {
    await sink.put(`feature_extractor.conv_layers.${i}.conv.weight`, torchConvWeight(l.conv.weight, m.convLayers[i].kernel, 1));
    l.conv.bias?.dispose(); // our CNN has no biases (conv_bias false)
    await sink.layerNorm(`feature_extractor.conv_layers.${i}.layer_norm`, l.norm);
  }
  await sink.layerNorm("feature_projection.layer_norm", shared.projectionNorm);
  await sink.linear("feature_projection.projection", shared.projection);
  for (const [i, c] of shared.posConv.entries()) {
    await sink.put(`encoder.pos_conv_embed.layers.${i}.conv.weight`, torchConvWeight(c.weight, m.posConvKernel, m.posConvGroups));
    await sink.put(`encoder.pos_conv_embed.layers.${i}.conv.bias`, c.bias!);
  }
  await sink.layerNorm("encoder.layer_norm", shared.encoderNorm);
  await sink.put("masked_spec_embed", shared.maskEmbedding);
  for (const [i, b] of layers.entries()) {
    const l = `encoder.layers.${i}`;
    await sink.linear(`${l}.attention.q_proj`, b.attn.q);
    await sink.linear(`${l}.attention.k_proj`, b.attn.k);
    await sink.linear(`${l}.attention.v_proj`, b.attn.v);
    await sink.linear(`${l}.attention.out_proj`, b.attn.out);
    await sink.layerNorm(`${l}.layer_norm`, b.attnNorm);
    await sink.linear(`${l}.feed_forward.intermediate_dense`, b.ffn.fc1);
    await sink.linear(`${l}.feed_forward.output_dense`, b.ffn.fc2);
    await sink.layerNorm(`${l}.final_layer_norm`, b.ffnNorm);
  }
  let projectorSize = 256;
  const files: Record<string, string> = {};
  let vocabSize = 32;
  if (architecture === "Data2VecAudioForCTC" && head?.config.kind === "audio-ctc") {
    await sink.linear("lm_head", head.params.head, { raw: true });
    vocabSize = head.config.vocabulary.length;
    files["vocab.json"] = JSON.stringify(Object.fromEntries(head.config.vocabulary.map((c, i) => [c, i])), null, 2);
    const special = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", pad_token: "<pad>" };
    files["special_tokens_map.json"] = JSON.stringify(special, null, 2);
    files["tokenizer_config.json"] = JSON.stringify({ tokenizer_class: "Wav2Vec2CTCTokenizer", ...special, word_delimiter_token: "|", do_lower_case: false, replace_word_delimiter_char: " " }, null, 2);
  } else if (architecture === "Data2VecAudioForSequenceClassification" && head) {
    // transformers projects every frame before the mean. A model trained without that projector exports an identity
    // one (classifier_proj_size = hidden_size): the mean of x·I is the mean of x, so the outputs are the same.
    const projector = head.params.projector ?? { weight: np.eye(m.dim), bias: np.zeros([m.dim]) };
    projectorSize = projector.weight.shape[1];
    await sink.linear("projector", projector, { raw: true });
    await sink.linear("classifier", head.params.head, { raw: true });
  } else if (head) disposeTree({ head: head.params.head, projector: head.params.projector });
  if (m.posConvPadding !== "leak") {
    notes.push("transformers zeroes padded frames once before the positional convolutions, where this model zeroes them before each; outputs agree for unpadded inputs (one clip per batch) and differ slightly near the end of padded clips");
  }
  const labels = head?.config.kind === "audio-classifier" && architecture !== "Data2VecAudioModel" ? head.config.labels : null;
  const config = {
    architectures: [architecture],
    model_type: "data2vec-audio",
    conv_dim: m.convLayers.map((l) => l.channels),
    conv_kernel: m.convLayers.map((l) => l.kernel),
    conv_stride: m.convLayers.map((l) => l.stride),
    conv_bias: false,
    num_feat_extract_layers: m.convLayers.length,
    feat_extract_activation: "gelu",
    hidden_size: m.dim,
    num_hidden_layers: m.layers,
    num_attention_heads: m.heads,
    intermediate_size: m.ffnDim,
    hidden_act: "gelu",
    hidden_dropout: m.dropout,
    attention_dropout: m.attentionDropout,
    activation_dropout: m.activationDropout,
    feat_proj_dropout: m.featureDropout,
    final_dropout: 0.1,
    layerdrop: 0,
    layer_norm_eps: m.layerNormEps,
    num_conv_pos_embeddings: m.posConvLayers,
    conv_pos_kernel_size: m.posConvKernel,
    num_conv_pos_embedding_groups: m.posConvGroups,
    mask_time_prob: 0.05,
    mask_time_length: 10,
    vocab_size: vocabSize,
    pad_token_id: 0,
    bos_token_id: 1,
    eos_token_id: 2,
    ctc_loss_reduction: "sum",
    classifier_proj_size: projectorSize,
    use_weighted_layer_sum: false,
    add_adapter: false,
    initializer_range: 0.02,
    ...(labels ? labelMaps(labels) : {}),
    torch_dtype: "float32",
    transformers_version: TRANSFORMERS_VERSION,
  };
  const preprocessor = {
    feature_extractor_type: "Wav2Vec2FeatureExtractor",
    feature_size: 1,
    sampling_rate: m.sampleRate,
    do_normalize: m.normalize,
    padding_side: "right",
    padding_value: 0,
    return_attention_mask: true,
  };
  await writeDirectory(outDir, {
    "config.json": JSON.stringify(config, null, 2),
    "model.safetensors": encodeSafetensors(sink.tensors, { format: "pt" }),
    "preprocessor_config.json": JSON.stringify(preprocessor, null, 2),
    ...files,
  });
  return { architecture, outDir, tensors: sink.tensors.size, notes };
}

/** Exports a `d2v pretrain` or `d2v finetune` checkpoint as a Hugging Face model directory. */
export async function exportHf(checkpoint: string, outDir: string): Promise<ExportResult> {
  if (isHfModelDir(checkpoint)) throw new ConfigError(`${checkpoint} is a Hugging Face directory already; export takes a d2v checkpoint (from \`d2v pretrain\` or \`d2v finetune\`)`);
  const modality = checkpointModality(checkpoint);
  const out = resolve(outDir);
  if (modality === "text") return exportText(checkpoint, out);
  if (modality === "vision") return exportVision(checkpoint, out);
  if (modality === "audio") return exportAudio(checkpoint, out);
  throw new ConfigError(`cannot export ${checkpoint}: it is not a d2v checkpoint of text, vision or speech (a Hugging Face directory is already in that layout)`);
}
