import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { CheckpointError } from "../../src/engine/errors.js";
import { toFloat32 } from "../../src/engine/safetensors.js";
import { UnsafePickleError } from "../../src/hf/pickle.js";
import { readTorchBin } from "../../src/hf/torch-bin.js";
import { zipSync } from "fflate";
import { PickleBytes, statePickle, torchZip } from "./torch-writer.js";

const f32Bytes = (v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

test("torch zip: float32, float16 and bfloat16 upcast, int64, storage offsets and strided views", () => {
  const half = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x3555, 0x0001]).buffer); // 1, -2, 0.33325, 2^-24
  const bf16 = new Uint8Array(new Uint16Array([0x3f80, 0x4049, 0xbf00]).buffer); // 1, 3.140625, -0.5
  const i64 = new Uint8Array(BigInt64Array.from([5n, -7n, 1n << 40n]).buffer);
  const bytes = torchZip(
    [
      { name: "a", storage: "FloatStorage", data: f32Bytes([1, 2, 3, 4, 5, 6]), numel: 6, shape: [2, 3] },
      // A transposed view [3, 2] of the same kind of storage: element (i, j) = storage[j·3 + i].
      { name: "aT", storage: "FloatStorage", data: f32Bytes([1, 2, 3, 4, 5, 6]), numel: 6, shape: [3, 2], stride: [1, 3] },
      { name: "tail", storage: "FloatStorage", data: f32Bytes([9, 8, 7, 6]), numel: 4, offset: 2, shape: [2] },
      { name: "h", storage: "HalfStorage", data: half, numel: 4, shape: [4] },
      { name: "b", storage: "BFloat16Storage", data: bf16, numel: 3, shape: [3] },
      { name: "ids", storage: "LongStorage", data: i64, numel: 3, shape: [1, 3] },
    ],
    { root: "some_other_root" },
  );
  const t = readTorchBin(bytes);
  assert.deepEqual([...t.keys()], ["a", "aT", "tail", "h", "b", "ids"]);
  assert.deepEqual(Array.from(toFloat32(t.get("a")!)), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(t.get("aT")!.shape, [3, 2]);
  assert.deepEqual(Array.from(toFloat32(t.get("aT")!)), [1, 4, 2, 5, 3, 6]);
  assert.deepEqual(Array.from(toFloat32(t.get("tail")!)), [7, 6]);
  assert.equal(t.get("h")!.dtype, "F16");
  const h = Array.from(toFloat32(t.get("h")!));
  assert.deepEqual([h[0], h[1], h[3]], [1, -2, 2 ** -24]);
  assert.ok(Math.abs(h[2] - 0.33325) < 1e-4);
  assert.deepEqual(Array.from(toFloat32(t.get("b")!)), [1, 3.140625, -0.5]);
  assert.equal(t.get("ids")!.dtype, "I64");
  assert.deepEqual(Array.from(new BigInt64Array(t.get("ids")!.data.slice().buffer)), [5n, -7n, 1n << 40n]);
});

/** A pickle that, under torch.load, would call `module.name(arg)`. */
function callingPickle(module: string, name: string, arg: string, stackGlobal = false): Uint8Array {
  const p = new PickleBytes().op(0x80, stackGlobal ? 4 : 2);
  if (stackGlobal) p.str(module).str(name).op(0x93);
  else p.global(module, name);
  return p.tuple([() => p.str(arg)]).op(0x52, 0x2e).done();
}

test("malicious pickles (os.system, builtins.eval, via GLOBAL or STACK_GLOBAL) are refused and nothing runs", () => {
  const marker = join(mkdtempSync(join(tmpdir(), "pickle-")), "pwned");
  const attacks: [string, string, string, boolean][] = [
    ["posix", "system", `touch ${marker}`, false],
    ["os", "system", `touch ${marker}`, true],
    ["builtins", "eval", `__import__('os').system('touch ${marker}')`, false],
    ["builtins", "exec", "import os", true],
    ["subprocess", "Popen", "touch", false],
  ];
  for (const [module, name, arg, stackGlobal] of attacks) {
    const bytes = torchZip([], { pickle: callingPickle(module, name, arg, stackGlobal) });
    assert.throws(
      () => readTorchBin(bytes, "evil/pytorch_model.bin"),
      (e: Error) => e instanceof UnsafePickleError && e.message.includes(`${module}.${name}`) && /Nothing from the file was executed/.test(e.message),
      `${module}.${name}`,
    );
  }
  assert.equal(existsSync(marker), false);
  // Opcodes that build arbitrary objects (INST, OBJ, NEWOBJ) are refused too.
  for (const op of [0x69, 0x6f, 0x81]) {
    const bytes = torchZip([], { pickle: Uint8Array.from([0x80, 2, 0x28, op, 0x2e]) });
    assert.throws(() => readTorchBin(bytes), UnsafePickleError);
  }
});

test("truncated or non-checkpoint archives give clear checkpoint errors", () => {
  const good = torchZip([{ name: "a", storage: "FloatStorage", data: f32Bytes([1, 2, 3, 4]), numel: 4, shape: [4] }]);
  assert.throws(() => readTorchBin(good.subarray(0, good.length - 40), "cut.bin"), (e: Error) => e instanceof CheckpointError && /cut\.bin/.test(e.message));
  assert.throws(() => readTorchBin(new TextEncoder().encode("not a zip at all")), CheckpointError);
  // A storage shorter than the tensor that reads it.
  const short = torchZip([{ name: "a", storage: "FloatStorage", data: f32Bytes([1, 2]), numel: 2, shape: [4] }]);
  assert.throws(() => readTorchBin(short), (e: Error) => e instanceof CheckpointError && /tensor a reads element 3 of a storage of 2/.test(e.message));
  // A pickle cut in the middle.
  const cutPickle = torchZip([], { pickle: Uint8Array.from([0x80, 2, 0x58, 10, 0, 0, 0, 0x61]) });
  assert.throws(() => readTorchBin(cutPickle), (e: Error) => e instanceof CheckpointError && /unexpected end/.test(e.message));
});

test("views and declared sizes are checked against the archive before anything is inflated", () => {
  const f = (v: number[]) => f32Bytes(v);
  const bad = (t: object) => torchZip([{ name: "w", storage: "FloatStorage", data: f([1, 2, 3, 4]), numel: 4, shape: [2], ...t }]);
  // A negative storage offset once read from the end of the storage; a negative stride or size, likewise.
  assert.throws(() => readTorchBin(bad({ offset: -2 })), (e: Error) => e instanceof CheckpointError && /tensor w has an invalid view \(offset -2/.test(e.message));
  assert.throws(() => readTorchBin(bad({ stride: [-1] })), /invalid view/);
  assert.throws(() => readTorchBin(bad({ shape: [-2] })), /invalid view/);
  assert.throws(() => readTorchBin(bad({ offset: 3 })), /reads element 4 of a storage of 4/);
  // A storage whose size in the archive is not the size its tensors declare.
  assert.throws(() => readTorchBin(bad({ numel: 3 })), /holds 16 bytes but its tensors declare a storage of 12/);
  // A deflate bomb: 16 MB of zeros in a few kB, declared as a 4-element storage, is refused before inflating.
  const pickle = statePickle([{ name: "w", storage: "FloatStorage", data: new Uint8Array(0), numel: 4, shape: [4] }]);
  const bomb = zipSync({ "archive/data.pkl": [pickle, { level: 0 }], "archive/data/0": [new Uint8Array(16 << 20), { level: 9 }] });
  assert.ok(bomb.length < 200_000);
  assert.throws(() => readTorchBin(bomb), /archive\/data\/0 holds 16777216 bytes but its tensors declare a storage of 16/);
  // Entries no tensor references are never inflated (a bomb beside a valid state dict loads the valid part).
  const extra = zipSync({
    "archive/data.pkl": [pickle, { level: 0 }],
    "archive/data/0": [f([1, 2, 3, 4]), { level: 0 }],
    "archive/junk": [new Uint8Array(16 << 20), { level: 9 }],
  });
  assert.deepEqual(Array.from(new Float32Array(readTorchBin(extra).get("w")!.data.slice().buffer)), [1, 2, 3, 4]);
});
