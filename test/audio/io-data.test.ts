import assert from "node:assert/strict";
import { cpSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { decodeAudio, decodeFlac, encodeWav16, readAudio, resample } from "../../src/audio/io.js";
import { labeledAudioEntries, libriSpeechEntries, loadClips, readManifest, unlabeledEntries } from "../../src/audio/data.js";
import { spanMask } from "../../src/audio/masking.js";
import { resolveAudioConfig, spanMaskSettings } from "../../src/audio/config.js";
import { spanMaskRatio, spanStartProbability } from "../../src/data2vec/masking.js";
import { framesForSamples } from "../../src/audio/model.js";
import { paperConvLayers } from "../../src/audio/config.js";
import { DataError } from "../../src/engine/errors.js";
import { HostRng } from "../../src/engine/random.js";
import { ROOT } from "../helpers.js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";

const LIBRI = join(ROOT, "test", "fixtures", "audio", "librispeech");
const FLAC = join(LIBRI, "100", "1", "100-1-00000.flac");

test("a committed FLAC decodes to its header's sample count at its rate; WAV and FLAC are told apart", async () => {
  const bytes = readFileSync(FLAC);
  const a = await decodeFlac(bytes, "fixture");
  assert.equal(a.sampleRate, 22050);
  // STREAMINFO total samples (bytes 21..25, low 36 bits).
  const total = (bytes[21] & 0xf) * 2 ** 32 + ((bytes[22] << 24) >>> 0) + (bytes[23] << 16) + (bytes[24] << 8) + bytes[25];
  assert.equal(a.samples.length, total);
  const rms = Math.sqrt(a.samples.reduce((s, v) => s + v * v, 0) / a.samples.length);
  assert.ok(rms > 0.01 && rms < 1, `speech-like level, rms ${rms}`);
  const viaWav = await decodeAudio(encodeWav16(a.samples, 22050));
  assert.ok(Math.max(...viaWav.samples.map((v, i) => Math.abs(v - a.samples[i]))) < 1 / 32768 + 1e-7);
  const at16k = await readAudio(FLAC, 16000);
  assert.equal(at16k.length, Math.ceil((total * 16000) / 22050));
});

test("corrupt audio gives typed errors: truncated FLAC, garbage, empty", async () => {
  const bytes = readFileSync(FLAC);
  await assert.rejects(decodeFlac(bytes.subarray(0, Math.floor(bytes.length / 2)), "cut.flac"), (e: Error) => e instanceof DataError && /cut\.flac is truncated/.test(e.message));
  await assert.rejects(decodeAudio(bytes.subarray(0, 20), "head.flac"), (e: Error) => e instanceof DataError && /head\.flac/.test(e.message));
  await assert.rejects(decodeAudio(new TextEncoder().encode("hello, not audio"), "x.mp3"), (e: Error) => e instanceof DataError && /neither WAV nor FLAC/.test(e.message));
  await assert.rejects(decodeAudio(new Uint8Array(0), "empty.wav"), (e: Error) => e instanceof DataError && /empty/.test(e.message));
});

test("resampling a sine keeps its frequency and amplitude (44.1 kHz → 16 kHz, 8 kHz → 16 kHz)", () => {
  for (const [from, f] of [[44100, 1000], [8000, 440]] as const) {
    const n = from; // one second
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin((2 * Math.PI * f * i) / from));
    const y = resample(x, from, 16000);
    assert.equal(y.length, 16000);
    let worst = 0;
    for (let i = 200; i < 15800; i++) worst = Math.max(worst, Math.abs(y[i] - Math.sin((2 * Math.PI * f * i) / 16000)));
    assert.ok(worst < 2e-3, `${from} Hz: max error ${worst}`);
  }
  // A tone above the new Nyquist rate is removed, not aliased.
  const high = Float32Array.from({ length: 44100 }, (_, i) => Math.sin((2 * Math.PI * 12000 * i) / 44100));
  const y = resample(high, 44100, 16000);
  const rms = Math.sqrt(y.slice(200, 15800).reduce((s, v) => s + v * v, 0) / 15600);
  assert.ok(rms < 0.01, `12 kHz tone after resampling to 16 kHz: rms ${rms}`);
});

test("the paper's CNN turns 16000 samples into 49 frames; span masks cover about 49% with equal counts per row", () => {
  assert.equal(framesForSamples(16000, paperConvLayers(512)), 49);
  assert.equal(framesForSamples(400, paperConvLayers(512)), 1); // the receptive field
  assert.equal(framesForSamples(399, paperConvLayers(512)), 0);
  const rng = HostRng.seeded(3);
  const frames = 250;
  let masked = 0;
  let total = 0;
  for (let trial = 0; trial < 200; trial++) {
    const lengths = [250, 180, 220, 90];
    const m = spanMask(lengths, frames, { spanStartProb: 0.65, spanLength: 10, minSpans: 1 }, rng);
    const counts = lengths.map((_, i) => m.subarray(i * frames, (i + 1) * frames).reduce((a, b) => a + b, 0));
    assert.ok(counts.every((c) => c === counts[0]), `same count per row: ${counts}`);
    lengths.forEach((n, i) => assert.equal(m.subarray(i * frames + n, (i + 1) * frames).reduce((a, b) => a + b, 0), 0, "padding is never masked"));
    const full = spanMask([frames], frames, spanMaskSettings(resolveAudioConfig("tiny").masking), rng);
    masked += full.reduce((a, b) => a + b, 0);
    total += frames;
  }
  // masking.ratio (0.49: the paper's mask_prob 0.65 in spans of 10) is the masked fraction.
  const ratio = masked / total;
  assert.ok(Math.abs(ratio - 0.49) < 0.02, `masked fraction ${ratio} vs masking.ratio 0.49`);
  assert.ok(Math.abs(spanStartProbability(0.49, 10) - 0.65) < 0.002, "the paper's span-start probability");
  assert.ok(Math.abs(spanMaskRatio(spanStartProbability(0.3, 4), 4) - 0.3) < 1e-12, "the two conversions are inverses");
});

test("datasets: LibriSpeech layout with transcripts, folders, manifests, and clear errors", async () => {
  const entries = libriSpeechEntries(LIBRI);
  assert.equal(entries.length, 6);
  assert.equal(entries[0].transcript, "THE CAT SAT ON THE MAT");
  const clips = await loadClips(entries.slice(0, 2), 16000, true);
  const mean = clips[0].samples.reduce((a, b) => a + b, 0) / clips[0].samples.length;
  const variance = clips[0].samples.reduce((a, b) => a + (b - mean) ** 2, 0) / clips[0].samples.length;
  assert.ok(Math.abs(mean) < 1e-5 && Math.abs(variance - 1) < 1e-3, "normalized per clip");
  assert.equal(unlabeledEntries(LIBRI).length, 6);
  const dir = mkdtempSync(join(tmpdir(), "d2v-manifest-"));
  writeFileSync(join(dir, "train.tsv"), `${LIBRI}\n100/1/100-1-00000.flac\t36000\n101/1/101-1-00003.flac\t30000\tdog\n`);
  const m = readManifest(join(dir, "train.tsv"));
  assert.deepEqual(m.map((e) => e.label), [undefined, "dog"]);
  assert.equal(m[0].path, FLAC);
  writeFileSync(join(dir, "bad.tsv"), `${LIBRI}\n100/1/100-1-00000.flac\n`);
  assert.throws(() => readManifest(join(dir, "bad.tsv")), (e: Error) => e instanceof DataError && /line 2/.test(e.message));
  assert.throws(() => libriSpeechEntries(dir), (e: Error) => e instanceof DataError && /trans\.txt/.test(e.message));
  assert.throws(() => unlabeledEntries(join(dir, "missing")), (e: Error) => e instanceof DataError && /does not exist/.test(e.message));
});

test("nothing is dropped silently: an audio file without a transcript line, an empty class folder", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-drops-"));
  cpSync(LIBRI, join(dir, "libri"), { recursive: true });
  const trans = join(dir, "libri", "100", "1", "100-1.trans.txt");
  writeFileSync(trans, readFileSync(trans, "utf8").split("\n").filter((l) => !l.startsWith("100-1-00001")).join("\n"));
  assert.throws(() => libriSpeechEntries(join(dir, "libri")), (e: Error) => e instanceof DataError && /100-1-00001\.flac has no transcript line/.test(e.message));

  mkdirSync(join(dir, "classes", "dog"), { recursive: true });
  mkdirSync(join(dir, "classes", "cat"));
  mkdirSync(join(dir, "classes", "bird"));
  cpSync(FLAC, join(dir, "classes", "dog", "a.flac"));
  cpSync(FLAC, join(dir, "classes", "cat", "b.flac"));
  assert.throws(() => labeledAudioEntries(join(dir, "classes")), (e: Error) => e instanceof DataError && /bird holds no WAV or FLAC files/.test(e.message));
  rmSync(join(dir, "classes", "bird"), { recursive: true });
  assert.deepEqual(labeledAudioEntries(join(dir, "classes")).map((e) => e.label), ["cat", "dog"]);
});
