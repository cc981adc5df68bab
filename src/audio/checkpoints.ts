/** Speech checkpoints: the pretrained data2vec model, the CTC transcriber and the audio classifier. */
import { join } from "node:path";
import { numpy as np, random } from "../engine/jax.js";
import { CheckpointError } from "../engine/errors.js";
import type { V2Shared } from "../data2vec2/model.js";
import type { AudioLocal } from "../data2vec2/modalities.js";
import type { BlockParams } from "../nn/encoder.js";
import { initAudioData2Vec2 } from "./pretrain.js";
import { disposeTree } from "../engine/typed.js";
import type { EncoderSource } from "../train/finetune.js";
import { KeyStream } from "../nn/random.js";
import { loadPretrainedEncoder, loadTree, readCheckpointOfKind } from "../train/checkpoint.js";
import { parseAudioRunConfig, type AudioRunConfig } from "./config.js";
import { newCtcHead, type CtcSettings } from "./ctc-finetune.js";
import type { AudioClassifierParams, AudioClassifySettings } from "./classify.js";
import { initAudioData2Vec, initAudioEncoder, type AudioEncoderParams } from "./model.js";

export type AudioCtcConfig = { kind: "audio-ctc"; run: AudioRunConfig; vocabulary: string[]; finetune: CtcSettings; initializedFrom: string | null };
export type AudioClassifierConfig = { kind: "audio-classifier"; run: AudioRunConfig; labels: string[]; finetune: AudioClassifySettings; initializedFrom: string | null };

export type LoadedAudio = {
  kind: "data2vec-pretrain" | "audio-ctc" | "audio-classifier";
  dir: string;
  run: AudioRunConfig;
  encoder: AudioEncoderParams;
  /** The CTC or classification head with its vocabulary / labels. */
  head?: { params: AudioClassifierParams; config: AudioCtcConfig | AudioClassifierConfig };
};

export function freshAudioEncoder(run: AudioRunConfig, seed: number): AudioEncoderParams {
  const keys = new KeyStream(random.key(seed));
  const e = initAudioEncoder(keys, run.model);
  keys.close();
  // A data2vec 2.0 network attends with ALiBi (scales start at 1, as fairseq's).
  if (run.data2vec.objective === "data2vec2") e.shared.alibiScale = np.ones([run.model.heads]);
  return e;
}

/**
 * A data2vec 2.0 speech encoder as ours: the CNN and projection, the context encoder's positional convolutions and
 * layer norm (the same network as data2vec's front end), its ALiBi scales, and the post-LN blocks. v2 has no mask
 * embedding; fine-tuning's time masking gets a fresh one.
 */
function audioEncoderOfV2(e: { shared: V2Shared<AudioLocal>; layers: BlockParams[] }, run: AudioRunConfig, dir: string): AudioEncoderParams {
  const { local, context } = e.shared;
  if (context.prenet.length || !context.norm || !context.posConv || !context.alibiScale) {
    disposeTree(e);
    throw new CheckpointError(`${dir}: only data2vec 2.0 speech models without prenet blocks (data2vec.v2.prenetDepth 0) can be fine-tuned`);
  }
  const maskEmbedding = random.uniform(random.key(0), [run.model.dim]);
  return { shared: { ...local, posConv: context.posConv, encoderNorm: context.norm, maskEmbedding, alibiScale: context.alibiScale }, layers: e.layers as AudioEncoderParams["layers"] };
}

export function loadAudioCheckpoint(path: string): LoadedAudio {
  // A transcriber and a classifier are the same network: the encoder and a linear head over its frames.
  const withHead = (raw: { kind: string }, dir: string): LoadedAudio => {
    const config = raw as AudioCtcConfig | AudioClassifierConfig;
    const run = parseAudioRunConfig(config.run, join(dir, "config.json"));
    const outputs = config.kind === "audio-ctc" ? config.vocabulary.length : config.labels.length;
    const projector = config.kind === "audio-classifier" ? config.finetune.projector : undefined;
    const like: AudioClassifierParams = { encoder: freshAudioEncoder(run, 0), head: newCtcHead(0, projector ?? run.model.dim, outputs) };
    if (projector) like.projector = newCtcHead(1, run.model.dim, projector);
    const params = loadTree(dir, "model", like, { consumeLike: true });
    return { kind: config.kind, dir, run, encoder: params.encoder, head: { params, config } };
  };
  return readCheckpointOfKind<LoadedAudio>(path, "speech", {
    "data2vec-pretrain": (raw, dir) => {
      const run = parseAudioRunConfig(raw, join(dir, "config.json"));
      const encoder = run.data2vec.objective === "data2vec2" ? audioEncoderOfV2(loadPretrainedEncoder(dir, initAudioData2Vec2(run, 0)), run, dir) : loadPretrainedEncoder(dir, initAudioData2Vec(run, 0));
      return { kind: "data2vec-pretrain", dir, run, encoder };
    },
    "audio-ctc": withHead,
    "audio-classifier": withHead,
  });
}

/** Speech encoders for fine-tuning: from a checkpoint (its head freed), or fresh. */
export const audioEncoders: EncoderSource<AudioRunConfig, AudioEncoderParams> = {
  load(dir) {
    const { run, encoder, head } = loadAudioCheckpoint(dir);
    if (head) disposeTree({ head: head.params.head, projector: head.params.projector });
    return { arch: run, encoder };
  },
  fresh: freshAudioEncoder,
};
