import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { initEngine } from "../../src/engine/runtime.js";
import { liveBuffers, trackBuffers } from "../../src/engine/memory.js";
import { numpy as np } from "../../src/engine/jax.js";
import { pretrainText } from "../../src/text/pretrain.js";
import { corpusDir, microConfig } from "./fixtures.js";
import { resolveVisionConfig } from "../../src/vision/config.js";
import { mnistSplits } from "../../src/vision/images.js";
import { pretrainVision } from "../../src/vision/pretrain.js";
import { finetuneVision, newVisionHead } from "../../src/vision/classify.js";
import { initVisionEncoder } from "../../src/vision/model.js";
import { KeyStream } from "../../src/nn/random.js";
import { random, tree } from "../../src/engine/jax.js";

await initEngine();
await trackBuffers();

test("the buffer counter sees allocations and frees", async () => {
  const before = liveBuffers().count;
  const a = np.ones([1000]);
  await a.ref.data();
  assert.equal(liveBuffers().count, before + 1);
  assert.ok(liveBuffers().bytes >= 4000);
  a.dispose();
  assert.equal(liveBuffers().count, before);
});

test("50 training updates do not grow memory", async () => {
  for (const accumSteps of [1, 2]) {
    const counts: { count: number; bytes: number }[] = [];
    const cfg = microConfig({ train: { steps: 50, accumSteps, checkpointEvery: 25 } });
    await pretrainText({
      config: cfg,
      data: corpusDir(),
      outDir: mkdtempSync(join(tmpdir(), "d2v-leak-")),
      quiet: true,
      onUpdate: () => counts.push(liveBuffers()),
    });
    assert.equal(counts.length, 50);
    assert.deepEqual(counts[49], counts[4], `accumSteps=${accumSteps}: live buffers at update 5 ${JSON.stringify(counts[4])} vs update 50 ${JSON.stringify(counts[49])}`);
  }
});

test("50 vision updates (pretraining, then fine-tuning) do not grow memory", async () => {
  const { train } = mnistSplits();
  const cfg = resolveVisionConfig("tiny", {
    model: { dim: 16, layers: 2, heads: 2, ffnDim: 32, relativePositionBias: "per_layer" },
    train: { batchSize: 8, steps: 50, warmupSteps: 2, checkpointEvery: 25 },
  });
  const counts: { count: number; bytes: number }[] = [];
  await pretrainVision({ config: cfg, images: train.images.slice(0, 64), outDir: mkdtempSync(join(tmpdir(), "d2v-vleak-")), quiet: true, onUpdate: () => counts.push(liveBuffers()) });
  assert.equal(counts.length, 50);
  assert.deepEqual(counts[49], counts[4], `pretraining: live buffers at update 5 ${JSON.stringify(counts[4])} vs update 50 ${JSON.stringify(counts[49])}`);

  const keys = new KeyStream(random.key(0));
  const encoder = initVisionEncoder(keys, cfg.model);
  keys.close();
  const labeled = { images: train.images.slice(0, 40), labels: train.labels.slice(0, 40), classes: train.classes };
  const epochCounts: { count: number; bytes: number }[] = [];
  const settings = { epochs: 10, batchSize: 8, lr: 1e-3, warmupFraction: 0.1, weightDecay: 0.05, seed: 1, augment: true };
  const trained = await finetuneVision({ encoder, head: newVisionHead(1, 16, 10) }, cfg, labeled, settings, { quiet: true, onEpoch: () => epochCounts.push(liveBuffers()) });
  assert.deepEqual(epochCounts[9], epochCounts[1], "fine-tuning: live buffers after epoch 2 vs epoch 10");
  tree.dispose(trained.params as never);
  const afterFirst = liveBuffers();
  const keys2 = new KeyStream(random.key(0));
  const encoder2 = initVisionEncoder(keys2, cfg.model);
  keys2.close();
  tree.dispose((await finetuneVision({ encoder: encoder2, head: newVisionHead(1, 16, 10) }, cfg, labeled, settings, { quiet: true })).params as never);
  // jax-js keeps what the first compilation built (per shape), but a second run must not add to it.
  assert.deepEqual(liveBuffers(), afterFirst, "a second fine-tuning run in the same process adds no live buffers");
});
