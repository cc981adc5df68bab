import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeSafetensors, encodeSafetensors, f32Tensor, i32Tensor, toFloat32 } from "../../src/engine/safetensors.js";
import { CheckpointError } from "../../src/engine/errors.js";
import { HF_FIXTURES } from "../helpers.js";

test("safetensors round trip keeps names, shapes, dtypes and bytes", () => {
  const tensors = new Map([
    ["b.weight", f32Tensor([2, 3], Float32Array.from([1, 2, 3, 4, 5, -6.5]))],
    ["a.ids", i32Tensor([4], Int32Array.from([7, -1, 0, 2 ** 30]))],
    ["scalar", f32Tensor([], Float32Array.from([3.25]))],
  ]);
  const bytes = encodeSafetensors(tensors, { format: "pt" });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0);
  const { tensors: back, metadata } = decodeSafetensors(bytes);
  assert.deepEqual(metadata, { format: "pt" });
  assert.deepEqual([...back.keys()].sort(), ["a.ids", "b.weight", "scalar"]);
  assert.deepEqual(Array.from(toFloat32(back.get("b.weight")!)), [1, 2, 3, 4, 5, -6.5]);
  assert.deepEqual(back.get("scalar")!.shape, []);
  assert.deepEqual(Array.from(new Int32Array(back.get("a.ids")!.data.buffer)), [7, -1, 0, 2 ** 30]);
});

test("reads a safetensors file written by Hugging Face (F32 and I64)", () => {
  const { tensors, metadata } = decodeSafetensors(new Uint8Array(readFileSync(join(HF_FIXTURES, "text-mlm", "model.safetensors"))));
  assert.equal(metadata.format, "pt");
  const pos = tensors.get("data2vec_text.embeddings.position_ids")!;
  assert.equal(pos.dtype, "I64");
  const emb = tensors.get("data2vec_text.embeddings.word_embeddings.weight")!;
  assert.equal(emb.shape[0], 50265);
  const config = JSON.parse(readFileSync(join(HF_FIXTURES, "text-mlm", "config.json"), "utf8"));
  assert.equal(emb.shape[1], config.hidden_size);
  assert.equal(toFloat32(emb).length, 50265 * config.hidden_size);
  assert.deepEqual(Array.from(new BigInt64Array(pos.data.buffer.slice(0, 24))), [0n, 1n, 2n]);
});

test("bf16 and f16 upcast to float32", () => {
  const bf16 = new Uint8Array(new Uint16Array([0x3f80, 0xc040]).buffer); // 1.0, -3.0
  const f16 = new Uint8Array(new Uint16Array([0x3c00, 0xc200, 0x3555]).buffer); // 1, -3, ≈0.333
  assert.deepEqual(Array.from(toFloat32({ dtype: "BF16", shape: [2], data: bf16 })), [1, -3]);
  const h = toFloat32({ dtype: "F16", shape: [3], data: f16 });
  assert.deepEqual([h[0], h[1]], [1, -3]);
  assert.ok(Math.abs(h[2] - 0.33325) < 1e-4);
});

test("truncated or corrupt files give a CheckpointError naming the problem", () => {
  const bytes = encodeSafetensors(new Map([["x", f32Tensor([4], new Float32Array(4))]]));
  assert.throws(() => decodeSafetensors(bytes.subarray(0, bytes.length - 3), "m.safetensors"), (e: Error) => e instanceof CheckpointError && /m\.safetensors.*outside the/.test(e.message));
  assert.throws(() => decodeSafetensors(bytes.subarray(0, 5)), CheckpointError);
  const bad = Uint8Array.from(bytes);
  bad[9] = 0x7b; // break the JSON
  bad[10] = 0x7b;
  assert.throws(() => decodeSafetensors(bad), /not JSON/);
});
