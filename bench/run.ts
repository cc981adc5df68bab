/**
 * Benchmarks (not tests): data2vec training-step throughput for the text, vision and audio presets, the step's effective
 * GFLOP/s, the same process's 512×512 matmul GFLOP/s, and peak RSS. Each preset runs in its own process
 * so peak RSS is its own.
 *   npm run bench            a table
 *   npm run bench -- --json  one JSON object per line
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { jit, numpy as np, random, tree } from "../src/engine/jax.js";
import { engineThreads, initEngine } from "../src/engine/runtime.js";
import { HostRng } from "../src/engine/random.js";
import { resolveTextConfig, type TextRunConfig } from "../src/text/config.js";
import { maskTokens } from "../src/text/masking.js";
import { positionIds, textModality, type TextPretrainBatch } from "../src/text/model.js";
import { initTextData2Vec } from "../src/text/model.js";
import { makeData2VecSteps, stepKey } from "../src/data2vec/step.js";
import { freshPretrainState } from "../src/train/pretrain.js";
import type { BlockParams } from "../src/nn/encoder.js";
import { resolveVisionConfig, gridSize, type VisionRunConfig } from "../src/vision/config.js";
import { initVisionData2Vec, visionModality } from "../src/vision/model.js";
import { ImageStream } from "../src/vision/pretrain.js";
import { mnistSplits } from "../src/vision/images.js";
import { resolveAudioConfig, type AudioRunConfig } from "../src/audio/config.js";
import { framesForSamples, initAudioData2Vec, audioModality } from "../src/audio/model.js";
import { AudioStream } from "../src/audio/pretrain.js";
import { optimizerSettings } from "../src/train/pretrain.js";

type Row = { name: string; unit: string; value: number; peakRssMB: number; [k: string]: unknown };

const peakRssMB = () => Math.round(process.resourceUsage().maxRSS / 1024);

async function matmulGflops(): Promise<number> {
  const n = 512;
  const a = random.normal(random.key(1), [n, n]);
  const b = random.normal(random.key(2), [n, n]);
  const mm = jit((x: np.Array, y: np.Array) => np.matmul(x, y));
  for (let i = 0; i < 3; i++) await mm(a.ref, b.ref).data();
  const reps = 30;
  const t = performance.now();
  for (let i = 0; i < reps; i++) await mm(a.ref, b.ref).data();
  const ms = (performance.now() - t) / reps;
  a.dispose();
  b.dispose();
  mm.dispose();
  return (2 * n ** 3) / ms / 1e6;
}

/** Matmul FLOPs of one data2vec text update: student forward + backward (3×) and teacher forward (1×). */
export function textStepFlops(c: TextRunConfig): number {
  const { dim: d, ffnDim: f, layers: l } = c.model;
  const t = c.train.seqLen;
  const perTokenLayer = 2 * (4 * d * d + 2 * d * f) + 4 * t * d; // projections + FFN + attention scores/context
  const head = c.data2vec.headLayers === 2 ? 2 * (d * 2 * d + 2 * d * d) : 2 * d * d;
  const tokens = c.train.batchSize * t;
  return tokens * (3 * (l * perTokenLayer + head) + l * perTokenLayer);
}

function syntheticBatch(c: TextRunConfig, rng: HostRng): TextPretrainBatch {
  const { batchSize: b, seqLen: t } = c.train;
  const v = c.model.vocabSize;
  const ids = new Int32Array(b * t);
  for (let i = 0; i < b; i++) {
    ids[i * t] = 0;
    for (let j = 1; j < t - 1; j++) ids[i * t + j] = rng.int(4, v - 2);
    ids[i * t + t - 1] = 2;
  }
  const source = new Int32Array(ids.length);
  const weights = new Float32Array(ids.length);
  for (let i = 0; i < b; i++) {
    const m = maskTokens(ids.subarray(i * t, (i + 1) * t), c.masking, rng, { maskId: v - 1, isSpecial: (id) => id < 4, vocabSize: v, firstRegularId: 4 });
    source.set(m.source, i * t);
    weights.set(m.lossWeights, i * t);
  }
  const shape = [b, t];
  return {
    source: np.array(source, { dtype: np.int32 }).reshape(shape),
    target: np.array(ids, { dtype: np.int32 }).reshape(shape),
    positions: np.array(positionIds(ids, b, t, 1), { dtype: np.int32 }).reshape(shape),
    padding: np.ones(shape),
    lossWeights: np.array(weights).reshape(shape),
  };
}

async function benchTextStep(preset: string): Promise<Row[]> {
  const matmulBefore = await matmulGflops();
  const c = resolveTextConfig(preset);
  const enc = { ...c.model, padId: 1 };
  let state = freshPretrainState(initTextData2Vec(c, enc, 0));
  const steps = makeData2VecSteps(textModality(enc), c.data2vec, { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.01, clipNorm: 5 });
  const rng = HostRng.seeded(0);
  const run = async (i: number) => {
    const teacher = steps.ema(state.teacher, tree.ref(state.params.layers as never) as BlockParams[], np.array(0.999));
    const [params, opt, out] = steps.update(state.params, tree.ref(teacher as never) as BlockParams[], state.opt, syntheticBatch(c, rng), stepKey(0, i), np.array(1e-4));
    state = { params, teacher, opt, step: i };
    await out.loss.data();
    tree.dispose([out.targetVar, out.predVar, out.gradNorm, out.maskedSteps] as never);
  };
  await run(0); // compile
  await run(1);
  const reps = preset === "tiny" ? 6 : 3;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await run(2 + i);
  const sec = (performance.now() - t0) / 1000 / reps;
  const tokens = c.train.batchSize * c.train.seqLen;
  const gflops = textStepFlops(c) / sec / 1e9;
  // The reference rate is the better of the process's matmul before and after the training steps.
  const mm = Math.max(matmulBefore, await matmulGflops());
  const shape = { preset, layers: c.model.layers, dim: c.model.dim, ffnDim: c.model.ffnDim, heads: c.model.heads, batchSize: c.train.batchSize, seqLen: c.train.seqLen, vocabSize: c.model.vocabSize, threads: engineThreads() };
  const rss = peakRssMB();
  return [
    { name: `text-${preset}-train-step`, unit: "tokens/s", value: tokens / sec, peakRssMB: rss, stepSeconds: sec, ...shape },
    { name: `text-${preset}-train-step-effective`, unit: "GFLOP/s", value: gflops, peakRssMB: rss, ...shape },
    { name: `text-${preset}-matmul-512`, unit: "GFLOP/s", value: mm, peakRssMB: rss, ...shape },
  ];
}

/** Matmul FLOPs of one data2vec vision update (tokens = CLS + patches; patch embedding and head included). */
export function visionStepFlops(c: VisionRunConfig): number {
  const { dim: d, ffnDim: f, layers: l, channels, patchSize: p } = c.model;
  const t = gridSize(c.model) ** 2 + 1;
  const perTokenLayer = 2 * (4 * d * d + 2 * d * f) + 4 * t * d;
  const embed = 2 * channels * p * p * d;
  const head = 2 * d * d * c.data2vec.headLayers;
  const tokens = c.train.batchSize * t;
  return tokens * (3 * (l * perTokenLayer + embed + head) + l * perTokenLayer + embed);
}

async function benchVisionStep(preset: string): Promise<Row[]> {
  const matmulBefore = await matmulGflops();
  const c = resolveVisionConfig(preset);
  let state = freshPretrainState(initVisionData2Vec(c, 0));
  const steps = makeData2VecSteps(visionModality(c.model), c.data2vec, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, clipNorm: 3 });
  // Real MNIST batches (augmentation and block masks on the host are part of the step's cost).
  const stream = new ImageStream(mnistSplits().train.images.slice(0, 512), c, null, { mnist: true });
  const run = async (i: number) => {
    const teacher = steps.ema(state.teacher, tree.ref(state.params.layers as never) as BlockParams[], np.array(0.999));
    const [params, opt, out] = steps.update(state.params, tree.ref(teacher as never) as BlockParams[], state.opt, stream.next(), stepKey(0, i), np.array(1e-4));
    state = { params, teacher, opt, step: i };
    await out.loss.data();
    tree.dispose([out.targetVar, out.predVar, out.gradNorm, out.maskedSteps] as never);
  };
  await run(0);
  await run(1);
  const reps = preset === "tiny" ? 20 : 5;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await run(2 + i);
  const sec = (performance.now() - t0) / 1000 / reps;
  const mm = Math.max(matmulBefore, await matmulGflops());
  const m = c.model;
  const shape = { preset, layers: m.layers, dim: m.dim, ffnDim: m.ffnDim, heads: m.heads, batchSize: c.train.batchSize, imageSize: m.imageSize, patchSize: m.patchSize, tokens: gridSize(m) ** 2 + 1, threads: engineThreads() };
  const rss = peakRssMB();
  return [
    { name: `vision-${preset}-train-step`, unit: "images/s", value: c.train.batchSize / sec, peakRssMB: rss, stepSeconds: sec, ...shape },
    { name: `vision-${preset}-train-step-effective`, unit: "GFLOP/s", value: visionStepFlops(c) / sec / 1e9, peakRssMB: rss, ...shape },
    { name: `vision-${preset}-matmul-512`, unit: "GFLOP/s", value: mm, peakRssMB: rss, ...shape },
  ];
}

/**
 * Matmul FLOPs of one data2vec speech update. The CNN runs once (forward + backward, 3×) and is shared by
 * both views; projection, positional conv, blocks and head run for the student (3×), the positional conv
 * and blocks once more for the teacher (1×).
 */
export function audioStepFlops(c: AudioRunConfig): number {
  const m = c.model;
  const crop = Math.round(c.data.cropSeconds * m.sampleRate);
  let cnn = 0;
  let inChannels = 1;
  m.convLayers.forEach((layer, i) => {
    cnn += 2 * framesForSamples(crop, m.convLayers.slice(0, i + 1)) * layer.kernel * inChannels * layer.channels;
    inChannels = layer.channels;
  });
  const t = framesForSamples(crop, m.convLayers);
  const d = m.dim;
  const projection = 2 * t * inChannels * d;
  const posConv = 2 * m.posConvLayers * t * m.posConvKernel * (d * d) / m.posConvGroups;
  const blocks = m.layers * t * (2 * (4 * d * d + 2 * d * m.ffnDim) + 4 * t * d);
  const head = 2 * t * d * d * c.data2vec.headLayers;
  return c.train.batchSize * (3 * (cnn + projection + posConv + blocks + head) + posConv + blocks);
}

/** Synthetic speech-like clips (chirps in noise, 1–3 s): the step's cost does not depend on the content. */
function syntheticClips(n: number, rate: number): { name: string; samples: Float32Array }[] {
  const rng = HostRng.seeded(7);
  return Array.from({ length: n }, (_, i) => {
    const samples = new Float32Array(Math.round((1 + 2 * rng.uniform()) * rate));
    const f0 = 100 + 200 * rng.uniform();
    for (let j = 0; j < samples.length; j++) samples[j] = Math.sin((2 * Math.PI * f0 * j * (1 + j / samples.length)) / rate) + 0.1 * (2 * rng.uniform() - 1);
    return { name: `synthetic-${i}`, samples };
  });
}

async function benchAudioStep(preset: string): Promise<Row[]> {
  const matmulBefore = await matmulGflops();
  const c = resolveAudioConfig(preset);
  let state = freshPretrainState(initAudioData2Vec(c, 0));
  const steps = makeData2VecSteps(audioModality(c.model), c.data2vec, optimizerSettings(c.train));
  const stream = new AudioStream(syntheticClips(4 * c.train.batchSize, c.model.sampleRate), c, null, { caller: true });
  let audioSeconds = 0;
  const run = async (i: number) => {
    const teacher = steps.ema(state.teacher, tree.ref(state.params.layers as never) as BlockParams[], np.array(0.999));
    const [params, opt, out] = steps.update(state.params, tree.ref(teacher as never) as BlockParams[], state.opt, stream.next(), stepKey(0, i), np.array(1e-4));
    audioSeconds += stream.unitsPerBatch;
    state = { params, teacher, opt, step: i };
    await out.loss.data();
    tree.dispose([out.targetVar, out.predVar, out.gradNorm, out.maskedSteps] as never);
  };
  await run(0);
  await run(1);
  const reps = preset === "tiny" ? 6 : 4;
  audioSeconds = 0;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await run(2 + i);
  const sec = (performance.now() - t0) / 1000 / reps;
  const mm = Math.max(matmulBefore, await matmulGflops());
  const m = c.model;
  const shape = { preset, layers: m.layers, dim: m.dim, ffnDim: m.ffnDim, heads: m.heads, cnnChannels: m.convLayers[0].channels, batchSize: c.train.batchSize, cropSeconds: c.data.cropSeconds, frames: framesForSamples(Math.round(c.data.cropSeconds * m.sampleRate), m.convLayers), threads: engineThreads() };
  const rss = peakRssMB();
  return [
    { name: `audio-${preset}-train-step`, unit: "audio-s/s", value: audioSeconds / reps / sec, peakRssMB: rss, stepSeconds: sec, ...shape },
    { name: `audio-${preset}-train-step-effective`, unit: "GFLOP/s", value: audioStepFlops(c) / sec / 1e9, peakRssMB: rss, ...shape },
    { name: `audio-${preset}-matmul-512`, unit: "GFLOP/s", value: mm, peakRssMB: rss, ...shape },
  ];
}

const args = process.argv.slice(2);
const json = args.includes("--json");
const one = args.indexOf("--one");
if (one >= 0) {
  await initEngine();
  const what = args[one + 1];
  if (what === "matmul") {
    const rss = peakRssMB();
    console.log(JSON.stringify({ name: `matmul-512-threads-${engineThreads()}`, unit: "GFLOP/s", value: await matmulGflops(), peakRssMB: rss, threads: engineThreads() }));
  } else if (what.startsWith("audio-")) {
    for (const row of await benchAudioStep(what.slice("audio-".length))) console.log(JSON.stringify(row));
  } else if (what.startsWith("vision-")) {
    for (const row of await benchVisionStep(what.slice("vision-".length))) console.log(JSON.stringify(row));
  } else for (const row of await benchTextStep(what)) console.log(JSON.stringify(row));
} else {
  const self = fileURLToPath(import.meta.url);
  const rows: Row[] = [];
  const jobs: [string, Record<string, string>][] = [
    ["matmul", { D2V_THREADS: "1" }],
    ["matmul", { D2V_THREADS: "2" }],
    ["tiny", {}],
    ["small", {}],
    ["vision-tiny", {}],
    ["vision-small", {}],
    ["audio-tiny", {}],
    ["audio-small", {}],
  ];
  for (const [what, env] of jobs) {
    const r = spawnSync(process.execPath, [self, "--one", what], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
    if (r.status !== 0) throw new Error(`benchmark ${what} failed`);
    const got = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Row);
    rows.push(...got);
    if (json) got.forEach((row) => console.log(JSON.stringify(row)));
  }
  if (!json) {
    console.log("| benchmark | value | unit | peak RSS (MB) |\n|---|---:|---|---:|");
    for (const r of rows) console.log(`| ${r.name} | ${r.value.toFixed(1)} | ${r.unit} | ${r.peakRssMB} |`);
    for (const name of ["text-tiny", "text-small", "vision-tiny", "vision-small", "audio-tiny", "audio-small"]) {
      const eff = rows.find((r) => r.name === `${name}-train-step-effective`)!;
      const mm = rows.find((r) => r.name === `${name}-matmul-512`)!;
      console.log(`${name}: step at ${((100 * eff.value) / mm.value).toFixed(0)}% of the 512×512 matmul rate`);
    }
  }
}
