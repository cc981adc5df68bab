import { test } from "node:test";
import assert from "node:assert/strict";
import { numpy as np } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { effectiveDimension, meanStd, positionShare, regressionLoss } from "../../src/data2vec/loss.js";
import { participationRatio } from "../../src/train/probe.js";
import { HostRng } from "../../src/engine/random.js";
import { toHost } from "../jaxutil.js";

await initEngine();

// pred/target [B=1, T=3, D=2]; step 1 is not masked.
const pred = [[[1, -2], [100, 100], [0.5, 3]]];
const target = [[[0, 0], [0, 0], [0, -3]]];
const weights = [[1, 0, 1]];

function smoothL1(d: number, beta: number) {
  return Math.abs(d) < beta ? (0.5 * d * d) / beta : Math.abs(d) - 0.5 * beta;
}

test("Smooth L1: sum over dims and masked steps, divided by the masked-step count, scaled", async () => {
  const beta = 2;
  const expected = ((smoothL1(1, beta) + smoothL1(-2, beta) + smoothL1(0.5, beta) + smoothL1(6, beta)) / 2) * 0.5;
  const loss = regressionLoss(np.array(pred), np.array(target), np.array(weights), { kind: "smooth_l1", beta, scale: 0.5 });
  assert.ok(Math.abs((await toHost(loss))[0] - expected) < 1e-5);
});

test("L2 is (p − y)² without ½", async () => {
  const expected = (1 + 4 + 0.25 + 36) / 2 / Math.sqrt(2);
  const loss = regressionLoss(np.array(pred), np.array(target), np.array(weights), { kind: "l2", beta: 0, scale: 1 / Math.sqrt(2) });
  assert.ok(Math.abs((await toHost(loss))[0] - expected) < 1e-5);
});

test("the loss ignores unmasked steps entirely", async () => {
  const perturbed = [[[1, -2], [-7, 42], [0.5, 3]]];
  const a = await toHost(regressionLoss(np.array(pred), np.array(target), np.array(weights), { kind: "smooth_l1", beta: 4, scale: 1 }));
  const b = await toHost(regressionLoss(np.array(perturbed), np.array(target), np.array(weights), { kind: "smooth_l1", beta: 4, scale: 1 }));
  assert.equal(a[0], b[0]);
  // …but not masked ones
  const c = await toHost(regressionLoss(np.array([[[1, -2], [100, 100], [0.6, 3]]]), np.array(target), np.array(weights), { kind: "smooth_l1", beta: 4, scale: 1 }));
  assert.notEqual(a[0], c[0]);
});

test("meanStd is the mean per-dimension std over the weighted steps (unbiased, +1e-6)", async () => {
  const x = [[[1, 10], [2, 20], [999, -999], [6, 60]]];
  const w = [[1, 1, 0, 1]];
  const std = (v: number[]) => {
    const m = v.reduce((a, b) => a + b) / v.length;
    return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1) + 1e-6);
  };
  const expected = (std([1, 2, 6]) + std([10, 20, 60])) / 2;
  const got = (await toHost(meanStd(np.array(x), np.array(w))))[0];
  assert.ok(Math.abs(got - expected) / expected < 1e-5, `${got} vs ${expected}`);
});

test("positionShare: the step index's share of the variance over real steps, by hand; 1 for position-only targets", async () => {
  // B=2, T=3, D=1; row 1's last step is padding and must not count.
  const x = [[[1], [4], [2]], [[3], [0], [999]]];
  const w = [[1, 1, 1], [1, 1, 0]];
  const real = [1, 4, 2, 3, 0];
  const mean = real.reduce((a, b) => a + b) / real.length;
  const steps = [[1, 3], [4, 0], [2]];
  const between = steps.reduce((s, v) => s + v.length * (v.reduce((a, b) => a + b) / v.length - mean) ** 2, 0);
  const total = real.reduce((s, v) => s + (v - mean) ** 2, 0);
  const got = (await toHost(positionShare(np.array(x), np.array(w))))[0];
  assert.ok(Math.abs(got - between / total) < 1e-5, `${got} vs ${between / total}`);
  // Every row the same function of position (D = 2): the whole variance is explained by the step.
  const positional = [0, 1].map(() => [[[1, -1]], [[2, 5]], [[-3, 0]]].map((r) => r[0]));
  assert.ok(Math.abs((await toHost(positionShare(np.array(positional), null)))[0] - 1) < 1e-5);
  // Rows that differ only by a constant offset per row: position explains nothing.
  const offsets = [[[1], [1], [1]], [[5], [5], [5]]];
  assert.ok(Math.abs((await toHost(positionShare(np.array(offsets), null)))[0]) < 1e-6);
  assert.ok(Number.isNaN((await toHost(positionShare(np.array([x[0]]), null)))[0]), "undefined for one row");
});

test("effectiveDimension: D for uncorrelated dimensions, 1 for a line, the host participation ratio of the weighted steps", async () => {
  // Uncorrelated, equal-variance dimensions (C = I): 2. The third step is not counted, so its values must not matter.
  const uncorrelated = [[[1, 0], [-1, 0], [1e3, -7e2], [0, 1], [0, -1]]];
  const two = (await toHost(effectiveDimension(np.array(uncorrelated), np.array([[1, 1, 0, 1, 1]]))))[0];
  assert.ok(Math.abs(two - 2) < 1e-4, `${two}`);
  // Every dimension a multiple of one signal (with offsets and scales): a line, whatever D is.
  const line = [[-2, 0.5, 1, 3].map((a) => [a, 10 - 3 * a, 0.1 * a + 4])];
  const one = (await toHost(effectiveDimension(np.array(line), np.array([[1, 1, 1, 1]]))))[0];
  assert.ok(Math.abs(one - 1) < 1e-4, `${one}`);
  // Random correlated data with some steps left out: the same number as the probe's participation ratio of the kept rows.
  const rng = HostRng.seeded(3);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rng.uniform())) * Math.cos(2 * Math.PI * rng.uniform());
  const [b, t, d] = [3, 20, 6];
  const x: number[][][] = [];
  const w: number[][] = [];
  const kept: number[] = [];
  for (let i = 0; i < b; i++) {
    x.push([]);
    w.push([]);
    for (let j = 0; j < t; j++) {
      const s = normal();
      const row = Array.from({ length: d }, (_, k) => (k < 3 ? s * (k + 1) : 0) + normal());
      const on = rng.uniform() < 0.6 ? 1 : 0;
      x[i].push(row);
      w[i].push(on);
      if (on) kept.push(...row);
    }
  }
  const expected = participationRatio(Float32Array.from(kept), d);
  const got = (await toHost(effectiveDimension(np.array(x), np.array(w))))[0];
  assert.ok(expected > 1.5 && expected < d - 0.5, `a case between the extremes: ${expected}`);
  assert.ok(Math.abs(got - expected) / expected < 1e-4, `${got} vs ${expected}`);
});
