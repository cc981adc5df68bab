import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { initEngine } from "../../src/engine/runtime.js";
import { pretrainText } from "../../src/text/pretrain.js";
import { parseTextRunConfig } from "../../src/text/config.js";
import { parseAudioRunConfig, resolveAudioConfig, spanMaskSettings } from "../../src/audio/config.js";
import { spanMaskRatio } from "../../src/data2vec/masking.js";
import { corpusDir, microConfig } from "./fixtures.js";
import { decodeSafetensors, toFloat32 } from "../../src/engine/safetensors.js";

await initEngine();

test("resume continues exactly: the losses after a restart equal an uninterrupted run", async () => {
  const data = corpusDir();
  const cfg = microConfig();
  const full = await pretrainText({ config: cfg, data, outDir: mkdtempSync(join(tmpdir(), "d2v-full-")), quiet: true });
  assert.equal(full.records.length, 6);

  const out = mkdtempSync(join(tmpdir(), "d2v-split-"));
  const first = await pretrainText({ config: cfg, data, outDir: out, quiet: true, stopAfter: 3 });
  assert.equal(first.records.length, 3);
  const second = await pretrainText({ config: cfg, data, outDir: out, quiet: true, resume: true });
  assert.deepEqual(second.records.map((r) => r.step), [4, 5, 6]);
  for (const r of second.records) {
    const ref = full.records[r.step - 1];
    assert.equal(r.loss, ref.loss, `loss at update ${r.step}`);
    assert.equal(r.targetVar, ref.targetVar);
    assert.equal(r.gradNorm, ref.gradNorm);
  }
  // The metrics log holds each update once.
  const steps = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).step);
  assert.deepEqual(steps, [1, 2, 3, 4, 5, 6]);
});

test("a teacher with its own shared group (data2vec.emaShared) is averaged, checkpointed and resumed exactly", async () => {
  const data = corpusDir();
  const cfg = microConfig({ data2vec: { emaShared: ["norm"] } });
  const full = await pretrainText({ config: cfg, data, outDir: mkdtempSync(join(tmpdir(), "d2v-own-")), quiet: true });
  const out = mkdtempSync(join(tmpdir(), "d2v-own-split-"));
  await pretrainText({ config: cfg, data, outDir: out, quiet: true, stopAfter: 3 });
  const teacher = decodeSafetensors(new Uint8Array(readFileSync(join(out, "checkpoint", "teacher.safetensors")))).tensors;
  const model = decodeSafetensors(new Uint8Array(readFileSync(join(out, "checkpoint", "model.safetensors")))).tensors;
  assert.ok(teacher.has("shared.norm.weight") && teacher.has("layers.0.attn.q.weight"));
  // After EMA steps the teacher's norm is its own average, not the student's.
  const own = toFloat32(teacher.get("shared.norm.weight")!);
  const student = toFloat32(model.get("shared.norm.weight")!);
  assert.ok(own.some((x, i) => x !== student[i]), "the teacher's norm differs from the student's");
  const second = await pretrainText({ config: cfg, data, outDir: out, quiet: true, resume: true });
  for (const r of second.records) assert.equal(r.loss, full.records[r.step - 1].loss, `loss at update ${r.step}`);
  // Without the setting the teacher file holds its blocks only, as checkpoints always have.
  const plain = mkdtempSync(join(tmpdir(), "d2v-plain-"));
  await pretrainText({ config: microConfig(), data, outDir: plain, quiet: true, stopAfter: 1 });
  const names = [...decodeSafetensors(new Uint8Array(readFileSync(join(plain, "checkpoint", "teacher.safetensors")))).tensors.keys()];
  assert.ok(names.every((n) => n.startsWith("layers.")), names.join(", "));
});

test("a checkpoint written before masking.prob became masking.ratio resumes exactly, its setting migrated", async () => {
  const data = corpusDir();
  // fairseq's mask_prob 0.35 in spans of 4, as the old config named it and as the new one does.
  const cfg = microConfig({ masking: { ratio: spanMaskRatio(0.35, 4) } });
  const full = await pretrainText({ config: cfg, data, outDir: mkdtempSync(join(tmpdir(), "d2v-mig-full-")), quiet: true });
  const out = mkdtempSync(join(tmpdir(), "d2v-mig-"));
  await pretrainText({ config: cfg, data, outDir: out, quiet: true, stopAfter: 3 });
  const path = join(out, "checkpoint", "config.json");
  const saved = JSON.parse(readFileSync(path, "utf8"));
  const { ratio: _ratio, ...masking } = saved.masking;
  writeFileSync(path, JSON.stringify({ ...saved, masking: { ...masking, prob: 0.35 } }));
  assert.equal(parseTextRunConfig(JSON.parse(readFileSync(path, "utf8")), path).masking.ratio, cfg.masking.ratio);
  const second = await pretrainText({ config: cfg, data, outDir: out, quiet: true, resume: true });
  for (const r of second.records) assert.equal(r.loss, full.records[r.step - 1].loss, `loss at update ${r.step}`);
  // Speech: a frame started a span with probability 0.65; the ratio is what that masks, and it converts back.
  const audio = resolveAudioConfig("tiny");
  const { ratio: _r, ...audioMasking } = audio.masking;
  const old = parseAudioRunConfig({ kind: "data2vec-pretrain", ...audio, masking: { ...audioMasking, prob: 0.65 } }, "config.json");
  assert.ok(Math.abs(spanMaskSettings(old.masking).spanStartProb - 0.65) < 1e-12);
});
