/**
 * The compiled elementwise kernels (src/engine/native/kernel-c.ts) give the same bits as jax-js's wasm code:
 * every elementwise kernel of a text, a vision and an audio training step (training-steps.ts), each run on
 * both engines on the same random inputs (normal values with zeros, signed zeros, huge, tiny, infinite and NaN ones mixed in).
 * Bit equality is what lets a kernel switch engines when its compile finishes without changing a run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { initEngine } from "../../src/engine/runtime.js";
import { wasmBackend } from "../../src/engine/memory.js";
import { MIN_COMPILED_ELEMENTS, nativeKernelsReady, nativeStats, setNativeEnabled } from "../../src/engine/native/engine.js";
import { kernelSource } from "../../src/engine/native/kernel-c.js";
import type { JaxKernel } from "../../src/engine/native/gemm-plan.js";
import { HostRng } from "../../src/engine/random.js";
import { numpy as np, tree } from "../../src/engine/jax.js";
import { TRAINING_STEPS, type MicroStep } from "./training-steps.js";

const info = await initEngine();
const skip = info.kind === "native" && info.kernels && !("off" in info.kernels) ? false : `compiled kernels are off (${info.fallbackReason ?? JSON.stringify(info.kernels ?? "wasm")})`;

type Backend = {
  dispatch(exe: { source: unknown }, inputs: number[], outputs: number[]): void;
  malloc(size: number, data?: Uint8Array): number;
  decRef(slot: number): void;
  prepareKernelSync(kernel: unknown): { source: unknown };
  read(slot: number): Promise<Uint8Array>;
};

const SPECIAL = [0, -0, 1, -1, 1e-40, -1e-40, 3.4e38, -3.4e38, Infinity, -Infinity, NaN, 88.7, -103.9, 0.5, 2 ** 24 + 1];

/** Every elementwise kernel one micro-step dispatches (compiled once, by its expression and size). */
async function elementwiseKernels(backend: Backend, step: MicroStep): Promise<JaxKernel[]> {
  const kernels = new Map<string, JaxKernel>();
  const dispatch = backend.dispatch.bind(backend);
  backend.dispatch = (exe, inputs, outputs) => {
    const k = exe.source as JaxKernel;
    if (k.exp && !k.reduction) kernels.set(`${String(k.exp)}|${k.size}`, k);
    dispatch(exe, inputs, outputs);
  };
  setNativeEnabled(false);
  try {
    await Promise.all((tree.leaves as (t: unknown) => np.Array[])(step()).map((a) => a.data()));
  } finally {
    backend.dispatch = dispatch;
    setNativeEnabled(true);
  }
  return [...kernels.values()];
}

for (const modality of ["text", "vision", "audio"] as const) {
  test(`${modality}: every elementwise kernel of a training step gives wasm's bits`, { skip }, async () => {
    const backend = (await wasmBackend()) as unknown as Backend;
    // Smaller kernels stay on wasm by design.
    const kernels = (await elementwiseKernels(backend, TRAINING_STEPS[modality]())).filter((k) => k.size >= MIN_COMPILED_ELEMENTS);
    const rng = HostRng.seeded(3);
    let compared = 0;
    for (const kernel of kernels) {
      const source = kernelSource(kernel);
      if (!source) continue;
      const bytes = new Array<number>(kernel.nargs).fill(4);
      for (const l of source.loads) bytes[l.input] = Math.max(bytes[l.input], l.bytes);
      const slots = bytes.map((n) => {
        const values = new Float32Array(n / 4).map((_, i) => (i % 7 === 3 ? SPECIAL[rng.int(0, SPECIAL.length - 1)] : 10 * (2 * rng.uniform() - 1)));
        return backend.malloc(n, new Uint8Array(values.buffer));
      });
      const exe = backend.prepareKernelSync(kernel);
      const run = async (native: boolean) => {
        setNativeEnabled(native);
        const out = backend.malloc(4 * kernel.size);
        backend.dispatch(exe, slots, [out]);
        const got = new Uint32Array((await backend.read(out)).slice().buffer);
        backend.decRef(out);
        return got;
      };
      const wasm = await run(false);
      await run(true);
      await nativeKernelsReady();
      const calls = nativeStats().elementwiseCalls;
      const native = await run(true);
      assert.equal(nativeStats().elementwiseCalls, calls + 1, `not compiled: ${String(kernel.exp).slice(0, 200)}`);
      const nan = (u: number) => (u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0;
      const i = wasm.findIndex((w, j) => w !== native[j] && !(nan(w) && nan(native[j])));
      assert.equal(i, -1, `element ${i}: native 0x${native[i]?.toString(16)} vs wasm 0x${wasm[i]?.toString(16)} in ${String(kernel.exp).slice(0, 300)}`);
      for (const s of slots) backend.decRef(s);
      compared++;
    }
    // Nearly all of a step's elementwise kernels compile (the rest use an operation kept on wasm).
    assert.ok(compared >= 0.9 * kernels.length, `${compared} of ${kernels.length} kernels compiled`);
  });
}

test("a kernel whose index divisions do not nest into loops (i/96 beside i/64) runs flat and gives wasm's bits", { skip }, async () => {
  const make = () => {
    const a = np.broadcastTo(np.arange(64).astype(np.float32).reshape([64, 1]), [64, 96]).reshape([6144]);
    const b = np.broadcastTo(np.exp(np.arange(96).astype(np.float32).mul(0.01)).reshape([96, 1]), [96, 64]).reshape([6144]);
    return a.mul(b);
  };
  setNativeEnabled(false);
  const wasm = new Uint32Array(((await make().data()) as Float32Array).buffer);
  setNativeEnabled(true);
  await make().data();
  await nativeKernelsReady();
  const calls = nativeStats().elementwiseCalls;
  const native = new Uint32Array(((await make().data()) as Float32Array).buffer);
  assert.ok(nativeStats().elementwiseCalls > calls, "the kernel did not run natively");
  assert.deepEqual(native, wasm);
});
