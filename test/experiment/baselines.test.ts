/** The classic baselines the experiments report beside the neural models: tf-idf by hand, the log mel spectrum of a tone. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { initEngine } from "../../src/engine/runtime.js";
import { logisticRegression, logMelFrames, logSpectrumFeatures, SPLICE_CONTEXT, splicedLogMelFrames, tfidfFeatures } from "../../experiments/baselines.js";
import { helpsVerdict, helpsVerdictErrorRate } from "../../experiments/common.js";

test("tf-idf as scikit-learn's sublinear TfidfVectorizer: training vocabulary and idf, rows L2-normalized", () => {
  const { train, test: held, dim } = tfidfFeatures(["the cat the cat sat", "the dog"], ["a cat and the bird"]);
  assert.equal(dim, 4); // cat, dog, sat, the (sorted)
  const idf = (df: number) => Math.log(3 / (1 + df)) + 1;
  const row0 = [(1 + Math.log(2)) * idf(1), 0, idf(1), (1 + Math.log(2)) * idf(2)];
  const n0 = Math.hypot(...row0);
  row0.forEach((v, j) => assert.ok(Math.abs(train[j] - v / n0) < 1e-6, `row 0, term ${j}`));
  // Words the training texts never had are dropped: "a cat and the bird" is cat + the.
  const row2 = [idf(1), 0, 0, idf(2)];
  const n2 = Math.hypot(...row2);
  row2.forEach((v, j) => assert.ok(Math.abs(held[j] - v / n2) < 1e-6, `held-out row, term ${j}`));
});

test("log mel spectrum: a tone's energy is in the band of its frequency; a louder copy differs only by a constant", () => {
  const tone = (hz: number, gain: number) => Float32Array.from({ length: 16000 }, (_, i) => gain * Math.sin((2 * Math.PI * hz * i) / 16000));
  const clips = [tone(300, 1), tone(3000, 1), tone(300, 4), tone(3000, 0.5)];
  const { features, dim } = logSpectrumFeatures(clips, { mean: new Float64Array(80), std: new Float64Array(80).fill(1) });
  const bands = dim / 2;
  const peak = (c: number) => {
    const means = Array.from(features.subarray(c * dim, c * dim + bands));
    return means.indexOf(Math.max(...means));
  };
  assert.ok(peak(0) < peak(1), "3 kHz peaks in a higher band than 300 Hz");
  assert.equal(peak(2), peak(0));
  // 4× the amplitude is 16× the power: every band's log energy rises by ln 16 (the 1e-6 floor aside).
  assert.ok(Math.abs(features[2 * dim + peak(0)] - features[peak(0)] - Math.log(16)) < 1e-3);
});

test("logistic regression separates two linearly separable classes and scores them", async () => {
  await initEngine();
  const train = Float32Array.from([0, 1, 0.1, 0.9, 1, 0, 0.9, 0.2]);
  const r = await logisticRegression(train, [0, 0, 1, 1], Float32Array.from([0.2, 0.8, 0.8, 0.1]), [0, 1], 2, 2, 1);
  assert.equal(r.trainAccuracy, 1);
  assert.equal(r.accuracy, 1);
});

test("the helps verdict: ahead in every seed and by at least 5 points on the mean", () => {
  // +6, +4, +8 points: every seed ahead, mean +6.
  const yes = helpsVerdict([0.56, 0.54, 0.58], [0.5, 0.5, 0.5]);
  assert.equal(yes.helps, true);
  assert.ok(Math.abs(yes.meanPoints - 6) < 1e-9);
  assert.deepEqual(yes.diffs.map((d) => Math.round(d)), [6, 4, 8]);
  // A mean of +10 with one seed behind is not help.
  const mixed = helpsVerdict([0.8, 0.8, 0.49], [0.5, 0.5, 0.5]);
  assert.equal(mixed.helps, false);
  assert.equal(mixed.everySeed, false);
  // Ahead in every seed by +2 on the mean: consistent, too small.
  const small = helpsVerdict([0.52, 0.52, 0.52], [0.5, 0.5, 0.5]);
  assert.deepEqual([small.helps, small.everySeed], [false, true]);
  assert.throws(() => helpsVerdict([0.5], [0.5, 0.6]), /one pretrained and one scratch accuracy per seed/);
});

test("spliced log mel frames: ±4 neighbours side by side, every second frame, edges repeated", () => {
  // A chirp, so that every 10-ms frame differs from its neighbours.
  const clip = Float32Array.from({ length: 8000 }, (_, i) => Math.sin((2 * Math.PI * (200 + i / 4) * i) / 16000));
  const mel = logMelFrames(clip);
  assert.equal(mel.length, Math.floor((8000 - 400) / 160) + 1);
  const { rows, frames, dim } = splicedLogMelFrames(clip);
  const width = 2 * SPLICE_CONTEXT + 1;
  assert.equal(dim, width * 40);
  assert.equal(frames, Math.ceil(mel.length / 2));
  const block = (f: number, j: number) => Array.from(rows.subarray(f * dim + j * 40, f * dim + (j + 1) * 40));
  const same = (a: number[], b: Float64Array) => a.every((v, k) => Math.abs(v - b[k]) < 1e-4 * Math.max(1, Math.abs(b[k])));
  // Output frame 5 is mel frame 10, with mel frames 6..14 around it.
  for (let j = 0; j < width; j++) assert.ok(same(block(5, j), mel[10 + j - SPLICE_CONTEXT]), `frame 5, slot ${j}`);
  // At the start the first frame stands in for the missing ones; at the end the last.
  assert.ok(same(block(0, 0), mel[0]) && same(block(0, SPLICE_CONTEXT - 1), mel[0]));
  assert.ok(same(block(frames - 1, width - 1), mel[mel.length - 1]));
});

test("the helps verdict for error rates: lower in every seed and by at least 15% relative on the mean", () => {
  // CER 40/42/38 against 50/50/50: every seed better, 20% relative.
  const yes = helpsVerdictErrorRate([0.4, 0.42, 0.38], [0.5, 0.5, 0.5]);
  assert.equal(yes.helps, true);
  assert.ok(Math.abs(yes.relative - 0.2) < 1e-9);
  assert.deepEqual(yes.diffs.map((d) => Math.round(d)), [-10, -8, -12]);
  // 10% relative, every seed better: consistent, too small.
  const small = helpsVerdictErrorRate([0.45, 0.45, 0.45], [0.5, 0.5, 0.5]);
  assert.deepEqual([small.helps, small.everySeed], [false, true]);
  // A big mean gain with one seed worse is not help; nor is a higher error rate.
  assert.equal(helpsVerdictErrorRate([0.1, 0.1, 0.55], [0.5, 0.5, 0.5]).helps, false);
  assert.equal(helpsVerdictErrorRate([0.6, 0.6, 0.6], [0.5, 0.5, 0.5]).everySeed, false);
  assert.throws(() => helpsVerdictErrorRate([], []), /one pretrained and one scratch error rate per seed/);
});
