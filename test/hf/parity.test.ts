/**
 * Parity with Hugging Face transformers: every tensor of every fixture's expected.safetensors, from the raw
 * inputs (WAV, PNG, text) through our processors and models, loading from both weight files.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { numpy as np } from "../../src/engine/jax.js";
import { decodeSafetensors, toFloat32, type HostTensor } from "../../src/engine/safetensors.js";
import { audioForward, ctcGreedyDecode } from "../../src/hf/audio.js";
import { ctcVocabulary, loadHfModel, processAudio, runHfModel, type HfModel } from "../../src/hf/model.js";
import { visionForward } from "../../src/hf/vision.js";
import { HF_FIXTURES } from "../helpers.js";

const TOL = 1e-4;

function ints(t: HostTensor): number[] {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return Array.from({ length: n }, (_, i) => (t.dtype === "I64" ? Number(dv.getBigInt64(i * 8, true)) : dv.getInt32(i * 4, true)));
}

/** Compares one tensor: exact for integers, |diff| ≤ 1e-4 for floats, shapes equal. */
function check(name: string, actual: HostTensor | Float32Array, expected: HostTensor, shape?: number[]): void {
  if (!(actual instanceof Float32Array)) assert.deepEqual(actual.shape, expected.shape, `${name}: shape`);
  else if (shape) assert.deepEqual(shape, expected.shape, `${name}: shape`);
  if (expected.dtype !== "F32") {
    assert.deepEqual(ints(actual as HostTensor), ints(expected), `${name}: integer values`);
    return;
  }
  const a = actual instanceof Float32Array ? actual : toFloat32(actual);
  const e = toFloat32(expected);
  assert.equal(a.length, e.length, `${name}: size`);
  let worst = 0;
  let at = 0;
  for (let i = 0; i < e.length; i++) {
    const d = Math.abs(a[i] - e[i]);
    if (!(d <= worst)) [worst, at] = [d, i];
  }
  assert.ok(worst <= TOL, `${name}: max |diff| ${worst} at ${at} (ours ${a[at]}, HF ${e[at]})`);
}

/** Compares every expected tensor that the run produced under the same name. */
function compareDirect(tensors: Map<string, HostTensor>, expected: Map<string, HostTensor>, checked: Set<string>): void {
  for (const [name, e] of expected) {
    const a = tensors.get(name);
    if (!a) continue;
    check(name, a, e);
    checked.add(name);
  }
}

function fixture(name: string) {
  const dir = join(HF_FIXTURES, name);
  const expected = decodeSafetensors(new Uint8Array(readFileSync(join(dir, "expected.safetensors")))).tensors;
  const info = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8"));
  return { dir, expected, info };
}

type Format = "safetensors" | "bin";

const checks = {
  /** Text: every expected tensor (the logits as stored: full rows and columns of the full logits), the <mask> top 5. */
  async text(name: string, format: Format) {
    const { dir, expected, info } = fixture(name);
    const m = loadHfModel(dir, format) as HfModel & { modality: "text" };
    assert.deepEqual(m.unusedKeys, []);
    const texts = info.sentences.map((s: { text: string }) => s.text);
    const { tensors } = await runHfModel(m, dir, texts);
    const checked = new Set<string>();
    compareDirect(tensors, expected, checked);
    const logits = toFloat32(tensors.get("logits")!);
    const [B, T, V] = tensors.get("logits")!.shape;
    const rowsIndex = ints(expected.get("logits_rows_index")!);
    const rows = new Float32Array((rowsIndex.length / 2) * V);
    for (let k = 0; k < rowsIndex.length / 2; k++) rows.set(logits.subarray((rowsIndex[2 * k] * T + rowsIndex[2 * k + 1]) * V, (rowsIndex[2 * k] * T + rowsIndex[2 * k + 1] + 1) * V), k * V);
    check("logits_rows", rows, expected.get("logits_rows")!, [rowsIndex.length / 2, V]);
    const colsIndex = ints(expected.get("logits_cols_index")!);
    const cols = new Float32Array(B * T * colsIndex.length);
    for (let bt = 0; bt < B * T; bt++) colsIndex.forEach((c, j) => (cols[bt * colsIndex.length + j] = logits[bt * V + c]));
    check("logits_cols", cols, expected.get("logits_cols")!, [B, T, colsIndex.length]);
    checked.add("logits_rows").add("logits_cols").add("logits_rows_index").add("logits_cols_index");
    assert.deepEqual([...checked].sort(), [...expected.keys()].sort(), "every expected tensor is compared");
    for (const p of info.mask_predictions) {
      const row = Array.from(logits.subarray((p.batch * T + p.position) * V, (p.batch * T + p.position + 1) * V));
      const top5 = row.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]).slice(0, 5).map((x) => x[1]);
      assert.deepEqual(top5, p.top5_ids);
    }
  },

  /** Vision: the processor (Pillow bicubic) and model outputs, and the model alone on already-sized pixels. */
  async vision(name: string, format: Format) {
    const { dir, expected, info } = fixture(name);
    const m = loadHfModel(dir, format) as HfModel & { modality: "vision" };
    assert.deepEqual(m.unusedKeys, []);
    const { tensors, summary } = await runHfModel(m, dir, info.inputs.files.map((f: string) => join(dir, f)));
    const checked = new Set<string>();
    compareDirect(tensors, expected, checked);
    if (info.predicted_labels) assert.deepEqual(summary, info.predicted_labels);
    const direct = expected.get("direct.pixel_values")!;
    const r = visionForward(m, np.array(toFloat32(direct)).reshape(direct.shape));
    const outputs = { hidden_states: r.hiddenStates, last_hidden_state: r.lastHiddenState, pooler_output: r.poolerOutput, logits: r.logits };
    for (const [name, a] of Object.entries(outputs)) {
      if (!a) continue;
      const shape = a.shape;
      check(`direct.${name}`, (await a.data()) as Float32Array, expected.get(`direct.${name}`)!, shape);
      checked.add(`direct.${name}`);
    }
    checked.add("direct.pixel_values");
    assert.deepEqual([...checked].sort(), [...expected.keys()].sort(), "every expected tensor is compared");
  },

  /** Audio: the feature extractor, the padded batch, each clip alone, and greedy CTC decoding. */
  async audio(name: string, format: Format) {
    const { dir, expected, info } = fixture(name);
    const m = loadHfModel(dir, format) as HfModel & { modality: "audio" };
    assert.deepEqual(m.unusedKeys, []);
    const files = info.inputs.files.map((f: string) => join(dir, f));
    const { tensors, summary } = await runHfModel(m, dir, files);
    const checked = new Set<string>();
    compareDirect(tensors, expected, checked);
    assert.deepEqual(summary, info.ctc_greedy_decode.valid_frames_only);
    const vocab = ctcVocabulary(dir);
    const ids = ints(tensors.get("predicted_ids")!);
    const T = tensors.get("predicted_ids")!.shape[1];
    assert.deepEqual([0, 1].map((b) => ctcGreedyDecode(ids.slice(b * T, (b + 1) * T), vocab, 0)), info.ctc_greedy_decode.all_frames);
    // Each clip alone, unpadded and without a mask.
    for (let i = 0; i < files.length; i++) {
      const a = processAudio(dir, [files[i]]);
      const r = audioForward(m, np.array(a.values).reshape([1, a.length]), null);
      r.extractFeatures.dispose();
      r.hiddenStates.dispose();
      const logitsShape = r.logits!.shape;
      const logits = (await r.logits!.data()) as Float32Array;
      check(`single_${i}.logits`, logits, expected.get(`single_${i}.logits`)!, logitsShape);
      const lastShape = r.lastHiddenState.shape;
      check(`single_${i}.last_hidden_state`, (await r.lastHiddenState.data()) as Float32Array, expected.get(`single_${i}.last_hidden_state`)!, lastShape);
      checked.add(`single_${i}.logits`).add(`single_${i}.last_hidden_state`);
      const V = logitsShape[2];
      const single = Array.from({ length: logitsShape[1] }, (_, t) => {
        const row = logits.subarray(t * V, (t + 1) * V);
        return row.indexOf(Math.max(...row));
      });
      assert.equal(ctcGreedyDecode(single, vocab, 0), info.ctc_greedy_decode.single_unpadded[i]);
    }
    assert.deepEqual([...checked].sort(), [...expected.keys()].sort(), "every expected tensor is compared");
  },
};

// Every fixture folder is checked, whatever its name: the modality comes from the HF class that made it.
const fixtures = readdirSync(HF_FIXTURES).filter((d) => existsSync(join(HF_FIXTURES, d, "expected.json")));
test("the HF fixtures are present", () => assert.ok(fixtures.length >= 3, `found ${fixtures.length} fixtures in ${HF_FIXTURES}`));
for (const name of fixtures) {
  const hfClass: string = JSON.parse(readFileSync(join(HF_FIXTURES, name, "expected.json"), "utf8")).hf_class;
  const modality = hfClass.startsWith("Data2VecText") ? "text" : hfClass.startsWith("Data2VecVision") ? "vision" : "audio";
  for (const format of ["safetensors", "bin"] as const) {
    test(`${name} (${hfClass}) matches Hugging Face from ${format === "bin" ? "pytorch_model.bin" : "model.safetensors"}`, () => checks[modality](name, format));
  }
}
