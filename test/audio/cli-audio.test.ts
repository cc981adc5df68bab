import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { decodeSafetensors } from "../../src/engine/safetensors.js";
import { ROOT } from "../helpers.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const LIBRI = join(ROOT, "test", "fixtures", "audio", "librispeech");

function d2v(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, D2V_THREADS: "2" } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const lastJson = (s: string) => JSON.parse(s.trim().split("\n").pop()!);

test("speech end to end on the CLI: pretrain → finetune --task ctc → eval → transcribe", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-audio-cli-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify({ model: { layers: 2, dim: 64, heads: 2, ffnDim: 128, posConvLayers: 2 }, data2vec: { topK: 2 }, train: { steps: 3, warmupSteps: 1, checkpointEvery: 2, batchSize: 2 } }));
  const pre = d2v("pretrain", "--modality", "audio", "--data", LIBRI, "--config", cfg, "--out", join(dir, "pre"), "--quiet");
  assert.equal(pre.code, 0, pre.stderr);
  assert.equal(lastJson(pre.stdout).step, 3);
  const ft = d2v("finetune", "--task", "ctc", "--init", join(dir, "pre"), "--data", LIBRI, "--eval-data", LIBRI, "--epochs", "1", "--out", join(dir, "ctc"), "--quiet");
  assert.equal(ft.code, 0, ft.stderr);
  const r = lastJson(ft.stdout);
  assert.ok(r.cer >= 0 && r.wer >= 0 && r.utterances === 6, ft.stdout);
  const ev = d2v("eval", "--model", join(dir, "ctc"), "--data", LIBRI, "--beam", "4");
  assert.equal(ev.code, 0, ev.stderr);
  assert.equal(lastJson(ev.stdout).task, "transcription");
  const tr = d2v("transcribe", "--model", join(dir, "ctc"), join(LIBRI, "100", "1", "100-1-00000.flac"));
  assert.equal(tr.code, 0, tr.stderr);
  assert.equal(lastJson(tr.stdout).file, "100-1-00000.flac");
  assert.equal(typeof lastJson(tr.stdout).text, "string");
  // Embeddings: one mean-pooled vector per file, of the model's width; different clips differ.
  const clips = ["100-1-00000.flac", "101-1-00003.flac"].map((f) => join(LIBRI, f.slice(0, 3), "1", f));
  const em = d2v("embed", "--model", join(dir, "pre"), ...clips);
  assert.equal(em.code, 0, em.stderr);
  const vectors = em.stdout.trim().split("\n").map((l) => JSON.parse(l) as number[]);
  assert.equal(vectors.length, 2);
  assert.ok(vectors.every((v) => v.length === 64 && v.every(Number.isFinite)));
  assert.ok(vectors[0].some((x, i) => Math.abs(x - vectors[1][i]) > 1e-3));
  // Classification (a folder per class: the fixture's two speakers), with the layer norm on the pooled state;
  // eval reads that setting back from the checkpoint, so it reproduces the fine-tuning's own evaluation.
  const cls = d2v("finetune", "--task", "classify", "--init", join(dir, "pre"), "--data", LIBRI, "--eval-data", LIBRI, "--epochs", "2", "--pool-norm", "--out", join(dir, "cls"), "--quiet");
  assert.equal(cls.code, 0, cls.stderr);
  const trained = lastJson(cls.stdout);
  assert.equal(trained.examples, 6);
  const evCls = d2v("eval", "--model", join(dir, "cls"), "--data", LIBRI);
  assert.equal(evCls.code, 0, evCls.stderr);
  assert.equal(lastJson(evCls.stdout).accuracy, trained.accuracy);
  assert.equal(JSON.parse(readFileSync(join(dir, "cls", "config.json"), "utf8")).finetune.poolNorm, true);
  // A linear probe: the encoder is saved unchanged, and eval reproduces the probe's accuracy with the folded head.
  const probe = d2v("finetune", "--task", "classify", "--linear-probe", "--init", join(dir, "pre"), "--data", LIBRI, "--eval-data", LIBRI, "--out", join(dir, "probe"), "--quiet");
  assert.equal(probe.code, 0, probe.stderr);
  const probed = lastJson(probe.stdout);
  assert.equal(probed.trainAccuracy, 1, "6 clips of 2 speakers in 64 dimensions are linearly separable");
  assert.equal(probed.accuracy, 1, "evaluated on the training clips, the probe agrees with its own training accuracy");
  const evProbe = d2v("eval", "--model", join(dir, "probe"), "--data", LIBRI);
  assert.equal(evProbe.code, 0, evProbe.stderr);
  assert.equal(lastJson(evProbe.stdout).accuracy, probed.accuracy);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "probe", "config.json"), "utf8")).finetune.linearProbe, { steps: 500 });
  const tensors = (file: string) => decodeSafetensors(new Uint8Array(readFileSync(file))).tensors;
  const before = tensors(join(dir, "pre", "checkpoint", "model.safetensors"));
  const after = tensors(join(dir, "probe", "model.safetensors"));
  for (const name of ["shared.features.0.conv.weight", "layers.1.ffn.fc2.weight"]) {
    assert.ok(before.has(name) && after.has(`encoder.${name}`), `${name} is in both checkpoints`);
    assert.deepEqual(after.get(`encoder.${name}`)!.data, before.get(name)!.data, `${name} is unchanged: the encoder is frozen`);
  }
  const both = d2v("finetune", "--task", "classify", "--linear-probe", "--pool-norm", "--init", join(dir, "pre"), "--data", LIBRI, "--out", join(dir, "both"));
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--pool-norm and --linear-probe do not combine/);
  assert.ok(!existsSync(join(dir, "both")));
});

test("bad speech input fails before anything is written", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-audio-bad-"));
  // Spoken-word synthesis checks its word list before it looks for espeak-ng.
  const words = d2v("data", "synth-words", "--out", join(dir, "words"), "--words", "yes,n0");
  assert.equal(words.code, 2);
  assert.match(words.stderr, /--words: "n0" is not a word of letters/);
  const one = d2v("data", "synth-words", "--out", join(dir, "words"), "--words", "yes,YES");
  assert.match(one.stderr, /at least two distinct words/);
  assert.ok(!existsSync(join(dir, "words")));
  const noData = d2v("pretrain", "--modality", "audio", "--out", join(dir, "a"));
  assert.equal(noData.code, 2);
  assert.match(noData.stderr, /synth-speech/);
  // A transcript with characters outside the vocabulary.
  const bad = join(dir, "bad");
  cpSync(LIBRI, bad, { recursive: true });
  const trans = join(bad, "100", "1", "100-1.trans.txt");
  writeFileSync(trans, readFileSync(trans, "utf8").replace(/^100-1-00000 .*$/m, "100-1-00000 ROOM 101"));
  const ft = d2v("finetune", "--task", "ctc", "--scratch", "--preset", "tiny", "--data", bad, "--out", join(dir, "ctc"));
  assert.equal(ft.code, 2);
  assert.match(ft.stderr, /100-1-00000.*outside the vocabulary|outside the vocabulary.*"1"/s);
  assert.ok(!existsSync(join(dir, "ctc")));
  const corrupt = join(dir, "corrupt");
  cpSync(LIBRI, corrupt, { recursive: true });
  writeFileSync(join(corrupt, "101", "1", "101-1-00003.flac"), "fLaC but not really");
  const ft2 = d2v("finetune", "--task", "ctc", "--scratch", "--preset", "tiny", "--data", corrupt, "--out", join(dir, "ctc2"));
  assert.equal(ft2.code, 2);
  assert.match(ft2.stderr, /101-1-00003\.flac/);
  assert.ok(!existsSync(join(dir, "ctc2")));
  // Utterances longer than the limit: an error naming the clip and the fix (the CNN's own cap when it trains).
  const ft3 = d2v("finetune", "--task", "ctc", "--scratch", "--preset", "tiny", "--data", LIBRI, "--no-freeze-feature-encoder", "--max-seconds", "20", "--epochs", "1", "--out", join(dir, "ctc3"), "--quiet");
  assert.equal(ft3.code, 0, ft3.stderr); // capped at 8 s: the fixture's clips are shorter
  const ft4 = d2v("finetune", "--task", "ctc", "--scratch", "--preset", "tiny", "--data", LIBRI, "--no-freeze-feature-encoder", "--max-seconds", "0.5", "--out", join(dir, "ctc4"));
  assert.equal(ft4.code, 2);
  assert.match(ft4.stderr, /\.flac is .* s long, over 0\.5 s; with the CNN training/);
  assert.ok(!existsSync(join(dir, "ctc4")));
});

test("speech with circular positional convs: pretrains and embeds; export to Hugging Face is refused, nothing written", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-audio-circ-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify({ model: { layers: 2, dim: 64, heads: 2, ffnDim: 128, posConvLayers: 2, posConvPadding: "circular" }, data2vec: { topK: 2 }, train: { steps: 2, warmupSteps: 1, checkpointEvery: 2, batchSize: 2 } }));
  const pre = d2v("pretrain", "--modality", "audio", "--data", LIBRI, "--config", cfg, "--out", join(dir, "pre"), "--quiet");
  assert.equal(pre.code, 0, pre.stderr);
  assert.ok(Number.isFinite(lastJson(pre.stdout).loss));
  const clip = join(LIBRI, readdirSync(LIBRI)[0]);
  const first = (d: string): string => { const e = readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))[0]; return e.isDirectory() ? first(join(d, e.name)) : join(d, e.name); };
  const flac = first(clip);
  const emb = d2v("embed", "--model", join(dir, "pre"), flac);
  assert.equal(emb.code, 0, emb.stderr);
  const ex = d2v("export", "--model", join(dir, "pre"), "--hf", join(dir, "hf"));
  assert.equal(ex.code, 2);
  assert.match(ex.stderr, /pads its positional convolutions circularly .* Hugging Face's Data2VecAudio cannot express/);
  assert.doesNotMatch(ex.stderr, /at .*\.js:\d+/, "no stack trace");
  assert.ok(!existsSync(join(dir, "hf")), "nothing is written");
});

test("speech on log mel frames: pretrains, its config says so, embeds; export to Hugging Face is refused, nothing written", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-audio-logmel-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify({ model: { layers: 2, dim: 64, heads: 2, ffnDim: 128, posConvLayers: 2, frontEnd: "logmel", melBands: 40 }, data2vec: { topK: 2 }, train: { steps: 2, warmupSteps: 1, checkpointEvery: 2, batchSize: 2 } }));
  const pre = d2v("pretrain", "--modality", "audio", "--data", LIBRI, "--config", cfg, "--out", join(dir, "pre"), "--quiet");
  assert.equal(pre.code, 0, pre.stderr);
  assert.ok(Number.isFinite(lastJson(pre.stdout).loss));
  const saved = JSON.parse(readFileSync(join(dir, "pre", "checkpoint", "config.json"), "utf8")) as { model: { frontEnd: string; melBands: number } };
  assert.deepEqual([saved.model.frontEnd, saved.model.melBands], ["logmel", 40]);
  const first = (d: string): string => { const e = readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))[0]; return e.isDirectory() ? first(join(d, e.name)) : join(d, e.name); };
  const emb = d2v("embed", "--model", join(dir, "pre"), first(LIBRI));
  assert.equal(emb.code, 0, emb.stderr);
  const ex = d2v("export", "--model", join(dir, "pre"), "--hf", join(dir, "hf"));
  assert.equal(ex.code, 2);
  assert.match(ex.stderr, /reads log mel frames .* Hugging Face's Data2VecAudio cannot express/);
  assert.doesNotMatch(ex.stderr, /at .*\.js:\d+/, "no stack trace");
  assert.ok(!existsSync(join(dir, "hf")), "nothing is written");
});
