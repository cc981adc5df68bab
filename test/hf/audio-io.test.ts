import { test } from "node:test";
import assert from "node:assert/strict";
import wavefile from "wavefile";
import { DataError } from "../../src/engine/errors.js";
import { decodeWav, encodeWav16, normalizeClip, resample } from "../../src/audio/io.js";

function wavBytes(channels: number, rate: number, depth: string, samples: number[] | number[][]): Uint8Array {
  const w = new wavefile.WaveFile();
  w.fromScratch(channels, rate, depth, samples);
  return w.toBuffer();
}

test("WAV: 8/16/24/32-bit PCM and float decode to the same scale; stereo is averaged", () => {
  const x = [0, 0.5, -0.5, 0.25, -1];
  const cases: [string, number[], number][] = [
    ["8", x.map((v) => Math.round(v * 127) + 128), 1 / 64],
    ["16", x.map((v) => Math.round(v * 32767)), 1e-4],
    ["24", x.map((v) => Math.round(v * 8388607)), 1e-6],
    ["32", x.map((v) => Math.round(v * 2147483647)), 1e-6],
    ["32f", x, 0],
  ];
  for (const [depth, ints, tol] of cases) {
    const a = decodeWav(wavBytes(1, 16000, depth, ints), depth);
    assert.equal(a.sampleRate, 16000);
    a.samples.forEach((v, i) => assert.ok(Math.abs(v - x[i]) <= tol, `${depth}-bit sample ${i}: ${v} vs ${x[i]}`));
  }
  // 16-bit is read as int16 / 32768 exactly (the HF reference conversion).
  assert.equal(decodeWav(wavBytes(1, 8000, "16", [-32768, 16384])).samples[1], 0.5);
  const stereo = decodeWav(wavBytes(2, 44100, "16", [[16384, 0], [0, -16384]]));
  assert.deepEqual(Array.from(stereo.samples), [0.25, -0.25]);
  // Round trip through our writer.
  const back = decodeWav(encodeWav16(Float32Array.from([0.1, -0.2, 0.3]), 16000)).samples;
  [0.1, -0.2, 0.3].forEach((v, i) => assert.ok(Math.abs(back[i] - v) < 1 / 32768));
});

test("WAV: corrupt, truncated, empty and NaN input give DataErrors", () => {
  const good = wavBytes(1, 16000, "16", [1, 2, 3, 4]);
  assert.throws(() => decodeWav(good.subarray(0, 20), "cut.wav"), (e: Error) => e instanceof DataError && /cut\.wav/.test(e.message));
  assert.throws(() => decodeWav(new TextEncoder().encode("RIFF....WAVEnot really"), "junk.wav"), DataError);
  assert.throws(() => decodeWav(wavBytes(1, 16000, "16", [])), (e: Error) => e instanceof DataError && /no samples/.test(e.message));
  assert.throws(() => decodeWav(wavBytes(1, 16000, "32f", [0, NaN])), (e: Error) => e instanceof DataError && /non-finite/.test(e.message));
  // A data chunk whose size is not a whole number of frames (inconsistent chunk sizes).
  const odd = wavBytes(2, 16000, "16", [[1, 2], [3, 4]]);
  const bad = odd.slice();
  new DataView(bad.buffer).setUint32(40, 6, true); // data chunk size 6 bytes: 1.5 stereo frames
  assert.throws(() => decodeWav(bad.subarray(0, 44 + 6), "odd.wav"), DataError);
});

test("resampling a sine: 44.1 kHz → 16 kHz and 8 kHz → 16 kHz stay within 1e-3 of the exact sine", () => {
  for (const [from, to, f] of [[44100, 16000, 1000], [8000, 16000, 440], [48000, 16000, 3000]]) {
    const n = from; // one second
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin((2 * Math.PI * f * i) / from));
    const y = resample(x, from, to);
    assert.equal(y.length, Math.ceil((n * to) / from));
    let worst = 0;
    // Away from the edges, where the filter sees zeros beyond the signal.
    for (let i = 200; i < y.length - 200; i++) worst = Math.max(worst, Math.abs(y[i] - Math.sin((2 * Math.PI * f * i) / to)));
    assert.ok(worst < 1e-3, `${from}→${to}, ${f} Hz: max error ${worst}`);
  }
  // A tone above the new Nyquist frequency is removed, not aliased.
  const high = Float32Array.from({ length: 44100 }, (_, i) => Math.sin((2 * Math.PI * 10000 * i) / 44100));
  const y = resample(high, 44100, 16000);
  const rms = Math.sqrt(y.slice(500, -500).reduce((s, v) => s + v * v, 0) / (y.length - 1000));
  assert.ok(rms < 0.01, `10 kHz at 16 kHz should vanish; rms ${rms}`);
});

test("per-clip normalization: zero mean, unit variance (biased), as the HF feature extractor", () => {
  const x = Float32Array.from([1, 2, 3, 4]);
  const y = normalizeClip(x);
  const expected = [-1.5, -0.5, 0.5, 1.5].map((v) => v / Math.sqrt(1.25 + 1e-7));
  y.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6));
});
