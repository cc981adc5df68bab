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
