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

test("AdamW with its moments on the host computes the on-device update (clipping, decay on matrices, bias correction)", async () => {
  const { HostAdamW } = await import("../../src/engine/optim.js");
  const cfg = { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.05, clipNorm: 1 };
  const init = () => ({ w: np.array([[0.3, -1.2, 0.7], [2, 0.1, -0.4]]), b: np.array([0.5, -0.25]), s: np.array(1.5) });
  let device = init();
  let state = adamwInit(device);
  let host = init();
  const opt = await HostAdamW.create(host, cfg);
  const grads = (t: number) => ({ w: np.array([[t, -2 * t, 0.5], [0.1, 0.3 * t, -1]]), b: np.array([0.2 * t, -0.7]), s: np.array(0.05 * t) });
  for (let t = 1; t <= 4; t++) {
    const lr = learningRate({ kind: "cosine", peakLr: 0.1, warmupSteps: 1, totalSteps: 4 }, t - 1);
    let norm: np.Array;
    [device, state, norm] = adamwUpdate(grads(t), state, device, np.array(lr), cfg);
    let hostNorm: number;
    [host, hostNorm] = await opt.step(host, grads(t), lr);
    assert.ok(Math.abs((await norm.data())[0] - hostNorm) < 1e-5 * hostNorm);
    for (const k of ["w", "b", "s"] as const) {
      const [a, b] = [await toHost(device[k].ref), await toHost(host[k].ref)];
      a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) < 1e-6, `step ${t} ${k}[${i}]: device ${x}, host ${b[i]}`));
    }
    // Clipping mattered (the first gradients' norm is above 1) and parameters moved.
    if (t === 1) assert.ok(hostNorm > 1);
  }
});

test("fine-tuning with the optimizer on the host, and with gradient accumulation, trains the same parameters", async () => {
  const { trainClassifier } = await import("../../src/train/finetune.js");
  const { HostRng } = await import("../../src/engine/random.js");
  const rng = HostRng.seeded(3);
  const x = Array.from({ length: 12 }, () => Array.from({ length: 4 }, () => rng.uniform() * 2 - 1));
  const labels = x.map((r) => (r[0] + r[1] > 0 ? 1 : 0));
  const run = async (optimizer: "device" | "host", batchSize = 4, accumulate = 1) => {
    const { params, history } = await trainClassifier({
      params: { w: np.array([[0.1, -0.1], [0.2, 0], [0, 0.3], [-0.2, 0.1]]), b: np.zeros([2]) },
      examples: 12,
      settings: { epochs: 3, batchSize, lr: 0.05, warmupFraction: 0.1, weightDecay: 0.01, seed: 1, optimizer, accumulate },
      adam: { beta1: 0.9, beta2: 0.98, eps: 1e-6, clipNorm: 1 },
      batch: (rows) => {
        const oneHot = new Float32Array(batchSize * 2);
        rows.forEach((r, i) => (oneHot[i * 2 + labels[r]] = 1));
        return { x: np.array(rows.flatMap((r) => x[r])).reshape([batchSize, 4]), labels: np.array(oneHot).reshape([batchSize, 2]), weights: np.ones([batchSize]) };
      },
      logits: (p, b) => np.matmul(b.x, p.w).add(p.b),
      quiet: true,
    });
    return { w: await toHost(params.w), b: await toHost(params.b), updates: history[history.length - 1].step };
  };
  const close = (a: { w: number[]; b: number[] }, b: { w: number[]; b: number[] }, what: string) => {
    a.w.forEach((v, i) => assert.ok(Math.abs(v - b.w[i]) < 1e-5, `${what}: w[${i}] ${v} vs ${b.w[i]}`));
    a.b.forEach((v, i) => assert.ok(Math.abs(v - b.b[i]) < 1e-5, `${what}: b[${i}] ${v} vs ${b.b[i]}`));
  };
  const [device, host] = [await run("device"), await run("host")];
  close(device, host, "host vs device");
  // Gradient accumulation: batches of 2, one update per 2 batches, are the batches of 4 (the loss is a mean over rows).
  const [accDevice, accHost] = [await run("device", 2, 2), await run("host", 2, 2)];
  assert.equal(accDevice.updates, device.updates);
  close(accDevice, device, "accumulated on the device");
  close(accHost, device, "accumulated on the host");
  assert.ok(device.w.some((v, i) => Math.abs(v - [0.1, -0.1, 0.2, 0, 0, 0.3, -0.2, 0.1][i]) > 1e-3), "the parameters moved");
});

test("layer-wise learning-rate decay: the scales by hand, and a parameter at scale 0 does not move (step and weight decay)", async () => {
  const { trainClassifier, layerDecayScale } = await import("../../src/train/finetune.js");
  const scale = layerDecayScale(2, 0.5);
  assert.deepEqual(["encoder.shared.patch.weight", "encoder.layers.0.attn.q.weight", "encoder.layers.1.ffn.fc1.bias", "head.out.weight"].map(scale), [0.125, 0.25, 0.5, 1]);
  for (const optimizer of ["device", "host"] as const) {
    for (const accumulate of [1, 2]) {
      const { params } = await trainClassifier({
        params: { w: np.array([[0.5, -0.5], [0.25, 0.75]]), b: np.zeros([2]) },
        examples: 4,
        settings: { epochs: 2, batchSize: 2, lr: 0.1, warmupFraction: 0, weightDecay: 0.1, seed: 1, optimizer, accumulate },
        adam: { beta1: 0.9, beta2: 0.98, eps: 1e-6, clipNorm: 0 },
        batch: (rows) => ({ x: np.array(rows.flatMap((r) => [r, 1 - r])).reshape([2, 2]), labels: np.array(rows.flatMap((r) => (r % 2 ? [0, 1] : [1, 0]))).reshape([2, 2]), weights: np.ones([2]) }),
        logits: (p, b) => np.matmul(b.x, p.w).add(p.b),
        lrScale: (name) => (name === "w" ? 0 : 1),
        quiet: true,
      });
      assert.deepEqual(await toHost(params.w), [0.5, -0.5, 0.25, 0.75], `${optimizer}, accumulate ${accumulate}: w is frozen`);
      assert.ok((await toHost(params.b)).some((v) => Math.abs(v) > 1e-3), `${optimizer}: b moved`);
    }
  }
});
