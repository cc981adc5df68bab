/**
 * The matmul planner on hand-built jax-js kernels: operand layouts that real training steps rarely produce
 * (masks, flipped and gapped strides, column runs over several dims, interleaved output dims, a multi-view
 * addend) run on wasm and on the native path, which must agree. Kernels that are not plain GEMMs must be
 * declined. The kernels are made with jax-js's own IR classes (reached through its internal chunk, as the
 * planner reads them), so the wasm backend computes the reference.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { initEngine } from "../../src/engine/runtime.js";
import { setNativeEnabled, nativeStats } from "../../src/engine/native/engine.js";
import { planGemm, type JaxKernel } from "../../src/engine/native/gemm-plan.js";
import { HostRng } from "../../src/engine/random.js";

const info = await initEngine();
const skip = info.kind === "native" ? false : `the native engine is not running (${info.fallbackReason ?? "D2V_ENGINE=wasm"})`;

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any;

/** jax-js's IR classes and its wasm backend, by their exported names in the internal chunk. */
async function jaxInternals(): Promise<Record<string, Any>> {
  const require = createRequire(import.meta.url);
  const indexJs = require.resolve("@jax-js/jax").replace(/index\.cjs$/, "index.js");
  const chunkName = /from "\.\/(backend-[\w-]+\.js)"/.exec(readFileSync(indexJs, "utf8"))![1];
  const chunkPath = join(dirname(indexJs), chunkName);
  const exportBlock = /export \{([^}]*)\};?\s*$/.exec(readFileSync(chunkPath, "utf8"))![1];
  const chunk = (await import(pathToFileURL(chunkPath).href)) as Record<string, Any>;
  const out: Record<string, Any> = {};
  for (const part of exportBlock.split(",")) {
    const [name, alias] = part.trim().split(/\s+as\s+/);
    out[name] = chunk[alias];
  }
  return out;
}

const J = await jaxInternals();
const { AluExp, AluVar, ShapeTracker, View, Kernel, Reduction, unravelAlu } = J;
const backend = J.getBackend("wasm");

/** A float32 operand of the kernel: input `gid` read through `views` (the last one has the kernel's shape). */
function operand(gid: number, views: Any[], indexShape: number[], withReduction = true): Any {
  const idx = [...unravelAlu(indexShape, AluVar.gidx), ...(withReduction ? [AluVar.ridx] : [])].map((e: Any) => e.simplify());
  return AluExp.globalView("float32", gid, new ShapeTracker(views), idx);
}

const view = (shape: number[], strides: number[], offset = 0, mask: [number, number][] | null = null) => View.create(shape, strides, offset, mask);

interface Case {
  /** Elements of each input buffer. */
  inputs: number[];
  outShape: number[];
  K: number;
  a: Any[];
  b: Any[];
  /** Epilogue: (acc) => expression; default acc. */
  epilogue?: (acc: Any) => Any;
}

function kernelOf(c: Case): Any {
  const exp = AluExp.mul(operand(0, c.a, c.outShape), operand(1, c.b, c.outShape));
  const acc = AluVar.acc("float32");
  const size = c.outShape.reduce((x, y) => x * y, 1);
  return new Kernel(c.inputs.length, size, exp, new Reduction("float32", "Add", c.K, c.epilogue ? c.epilogue(acc) : acc));
}

/** Runs the kernel on wasm and on the native path; returns both outputs. */
async function runBoth(c: Case, kernel: Any): Promise<{ wasm: Float32Array; native: Float32Array; nativeCalls: number }> {
  const rng = HostRng.seeded(c.inputs.length * 101 + c.K);
  const slots = c.inputs.map((n) => {
    const data = new Float32Array(n).map(() => 2 * rng.uniform() - 1);
    return backend.malloc(4 * n, new Uint8Array(data.buffer));
  });
  const run = async (native: boolean) => {
    setNativeEnabled(native);
    const out = backend.malloc(4 * kernel.size);
    const exe = backend.prepareKernelSync(kernel);
    backend.dispatch(exe, slots, [out]);
    const bytes: Uint8Array = await backend.read(out);
    backend.decRef(out);
    return new Float32Array(bytes.buffer, bytes.byteOffset, kernel.size).slice();
  };
  const wasm = await run(false);
  const before = nativeStats().calls;
  const native = await run(true);
  const nativeCalls = nativeStats().calls - before;
  for (const s of slots) backend.decRef(s);
  return { wasm, native, nativeCalls };
}

async function check(name: string, c: Case, expectDescribe: RegExp): Promise<void> {
  const kernel = kernelOf(c);
  const plan = planGemm(kernel as JaxKernel);
  assert.ok(plan, `${name}: not planned`);
  assert.match(plan.describe, expectDescribe, `${name}: planned as ${plan.describe}`);
  const { wasm, native, nativeCalls } = await runBoth(c, kernel);
  assert.equal(nativeCalls, 1, `${name}: the native path did not run`);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < wasm.length; i++) {
    worst = Math.max(worst, Math.abs(native[i] - wasm[i]));
    scale = Math.max(scale, Math.abs(wasm[i]));
  }
  assert.ok(scale > 0, `${name}: the reference is all zeros`);
  assert.ok(worst <= 1e-5 * scale, `${name}: native differs from wasm by ${worst} (scale ${scale})`);
}

const [M, N, K] = [37, 41, 53];

test("an operand read with a gap between its columns is packed from strides", { skip }, async () => {
  // A[m, k] = bufA[m·2K + 2k]
  await check("gapped A", { inputs: [M * 2 * K, K * N], outShape: [M, N], K, a: [view([M, N, K], [2 * K, 0, 2])], b: [view([M, N, K], [0, 1, N])] }, /A packed/);
});

test("a flipped operand (negative stride) is packed from strides", { skip }, async () => {
  // B[k, n] = bufB[k·N + (N − 1 − n)]
  await check("flipped B", { inputs: [M * K, K * N], outShape: [M, N], K, a: [view([M, N, K], [K, 0, 1])], b: [view([M, N, K], [0, -1, N], N - 1)] }, /B packed/);
});

test("an operand behind a padding mask is packed from a table, with zeros where the mask hides it", { skip }, async () => {
  // A is bufA [M, K − 6] padded by 2 on the left and 4 on the right along k.
  const k0 = K - 6;
  const a = [view([M, N, K], [k0, 0, 1], -2, [[0, M], [0, N], [2, 2 + k0]])];
  await check("padded A", { inputs: [M * k0, K * N], outShape: [M, N], K, a, b: [view([M, N, K], [0, 1, N])] }, /A table/);
});

test("columns spread over two output dims whose strides do not merge are packed from a table", { skip }, async () => {
  // out[m, j, n] = Σ_k A[m, k] · bufB[j, k, n]: B's columns (j, n) have strides (K·n2, 1).
  const [j, n2] = [3, 14];
  const b = [view([M, j, n2, K], [0, K * n2, 1, n2])];
  await check("split columns", { inputs: [M * K, j * K * n2], outShape: [M, j, n2], K, a: [view([M, j, n2, K], [K, 0, 0, 1])], b }, /B table/);
});

test("interleaved row and column dims become batch entries", { skip }, async () => {
  // out[m1, n1, m2, n2] = Σ_k A[m1, m2, k] · B[n1, k, n2]
  const [m1, n1, m2, n2] = [3, 4, 11, 13];
  const a = [view([m1, n1, m2, n2, K], [m2 * K, 0, K, 0, 1])];
  const b = [view([m1, n1, m2, n2, K], [0, K * n2, 0, 1, n2])];
  await check("interleaved", { inputs: [m1 * m2 * K, n1 * K * n2], outShape: [m1, n1, m2, n2], K, a, b }, /^12 × \[11×53\]·\[53×13\] A, B$/);
});

test("the epilogue's scale and an added operand through two views (a transposed bias grid)", { skip }, async () => {
  const kernel = (addend: Any) => (acc: Any) => AluExp.add(AluExp.mul(acc, AluExp.f32(0.5)), addend);
  // G[m, n] = bufG viewed as [N, M] transposed, then reshaped: two views.
  const g = operand(2, [view([N, M], [1, N]), view([M, N], [1, M])], [M, N], false);
  // A second view over G the planner cannot merge: the addend comes from a table.
  const c: Case = { inputs: [M * K, K * N, M * N], outShape: [M, N], K, a: [view([M, N, K], [K, 0, 1])], b: [view([M, N, K], [0, 1, N])], epilogue: kernel(g) };
  await check("scaled + table addend", c, /α=0.5, \+ G table$/);
});

test("kernels that are not plain GEMMs are declined", () => {
  const base: Case = { inputs: [M * K, K * N], outShape: [M, N], K, a: [view([M, N, K], [K, 0, 1])], b: [view([M, N, K], [0, 1, N])] };
  assert.ok(planGemm(kernelOf(base) as JaxKernel), "the plain GEMM is planned");
  // A nonlinear epilogue (a fused activation) stays on wasm.
  assert.equal(planGemm(kernelOf({ ...base, epilogue: (acc) => AluExp.exp(acc) }) as JaxKernel), null);
  // A sum of squares: every output dim indexes both operands, there is no column.
  const sq = { inputs: [M * K, M * K], outShape: [M], K, a: [view([M, K], [K, 1])], b: [view([M, K], [K, 1])] };
  assert.equal(planGemm(kernelOf(sq) as JaxKernel), null);
  // A max-reduction is not a matmul.
  const k = kernelOf(base);
  assert.equal(planGemm(new Kernel(2, k.size, k.exp, new Reduction("float32", "Max", K)) as JaxKernel), null);
  // Too little work for a BLAS call.
  const tiny = { inputs: [4 * 3, 3 * 5], outShape: [4, 5], K: 3, a: [view([4, 5, 3], [3, 0, 1])], b: [view([4, 5, 3], [0, 1, 5])] };
  assert.equal(planGemm(kernelOf(tiny) as JaxKernel), null);
});
