/** Speech checkpoints: the pretrained data2vec model, the CTC transcriber and the audio classifier. */
import { join } from "node:path";
import { random } from "../engine/jax.js";
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
  return e;
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
      return { kind: "data2vec-pretrain", dir, run, encoder: loadPretrainedEncoder(dir, initAudioData2Vec(run, 0)) };
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
