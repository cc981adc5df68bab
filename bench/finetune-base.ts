/**
 * Base-size fine-tuning and inference, one family per process (`npm run bench -- --base`): random weights with the
 * released base configurations (data2vec-text-base, data2vec-vision-base, data2vec-audio-base), synthetic inputs.
 * Each reports steady-state samples/s of fine-tuning (the second epoch; the first compiles), of inference, the peak
 * of the engine's heap (every live buffer, measured) beside `stepBytes`'s estimate, and peak RSS.
 */
import { random } from "../src/engine/jax.js";
import { initEngine } from "../src/engine/runtime.js";
import { peakBytes, resetPeakBytes, trackBuffers } from "../src/engine/memory.js";
import { disposeTree, treeLeaves } from "../src/engine/typed.js";
import { KeyStream } from "../src/nn/random.js";
import { resolveTextConfig } from "../src/text/config.js";
import { initTextEncoder } from "../src/text/model.js";
import { finetuneClassifier, newHead, predictClasses } from "../src/text/classify.js";
import { resolveVisionConfig, gridSize } from "../src/vision/config.js";
import { initVisionEncoder } from "../src/vision/model.js";
import { finetuneVision, newVisionHead, predictVision } from "../src/vision/classify.js";
import { resolveAudioConfig } from "../src/audio/config.js";
import { framesForSamples, initAudioEncoder } from "../src/audio/model.js";
import { finetuneCtc, newCtcHead, toUtterances, transcribeClips } from "../src/audio/ctc-finetune.js";
import { LIBRISPEECH_VOCAB } from "../src/audio/ctc.js";
import { cnnActivations, largestRows, relativeIndexFloats, stepBytes, type StepShape } from "../src/train/memory-plan.js";
import type { BpeTokenizer } from "../src/text/bpe.js";

/** The optimizer's place and the most rows (up to 8) that fit the heap: on the device if a row fits there, else on the host. */
function plan(shape: StepShape): { shape: StepShape; optimizer: "device" | "host"; batchSize: number } {
  const optimizer = largestRows(shape, "device", 8) > 0 ? "device" : "host";
  const batchSize = largestRows(shape, optimizer, 8);
  if (batchSize === 0) throw new Error("not even one row fits the heap");
  return { shape: { ...shape, rows: batchSize }, optimizer, batchSize };
}

export type BaseRow = { name: string; unit: string; finetune: number; inference: number; batch: string; peakHeapMB: number; estimateMB: number; optimizer: string; peakRssMB: number; stepSeconds: number };

const MB = (b: number) => Math.round(b / 2 ** 20);
const floats = (t: unknown) => treeLeaves(t).reduce((n, a) => n + a.size, 0);

/** Seconds of the second epoch (the first includes compiling), via the per-epoch hook. */
function epochTimer() {
  const marks: number[] = [performance.now()];
  return { onEpoch: () => void marks.push(performance.now()), secondEpoch: () => (marks[2] - marks[1]) / 1000 };
}

export async function baseFinetune(family: string): Promise<BaseRow> {
  await initEngine();
  await trackBuffers();
  const keys = new KeyStream(random.key(0));
  const settings = { epochs: 2, warmupFraction: 0.1, weightDecay: 0.01, lr: 1e-5, seed: 1 };
  let row: Omit<BaseRow, "peakHeapMB" | "peakRssMB">;
  resetPeakBytes();
  if (family === "text") {
    const run = resolveTextConfig("base");
    const enc = { ...run.model, padId: 1 };
    const seqLen = 128;
    const encoder = initTextEncoder(keys, enc);
    const params = { encoder, head: newHead(0, enc.dim, 2) };
    const { shape, optimizer, batchSize } = plan({ params: floats(params), trained: floats(params), rows: 1, positions: seqLen, dim: enc.dim, ffnDim: enc.ffnDim, heads: enc.heads, layers: enc.layers });
    const examples = 4 * batchSize;
    const ids = Array.from({ length: examples }, (_, i) => Int32Array.from({ length: seqLen - 2 }, (_, t) => 4 + ((i * 131 + t * 7) % 50000)));
    const data = { ids: ids.map((x) => Int32Array.from([0, ...x, 2])), labels: ids.map((_, i) => i % 2) };
    const tok = { bos: 0, eos: 2, pad: 1 } as BpeTokenizer;
    const timer = epochTimer();
    const trained = await finetuneClassifier(params, enc, tok, data, 2, { ...settings, batchSize, seqLen, optimizer }, { quiet: true, onEpoch: timer.onEpoch });
    const sec = timer.secondEpoch();
    const t0 = performance.now();
    await predictClasses(trained.params, enc, tok, data, 2, batchSize, seqLen);
    const inf = (performance.now() - t0) / 1000;
    disposeTree(trained.params);
    row = { name: "text-base (125M) sequence classification", unit: "sequences/s", finetune: examples / sec, inference: examples / inf, batch: `${batchSize} × ${seqLen} tokens`, estimateMB: MB(stepBytes(shape, optimizer)), optimizer, stepSeconds: sec / (examples / batchSize) };
  } else if (family === "vision") {
    const run = resolveVisionConfig("base");
    const m = run.model;
    const params = { encoder: initVisionEncoder(keys, m), head: newVisionHead(0, m.dim, 10) };
    const g = gridSize(m);
    const { shape, optimizer, batchSize } = plan({ params: floats(params), trained: floats(params), rows: 1, positions: 1 + g * g, dim: m.dim, ffnDim: m.ffnDim, heads: m.heads, layers: m.layers, constantFloats: relativeIndexFloats(g, m.relativePositionBias !== "none") });
    const examples = 4 * batchSize;
    const images = Array.from({ length: examples }, (_, i) => ({ channels: 3, height: m.imageSize, width: m.imageSize, data: Uint8Array.from({ length: 3 * m.imageSize ** 2 }, (_, k) => (k * 31 + i * 17) % 256) }));
    const train = { images, labels: images.map((_, i) => i % 10), classes: Array.from({ length: 10 }, (_, i) => String(i)) };
    const timer = epochTimer();
    const trained = await finetuneVision(params, run, train, { ...settings, batchSize, augment: false, optimizer }, { quiet: true, onEpoch: timer.onEpoch });
    const sec = timer.secondEpoch();
    const t0 = performance.now();
    await predictVision(trained.params, run, images, batchSize);
    const inf = (performance.now() - t0) / 1000;
    disposeTree(trained.params);
    row = { name: "vision-base (86M) image classification, 224²", unit: "images/s", finetune: examples / sec, inference: examples / inf, batch: `${batchSize} × ${1 + g * g} patches`, estimateMB: MB(stepBytes(shape, optimizer)), optimizer, stepSeconds: sec / (examples / batchSize) };
  } else {
    const run = resolveAudioConfig("base");
    const m = { ...run.model, posConvPadding: "leak" as const };
    const seconds = 4;
    const encoder = initAudioEncoder(keys, m);
    const params = { encoder, head: newCtcHead(0, m.dim, LIBRISPEECH_VOCAB.length) };
    const frames = framesForSamples(seconds * m.sampleRate, m.convLayers);
    const cnn = floats(encoder.shared.features);
    const { shape, optimizer, batchSize: rows } = plan({ params: floats(params), trained: floats(params) - cnn, rows: 1, positions: frames, dim: m.dim, ffnDim: m.ffnDim, heads: m.heads, layers: m.layers, cnnFloats: cnnActivations(seconds * m.sampleRate, m.convLayers, false) });
    const batchSeconds = rows * seconds;
    const clipsN = 4 * rows;
    const clips = Array.from({ length: clipsN }, (_, i) => ({ name: `c${i}`, samples: Float32Array.from({ length: seconds * m.sampleRate }, (_, t) => Math.sin(t * (0.01 + i * 0.003))), transcript: "HELLO WORLD" }));
    const timer = epochTimer();
    const ctcSettings = { ...settings, batchSize: 8, freezeFeatureEncoder: true, maxBatchSeconds: batchSeconds, maskProb: 0.25, maskLength: 10, optimizer };
    const trained = await finetuneCtc(params, m, toUtterances(clips, LIBRISPEECH_VOCAB), ctcSettings, { quiet: true, onEpoch: timer.onEpoch });
    const sec = timer.secondEpoch();
    const t0 = performance.now();
    await transcribeClips(trained.params, m, LIBRISPEECH_VOCAB, clips, { batchSize: rows, maxBatchSeconds: batchSeconds });
    const inf = (performance.now() - t0) / 1000;
    disposeTree(trained.params);
    row = { name: "audio-base (94M) CTC, CNN frozen", unit: "audio-s/s", finetune: (clipsN * seconds) / sec, inference: (clipsN * seconds) / inf, batch: `${batchSeconds / seconds} × ${seconds} s (${frames} frames)`, estimateMB: MB(stepBytes(shape, optimizer)), optimizer, stepSeconds: sec / ((clipsN * seconds) / batchSeconds) };
  }
  keys.close();
  return { ...row, peakHeapMB: MB(peakBytes()), peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024) };
}
