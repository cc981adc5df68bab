/** Speech checkpoints: the pretrained data2vec model, the CTC transcriber and the audio classifier. */
import { join } from "node:path";
import { random, tree } from "../engine/jax.js";
import { CheckpointError } from "../engine/errors.js";
import type { ParamTree } from "../engine/tree.js";
import { KeyStream } from "../nn/random.js";
import { loadTree, readCheckpointJson, resolveCheckpoint, saveCheckpoint } from "../train/checkpoint.js";
import { parseAudioRunConfig, type AudioRunConfig } from "./config.js";
import { newCtcHead, type AudioClassifySettings, type CtcParams, type CtcSettings } from "./finetune.js";
import { initAudioData2Vec, initAudioEncoder, type AudioEncoderParams } from "./model.js";

export type AudioCtcConfig = { kind: "audio-ctc"; run: AudioRunConfig; vocabulary: string[]; finetune: CtcSettings; initializedFrom: string | null };
export type AudioClassifierConfig = { kind: "audio-classifier"; run: AudioRunConfig; labels: string[]; finetune: AudioClassifySettings; initializedFrom: string | null };

export type LoadedAudio = {
  kind: "data2vec-pretrain" | "audio-ctc" | "audio-classifier";
  dir: string;
  run: AudioRunConfig;
  encoder: AudioEncoderParams;
  /** The CTC or classification head with its vocabulary / labels. */
  head?: { params: CtcParams; config: AudioCtcConfig | AudioClassifierConfig };
};

export function freshAudioEncoder(run: AudioRunConfig, seed: number): AudioEncoderParams {
  const keys = new KeyStream(random.key(seed));
  const e = initAudioEncoder(keys, run.model);
  keys.close();
  return e;
}

export function loadAudioCheckpoint(path: string): LoadedAudio {
  const dir = resolveCheckpoint(path);
  const raw = readCheckpointJson(dir, "config.json") as { kind?: string };
  if (raw.kind === "data2vec-pretrain") {
    const run = parseAudioRunConfig(raw, join(dir, "config.json"));
    const like = initAudioData2Vec(run, 0);
    const p = loadTree(dir, "model", like as ParamTree, { consumeLike: true }) as typeof like;
    tree.dispose(p.head as never);
    return { kind: "data2vec-pretrain", dir, run, encoder: { shared: p.shared, layers: p.layers } };
  }
  if (raw.kind === "audio-ctc" || raw.kind === "audio-classifier") {
    const config = raw as AudioCtcConfig | AudioClassifierConfig;
    const run = parseAudioRunConfig(config.run, join(dir, "config.json"));
    const outputs = config.kind === "audio-ctc" ? config.vocabulary.length : config.labels.length;
    const like: CtcParams = { encoder: freshAudioEncoder(run, 0), head: newCtcHead(0, run.model.dim, outputs) };
    const params = loadTree(dir, "model", like as ParamTree, { consumeLike: true }) as CtcParams;
    return { kind: config.kind, dir, run, encoder: params.encoder, head: { params, config } };
  }
  throw new CheckpointError(`${dir}/config.json has kind ${JSON.stringify(raw.kind)}; expected a speech checkpoint (data2vec-pretrain, audio-ctc or audio-classifier)`);
}

export async function saveAudioModel(dir: string, params: CtcParams, config: AudioCtcConfig | AudioClassifierConfig): Promise<void> {
  await saveCheckpoint(dir, { config, trees: { model: params as ParamTree } });
}
