import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { initEngine } from "../../src/engine/runtime.js";
import { CollapseError, DivergenceError } from "../../src/engine/errors.js";
import { checkCollapse, DivergenceGuard } from "../../src/data2vec/monitor.js";
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
  // Targets on a few directions (target_rank): checked only when a threshold is set, after the warm-up.
  assert.doesNotThrow(() => checkCollapse(cfg, 100, 0.5, 0.2, 0.3, 1.2));
  const ranked = { ...cfg, minTargetRank: 3 };
  assert.doesNotThrow(() => checkCollapse(ranked, 99, 0.5, 0.2, 0.3, 1.2));
  assert.doesNotThrow(() => checkCollapse(ranked, 100, 0.5, 0.2, 0.3, 12));
  assert.throws(() => checkCollapse(ranked, 100, 0.5, 0.2, 0.3, 1.2), (e: Error) => e instanceof CollapseError && /target_rank 1\.20 < 3/.test(e.message) && /minTargetRank/.test(e.message));
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
    assert.ok(l.targetRank >= 1 && l.targetRank <= cfg.model.dim, `target rank ${l.targetRank} logged`);
  }
});

test("the divergence guard compares with the run's own early level, needs patience, and stops on a non-finite loss", () => {
  const cfg = { referenceSteps: 3, maxGrowth: 5, patience: 2 };
  const feed = (g: DivergenceGuard, from: number, xs: [number, number][]) => xs.forEach(([loss, tv], i) => g.observe(from + i, loss, tv));
  const g = new DivergenceGuard(cfg);
  feed(g, 1, [[2, 0.1], [1, 0.1], [3, 0.1]]); // reference: loss 2, target_var 0.1
  feed(g, 4, [[9, 0.1], [11, 0.1], [2, 0.1]]); // one update over 5× is a spike, not divergence
  assert.deepEqual(g.state(), { lossSum: 6, targetVarSum: 0.30000000000000004, seen: 3, over: 0 });
  g.observe(7, 11, 0.1);
  assert.throws(() => g.observe(8, 10.5, 0.1), (e: Error) => e instanceof DivergenceError && /diverged at update 8/.test(e.message) && /5\.3× 2\.000/.test(e.message));
  // The targets' scale alone (an absolute threshold would need to know the modality's units).
  const t = new DivergenceGuard(cfg);
  feed(t, 1, [[1, 0.01], [1, 0.01], [1, 0.01], [1, 0.06]]);
  assert.throws(() => t.observe(5, 1, 0.07), /target_var 0\.07000, 7\.0× 0\.01000/);
  assert.throws(() => new DivergenceGuard(cfg).observe(1, NaN, 1), (e: Error) => e instanceof DivergenceError && /the loss became NaN/.test(e.message));
  const off = new DivergenceGuard({ ...cfg, maxGrowth: null });
  feed(off, 1, [[1, 1], [1, 1], [1, 1], [100, 100], [100, 100], [100, 100]]);
  // Rebuilding from logged records gives the state the run carried.
  const records = [[2, 0.1], [1, 0.1], [3, 0.1], [11, 0.1]].map(([loss, targetVar]) => ({ loss, targetVar }));
  const live = new DivergenceGuard(cfg);
  records.forEach((r, i) => live.observe(i + 1, r.loss, r.targetVar));
  assert.deepEqual(DivergenceGuard.replay(cfg, records).state(), live.state());
});

test("a diverging run stops with a DivergenceError, and a resumed run stops at the same update with the same numbers", async () => {
  // τ = 0, no target normalization and a high learning rate: the targets grow with the student (the text ablation's failure).
  const cfg = microConfig({
    train: { steps: 60, lr: 0.05, clipNorm: 0, warmupSteps: 1, checkpointEvery: 5 },
    data2vec: { targetNorm: "none", targetNormAfterAverage: "none", ema: { tauStart: 0, tauEnd: 0, annealSteps: 0 }, divergence: { referenceSteps: 5, maxGrowth: 10, patience: 3 } },
  });
  const data = corpusDir();
  const whole = mkdtempSync(join(tmpdir(), "d2v-diverge-"));
  let message = "";
  await assert.rejects(pretrainText({ config: cfg, data, outDir: whole, quiet: true }), (e: Error) => e instanceof DivergenceError && ((message = e.message), true));
  const stoppedAt = Number(/diverged at update (\d+)/.exec(message)![1]);
  assert.ok(stoppedAt > 10 && stoppedAt < 60, message);
  // The same run stopped at update 10, its guard state checkpointed, then resumed.
  const split = mkdtempSync(join(tmpdir(), "d2v-diverge-"));
  await pretrainText({ config: cfg, data, outDir: split, quiet: true, stopAfter: 10 });
  const saved = JSON.parse(readFileSync(join(split, "checkpoint", "state.json"), "utf8"));
  assert.equal(saved.divergence.seen, 5);
  await assert.rejects(pretrainText({ config: cfg, data, outDir: split, quiet: true, resume: true }), (e: Error) => e instanceof DivergenceError && e.message === message);
});
