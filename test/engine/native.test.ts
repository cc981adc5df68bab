/**
 * The native engine (OpenBLAS under jax-js) against the wasm engine on the same inputs in one process:
 * every matmul form a training step produces, forward and backward, and a full text, vision and audio
 * training step (loss and every gradient); the addon's failure modes; the startup self-check.
 *
 * CI builds the addon (`.ci/run` installs libopenblas-dev and builds with --strict), so the native path is
 * required here; set D2V_ENGINE=wasm to run the suite without it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jit, numpy as np, random, tree, valueAndGrad, nn as jnn } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { ADDON_ABI, defaultAddonPath, loadAddonAt } from "../../src/engine/native/addon.js";
import { nativeKernelsReady, nativeStats, setNativeEnabled } from "../../src/engine/native/engine.js";
import { conv1d } from "../../src/nn/conv.js";
import { patchify } from "../../src/vision/model.js";
import { ROOT } from "../helpers.js";
import { TRAINING_STEPS } from "./training-steps.js";

const info = await initEngine();
const wasmOnly = (process.env.D2V_ENGINE ?? "").toLowerCase() === "wasm";
const skip = wasmOnly ? "D2V_ENGINE=wasm" : false;

test("the native engine runs in this process (CI builds it; D2V_ENGINE=wasm opts out)", { skip }, () => {
  assert.equal(info.kind, "native", `the engine fell back to wasm: ${info.fallbackReason}`);
  assert.match(info.blas!.library, /^OpenBLAS/);
  assert.ok(info.blas!.corename.length > 0);
  assert.ok(info.blas!.threads >= 1);
});

/** Host copies of every array in a tree (consumes it). */
async function hostLeaves(t: unknown): Promise<Float32Array[]> {
  const leaves = (tree.leaves as (t: unknown) => np.Array[])(t);
  return Promise.all(leaves.map(async (a) => new Float32Array((await a.astype(np.float32).data()) as ArrayLike<number>)));
}

/**
 * Largest |native − wasm| of each tensor relative to the tensor's largest |wasm| value. A tensor whose values
 * all lie below 1e-5 of the largest tensor's is measured against that floor instead: such a tensor is
 * rounding noise around an exact zero (the key-bias gradient: softmax ignores a shift shared by all keys),
 * and its "relative" error would be arbitrary.
 */
function worstRelative(native: Float32Array[], wasm: Float32Array[]): { worst: number; at: number } {
  assert.equal(native.length, wasm.length);
  const scales = wasm.map((w) => w.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
  const floor = 1e-5 * Math.max(...scales);
  let worst = 0;
  let at = -1;
  native.forEach((n, i) => {
    const w = wasm[i];
    assert.equal(n.length, w.length);
    let diff = 0;
    for (let j = 0; j < n.length; j++) diff = Math.max(diff, Math.abs(n[j] - w[j]));
    const rel = diff / Math.max(scales[i], floor, 1e-30);
    if (!(rel <= worst)) {
      worst = rel;
      at = i;
    }
  });
  return { worst, at };
}

/**
 * Runs `compute` on both engines and compares every output tensor. `minNative` is how many native
 * matmuls the native run must have made (so a form the matcher stops recognizing fails here).
 */
async function compareEngines(name: string, compute: () => unknown, minNative: number, tol = 1e-5): Promise<void> {
  setNativeEnabled(false);
  const wasm = await hostLeaves(compute());
  setNativeEnabled(true);
  // The first native run queues its elementwise kernels for the compiler; the compared run uses them.
  await hostLeaves(compute());
  await nativeKernelsReady();
  const before = nativeStats().calls;
  const native = await hostLeaves(compute());
  const calls = nativeStats().calls - before;
  assert.ok(calls >= minNative, `${name}: ${calls} native matmuls, expected at least ${minNative}`);
  const { worst, at } = worstRelative(native, wasm);
  assert.ok(worst <= tol, `${name}: tensor ${at} differs by ${worst.toExponential(2)} relative (tolerance ${tol})`);
}

const normal = (seed: number, shape: number[]) => random.normal(random.key(seed), shape);

/**
 * Value and gradient of sum((y − mean(y)) · R), y = f(params), for a fixed random R passed in. y is read
 * twice, as layer norm reads a linear layer's output in a training step, so it is materialized; a lone
 * elementwise consumer would instead be fused into the matmul's epilogue, which stays on wasm.
 */
function withGrads<P extends { [k: string]: np.Array }>(f: (p: P) => np.Array) {
  // The output y itself is compared, not the scalar: a sum of terms of random sign cancels, so its relative
  // rounding error says nothing about the product.
  const loss = (q: P, cotangent: np.Array): [np.Array, np.Array] => {
    const y = f(q);
    return [y.ref.sub(y.ref.mean(-1, { keepdims: true })).mul(cotangent).sum(), y];
  };
  type Grad = (g: typeof loss, o: { hasAux: true }) => (q: P, c: np.Array) => [[np.Array, np.Array], P];
  const g = jit((p: P, cotangent: np.Array) => {
    const [[value, y], grads] = (valueAndGrad as unknown as Grad)(loss, { hasAux: true })(p, cotangent);
    value.dispose();
    return [y, grads] as never;
  }) as unknown as (p: P, cotangent: np.Array) => [np.Array, P];
  return (p: P, outShape: number[], seed: number) => g(p, normal(seed, outShape));
}

test("linear layers: x·W + b, and both gradient matmuls (xᵀ·dy, dy·Wᵀ)", { skip }, async () => {
  const step = withGrads((p: { x: np.Array; w: np.Array; b: np.Array }) => np.matmul(p.x.reshape([-1, 48]), p.w).add(p.b));
  // forward, dX = dY·Wᵀ, dW = Xᵀ·dY
  await compareEngines("linear", () => step({ x: normal(1, [3, 37, 48]), w: normal(2, [48, 80]), b: normal(3, [80]) }, [111, 80], 11), 3);
});

test("attention: batched Q·Kᵀ with a scale and a mask, P·V, merged heads (transpose then reshape), and their gradients", { skip }, async () => {
  const [b, h, t, dh] = [2, 3, 29, 16];
  const mask = np.where(np.arange(t).reshape([1, 1, 1, t]).greater(24), -1e9, 0).astype(np.float32);
  const attend = (p: { q: np.Array; k: np.Array; v: np.Array; wo: np.Array }) => {
    const scores = np.matmul(p.q, p.k.transpose([0, 1, 3, 2])).mul(1 / Math.sqrt(dh)).add(mask.ref);
    const probs = jnn.softmax(scores, -1);
    const context = np.matmul(probs, p.v).transpose([0, 2, 1, 3]).reshape([b * t, h * dh]);
    return np.matmul(context, p.wo);
  };
  const step = withGrads(attend);
  // scores, context, output projection forward; two gradients each backward
  await compareEngines("attention", () => step({ q: normal(4, [b, h, t, dh]), k: normal(5, [b, h, t, dh]), v: normal(6, [b, h, t, dh]), wo: normal(7, [h * dh, 40]) }, [b * t, 40], 12), 9);
  mask.dispose();
});

test("convolutions as im2col: the strided CNN layer and the padded grouped positional convolution, with gradients", { skip }, async () => {
  const cnn = withGrads((p: { x: np.Array; w: np.Array }) => conv1d({ weight: p.w }, p.x, { kernel: 3, stride: 2 }));
  await compareEngines("strided conv", () => cnn({ x: normal(8, [2, 301, 24]), w: normal(9, [3 * 24, 32]) }, [2, 150, 32], 13), 3);
  const pos = withGrads((p: { x: np.Array; w: np.Array; b: np.Array }) => conv1d({ weight: p.w, bias: p.b }, p.x, { kernel: 7, padding: 3, groups: 4 }));
  await compareEngines("grouped conv", () => pos({ x: normal(10, [2, 53, 32]), w: normal(11, [4, 7 * 8, 8]), b: normal(12, [32]) }, [2, 53, 32], 14), 3);
});

test("vision patch embedding, a regression head and a classifier on pooled features, with gradients", { skip }, async () => {
  const embed = withGrads((p: { img: np.Array; w: np.Array }) => np.matmul(patchify(p.img, 4).reshape([-1, 48]), p.w));
  await compareEngines("patch embedding", () => embed({ img: normal(13, [5, 3, 16, 16]), w: normal(14, [48, 64]) }, [80, 64], 15), 3);
  const head = withGrads((p: { x: np.Array; w: np.Array; b: np.Array }) => np.matmul(p.x.mean(1), p.w).add(p.b));
  await compareEngines("pooled head", () => head({ x: normal(15, [6, 33, 96]), w: normal(16, [96, 70]), b: normal(17, [70]) }, [6, 70], 16), 3);
});

test("operands behind a padding mask, broadcast batch dims, and output dims that do not merge into one stride", { skip }, async () => {
  const padded = withGrads((p: { x: np.Array; w: np.Array }) => np.matmul(np.pad(p.x, [[0, 0], [2, 3]]), p.w));
  await compareEngines("padded operand", () => padded({ x: normal(20, [40, 27]), w: normal(21, [32, 50]) }, [40, 50], 22), 2);
  const broadcast = withGrads((p: { a: np.Array; w: np.Array }) => np.matmul(p.a, np.broadcastTo(p.w.ref.reshape([1, 24, 30]), [4, 24, 30])).add(p.w.sum()));
  await compareEngines("broadcast batch", () => broadcast({ a: normal(23, [4, 17, 24]), w: normal(24, [24, 30]) }, [4, 17, 30], 25), 2);
  const split = withGrads((p: { a: np.Array; b: np.Array }) => np.einsum("ik,jkn->ijn", p.a, p.b));
  await compareEngines("B's columns over two dims", () => split({ a: normal(26, [19, 40]), b: normal(27, [5, 40, 30]) }, [19, 5, 30], 28), 2);
  const rows = withGrads((p: { a: np.Array; b: np.Array }) => np.einsum("ikm,kj->imj", p.a, p.b));
  await compareEngines("A's rows over two dims", () => rows({ a: normal(29, [7, 48, 9]), b: normal(30, [48, 33]) }, [7, 9, 33], 31), 2);
});

for (const modality of ["text", "vision", "audio"] as const) {
  test(`a full ${modality} training step: loss and every gradient agree within 1e-5`, { skip }, async () => {
    await compareEngines(`${modality} step`, TRAINING_STEPS[modality](), 20);
  });
}

// ---- failure modes: each is one sentence naming the fix, never a crash or wrong numbers ----

function fakeAddon(body: string): string {
  const dir = mkdtempSync(join(tmpdir(), "d2v-addon-"));
  const path = join(dir, "fake.cjs");
  writeFileSync(path, body);
  return path;
}

test("a missing, foreign, stale or unrelated addon, or one whose OpenBLAS is missing, is refused with what to do", () => {
  const missing = loadAddonAt(join(tmpdir(), "no-such-dir", "d2v_native.node"));
  assert.ok("error" in missing && /not built.*npm run build:native/.test(missing.error), JSON.stringify(missing));

  // The real addon marked as a 32-bit ELF: what a build for another architecture looks like to dlopen.
  const dir = mkdtempSync(join(tmpdir(), "d2v-addon-"));
  const foreign = join(dir, "d2v_native.node");
  const elf = existsSync(defaultAddonPath()) ? readFileSync(defaultAddonPath()) : Buffer.alloc(4096);
  elf.set([0x7f, 0x45, 0x4c, 0x46, 1], 0); // "\x7fELF", EI_CLASS = ELFCLASS32
  writeFileSync(foreign, elf);
  const f = loadAddonAt(foreign);
  assert.ok("error" in f && /another machine or architecture.*npm run build:native/.test(f.error), JSON.stringify(f));

  // The real addon asking the loader for a library that is not installed (its OpenBLAS dependency renamed).
  if (existsSync(defaultAddonPath())) {
    const bytes = readFileSync(defaultAddonPath());
    const at = bytes.indexOf("libopenblas.so.0");
    assert.ok(at > 0, "the addon links libopenblas.so.0");
    bytes.write("libopenblaz.so.0", at);
    const noBlas = join(dir, "no-blas.node");
    writeFileSync(noBlas, bytes);
    const b = loadAddonAt(noBlas);
    assert.ok("error" in b && /OpenBLAS cannot be loaded \(.*libopenblaz\.so\.0.*apt-get install libopenblas0/.test(b.error), JSON.stringify(b));
  }

  const stale = loadAddonAt(fakeAddon("module.exports = { info: () => ({ abi: 0 }), gemm() {} };"));
  assert.ok("error" in stale && /stale/.test(stale.error), JSON.stringify(stale));

  const unrelated = loadAddonAt(fakeAddon("module.exports = { hello: 1 };"));
  assert.ok("error" in unrelated && /not this project's native addon/.test(unrelated.error), JSON.stringify(unrelated));
});

/** Runs a small product in a fresh process with `env`; returns its status, stdout and stderr. */
function childProduct(env: Record<string, string>) {
  const script = `
    const { initEngine, describeEngine } = await import(${JSON.stringify(join(ROOT, "dist/src/engine/runtime.js"))});
    const { numpy: np } = await import(${JSON.stringify(join(ROOT, "dist/src/engine/jax.js"))});
    const info = await initEngine();
    const y = await np.matmul(np.ones([40, 50]), np.ones([50, 30])).data();
    console.log(JSON.stringify({ kind: info.kind, first: y[0], line: describeEngine(info) }));`;
  return spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", env: { ...process.env, D2V_ENGINE: "", ...env } });
}

test("without the addon the engine runs on wasm, says so once, and computes correctly", () => {
  const r = childProduct({ D2V_NATIVE_ADDON: join(tmpdir(), "missing", "d2v_native.node") });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  assert.equal(out.kind, "wasm");
  assert.equal(out.first, 50);
  const lines = r.stderr.split("\n").filter((l) => l.includes("wasm engine"));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /not built/);
});

test("D2V_ENGINE=native without a working addon is an error that names the fix; D2V_ENGINE=wasm says nothing", () => {
  const r = childProduct({ D2V_ENGINE: "native", D2V_NATIVE_ADDON: join(tmpdir(), "missing", "d2v_native.node") });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /EngineError: D2V_ENGINE=native, but the native addon is not built/);
  const w = childProduct({ D2V_ENGINE: "wasm" });
  assert.equal(w.status, 0, w.stderr);
  assert.equal(JSON.parse(w.stdout.trim()).kind, "wasm");
  assert.equal(w.stderr, "");
  const bad = childProduct({ D2V_ENGINE: "gpu" });
  assert.match(bad.stderr, /D2V_ENGINE=gpu is not an engine; use native, wasm or leave it unset/);
});

test("an addon whose products are wrong fails the startup self-check: wasm runs instead, with the reason", () => {
  // Loads and reports like the real addon, but its gemm writes nothing: the self-check must catch it.
  const wrong = fakeAddon(`module.exports = {
    info: () => ({ abi: ${ADDON_ABI}, corename: "Fake", config: "OpenBLAS 0.0.0", threads: 1, parallel: 0 }),
    setThreads() {}, sgemm() {}, gemm() {}, loadKernel() { return 0; }, runKernel() {},
  };`);
  const r = childProduct({ D2V_NATIVE_ADDON: wrong });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  assert.equal(out.kind, "wasm");
  assert.equal(out.first, 50);
  assert.match(r.stderr, /failed its self-check: the native product "x·w \+ b" differs from wasm/);
  const strict = childProduct({ D2V_ENGINE: "native", D2V_NATIVE_ADDON: wrong });
  assert.notEqual(strict.status, 0);
  assert.match(strict.stderr, /D2V_ENGINE=native, but the native engine failed its self-check/);
});

test("d2v --version names the engine: OpenBLAS, its core type and threads, the kernel compiler; or wasm", () => {
  const cli = join(ROOT, "dist", "src", "cli", "main.js");
  const run = (env: Record<string, string>) => spawnSync(process.execPath, [cli, "--version"], { encoding: "utf8", env: { ...process.env, D2V_ENGINE: "", ...env } });
  const wasm = run({ D2V_ENGINE: "wasm" });
  assert.equal(wasm.status, 0, wasm.stderr);
  assert.match(wasm.stdout, /^d2v \d+\.\d+\.\d+\nengine: wasm: jax-js wasm \(\d+ threads?\)\n$/);
  if (!skip) {
    const native = run({});
    assert.equal(native.status, 0, native.stderr);
    assert.match(native.stdout, /engine: native: OpenBLAS [\d.]+, core \w+, \d+ BLAS threads?; elementwise kernels compiled by .+ \+ jax-js wasm \(1 thread\)/);
  }
});
