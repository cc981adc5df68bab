/**
 * The data2vec 2.0 memory plan: the estimate by hand, the refusal of an update that cannot fit (naming a
 * `cloneBatch` that does), the estimate against the heap a real update uses, and the CLI refusing before it
 * writes anything.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ResourceError } from "../../src/engine/errors.js";
import { peakBytes, resetPeakBytes, trackBuffers } from "../../src/engine/memory.js";
import { initEngine } from "../../src/engine/runtime.js";
import { disposeTree } from "../../src/engine/typed.js";
import { checkV2StepFits, floatsOf, HEAP_BYTES, jitPeakScale, PLANNED, v2StepBytes, type V2StepShape } from "../../src/train/memory-plan.js";
import { resolveTextConfig } from "../../src/text/config.js";
import { pretrainText, textPretraining } from "../../src/text/pretrain.js";
import { ROOT, withJitMode } from "../helpers.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");

test("v2 memory plan: the estimate by hand; an update that cannot fit names the largest cloneBatch that does", () => withJitMode(false, () => {
  const s: V2StepShape = { params: 1000, samples: 2, views: 3, steps: 10, visible: 4, extra: 1, dim: 4, ffnDim: 8, heads: 2, layers: 3, convTaps: [12, 6], convOut: [2, 2], widths: [4, 8], localFloats: 50 };
  // 4 bytes × (14·params + B·M·(student blocks on K+extra positions + T·(8.3·conv + 25·widths)) + B·(18·L·(T+extra)·D + local))
  const student = 3 * (5 * (56 * 4 + 16 * 8) + 16 * 2 * 25);
  const perView = student + 10 * (8.3 * (12 + 6 + 2 + 2) + 25 * 12);
  const perSample = 18 * 3 * 11 * 4 + 50;
  assert.ok(Math.abs(v2StepBytes(s) - 4 * (14 * 1000 + 6 * perView + 2 * perSample)) < 1e-6);

  // A text update at base width (fewer blocks' parameters) with 64 views per sample does not fit; the error names a cloneBatch that does.
  const big: V2StepShape = { params: 30e6, samples: 2, views: 64, steps: 128, visible: 67, extra: 0, dim: 768, ffnDim: 3072, heads: 12, layers: 12, convTaps: [9 * 768, 9 * 768], convOut: [768, 768], widths: [768, 768] };
  assert.ok(v2StepBytes(big) > HEAP_BYTES);
  let named = 0;
  assert.throws(() => checkV2StepFits(big), (e: Error) => {
    assert.ok(e instanceof ResourceError);
    const m = /data2vec\.v2\.cloneBatch (\d+) fits/.exec(e.message);
    assert.ok(m, e.message);
    named = Number(m[1]);
    return true;
  });
  assert.ok(named >= 1 && named < 64);
  assert.ok(v2StepBytes({ ...big, views: named }) <= PLANNED);
  assert.ok(v2StepBytes({ ...big, views: named + 1 }) > PLANNED);
  // When one view does not fit either, the batch is what to lower.
  assert.throws(() => checkV2StepFits({ ...big, samples: 400 }), /even cloneBatch 1 does not fit at this batch: use train\.batchSize \d+ with cloneBatch 1/);
  // When the weights alone do not fit, the model is what to change.
  assert.throws(() => checkV2StepFits({ ...big, params: 90e6 }), /the 90M parameters with AdamW's state and the teacher alone need about 4\.7 GiB: use a smaller model/);
  // Eager jit (one engine thread) frees intermediates as it goes: the same estimate, scaled.
  assert.equal(withJitMode(true, () => v2StepBytes(s)), jitPeakScale(true) * v2StepBytes(s));
}));

test("v2 memory plan: the heap two real text updates use, with jitted programs deferred (the estimate within 15%) and eager (an upper bound within 30%)", async () => {
  await initEngine();
  await trackBuffers();
  const config = resolveTextConfig("tiny-v2", { train: { batchSize: 2, steps: 2, warmupSteps: 1, checkpointEvery: 1000 }, data2vec: { v2: { cloneBatch: 2 } } });
  const docs = [Array.from({ length: 3000 }, (_, i) => `word${i % 97} text${i % 13}`).join(" ")];
  const peaks: Record<string, number> = {};
  const losses: Record<string, number[]> = {};
  for (const eager of [false, true]) {
    await withJitMode(eager, async () => {
      const prepared = textPretraining().prepare(config, docs, { checkpoint: null, log: () => {} });
      const params = prepared.init(0);
      assert.ok(prepared.v2Shape, "the text adapter reports its v2 update's shape");
      const estimate = v2StepBytes({ ...prepared.v2Shape, params: floatsOf(params) });
      disposeTree(params);
      resetPeakBytes();
      const outDir = mkdtempSync(join(tmpdir(), "d2v2-mem-"));
      await pretrainText({ config, outDir, quiet: true, docs });
      const measured = (peaks[String(eager)] = peakBytes());
      losses[String(eager)] = readFileSync(join(outDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).loss);
      const [low, high] = eager ? [1, 1.3] : [0.85, 1.15];
      assert.ok(estimate > low * measured && estimate < high * measured, `${eager ? "eager" : "deferred"}: estimate ${(estimate / 2 ** 20).toFixed(0)} MB vs measured ${(measured / 2 ** 20).toFixed(0)} MB`);
    });
  }
  assert.ok(peaks.true < 0.6 * peaks.false, `eager jit frees intermediates early: ${peaks.true} vs ${peaks.false} bytes`);
  // The same kernels in the same order: the same numbers.
  assert.equal(losses.true.length, 2);
  assert.deepEqual(losses.true, losses.false);
});

test("d2v pretrain refuses a cloneBatch that cannot fit before it trains or writes anything", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v2-mem-cli-"));
  const cfg = join(dir, "views.json");
  writeFileSync(cfg, JSON.stringify({ data2vec: { v2: { cloneBatch: 64 } }, train: { batchSize: 8 } }));
  const corpus = join(dir, "corpus.txt");
  writeFileSync(corpus, Array.from({ length: 400 }, (_, i) => `line ${i % 17} of a small corpus, word${i % 31}`).join("\n"));
  const out = join(dir, "run");
  const r = spawnSync(process.execPath, [CLI, "pretrain", "--modality", "text", "--preset", "tiny", "--objective", "data2vec2", "--config", cfg, "--data", corpus, "--out", out], { encoding: "utf8" });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /8 samples × 64 views \(data2vec\.v2\.cloneBatch\) .* needs about [\d.]+ GiB of memory, more than the engine's 4\.0 GiB heap holds; data2vec\.v2\.cloneBatch \d+ fits/);
  assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, "no stack trace");
  assert.ok(!existsSync(join(out, "checkpoint")), "nothing is trained or saved");
});
