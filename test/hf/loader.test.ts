import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { numpy as np, tree } from "../../src/engine/jax.js";
import { CheckpointError, ConfigError } from "../../src/engine/errors.js";
import type { PreLnBlockParams } from "../../src/nn/blocks.js";
import { conv1d, convWeightFromTorch } from "../../src/nn/conv.js";
import { loadHfModel, runHfModel } from "../../src/hf/model.js";
import { decodeSafetensors, encodeSafetensors, f32Tensor, toFloat32 } from "../../src/engine/safetensors.js";
import { visionForward, type HfVisionModel } from "../../src/hf/vision.js";
import { HF_FIXTURES } from "../helpers.js";

/** A copy of a fixture directory with its config.json edited. */
function withConfig(fixture: string, edit: (c: Record<string, unknown>) => void, weights = "model.safetensors"): string {
  const src = join(HF_FIXTURES, fixture);
  const dir = mkdtempSync(join(tmpdir(), "hf-"));
  const config = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  edit(config);
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  if (weights) copyFileSync(join(src, weights), join(dir, weights));
  return dir;
}

test("bad model directories: missing fields, disagreeing shapes, unknown architectures, missing files", () => {
  const missing = withConfig("vision-cls", (c) => delete c.hidden_size);
  assert.throws(() => loadHfModel(missing), (e: Error) => e instanceof ConfigError && /hidden_size/.test(e.message));
  const wrongSize = withConfig("audio-ctc", (c) => (c.intermediate_size = 40));
  assert.throws(
    () => loadHfModel(wrongSize),
    (e: Error) => e instanceof CheckpointError && /encoder\.layers\.0\.feed_forward\.intermediate_dense\.weight has shape \[37, 32\] but the config implies \[40, 32\]/.test(e.message),
  );
  const unknown = withConfig("text-mlm", (c) => (c.architectures = ["BertForMaskedLM"]));
  assert.throws(() => loadHfModel(unknown), (e: Error) => e instanceof CheckpointError && /BertForMaskedLM/.test(e.message) && /Data2VecTextForMaskedLM/.test(e.message));
  const badAct = withConfig("text-mlm", (c) => (c.hidden_act = "relu"));
  assert.throws(() => loadHfModel(badAct), (e: Error) => e instanceof ConfigError && /hidden_act/.test(e.message));
  const noWeights = withConfig("vision-cls", () => {}, "");
  assert.throws(() => loadHfModel(noWeights), (e: Error) => e instanceof CheckpointError && /model\.safetensors or pytorch_model\.bin/.test(e.message));
  assert.throws(() => loadHfModel(mkdtempSync(join(tmpdir(), "hf-"))), (e: Error) => e instanceof CheckpointError && /no config\.json/.test(e.message));
  // A weights file cut short.
  const cut = withConfig("vision-cls", () => {}, "");
  const bin = readFileSync(join(HF_FIXTURES, "vision-cls", "pytorch_model.bin"));
  writeFileSync(join(cut, "pytorch_model.bin"), bin.subarray(0, bin.length / 2));
  assert.throws(() => loadHfModel(cut), CheckpointError);
});

/** Direct convolution by loops: x [T, Cin], torch weight [Cout, Cin/G, k], zero padding p. */
function naiveConv(x: number[][], w: Float32Array, cout: number, k: number, stride: number, pad: number, groups: number, bias?: number[]): number[][] {
  const cin = x[0].length;
  const cg = cin / groups;
  const og = cout / groups;
  const t = x.length;
  const tOut = Math.floor((t + 2 * pad - k) / stride) + 1;
  return Array.from({ length: tOut }, (_, i) =>
    Array.from({ length: cout }, (_, o) => {
      const g = Math.floor(o / og);
      let s = bias?.[o] ?? 0;
      for (let c = 0; c < cg; c++)
        for (let j = 0; j < k; j++) {
          const src = i * stride + j - pad;
          if (src >= 0 && src < t) s += x[src][g * cg + c] * w[(o * cg + c) * k + j];
        }
      return s;
    }),
  );
}

test("conv1d as matmuls equals a direct convolution (strides, even and odd kernels, groups, padding, bias)", async () => {
  const cases = [
    { t: 23, cin: 1, cout: 4, k: 10, stride: 5, pad: 0, groups: 1 },
    { t: 17, cin: 4, cout: 6, k: 3, stride: 2, pad: 0, groups: 1 },
    { t: 9, cin: 6, cout: 6, k: 4, stride: 1, pad: 2, groups: 3 }, // even positional kernel
    { t: 11, cin: 8, cout: 8, k: 5, stride: 1, pad: 2, groups: 2, bias: true },
    { t: 12, cin: 3, cout: 2, k: 2, stride: 2, pad: 0, groups: 1, bias: true },
  ];
  let seed = 1;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
  for (const c of cases) {
    const x = Array.from({ length: c.t }, () => Array.from({ length: c.cin }, rand));
    const w = Float32Array.from({ length: c.cout * (c.cin / c.groups) * c.k }, rand);
    const bias = c.bias ? Array.from({ length: c.cout }, rand) : undefined;
    const expected = naiveConv(x, w, c.cout, c.k, c.stride, c.pad, c.groups, bias);
    const params = { weight: convWeightFromTorch(w, c.cout, c.cin / c.groups, c.k, c.groups), bias: bias ? np.array(bias) : undefined };
    const y = conv1d(params, np.array(x).reshape([1, c.t, c.cin]), { kernel: c.k, stride: c.stride, padding: c.pad, groups: c.groups });
    assert.deepEqual(y.shape, [1, expected.length, c.cout], JSON.stringify(c));
    const got = (await y.data()) as Float32Array;
    expected.flat().forEach((v, i) => assert.ok(Math.abs(v - got[i]) < 1e-5, `${JSON.stringify(c)} at ${i}: ${got[i]} vs ${v}`));
  }
});

test("a shared relative position bias equals the same table given to every layer", async () => {
  const perLayer = loadHfModel(join(HF_FIXTURES, "vision-cls")) as HfVisionModel;
  const shared = loadHfModel(join(HF_FIXTURES, "vision-cls")) as HfVisionModel;
  // Put layer 0's table in every layer of one model and make it the shared table of the other.
  const layers = (m: HfVisionModel) => m.encoder.layers as PreLnBlockParams[];
  const table = layers(perLayer)[0].relativeTable!;
  for (const l of layers(perLayer).slice(1)) l.relativeTable = table.ref;
  shared.config = { ...shared.config, relativePositionBias: "shared" };
  shared.encoder.shared.relativeTable = table.ref;
  for (const l of layers(shared)) delete l.relativeTable;
  const pixels = () => np.array(Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.sin(i))).reshape([2, 3, 32, 32]);
  const a = visionForward(perLayer, pixels());
  const b = visionForward(shared, pixels());
  const [x, y] = [(await a.logits!.data()) as Float32Array, (await b.logits!.data()) as Float32Array];
  x.forEach((v, i) => assert.ok(Math.abs(v - y[i]) < 1e-5));
  for (const o of [a, b]) {
    o.hiddenStates.dispose();
    o.lastHiddenState.dispose();
    o.poolerOutput?.dispose();
  }
  tree.dispose([perLayer.encoder, shared.encoder] as never);
});

test("Data2VecAudioForSequenceClassification: projector → mean over real frames → classifier, on the fixture's hidden states", async () => {
  const src = join(HF_FIXTURES, "audio-ctc");
  const dir = withConfig("audio-ctc", (c) => {
    c.architectures = ["Data2VecAudioForSequenceClassification"];
    c.classifier_proj_size = 8;
    c.id2label = { 0: "a", 1: "b", 2: "c" };
  }, "");
  const tensors = decodeSafetensors(new Uint8Array(readFileSync(join(src, "model.safetensors")))).tensors;
  tensors.delete("lm_head.weight");
  tensors.delete("lm_head.bias");
  const values = (n: number, scale: number) => Float32Array.from({ length: n }, (_, i) => Math.cos(i * 1.3) * scale);
  const [P, Pb, C, Cb] = [values(8 * 32, 0.3), values(8, 0.1), values(3 * 8, 0.5), values(3, 0.2)];
  tensors.set("projector.weight", f32Tensor([8, 32], P));
  tensors.set("projector.bias", f32Tensor([8], Pb));
  tensors.set("classifier.weight", f32Tensor([3, 8], C));
  tensors.set("classifier.bias", f32Tensor([3], Cb));
  writeFileSync(join(dir, "model.safetensors"), encodeSafetensors(tensors));
  copyFileSync(join(src, "preprocessor_config.json"), join(dir, "preprocessor_config.json"));
  const m = loadHfModel(dir);
  assert.deepEqual(m.unusedKeys, []);
  const { tensors: out, summary } = await runHfModel(m, dir, [0, 1].map((i) => join(src, `input_${i}.wav`)));
  // By hand from HF's own last hidden states and frame lengths.
  const expected = decodeSafetensors(new Uint8Array(readFileSync(join(src, "expected.safetensors")))).tensors;
  const h = toFloat32(expected.get("last_hidden_state")!);
  const lengths: number[] = JSON.parse(readFileSync(join(src, "expected.json"), "utf8")).frame_lengths;
  const T = expected.get("last_hidden_state")!.shape[1];
  const logits = toFloat32(out.get("logits")!);
  assert.deepEqual(out.get("logits")!.shape, [2, 3]);
  lengths.forEach((len, b) => {
    const pooled = new Array(8).fill(0);
    for (let t = 0; t < len; t++)
      for (let o = 0; o < 8; o++) {
        let s = Pb[o];
        for (let k = 0; k < 32; k++) s += h[(b * T + t) * 32 + k] * P[o * 32 + k];
        pooled[o] += s / len;
      }
    const want = [0, 1, 2].map((c) => Cb[c] + pooled.reduce((s, v, o) => s + v * C[c * 8 + o], 0));
    want.forEach((v, c) => assert.ok(Math.abs(v - logits[b * 3 + c]) < 1e-4, `clip ${b} class ${c}: ${logits[b * 3 + c]} vs ${v}`));
    assert.equal(summary[b], ["a", "b", "c"][want.indexOf(Math.max(...want))]);
  });
});
