import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { initEngine } from "../../src/engine/runtime.js";
import { resolveTextConfig } from "../../src/text/config.js";
import { pretrainText } from "../../src/text/pretrain.js";
import { loadBrown } from "../../src/text/brown.js";

await initEngine();

/** A micro configuration: the same code paths as the presets, small enough for CI. */
export function microConfig(overrides: object = {}) {
  return resolveTextConfig("tiny", {
    model: { vocabSize: 400, maxPositions: 32, dim: 32, layers: 2, heads: 2, ffnDim: 64 },
    data2vec: { topK: 2, collapseWarmupSteps: 1000 },
    train: { batchSize: 4, seqLen: 32, steps: 6, warmupSteps: 2, checkpointEvery: 3, logEvery: 1 },
    ...overrides,
  });
}

function corpusDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "d2v-corpus-"));
  mkdirSync(join(dir, "sub"));
  const docs = loadBrown().slice(0, 6);
  docs.forEach((d, i) => writeFileSync(join(dir, i % 2 ? "sub" : ".", `doc${i}.txt`), d.text.slice(0, 3000)));
  return dir;
}

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
