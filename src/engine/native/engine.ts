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
import { numpy as np, random } from "../jax.js";
import { loadAddon, type BlasAddon, type BlasInfo } from "./addon.js";
import { planGemm, type GemmPlan, type JaxKernel } from "./gemm-plan.js";

export type EngineKind = "native" | "wasm";

export interface EngineInfo {
  kind: EngineKind;
  /** Why the engine is wasm when native was not asked against (unset: it was asked for). */
  fallbackReason?: string;
  blas?: BlasInfo & { library: string };
}

type HostKernelHook = (kernel: JaxKernel, hash: string, memory: WebAssembly.Memory, ptrs: number[]) => (() => void) | null;
const g = globalThis as { __jaxjsHostKernel?: HostKernelHook };

/** Native sgemm dispatches since the engine started, and their multiply-adds (for profiles and tests). */
export interface NativeStats {
  calls: number;
  work: number;
}

let addon: BlasAddon | null = null;
let enabled = false;
const plans = new Map<string, GemmPlan | null>();
const stats: NativeStats = { calls: 0, work: 0 };
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
  if (!enabled || !addon || !kernel.reduction) return null;
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
  const blas = addon;
  const p = plan;
  stats.calls++;
  stats.work += p.work;
  return () => blas.gemm(memoryF32(memory), p.plan, p.rel, bases, p.alpha, p.tables[0], p.tables[1], p.tables[2]);
};

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
  const cases: [string, () => np.Array][] = [
    ["x·w + b", () => np.add(np.matmul(random.normal(random.key(1), [37, 45]), random.normal(random.key(2), [45, 29])), random.normal(random.key(3), [29]))],
    ["xᵀ·w", () => np.matmul(np.transpose(random.normal(random.key(4), [45, 37])), random.normal(random.key(5), [45, 29]))],
    [
      "batched, merged heads",
      () => {
        const heads = random.normal(random.key(6), [2, 3, 17, 16]); // [B, H, T, Dh]
        const merged = np.reshape(np.transpose(heads, [0, 2, 1, 3]), [34, 48]);
        return np.matmul(merged, random.normal(random.key(7), [48, 40]));
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
  return (info = { kind: "native", blas: { ...blas, library: version ? `OpenBLAS ${version}` : "OpenBLAS" } });
}

export function engineInfo(): EngineInfo | null {
  return info;
}
