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
export { loadTextCheckpoint } from "./text/checkpoints.js";
export { saveModel } from "./train/checkpoint.js";
// Speech
export { decodeWav, decodeFlac, decodeAudio, readAudio, encodeWav16, resample, normalizeClip } from "./audio/io.js";
export { listAudioFiles, readManifest, unlabeledEntries, libriSpeechEntries, labeledAudioEntries, loadClips, totalSeconds, type Clip } from "./audio/data.js";
export { resolveAudioConfig, AUDIO_PRESETS, type AudioRunConfig, type AudioModelConfig } from "./audio/config.js";
export { spanMask } from "./audio/masking.js";
export { featureEncoder, encodeAudio, audioModality, initAudioEncoder, framesForSamples, type AudioEncoderParams } from "./audio/model.js";
export { pretrainAudio } from "./audio/pretrain.js";
export { LIBRISPEECH_VOCAB, encodeTranscript, ctcLoss, ctcGreedyDecode, ctcBeamSearch, logSoftmax } from "./audio/ctc.js";
export { finetuneCtc, evaluateCtc, transcribeClips, ctcLogProbs, encoderStates, newCtcHead, toUtterances, type CtcSettings } from "./audio/ctc-finetune.js";
export { finetuneAudioClassifier, predictAudioClasses } from "./audio/classify.js";
export { loadAudioCheckpoint, freshAudioEncoder } from "./audio/checkpoints.js";
export { synthesizeSpeech } from "./audio/synth.js";
export { editDistance, wordErrorRate, charErrorRate } from "./train/metrics.js";
// Vision
export { resolveVisionConfig, VISION_PRESETS, type VisionRunConfig } from "./vision/config.js";
export { decodeImage, readImageDir, readImageFolder, mnistSplits } from "./vision/images.js";
export { pretrainVision } from "./vision/pretrain.js";
export { finetuneVision, predictVision, imageFeatures } from "./vision/classify.js";
export { loadVisionCheckpoint } from "./vision/checkpoints.js";
// Hugging Face checkpoints
export { loadHfModel, runHfModel, isHfModelDir } from "./hf/model.js";
export { exportHf } from "./hf/export.js";
