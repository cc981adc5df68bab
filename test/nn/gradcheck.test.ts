/**
 * Gradient checks: jax-js reverse-mode gradients against float64 central finite differences, on the `cpu`
 * device (wasm transcendentals are only float32-accurate).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { grad, init, numpy as np, tree } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { HostRng } from "../../src/engine/random.js";
import { namedLeaves, type ParamTree } from "../../src/engine/tree.js";
import { gelu, layerNorm, linear } from "../../src/nn/layers.js";
import { additivePaddingMask, multiHeadAttention } from "../../src/nn/attention.js";
import { postLnBlock, preLnBlock } from "../../src/nn/blocks.js";
import { regressionLoss } from "../../src/data2vec/loss.js";
import { crossEntropy } from "../../src/text/classify.js";

await initEngine();
await init("cpu");

const rng = HostRng.seeded(42);
const f64 = (shape: number[], scale = 1): np.Array => {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = Float64Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * scale);
  return np.array(data, { dtype: np.float64, device: "cpu" }).reshape(shape);
};
const const64 = (v: number[][] | number[][][]) => np.array(v, { dtype: np.float64, device: "cpu" });

/** Checks d f / d params at a few coordinates of every leaf. f consumes its argument and returns a scalar. */
async function gradcheck(name: string, f: (p: ParamTree) => np.Array, params: ParamTree, perLeaf = 4) {
  const g = grad(f)(tree.ref(params as never)) as unknown as ParamTree;
  const grads = new Map(namedLeaves(g).map(([n, a]) => [n, Array.from(a.ref.dataSync() as Float64Array)]));
  tree.dispose(g as never);
  const host = namedLeaves(params).map(([n, a]) => [n, a.shape, Array.from(a.ref.dataSync() as Float64Array)] as const);
  const rebuild = (leafName: string, index: number, delta: number): ParamTree => {
    const leaves = host.map(([n, shape, data]) => {
      const d = Float64Array.from(data);
      if (n === leafName) d[index] += delta;
      return np.array(d, { dtype: np.float64, device: "cpu" }).reshape(shape as number[]);
    });
    return tree.unflatten(tree.structure(params as never), leaves) as ParamTree;
  };
  const evalAt = (p: ParamTree) => f(p).dataSync()[0];
  const h = 1e-6;
  for (const [leaf, , data] of host) {
    for (let k = 0; k < Math.min(perLeaf, data.length); k++) {
      const i = Math.floor((k / perLeaf) * data.length);
      const numeric = (evalAt(rebuild(leaf, i, h)) - evalAt(rebuild(leaf, i, -h))) / (2 * h);
      const analytic = grads.get(leaf)![i];
      const err = Math.abs(numeric - analytic) / Math.max(1e-3, Math.abs(numeric) + Math.abs(analytic));
      assert.ok(err < 1e-6, `${name}: d/d${leaf}[${i}] analytic ${analytic} vs numeric ${numeric}`);
    }
  }
  tree.dispose(params as never);
}

const B = 2, T = 3, D = 4, H = 2, F = 6;
const weights = () => f64([B, T, D]); // fixed random projection of the output to a scalar

test("gradcheck: linear, layer norm (affine), exact GELU", async () => {
  const w = weights();
  await gradcheck(
    "linear→LN→GELU",
    (p: any) => gelu(layerNorm({ weight: p.g, bias: p.b }, linear({ weight: p.w, bias: p.c }, p.x), 1e-5)).mul(w.ref).sum(),
    { x: f64([B, T, D], 2), w: f64([D, D]), c: f64([D]), g: f64([D]), b: f64([D]) } as never,
  );
  w.dispose();
});

const attnParams = () => ({ q: { weight: f64([D, D]), bias: f64([D]) }, k: { weight: f64([D, D]), bias: f64([D]) }, v: { weight: f64([D, D]), bias: f64([D]) }, out: { weight: f64([D, D]), bias: f64([D]) } });

test("gradcheck: multi-head attention with a padding mask and an additive bias", async () => {
  const w = weights();
  const pad = const64([[1, 1, 1], [1, 1, 0]]);
  const mask = additivePaddingMask(pad, np.float64);
  for (const scaleQueryFirst of [false, true]) {
    await gradcheck(
      `attention (scaleQueryFirst=${scaleQueryFirst})`,
      (p: any) => multiHeadAttention(p.attn, p.x, { heads: H, mask: mask.ref, bias: p.bias, scaleQueryFirst }).mul(w.ref).sum(),
      { attn: attnParams(), x: f64([B, T, D]), bias: f64([1, H, T, T]) } as never,
    );
  }
  mask.dispose();
  w.dispose();
});

const blockOpts = { heads: H, eps: 1e-5, dropout: 0, attentionDropout: 0, activationDropout: 0, keys: null };

test("gradcheck: post-LN block output and its FFN capture", async () => {
  const w = weights();
  const w2 = weights();
  await gradcheck(
    "post-LN block",
    (p: any) => {
      const r = postLnBlock(p.block, p.x, { ...blockOpts, capture: "ffn" });
      return r.out.mul(w.ref).sum().add(r.captured!.mul(w2.ref).sum());
    },
    {
      x: f64([B, T, D]),
      block: { attn: attnParams(), attnNorm: { weight: f64([D]), bias: f64([D]) }, ffn: { fc1: { weight: f64([D, F]), bias: f64([F]) }, fc2: { weight: f64([F, D]), bias: f64([D]) } }, ffnNorm: { weight: f64([D]), bias: f64([D]) } },
    } as never,
  );
  w.dispose();
  w2.dispose();
});

test("gradcheck: pre-LN block with layer scale", async () => {
  const w = weights();
  await gradcheck(
    "pre-LN block",
    (p: any) => preLnBlock(p.block, p.x, blockOpts).out.mul(w.ref).sum(),
    {
      x: f64([B, T, D]),
      block: {
        attnNorm: { weight: f64([D]), bias: f64([D]) },
        attn: attnParams(),
        ffnNorm: { weight: f64([D]), bias: f64([D]) },
        ffn: { fc1: { weight: f64([D, F]), bias: f64([F]) }, fc2: { weight: f64([F, D]), bias: f64([D]) } },
        lambda1: f64([D]),
        lambda2: f64([D]),
      },
    } as never,
  );
  w.dispose();
});

test("gradcheck: Smooth L1 regression loss and cross-entropy", async () => {
  const target = f64([B, T, D], 3);
  const weightsBT = const64([[1, 0, 1], [0, 1, 1]]);
  await gradcheck("smooth L1", (p: any) => regressionLoss(p.pred, target.ref, weightsBT.ref, { kind: "smooth_l1", beta: 1, scale: 0.5 }), { pred: f64([B, T, D], 3) } as never);
  const oneHot = const64([[0, 1, 0], [1, 0, 0]]);
  const rowWeights = np.array([1, 1], { dtype: np.float64, device: "cpu" });
  await gradcheck("cross-entropy", (p: any) => crossEntropy(p.logits, oneHot.ref, rowWeights.ref), { logits: f64([B, 3], 2) } as never);
});
