/** Vision checkpoints: the pretrained data2vec model and the fine-tuned image classifier. */
import { disposeTree } from "../engine/typed.js";
import { join } from "node:path";
import { loadPretrainedEncoder, loadTree, readCheckpointOfKind, type LoadedCheckpoint } from "../train/checkpoint.js";
import { newVisionHead, type VisionClassifierParams, type VisionFinetuneSettings } from "./classify.js";
import { parseVisionRunConfig, type VisionRunConfig } from "./config.js";
import { initVisionData2Vec, initVisionEncoder, type VisionEncoderParams } from "./model.js";
import { random } from "../engine/jax.js";
import { KeyStream } from "../nn/random.js";
import type { EncoderSource } from "../train/finetune.js";
import { initVisionData2Vec2 } from "./pretrain.js";
import type { Data2VecParams } from "../data2vec/model.js";
import type { ParamTree } from "../engine/tree.js";

/** Fresh pretraining parameters of a run's objective (data2vec or data2vec 2.0): the shape a checkpoint's trees load into. */
export function initVisionPretrained(run: VisionRunConfig, seed: number): Data2VecParams<ParamTree, ParamTree> {
  return run.data2vec.objective === "data2vec2" ? initVisionData2Vec2(run, seed) : initVisionData2Vec(run, seed);
}

export type VisionClassifierConfig = {
  kind: "vision-classifier";
  run: VisionRunConfig;
  labels: string[];
  finetune: VisionFinetuneSettings & { linearProbe: boolean };
  initializedFrom: string | null;
};

export type LoadedVision = LoadedCheckpoint<"vision-classifier", VisionRunConfig, VisionEncoderParams, { params: VisionClassifierParams; labels: string[]; config: VisionClassifierConfig }>;

export function loadVisionCheckpoint(path: string): LoadedVision {
  return readCheckpointOfKind<LoadedVision>(path, "vision", {
    "data2vec-pretrain": (raw, dir) => {
      const run = parseVisionRunConfig(raw, join(dir, "config.json"));
      return { kind: "data2vec-pretrain", dir, run, encoder: loadPretrainedEncoder(dir, initVisionPretrained(run, 0)) as VisionEncoderParams };
    },
    "vision-classifier": (raw, dir) => {
      const config = raw as VisionClassifierConfig;
      const run = parseVisionRunConfig(config.run, join(dir, "config.json"));
      const init = initVisionPretrained(run, 0);
      disposeTree(init.head);
      const like: VisionClassifierParams = { encoder: { shared: init.shared, layers: init.layers } as VisionEncoderParams, head: newVisionHead(0, run.model.dim, config.labels.length) };
      const params = loadTree(dir, "model", like, { consumeLike: true });
      return { kind: "vision-classifier", dir, run, encoder: params.encoder, classifier: { params, labels: config.labels, config } };
    },
  });
}

/** Vision encoders for fine-tuning: from a checkpoint (its classifier head freed), or fresh. */
export const visionEncoders: EncoderSource<VisionRunConfig, VisionEncoderParams> = {
  load(dir) {
    const { run, encoder, classifier } = loadVisionCheckpoint(dir);
    if (classifier) disposeTree(classifier.params.head);
    return { arch: run, encoder };
  },
  fresh(run, seed) {
    if (run.data2vec.objective === "data2vec2") {
      const { shared, layers, head } = initVisionData2Vec2(run, seed);
      disposeTree(head);
      return { shared, layers };
    }
    const keys = new KeyStream(random.key(seed));
    const encoder = initVisionEncoder(keys, run.model);
    keys.close();
    return encoder;
  },
};
