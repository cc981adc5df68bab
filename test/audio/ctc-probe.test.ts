/** The linear CTC probe: it learns to read characters that are linearly present in the frames, and only those. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeTranscript, LIBRISPEECH_VOCAB } from "../../src/audio/ctc.js";
import { ctcProbeTranscripts, trainCtcProbe, type FrameFeatures } from "../../src/audio/ctc-probe.js";
import { HostRng } from "../../src/engine/random.js";
import { charErrorRate } from "../../src/train/metrics.js";

const LETTERS = ["A", "B", "C", "D", "E"];
const DIM = 8;

/**
 * Frames that say `text`: each character held for 3 frames as a noisy one-hot of its letter (space: the word
 * delimiter's own direction), with a silent frame between characters. With `informative` false the frames are noise.
 */
function utterance(text: string, rng: HostRng, informative = true): FrameFeatures {
  const rows: number[] = [];
  const push = (hot: number) => {
    for (let d = 0; d < DIM; d++) rows.push((informative && d === hot ? 3 : 0) + 0.6 * (rng.uniform() - 0.5));
  };
  for (const ch of text) {
    const hot = ch === " " ? LETTERS.length : LETTERS.indexOf(ch);
    for (let k = 0; k < 3; k++) push(hot);
    push(DIM - 1);
  }
  return { rows: Float32Array.from(rows), frames: rows.length / DIM };
}

function dataset(n: number, seed: number, informative = true) {
  const rng = HostRng.seeded(seed);
  const texts = Array.from({ length: n }, () =>
    Array.from({ length: 1 + Math.floor(rng.uniform() * 2) }, () => Array.from({ length: 2 + Math.floor(rng.uniform() * 3) }, () => LETTERS[Math.floor(rng.uniform() * LETTERS.length)]).join("")).join(" "),
  );
  return { texts, frames: texts.map((t) => utterance(t, rng, informative)), labels: texts.map((t) => encodeTranscript(t)) };
}

test("CTC probe: characters linearly present in the frames are read back on held-out utterances", () => {
  const train = dataset(48, 1);
  const test = dataset(16, 2);
  const probe = trainCtcProbe(train.frames, train.labels, DIM, LIBRISPEECH_VOCAB, { epochs: 30, lr: 5e-2, batchSize: 8, seed: 1 });
  assert.ok(probe.lossPerChar[probe.lossPerChar.length - 1] < probe.lossPerChar[0] / 5, `loss ${probe.lossPerChar[0]} → ${probe.lossPerChar.at(-1)}`);
  assert.equal(probe.skipped, 0);
  const cer = charErrorRate(test.texts, ctcProbeTranscripts(probe, test.frames));
  assert.ok(cer < 0.05, `CER ${cer}`);
});

test("CTC probe: frames that carry nothing give nothing readable, and too-short utterances are skipped, not fatal", () => {
  const train = dataset(48, 1, false);
  const test = dataset(16, 2, false);
  const probe = trainCtcProbe(train.frames, train.labels, DIM, LIBRISPEECH_VOCAB, { epochs: 10, lr: 5e-2, batchSize: 8, seed: 1 });
  assert.ok(charErrorRate(test.texts, ctcProbeTranscripts(probe, test.frames)) > 0.5);
  // Two frames cannot align to a five-character transcript (CTC needs at least one frame per character).
  const short = { rows: new Float32Array(2 * DIM), frames: 2 };
  const r = trainCtcProbe([...train.frames.slice(0, 4), short], [...train.labels.slice(0, 4), encodeTranscript("ABCDE")], DIM, LIBRISPEECH_VOCAB, { epochs: 2, lr: 1e-2, batchSize: 8, seed: 1 });
  assert.equal(r.skipped, 1);
  assert.ok(r.lossPerChar.every(Number.isFinite));
});
