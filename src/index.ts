/**
 * data2vec in TypeScript: the library API. Call `await initEngine()` once before using any model code.
 */
export { initEngine, engineThreads } from "./engine/runtime.js";
export * from "./engine/errors.js";
export { HostRng } from "./engine/random.js";
export { encodeSafetensors, decodeSafetensors, toFloat32, type HostTensor } from "./engine/safetensors.js";
export { adamwInit, adamwUpdate, learningRate, type AdamWConfig, type ScheduleConfig } from "./engine/optim.js";
export { liveBuffers, trackBuffers } from "./engine/memory.js";
export * as nn from "./nn/index.js";
export type { Data2VecSettings } from "./data2vec/config.js";
export { emaDecay, emaStepDue, emaUpdate, type EmaSchedule } from "./data2vec/ema.js";
export { buildTargets, normalizeTarget, type TargetNorm } from "./data2vec/targets.js";
export { regressionLoss, meanStd } from "./data2vec/loss.js";
export { data2vecLoss, regressionHead, type Modality, type Data2VecParams } from "./data2vec/model.js";
export { makeData2VecSteps } from "./data2vec/step.js";
export { checkCollapse } from "./data2vec/monitor.js";
export { pretrain, type PretrainData, type PretrainSetup, type PretrainRecord } from "./train/pretrain.js";
export { saveCheckpoint, loadTree } from "./train/checkpoint.js";
export { BpeTokenizer } from "./text/bpe.js";
export { loadBrown } from "./text/brown.js";
export { brownGenreTask } from "./text/brown-genre.js";
export { resolveTextConfig, TEXT_PRESETS, type TextRunConfig } from "./text/config.js";
export { readTextCorpus, readLabeledText } from "./text/data.js";
export { maskTokens, type TextMaskConfig } from "./text/masking.js";
export { encodeText, textModality, initTextEncoder, type TextEncoderConfig } from "./text/model.js";
export { pretrainText } from "./text/pretrain.js";
export { finetuneClassifier, predictClasses, accuracy, macroF1 } from "./text/classify.js";
export { loadTextCheckpoint, saveClassifier } from "./text/checkpoints.js";
