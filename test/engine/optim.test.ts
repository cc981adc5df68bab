import { test } from "node:test";
import assert from "node:assert/strict";
import { numpy as np } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { adamwInit, adamwUpdate, learningRate } from "../../src/engine/optim.js";
import { toHost } from "../jaxutil.js";

await initEngine();

test("AdamW matches a hand computation (bias correction, decoupled decay on matrices only, clipping)", async () => {
  const cfg = { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1, clipNorm: 1 };
  let params = { w: np.array([[1, -2]]), b: np.array([0.5]) };
  let state = adamwInit(params);
  const gradsSeq = [
    { w: [[3, 4]], b: [0] }, // norm 5 → clipped to 1 (factor 0.2)
    { w: [[0.1, -0.2]], b: [0.3] }, // norm < 1 → unclipped
  ];
  // Hand computation in float64.
  const hp = { w: [1, -2], b: [0.5] };
  const m = { w: [0, 0], b: [0] };
  const v = { w: [0, 0], b: [0] };
  const lr = 0.01;
  for (let t = 1; t <= gradsSeq.length; t++) {
    const g = gradsSeq[t - 1];
    const flat = { w: g.w[0], b: g.b };
    const norm = Math.sqrt([...flat.w, ...flat.b].reduce((s, x) => s + x * x, 0));
    const factor = Math.min(1, cfg.clipNorm / (norm + 1e-6));
    for (const k of ["w", "b"] as const) {
      flat[k].forEach((gi, i) => {
        const gc = gi * factor;
        m[k][i] = cfg.beta1 * m[k][i] + (1 - cfg.beta1) * gc;
        v[k][i] = cfg.beta2 * v[k][i] + (1 - cfg.beta2) * gc * gc;
        const mhat = m[k][i] / (1 - cfg.beta1 ** t);
        const vhat = v[k][i] / (1 - cfg.beta2 ** t);
        if (k === "w") hp[k][i] -= lr * cfg.weightDecay * hp[k][i];
        hp[k][i] -= (lr * mhat) / (Math.sqrt(vhat) + cfg.eps);
      });
    }
    let gradNorm: np.Array;
    [params, state, gradNorm] = adamwUpdate({ w: np.array(g.w), b: np.array(g.b) } as never, state, params as never, np.array(lr), cfg) as unknown as [typeof params, typeof state, np.Array];
    assert.ok(Math.abs((await toHost(gradNorm))[0] - norm) < 1e-5);
  }
  const w = await toHost(params.w);
  const b = await toHost(params.b);
  hp.w.forEach((x, i) => assert.ok(Math.abs(w[i] - x) < 1e-5, `w[${i}] ${w[i]} vs ${x}`));
  assert.ok(Math.abs(b[0] - hp.b[0]) < 1e-5, `b ${b[0]} vs ${hp.b[0]}`);
  assert.equal((await toHost(state.count))[0], 2);
});

test("schedules: linear warm-up + cosine, and tri-stage", () => {
  const cos = { kind: "cosine" as const, peakLr: 1, warmupSteps: 10, totalSteps: 110 };
  assert.equal(learningRate(cos, 0), 0.1);
  assert.equal(learningRate(cos, 9), 1);
  assert.ok(Math.abs(learningRate(cos, 60) - 0.5) < 1e-12);
  assert.ok(Math.abs(learningRate(cos, 110)) < 1e-12);
  const tri = { kind: "tri_stage" as const, peakLr: 1, totalSteps: 100, phases: [0.1, 0.4, 0.5] as [number, number, number], initScale: 0.01, finalScale: 0.05 };
  assert.equal(learningRate(tri, 0), 0.01);
  assert.ok(Math.abs(learningRate(tri, 5) - (0.01 + 0.99 * 0.5)) < 1e-12);
  assert.equal(learningRate(tri, 10), 1);
  assert.equal(learningRate(tri, 49), 1);
  assert.ok(Math.abs(learningRate(tri, 75) - Math.exp(Math.log(0.05) * 0.5)) < 1e-12);
  assert.ok(Math.abs(learningRate(tri, 100) - 0.05) < 1e-12);
});
