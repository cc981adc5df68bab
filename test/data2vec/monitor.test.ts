import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { initEngine } from "../../src/engine/runtime.js";
import { CollapseError } from "../../src/engine/errors.js";
import { checkCollapse } from "../../src/data2vec/monitor.js";
import { pretrainText } from "../../src/text/pretrain.js";
import { corpusDir, microConfig } from "../train/fixtures.js";

await initEngine();

test("the monitor waits for its warm-up, then stops on low target or prediction variance", () => {
  const cfg = microConfig({ data2vec: { minTargetVar: 0.1, minPredVar: 0.01, collapseWarmupSteps: 100 } }).data2vec;
  assert.doesNotThrow(() => checkCollapse(cfg, 99, 0.001, 0.001));
  assert.doesNotThrow(() => checkCollapse(cfg, 100, 0.5, 0.2));
  assert.throws(() => checkCollapse(cfg, 100, 0.05, 0.2), (e: Error) => e instanceof CollapseError && /target_var 0\.0500 < 0\.1/.test(e.message) && /train\.lr/.test(e.message));
  assert.throws(() => checkCollapse(cfg, 100, 0.5, 0.001), /pred_var 0\.0010 < 0\.01/);
  assert.throws(() => checkCollapse(cfg, 100, NaN, 0.5), CollapseError);
  // Position-only targets: checked only when a threshold is set, after the warm-up, never on NaN (a batch of one).
  assert.doesNotThrow(() => checkCollapse(cfg, 100, 0.5, 0.2, 0.999));
  const strict = { ...cfg, maxPositionShare: 0.9 };
  assert.doesNotThrow(() => checkCollapse(strict, 99, 0.5, 0.2, 0.999));
  assert.doesNotThrow(() => checkCollapse(strict, 100, 0.5, 0.2, 0.3));
  assert.doesNotThrow(() => checkCollapse(strict, 100, 0.5, 0.2, NaN));
  assert.throws(() => checkCollapse(strict, 100, 0.5, 0.2, 0.95), (e: Error) => e instanceof CollapseError && /position_share 0\.9500 > 0\.9/.test(e.message) && /edgeJitter/.test(e.message));
});

test("training logs target_var and pred_var every update and stops with a CollapseError", async () => {
  // Thresholds no healthy run can meet make the monitor fire right after its warm-up.
  const cfg = microConfig({ train: { steps: 10 }, data2vec: { minTargetVar: 50, collapseWarmupSteps: 3 } });
  const out = mkdtempSync(join(tmpdir(), "d2v-collapse-"));
  await assert.rejects(pretrainText({ config: cfg, data: corpusDir(), outDir: out, quiet: true }), (e: Error) => e instanceof CollapseError && /collapsed at update 3/.test(e.message));
  const lines = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 4);
  for (const l of lines) {
    assert.ok(l.targetVar > 0 && l.predVar > 0);
    assert.ok(l.positionShare > 0 && l.positionShare < 1, `position share ${l.positionShare} logged`);
  }
});
