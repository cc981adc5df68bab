import { test } from "node:test";
import { numpy as np, random, tree } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { buildTargets, subtractPositionMean } from "../../src/data2vec/targets.js";
import assert from "node:assert/strict";
import { ConfigError } from "../../src/engine/errors.js";
import { runEncoder, type EncoderSpec } from "../../src/nn/encoder.js";
import { initPostLnBlock } from "../../src/nn/init.js";
import type { PostLnBlockParams } from "../../src/nn/blocks.js";
import { KeyStream } from "../../src/nn/random.js";
import * as ref from "../reference.js";
import { assertClose, toHost, toMat } from "../jaxutil.js";

await initEngine();

const B = 2, T = 5, D = 8, H = 2, F = 16, L = 3, K = 2;
const spec: EncoderSpec = { kind: "post_ln", heads: H, eps: 1e-5, dropout: 0, attentionDropout: 0, activationDropout: 0 };

async function refBlock(p: PostLnBlockParams): Promise<ref.RefPostLn> {
  const lin = async (l: { weight: np.Array; bias?: np.Array }) => ({ w: await toMat(l.weight), b: l.bias ? await toHost(l.bias.ref) : undefined });
  // Random (non-trivial) layer-norm gains so the affine part is checked too.
  return {
    attn: { q: await lin(p.attn.q), k: await lin(p.attn.k), v: await lin(p.attn.v), out: await lin(p.attn.out) },
    attnNorm: { g: await toHost(p.attnNorm.weight!.ref), b: await toHost(p.attnNorm.bias!.ref) },
    fc1: await lin(p.ffn.fc1),
    fc2: await lin(p.ffn.fc2),
    ffnNorm: { g: await toHost(p.ffnNorm.weight!.ref), b: await toHost(p.ffnNorm.bias!.ref) },
  };
}

async function setup() {
  const keys = new KeyStream(random.key(3));
  const layers = Array.from({ length: L }, () => {
    const p = initPostLnBlock(keys, D, F);
    // Larger weights than the 0.02 init so the blocks do something measurable.
    return tree.map((a: np.Array) => (a.ndim === 2 ? a.mul(15) : a.add(keys.normal(a.shape).mul(0.3))), p as never) as unknown as PostLnBlockParams;
  });
  const x = keys.normal([B, T, D]);
  keys.close();
  const padding = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]);
  const refLayers = await Promise.all(layers.map(refBlock));
  const xHost = await toHost(x.ref);
  const seqs = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => xHost.slice((b * T + t) * D, (b * T + t + 1) * D)));
  return { layers, x, padding, refLayers, seqs };
}

/** Hand computation: run the blocks per sequence, keep the top-K FFN outputs, normalize, average. */
function referenceTargets(refLayers: ref.RefPostLn[], seqs: ref.Mat[], perLayer: "layer" | "instance", after: "none" | "layer"): number[] {
  const out: number[] = [];
  seqs.forEach((seq, b) => {
    const keyMask = Array.from({ length: T }, (_, t) => b === 0 || t < 3);
    let h = seq;
    const ffns: ref.Mat[] = [];
    refLayers.forEach((p, i) => {
      const r = ref.postLnBlock(h, p, H, 1e-5, keyMask);
      if (i >= L - K) ffns.push(r.ffn);
      h = r.out;
    });
    const normed = ffns.map((m) => {
      if (perLayer === "layer") return ref.layerNorm(m, 1e-5);
      // instance norm: each channel over time (all T steps of the sequence, padding included, as fairseq)
      const cols = ref.transpose(m).map((c) => ref.layerNorm([c], 1e-5)[0]);
      return ref.transpose(cols);
    });
    let avg = normed[0].map((row, t) => row.map((_, d) => normed.reduce((s, m) => s + m[t][d], 0) / normed.length));
    if (after === "layer") avg = ref.layerNorm(avg, 1e-5);
    avg.forEach((row) => out.push(...row));
  });
  return out;
}

for (const [perLayer, after] of [["layer", "none"], ["instance", "none"], ["layer", "layer"]] as const) {
  test(`targets (${perLayer} norm per layer, ${after} after averaging) equal a hand computation`, async () => {
    const { layers, x, padding, refLayers, seqs } = await setup();
    const run = runEncoder(layers, x, spec, { padding, keys: null, capture: "ffn", captureFrom: L - K });
    run.out.dispose();
    padding.dispose();
    const y = buildTargets(run.captured, perLayer, after);
    assertClose(await toHost(y), referenceTargets(refLayers, seqs, perLayer, after), 2e-4, "targets");
  });
}

test("removing the position mean: each step loses its mean over the rows where it is real, by hand", async () => {
  // B=2, T=3, D=2; row 1's last step is padding, so step 2's mean is row 0's value alone.
  const y = [[[1, 10], [2, 20], [3, 30]], [[5, -10], [6, 0], [999, 999]]];
  const got = await toHost(subtractPositionMean(np.array(y), np.array([[1, 1, 1], [1, 1, 0]])));
  const expected = [[[-2, 10], [-2, 10], [0, 0]], [[2, -10], [2, -10]]].flat(2);
  expected.forEach((v, i) => assert.ok(Math.abs(got[i] - v) < 1e-5, `element ${i}: ${got[i]} vs ${v}`));
  assert.throws(() => subtractPositionMean(np.array([y[0]]), null), (e: Error) => e instanceof ConfigError && /batchSize/.test(e.message));
});
