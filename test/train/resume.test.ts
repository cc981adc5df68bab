import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { initEngine } from "../../src/engine/runtime.js";
import { pretrainText } from "../../src/text/pretrain.js";
import { corpusDir, microConfig } from "./fixtures.js";

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
