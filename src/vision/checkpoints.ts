/** Vision checkpoints: the pretrained data2vec model and the fine-tuned image classifier. */
import { join } from "node:path";
import { tree } from "../engine/jax.js";
import { CheckpointError } from "../engine/errors.js";
import type { ParamTree } from "../engine/tree.js";
import { loadTree, readCheckpointJson, resolveCheckpoint, saveCheckpoint } from "../train/checkpoint.js";
import { newVisionHead, type VisionClassifierParams, type VisionFinetuneSettings } from "./classify.js";
import { parseVisionRunConfig, type VisionRunConfig } from "./config.js";
import { initVisionData2Vec, type VisionEncoderParams } from "./model.js";

export type VisionClassifierConfig = {
  kind: "vision-classifier";
  run: VisionRunConfig;
  labels: string[];
  finetune: VisionFinetuneSettings & { linearProbe: boolean };
  initializedFrom: string | null;
};

export type LoadedVision = {
  kind: "data2vec-pretrain" | "vision-classifier";
  dir: string;
  run: VisionRunConfig;
  encoder: VisionEncoderParams;
  classifier?: { params: VisionClassifierParams; labels: string[]; config: VisionClassifierConfig };
};

export function loadVisionCheckpoint(path: string): LoadedVision {
  const dir = resolveCheckpoint(path);
  const raw = readCheckpointJson(dir, "config.json") as { kind?: string };
  if (raw.kind === "data2vec-pretrain") {
    const run = parseVisionRunConfig(raw, join(dir, "config.json"));
    const like = initVisionData2Vec(run, 0);
    const p = loadTree(dir, "model", like as ParamTree, { consumeLike: true }) as typeof like;
    tree.dispose(p.head as never);
    return { kind: "data2vec-pretrain", dir, run, encoder: { shared: p.shared, layers: p.layers } };
  }
  if (raw.kind === "vision-classifier") {
    const config = raw as VisionClassifierConfig;
    const run = parseVisionRunConfig(config.run, join(dir, "config.json"));
    const init = initVisionData2Vec(run, 0);
    tree.dispose(init.head as never);
    const like: VisionClassifierParams = { encoder: { shared: init.shared, layers: init.layers }, head: newVisionHead(0, run.model.dim, config.labels.length) };
    const params = loadTree(dir, "model", like as ParamTree, { consumeLike: true }) as VisionClassifierParams;
    return { kind: "vision-classifier", dir, run, encoder: params.encoder, classifier: { params, labels: config.labels, config } };
  }
  throw new CheckpointError(`${dir}/config.json has kind ${JSON.stringify(raw.kind)}; expected a vision checkpoint (data2vec-pretrain or vision-classifier)`);
}

export async function saveVisionClassifier(dir: string, params: VisionClassifierParams, config: VisionClassifierConfig): Promise<void> {
  await saveCheckpoint(dir, { config, trees: { model: params as ParamTree } });
}
