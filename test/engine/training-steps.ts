/**
 * One data2vec micro-step (loss and every gradient) of a small text, vision and audio model, from fixed
 * weights, batch and key: the native engine's tests compare these on both engines (native.test.ts) and
 * check every elementwise kernel they run (kernels.test.ts), so both see the same kernels.
 */
import type { VisionPretrainBatch } from "../../src/vision/model.js";
import type { AudioPretrainBatch } from "../../src/audio/model.js";
import { lax, numpy as np, tree } from "../../src/engine/jax.js";
import type { ParamTree } from "../../src/engine/tree.js";
import { HostRng } from "../../src/engine/random.js";
import { makeData2VecSteps, stepKey } from "../../src/data2vec/step.js";
import type { BlockParams } from "../../src/nn/encoder.js";
import { optimizerSettings } from "../../src/train/pretrain.js";
import { initTextData2Vec, textModality } from "../../src/text/model.js";
import { resolveVisionConfig } from "../../src/vision/config.js";
import { initVisionData2Vec, visionModality } from "../../src/vision/model.js";
import { visionPretraining } from "../../src/vision/pretrain.js";
import { pretrainStream } from "../../src/train/pretrain-runner.js";
import { mnistSplits } from "../../src/vision/images.js";
import { resolveAudioConfig } from "../../src/audio/config.js";
import { audioModality, initAudioData2Vec } from "../../src/audio/model.js";
import { audioPretraining } from "../../src/audio/pretrain.js";
import { microConfig } from "../train/fixtures.js";
import { syntheticTextBatch } from "../../bench/steps.js";

export type MicroStep = () => np.Array[] | [np.Array, np.Array, np.Array, ParamTree];

function microStep<B extends { [k: string]: np.Array }>(steps: { microStep: unknown }, params: () => ParamTree, batch: () => B): MicroStep {
  return () => {
    const p = params() as never as { layers: BlockParams[] };
    const teacher = { layers: tree.map((a: np.Array) => lax.stopGradient(a.ref), p.layers as never) as unknown as BlockParams[], shared: {} };
    const [grads, out] = (steps.microStep as (...a: unknown[]) => [ParamTree, { loss: np.Array; targetVar: np.Array; predVar: np.Array }])(p, teacher, batch(), stepKey(3, 1));
    const { loss, targetVar, predVar, ...rest } = out;
    tree.dispose(rest as never);
    return [loss, targetVar, predVar, grads];
  };
}

/** The text, vision and audio micro-steps (built lazily: each compiles its own kernels). */
export const TRAINING_STEPS: Record<"text" | "vision" | "audio", () => MicroStep> = {
  text: () => {
    const cfg = microConfig({ model: { dim: 64, ffnDim: 128, heads: 4 } });
    const enc = { ...cfg.model, padId: 1 };
    const steps = makeData2VecSteps(textModality(enc), cfg.data2vec, optimizerSettings(cfg.train));
    return microStep(steps, () => initTextData2Vec(cfg, enc, 0) as never, () => syntheticTextBatch(cfg, HostRng.seeded(5)));
  },
  vision: () => {
    const cfg = resolveVisionConfig("tiny", { train: { batchSize: 8 } });
    const steps = makeData2VecSteps(visionModality(cfg.model), cfg.data2vec, optimizerSettings(cfg.train));
    const images = mnistSplits().train.images.slice(0, 16);
    return microStep(steps, () => initVisionData2Vec(cfg, 0) as never, () => pretrainStream(visionPretraining(), cfg, images).next() as VisionPretrainBatch);
  },
  audio: () => {
    const cfg = resolveAudioConfig("tiny", { train: { batchSize: 2 }, data: { cropSeconds: 0.5 } });
    const steps = makeData2VecSteps(audioModality(cfg.model), cfg.data2vec, optimizerSettings(cfg.train));
    const rng = HostRng.seeded(9);
    const clips = Array.from({ length: 4 }, (_, i) => ({ name: `c${i}`, samples: new Float32Array(9000 + 1000 * i).map(() => 2 * rng.uniform() - 1) }));
    return microStep(steps, () => initAudioData2Vec(cfg, 0) as never, () => pretrainStream(audioPretraining(), cfg, clips).next() as AudioPretrainBatch);
  },
};
