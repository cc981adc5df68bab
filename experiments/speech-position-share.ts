/**
 * Do a speech model's representations encode the clip's content, or only the position in it? For a
 * pretraining run (or random weights), run the encoder on clips cut to the same length and report, for the
 * data2vec targets (the instance-normalized average of the top-K blocks' FFN outputs) and for the final
 * states (instance-normalized the same way):
 *   - positionShare: the share of the variance the frame index alone explains (`data2vec/loss.ts`); about
 *     1/clips for features unrelated to position, 1 when every clip gets the same sequence;
 *   - autocorrelation at a few lags (how smooth in time);
 *   - participation ratio of the covariance spectrum (how many directions carry the variance).
 *
 *   node dist/experiments/speech-position-share.js --model RUN [--scratch SEED] [--teacher] [--clips 4]
 *       [--seconds 4] [--data data/speech]
 *
 * `--teacher` reads the run's EMA teacher blocks instead of the student's. Clips come from DATA/test.
 */
import { join } from "node:path";
import { freshAudioEncoder, loadAudioCheckpoint } from "../src/audio/checkpoints.js";
import { libriSpeechEntries, loadClips } from "../src/audio/data.js";
import { audioEncoderSpec, embedAudio } from "../src/audio/model.js";
import { positionShare } from "../src/data2vec/loss.js";
import { buildTargets } from "../src/data2vec/targets.js";
import { numpy as np, tree } from "../src/engine/jax.js";
import { initEngine } from "../src/engine/runtime.js";
import type { BlockParams } from "../src/nn/encoder.js";
import { runEncoder } from "../src/nn/encoder.js";
import { loadTree } from "../src/train/checkpoint.js";
import { arg } from "./common.js";

const model = arg("model", "");
if (!model) throw new Error("--model RUN (an audio pretraining run) is required");
const scratch = arg("scratch", "");
const count = Number(arg("clips", "4"));
const seconds = Number(arg("seconds", "4"));
const data = arg("data", "data/speech");

await initEngine();
const loaded = loadAudioCheckpoint(model);
const encoder = scratch ? freshAudioEncoder(loaded.run, Number(scratch)) : loaded.encoder;
if (process.argv.includes("--teacher")) encoder.layers = (loadTree(loaded.dir, "teacher", { layers: encoder.layers } as never) as { layers: BlockParams[] }).layers;
const m = loaded.run.model;
const length = Math.round(seconds * m.sampleRate);
const clips = (await loadClips(libriSpeechEntries(join(data, "test")), m.sampleRate, m.normalize)).filter((c) => c.samples.length >= length).slice(0, count);
if (clips.length < 2) throw new Error(`fewer than 2 test clips of at least ${seconds} s in ${data}/test`);
const wave = new Float32Array(clips.length * length);
clips.forEach((c, i) => wave.set(c.samples.subarray(0, length), i * length));

const x = embedAudio(tree.ref(encoder.shared as never) as never, np.array(wave).reshape([clips.length, length]), null, null, m, null);
const run = runEncoder(encoder.layers, x, audioEncoderSpec(m), { padding: null, keys: null, capture: "ffn", captureFrom: m.layers - loaded.run.data2vec.topK });

async function describe(y: np.Array) {
  const [n, t, d] = y.shape;
  const share = (await positionShare(y.ref, null).data())[0];
  const v = (await y.data()) as Float32Array;
  const at = (row: number, step: number, dim: number) => v[(row * t + step) * d + dim];
  let energy = 0;
  for (const value of v) energy += value * value;
  const autocorrelation = (lag: number) => {
    let s = 0;
    for (let r = 0; r < n; r++) for (let k = 0; k + lag < t; k++) for (let j = 0; j < d; j++) s += at(r, k, j) * at(r, k + lag, j);
    return s / (n * (t - lag) * d) / (energy / v.length);
  };
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n * t; i++) for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) cov[a * d + b] += v[i * d + a] * v[i * d + b];
  let trace = 0;
  let frobenius = 0;
  for (let a = 0; a < d; a++) trace += cov[a * d + a];
  for (const c of cov) frobenius += c * c;
  const round = (z: number) => Math.round(z * 1000) / 1000;
  return { positionShare: round(share), chance: round(1 / n), autocorrelation: Object.fromEntries([1, 5, 10, 20].map((l) => [l, round(autocorrelation(l))])), participationRatio: round((trace * trace) / frobenius) };
}

const targets = buildTargets(run.captured, "instance", "none", null);
const final = buildTargets([run.out], "instance", "none", null);
console.log(JSON.stringify({ model: scratch ? `random (seed ${scratch})` : model, blocks: process.argv.includes("--teacher") ? "teacher" : "student", clips: clips.length, seconds, targets: await describe(targets), finalStates: await describe(final) }));
