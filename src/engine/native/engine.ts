/**
 * The native engine: jax-js's wasm backend with its matmul kernels taken over by OpenBLAS.
 *
 * A small patch to jax-js (`patches/@jax-js+jax+*.patch`) asks `globalThis.__jaxjsHostKernel(kernel, hash,
 * memory, ptrs)` before it runs each wasm kernel; a function returned there runs instead, in order with the
 * queued worker kernels, on the same buffers. This module answers with a native sgemm for the kernels
 * `gemm-plan.ts` recognizes and with nothing (wasm as before) for every other kernel. Models never know.
 *
 * Chosen by `D2V_ENGINE`: `native`, `wasm`, or unset (native when the addon loads and passes its self-check,
 * else wasm with one line on stderr saying why).
 */
import { availableParallelism } from "node:os";
import { EngineError } from "../errors.js";
import { lax, numpy as np, random } from "../jax.js";
import { loadAddon, type BlasAddon, type BlasInfo } from "./addon.js";
import { planGemm, type GemmPlan, type JaxKernel } from "./gemm-plan.js";
import { KernelCompiler, type CompilerInfo } from "./compiler.js";

export type EngineKind = "native" | "wasm";

export interface EngineInfo {
  kind: EngineKind;
  /** Why the engine is wasm when native was not asked against (unset: it was asked for). */
  fallbackReason?: string;
  blas?: BlasInfo & { library: string };
  /** Native engine: the compiler building elementwise kernels, or why they stay on wasm. */
  kernels?: CompilerInfo | { off: string };
}

type HostKernelHook = (kernel: JaxKernel, hash: string, memory: WebAssembly.Memory, ptrs: number[]) => (() => void) | null;
const g = globalThis as { __jaxjsHostKernel?: HostKernelHook };

/** Native dispatches since the engine started: sgemm calls and their multiply-adds, elementwise programs. */
export interface NativeStats {
  calls: number;
  work: number;
  elementwiseCalls: number;
}

let addon: BlasAddon | null = null;
let enabled = false;
const plans = new Map<string, GemmPlan | null>();
const stats: NativeStats = { calls: 0, work: 0, elementwiseCalls: 0 };
let compiler: KernelCompiler | null = null;
let memoryView: Float32Array | null = null;

function memoryF32(memory: WebAssembly.Memory): Float32Array {
  const buffer = memory.buffer;
  if (memoryView === null || memoryView.buffer !== buffer) memoryView = new Float32Array(buffer);
  return memoryView;
}

function inBounds(base: number, [lo, hi]: [number, number], length: number): boolean {
  return base + lo >= 0 && base + hi < length;
}

const hostKernel: HostKernelHook = (kernel, hash, memory, ptrs) => {
  if (!enabled || !addon) return null;
  return kernel.reduction ? matmulKernel(addon, kernel, hash, memory, ptrs) : elementwiseKernel(addon, kernel, hash, memory, ptrs);
};

function matmulKernel(blas: BlasAddon, kernel: JaxKernel, hash: string, memory: WebAssembly.Memory, ptrs: number[]): (() => void) | null {
  let plan = plans.get(hash);
  if (plan === undefined) {
    plan = planGemm(kernel);
    plans.set(hash, plan);
  }
  if (!plan) return null;
  const out = ptrs[ptrs.length - 1];
  const pa = ptrs[plan.inputA];
  const pb = ptrs[plan.inputB];
  const pg = plan.inputG >= 0 ? ptrs[plan.inputG] : 0;
  if ((pa | pb | pg | out) % 4 !== 0) return null;
  const bases = new Float64Array([pa / 4, pb / 4, out / 4, pg / 4]);
  const length = memory.buffer.byteLength / 4;
  if (
    !inBounds(bases[0], plan.extentA, length) ||
    !inBounds(bases[1], plan.extentB, length) ||
    !inBounds(bases[2], [0, plan.batch * plan.M * plan.N - 1], length) ||
    (plan.inputG >= 0 && !inBounds(bases[3], plan.extentG, length))
  ) {
    return null;
  }
  const p = plan;
  stats.calls++;
  stats.work += p.work;
  return () => blas.gemm(memoryF32(memory), p.plan, p.rel, bases, p.alpha, p.tables[0], p.tables[1], p.tables[2]);
}

/**
 * Elementwise kernels below this many elements stay on wasm: a call costs about as much either way, and each
 * compiled kernel costs a compile (measured in docs/results/bench.md).
 */
export const MIN_COMPILED_ELEMENTS = Number(process.env.D2V_KERNEL_MIN_SIZE ?? 4096);
/** Compiled kernels of at least this many elements run on every core (smaller ones lose to the hand-off). */
const SPLIT_ELEMENTS = 65536;
/** Threads a compiled kernel runs on: `D2V_KERNEL_THREADS`, else one per core. */
const kernelThreads = Math.max(1, Number(process.env.D2V_KERNEL_THREADS) || availableParallelism());

function elementwiseKernel(native: BlasAddon, kernel: JaxKernel, hash: string, memory: WebAssembly.Memory, ptrs: number[]): (() => void) | null {
  if (kernel.size < MIN_COMPILED_ELEMENTS) return null;
  const k = compiler?.get(hash, kernel);
  if (!k) return null;
  const bytes = memory.buffer.byteLength;
  const out = ptrs[ptrs.length - 1];
  const outBytes = k.size * k.outWidth;
  const needs = new Float64Array(ptrs.length - 1);
  for (const l of k.loads) {
    if (l.input >= needs.length || ptrs[l.input] + l.bytes > bytes) return null;
    needs[l.input] = l.bytes;
  }
  if (out + outBytes > bytes) return null;
  const bases = Float64Array.from(ptrs.slice(0, -1));
  stats.elementwiseCalls++;
  const parts = k.size >= SPLIT_ELEMENTS ? kernelThreads : 1;
  return () => native.runKernel(k.id, memoryF32(memory), bases, needs, out, outBytes, k.outer, parts);
}

/** Resolves when every elementwise kernel seen so far is compiled (benchmarks and tests wait for it). */
export function nativeKernelsReady(): Promise<void> {
  return compiler ? compiler.idle() : Promise.resolve();
}

/** Turns the native path on or off in this process (tests compare both engines on the same inputs). */
export function setNativeEnabled(on: boolean): void {
  if (on && !addon) throw new EngineError("the native engine is not loaded in this process");
  enabled = on;
}

export function nativeEnabled(): boolean {
  return enabled;
}

export function nativeStats(): NativeStats {
  return stats;
}

/** The plans made so far, by kernel (for profiles: what each matmul became). */
export function nativePlans(): ReadonlyMap<string, GemmPlan | null> {
  return plans;
}

/**
 * Products whose result the self-check compares on both engines: plain, transposed operands, a bias
 * epilogue and a batched one with a transpose-then-reshape operand (the index-table path).
 */
async function selfCheck(): Promise<string | null> {
  // Inputs made on the host: only the products under test compile (a start-up cost of every process).
  const host = (seed: number, shape: number[]) => {
    let state = seed;
    const values = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 31) - 1);
    return np.array(values).reshape(shape);
  };
  const cases: [string, () => np.Array][] = [
    ["x·w + b", () => np.add(np.matmul(host(1, [37, 45]), host(2, [45, 29])), host(3, [29]))],
    ["xᵀ·w", () => np.matmul(np.transpose(host(4, [45, 37])), host(5, [45, 29]))],
    [
      "batched, merged heads",
      () => {
        const heads = host(6, [2, 3, 17, 16]); // [B, H, T, Dh]
        const merged = np.reshape(np.transpose(heads, [0, 2, 1, 3]), [34, 48]);
        return np.matmul(merged, host(7, [48, 40]));
      },
    ],
  ];
  const callsBefore = stats.calls;
  for (const [name, make] of cases) {
    enabled = false;
    const reference = (await make().data()) as Float32Array;
    enabled = true;
    const got = (await make().data()) as Float32Array;
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < reference.length; i++) {
      worst = Math.max(worst, Math.abs(got[i] - reference[i]));
      scale = Math.max(scale, Math.abs(reference[i]));
    }
    if (!(worst <= 1e-5 * Math.max(1, scale))) return `the native product "${name}" differs from wasm by ${worst.toExponential(2)}`;
  }
  if (stats.calls - callsBefore < cases.length) return "the native path did not take the self-check's products (a jax-js version this code does not know?)";
  return null;
}

/**
 * Elementwise kernels the C translation must reproduce bit for bit (see kernel-c.ts): exp, log, erf, sqrt,
 * reciprocal and floor over values that reach their range limits, comparisons and selects, float/int
 * conversions that saturate, and threefry random bits. Compiled inline, so the first run on a machine pays
 * for them once (the objects are cached).
 */
async function kernelSelfCheck(c: KernelCompiler): Promise<string | null> {
  // Above MIN_COMPILED_ELEMENTS, so that the kernels compile; made on the host, so that only they compile.
  const n = Math.max(4100, MIN_COMPILED_ELEMENTS);
  const values = new Float32Array(n).map((_, i) => 30 * Math.sin(i * 12.9898) * Math.cos(i * 0.37));
  values.set([0, -0, 1e-30, -1e-30, 88.7, 89, -87, -104, 1e30, -1e30, 3.4e38, Infinity, -Infinity, NaN]);
  const x = () => np.array(values);
  const cases: [string, () => np.Array][] = [
    ["exp, log, erf", () => np.exp(x().mul(0.1)).add(np.log(np.abs(x()).add(1e-3))).add(lax.erf(x().mul(0.05)))],
    ["sqrt, reciprocal, floor, where", () => np.where(x().greater(0), np.sqrt(x()), np.reciprocal(x().sub(0.5))).add(np.floor(x().mul(0.37)))],
    ["casts and integer arithmetic", () => x().mul(1e7).astype(np.int32).add(np.arange(n, undefined, undefined, { dtype: np.int32 }).mul(7919)).astype(np.float32)],
    ["threefry bits", () => random.bits(random.key(12), [n + 17]).astype(np.float32)],
  ];
  c.synchronous = true;
  try {
    const before = stats.elementwiseCalls;
    for (const [name, make] of cases) {
      enabled = false;
      const reference = new Uint32Array(((await make().data()) as Float32Array).buffer);
      enabled = true;
      const got = new Uint32Array(((await make().data()) as Float32Array).buffer);
      const nan = (u: number) => (u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0;
      const i = reference.findIndex((r, j) => r !== got[j] && !(nan(r) && nan(got[j])));
      if (i >= 0) return `the compiled kernel "${name}" gives 0x${got[i].toString(16)} where wasm gives 0x${reference[i].toString(16)}`;
    }
    if (stats.elementwiseCalls === before) return `no kernel of the self-check compiled (${c.failures[0] ?? "unknown reason"})`;
    return null;
  } finally {
    c.synchronous = false;
  }
}

/**
 * OpenBLAS threads unless `OPENBLAS_NUM_THREADS` (or `OMP_NUM_THREADS`) says otherwise: one per core. While
 * a matmul runs, jax-js's own threads wait for it (kernels run in order), so the cores are free.
 */
export function defaultBlasThreads(): number {
  return Math.max(1, availableParallelism());
}

let info: EngineInfo | null = null;

/**
 * Starts the engine `D2V_ENGINE` asks for (`native`, `wasm`; unset: native when it works). An explicit
 * `native` that cannot start is an `EngineError`; an implicit one falls back to wasm and says so once.
 */
export async function startEngine(): Promise<EngineInfo> {
  if (info) return info;
  const wanted = (process.env.D2V_ENGINE ?? "").trim().toLowerCase();
  if (wanted !== "" && wanted !== "native" && wanted !== "wasm" && wanted !== "auto") {
    throw new EngineError(`D2V_ENGINE=${process.env.D2V_ENGINE} is not an engine; use native, wasm or leave it unset`);
  }
  if (wanted === "wasm") return (info = { kind: "wasm" });
  const loaded = loadAddon();
  let reason: string | null = "error" in loaded ? loaded.error : null;
  if ("addon" in loaded) {
    addon = loaded.addon;
    // OpenBLAS reads OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) itself; the user's choice wins.
    if (!process.env.OPENBLAS_NUM_THREADS && !process.env.OMP_NUM_THREADS) addon.setThreads(defaultBlasThreads());
    g.__jaxjsHostKernel = hostKernel;
    enabled = true;
    reason = await selfCheck();
    if (reason) {
      enabled = false;
      g.__jaxjsHostKernel = undefined;
      addon = null;
      reason = `the native engine failed its self-check: ${reason}`;
    }
  }
  if (reason) {
    if (wanted === "native") throw new EngineError(`D2V_ENGINE=native, but ${reason}`);
    process.stderr.write(`d2v: running on the wasm engine: ${reason}\n`);
    return (info = { kind: "wasm", fallbackReason: reason });
  }
  const blas = addon!.info();
  const version = /OpenBLAS\s+([\d.]+)/.exec(blas.config)?.[1];
  return (info = { kind: "native", blas: { ...blas, library: version ? `OpenBLAS ${version}` : "OpenBLAS" }, kernels: await startKernels(addon!) });
}

/** Elementwise kernels compiled to C, unless `D2V_NATIVE_KERNELS=0`, there is no compiler or the check fails. */
async function startKernels(native: BlasAddon): Promise<CompilerInfo | { off: string }> {
  if (process.env.D2V_NATIVE_KERNELS === "0") return { off: "D2V_NATIVE_KERNELS=0" };
  const made = KernelCompiler.create(native);
  if ("error" in made) return { off: made.error };
  compiler = made;
  const failed = await kernelSelfCheck(made);
  if (failed) {
    compiler = null;
    return { off: `the compiled kernels failed their self-check: ${failed}` };
  }
  return made.info;
}

export function engineInfo(): EngineInfo | null {
  return info;
}
