import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { initEngine } from "../../src/engine/runtime.js";
import { resolveVisionConfig } from "../../src/vision/config.js";
import { mnistSplits } from "../../src/vision/images.js";
import { pretrainVision } from "../../src/vision/pretrain.js";

await initEngine();

test("vision pretraining resumes exactly (augmentations, masks, per-layer relative bias, EMA)", async () => {
  const images = mnistSplits().train.images.slice(0, 40);
  const cfg = resolveVisionConfig("tiny", {
    model: { dim: 16, layers: 2, heads: 2, ffnDim: 32, relativePositionBias: "per_layer", absolutePositions: true },
    train: { batchSize: 8, steps: 6, warmupSteps: 1, checkpointEvery: 3 },
  });
  const full = await pretrainVision({ config: cfg, images, outDir: mkdtempSync(join(tmpdir(), "d2v-vfull-")), quiet: true });
  assert.equal(full.records.length, 6);
  assert.ok(full.records.every((r) => Number.isFinite(r.loss) && r.maskedSteps <= 8 * 10 && r.maskedSteps >= 8 * 8), "up to 10 of 16 patches masked per image");
  const out = mkdtempSync(join(tmpdir(), "d2v-vsplit-"));
  await pretrainVision({ config: cfg, images, outDir: out, quiet: true, stopAfter: 3 });
  const second = await pretrainVision({ config: cfg, images, outDir: out, quiet: true, resume: true });
  assert.deepEqual(second.records.map((r) => r.step), [4, 5, 6]);
  for (const r of second.records) {
    const ref = full.records[r.step - 1];
    assert.equal(r.loss, ref.loss, `loss at update ${r.step}`);
    assert.equal(r.gradNorm, ref.gradNorm);
  }
});
