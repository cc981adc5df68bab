import assert from "node:assert/strict";
import { test } from "node:test";
import { numpy as np, tree } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { resolveAudioConfig } from "../../src/audio/config.js";
import { cnnWindow, LOG_MEL_FLOOR, logMelFeatures, melFilterbank } from "../../src/audio/logmel.js";
import { join } from "node:path";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { paperConvLayers } from "../../src/audio/config.js";
import { pretrainAudio } from "../../src/audio/pretrain.js";
import { encodeAudio, framesForSamples, frameMaskArray, initAudioEncoder } from "../../src/audio/model.js";
import { LIBRISPEECH_VOCAB } from "../../src/audio/ctc.js";
import { evaluateCtc, finetuneCtc, newCtcHead, toUtterances } from "../../src/audio/ctc-finetune.js";
import { libriSpeechEntries, loadClips } from "../../src/audio/data.js";
import { KeyStream } from "../../src/nn/random.js";
import { random } from "../../src/engine/jax.js";
import { ROOT } from "../helpers.js";
import { assertClose, toHost } from "../jaxutil.js";

await initEngine();

const layers = paperConvLayers(8);
const spec = { convLayers: layers, frontEnd: "logmel" as const, melBands: 24, sampleRate: 16000 };

test("log mel frames are the CNN's frames: a 400-sample window every 320 samples, the same count for any length", async () => {
  assert.deepEqual(cnnWindow(layers), { window: 400, hop: 320 });
  // 1039 samples: the CNN's stacked floors give 3 frames where one 400/320 window would give 2.
  for (const n of [400, 719, 1039, 9000, 16000, 16123]) {
    const y = logMelFeatures(np.zeros([2, n]), spec);
    assert.deepEqual(y.shape, [2, framesForSamples(n, layers), 24], `length ${n}`);
    y.dispose();
  }
});

test("mel filters are triangles on the HTK scale: neighbours sum to 1 between their centres, 0 outside", () => {
  const bands = 10;
  const f = melFilterbank(16000, 400, bands);
  const bins = 201;
  const mel = (hz: number) => 2595 * Math.log10(1 + hz / 700);
  const edge = (j: number) => 700 * (10 ** (((j / (bands + 1)) * mel(8000)) / 2595) - 1);
  for (let k = 0; k < bins; k++) {
    const hz = k * 40;
    for (let m = 0; m < bands; m++) {
      // Band m rises from edge m to 1 at edge m + 1 (its centre) and falls to 0 at edge m + 2; the next band rises
      // as it falls, so between two centres the two sum to 1.
      if (hz <= edge(m) || hz >= edge(m + 2)) assert.equal(f[k * bands + m], 0, `bin ${k}, band ${m}`);
      if (m + 1 < bands && hz >= edge(m + 1) && hz <= edge(m + 2)) assert.ok(Math.abs(f[k * bands + m] + f[k * bands + m + 1] - 1) < 1e-5, `bin ${k}, bands ${m}, ${m + 1}`);
    }
  }
});

test("log mel energies match a hand computation: periodic Hann window, DFT power, mel filters, log", async () => {
  const n = 1039;
  const wave = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.3) + 0.5 * Math.cos(i * 0.071) + 0.2 * Math.sin(i * i * 1e-3));
  const got = await toHost(logMelFeatures(np.array(wave).reshape([1, n]), spec));
  const filters = melFilterbank(16000, 400, 24);
  const frames = framesForSamples(n, layers);
  const want: number[] = [];
  for (let t = 0; t < frames; t++) {
    const power = new Float64Array(201);
    for (let k = 0; k <= 200; k++) {
      let re = 0;
      let im = 0;
      for (let i = 0; i < 400; i++) {
        const x = (wave[t * 320 + i] ?? 0) * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / 400));
        re += x * Math.cos((2 * Math.PI * k * i) / 400);
        im -= x * Math.sin((2 * Math.PI * k * i) / 400);
      }
      power[k] = re * re + im * im;
    }
    for (let m = 0; m < 24; m++) {
      let e = 0;
      for (let k = 0; k <= 200; k++) e += power[k] * filters[k * 24 + m];
      want.push(Math.log(e + LOG_MEL_FLOOR));
    }
  }
  assertClose(got, want, 2e-3, "log mel");
});

test("a 1 kHz tone is loudest in the mel band around 1 kHz", async () => {
  const bands = 40;
  const wave = Float32Array.from({ length: 4000 }, (_, i) => Math.sin((2 * Math.PI * 1000 * i) / 16000));
  const y = await toHost(logMelFeatures(np.array(wave).reshape([1, 4000]), { ...spec, melBands: bands }));
  const frame = y.slice(3 * bands, 4 * bands);
  const loudest = frame.indexOf(Math.max(...frame));
  const mel = (hz: number) => 2595 * Math.log10(1 + hz / 700);
  const centreHz = 700 * (10 ** (((loudest + 1) / (bands + 1)) * mel(8000) / 2595) - 1);
  assert.ok(Math.abs(centreHz - 1000) < 120, `loudest band ${loudest} is centred at ${centreHz.toFixed(0)} Hz`);
});

test("a speech model on log mel frames has no CNN weights; a padded clip gives the clip's own states; CTC fine-tuning learns", async () => {
  const cfg = resolveAudioConfig("tiny", { model: { frontEnd: "logmel", melBands: 40, dropout: 0, featureDropout: 0, attentionDropout: 0, layers: 2 }, data2vec: { topK: 2 } });
  const m = cfg.model;
  const keys = new KeyStream(random.key(3));
  const enc = initAudioEncoder(keys, m);
  keys.close();
  assert.equal(enc.shared.features.length, 0);
  assert.deepEqual(enc.shared.projection.weight.shape, [40, m.dim]);
  const n = 9000;
  const clip = Float32Array.from({ length: n }, (_, i) => Math.sin(i / 7) * 0.5 + Math.cos(i / 31) * 0.3);
  const frames = framesForSamples(n, m.convLayers);
  const alone = await toHost(encodeAudio(tree.map((a: np.Array) => a.ref, enc as never) as never, np.array(clip).reshape([1, n]), np.array(frameMaskArray([n], frames, m)).reshape([1, frames]), m, null));
  const padded = new Float32Array(16000);
  padded.set(clip);
  const t = framesForSamples(16000, m.convLayers);
  const inBatch = await toHost(encodeAudio(enc, np.array(padded).reshape([1, 16000]), np.array(frameMaskArray([n], t, m)).reshape([1, t]), m, null));
  assertClose(inBatch.slice(0, frames * m.dim), alone, 1e-4, "padded vs alone");

  // CTC on the committed LibriSpeech-layout fixture, the front end "frozen" (it has nothing to freeze).
  const clips = await loadClips(libriSpeechEntries(join(ROOT, "test", "fixtures", "audio", "librispeech")).slice(0, 2), 16000, true);
  const utterances = toUtterances(clips, LIBRISPEECH_VOCAB);
  const fresh = new KeyStream(random.key(4));
  const params = { encoder: initAudioEncoder(fresh, m), head: newCtcHead(1, m.dim, LIBRISPEECH_VOCAB.length) };
  fresh.close();
  const r = await finetuneCtc(params, m, utterances, { epochs: 6, batchSize: 2, lr: 1e-3, warmupFraction: 0.2, weightDecay: 0, seed: 1, freezeFeatureEncoder: true, maskProb: 0, maskLength: 10, maxBatchSeconds: 8 }, { quiet: true });
  const losses = r.history.map((h) => h.loss);
  assert.ok(losses[losses.length - 1] < 0.7 * losses[0], `loss ${losses.map((l) => l.toFixed(2)).join(" → ")}`);
  const ev = await evaluateCtc(r.params, m, LIBRISPEECH_VOCAB, clips);
  assert.equal(ev.utterances, 2);
  tree.dispose(r.params as never);
});

test("data2vec and data2vec 2.0 pretrain on log mel frames: the student's view has the clips' frames, the loss is finite", async () => {
  const clips = [0.7, 1.2, 0.8, 1.5].map((s, k) => ({ name: String(k), samples: Float32Array.from({ length: Math.round(s * 16000) }, (_, i) => Math.sin(i * (0.01 + k * 0.003)) + 0.1 * Math.sin(i * 0.37)) }));
  const dir = mkdtempSync(join(tmpdir(), "d2v-logmel-"));
  for (const preset of ["tiny", "tiny-v2"]) {
    const config = resolveAudioConfig(preset, { model: { frontEnd: "logmel", melBands: 40, layers: 2 }, data2vec: { topK: 2 }, train: { steps: 2, warmupSteps: 1, checkpointEvery: 100, batchSize: 2 } });
    const r = await pretrainAudio({ config, clips, outDir: join(dir, preset), quiet: true });
    assert.equal(r.records.length, 2, preset);
    assert.ok(r.records.every((x) => Number.isFinite(x.loss) && x.maskedSteps > 0), preset);
  }
});
