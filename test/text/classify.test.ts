import { test } from "node:test";
import assert from "node:assert/strict";
import { numpy as np, random, tree } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { classifierLogits, crossEntropy, newHead, pooledTextFeatures, type TextClassifierParams } from "../../src/text/classify.js";
import { encodeText, initTextEncoder, positionIds, type TextEncoderConfig } from "../../src/text/model.js";
import { KeyStream } from "../../src/nn/random.js";
import { assertClose, toHost } from "../jaxutil.js";

await initEngine();

const enc: TextEncoderConfig = { vocabSize: 50, maxPositions: 16, dim: 16, layers: 2, heads: 2, ffnDim: 32, dropout: 0, attentionDropout: 0, activationDropout: 0, layerNormEps: 1e-5, padId: 1 };

function params(): TextClassifierParams {
  const keys = new KeyStream(random.key(4));
  const encoder = initTextEncoder(keys, enc);
  keys.close();
  return { encoder, head: newHead(4, enc.dim, 3) };
}

function batch(tokens: number[], len: number) {
  const ids = Int32Array.from({ length: len }, (_, i) => (i < tokens.length ? tokens[i] : enc.padId));
  const padding = Float32Array.from(ids, (x) => (x === enc.padId ? 0 : 1));
  return [np.array(ids, { dtype: np.int32 }).reshape([1, len]), np.array(positionIds(ids, 1, len, enc.padId), { dtype: np.int32 }).reshape([1, len]), np.array(padding).reshape([1, len])] as const;
}

for (const pooling of ["first", "mean"] as const) {
  test(`classifier logits (${pooling} pooling) do not depend on how much padding follows the text`, async () => {
    const p = params();
    const tokens = [0, 7, 9, 11, 13, 2];
    const a = await toHost(classifierLogits(p, ...batch(tokens, 8), enc, null, pooling));
    const b = await toHost(classifierLogits(params(), ...batch(tokens, 14), enc, null, pooling));
    assertClose(a, b, 1e-5, "logits");
    const c = await toHost(classifierLogits(params(), ...batch([0, 7, 9, 12, 13, 2], 8), enc, null, pooling));
    assert.ok(Math.abs(a[0] - c[0]) > 1e-7, "a different text gives different logits");
  });
}

test("cross-entropy is the weighted mean of −log softmax at the label", async () => {
  const logits = [[2, 0, -1], [0.5, 0.5, 3]];
  const lse = (r: number[]) => Math.log(r.reduce((s, x) => s + Math.exp(x), 0));
  const expected = (lse(logits[0]) - 2) * 1; // the second row has weight 0
  const got = await toHost(crossEntropy(np.array(logits), np.array([[1, 0, 0], [0, 1, 0]]), np.array([1, 0])));
  assert.ok(Math.abs(got[0] - expected) < 1e-5);
});

test("pooled features (linear probes): each text's mean final state over its own tokens, whatever its batch and padding", async () => {
  const p = params();
  const texts = [[0, 7, 9, 11, 13, 2], [0, 5, 2], [0, 8, 8, 3, 4, 6, 10, 2]];
  const data = { ids: texts.map((t) => Int32Array.from(t)), labels: [0, 0, 0] };
  // Batches of 2 (the last filled with a filler row) padded to 12 tokens.
  const pooled = await pooledTextFeatures(p.encoder, enc, { bos: 0, pad: enc.padId, eos: 2 }, data, 2, 12);
  for (let i = 0; i < texts.length; i++) {
    const [ids, positions, padding] = batch(texts[i], texts[i].length); // alone, no padding
    const states = await toHost(encodeText(tree.ref(p.encoder), ids, positions, padding, enc, null)); // [1, T, D]
    const mean = Array.from({ length: enc.dim }, (_, d) => texts[i].reduce((s, _t, t) => s + states[t * enc.dim + d], 0) / texts[i].length);
    assertClose(Array.from(pooled.subarray(i * enc.dim, (i + 1) * enc.dim)), mean, 1e-5, `text ${i}`);
  }
});
