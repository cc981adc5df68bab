/**
 * jax-js bootstrap for Node: shims first, then the wasm backend, then the native engine where it works
 * (`D2V_ENGINE`, see `native/engine.ts`). Every entry point awaits `initEngine()`.
 */
import { configuredThreads } from "./shims.js";
import { init, defaultDevice } from "./jax.js";
import { engineInfo, startEngine, type EngineInfo } from "./native/engine.js";

let ready: Promise<EngineInfo> | null = null;

/** Initializes jax-js on the wasm backend (multi-threaded when `Worker` is available) and the engine. Idempotent. */
export function initEngine(): Promise<EngineInfo> {
  ready ??= (async () => {
    // init() with no argument probes navigator.gpu, which Node does not have.
    await init("wasm");
    defaultDevice("wasm");
    return startEngine();
  })();
  return ready;
}

/** jax-js's worker threads (the wasm kernels' parallelism). */
export function engineThreads(): number {
  return configuredThreads();
}

/** One line naming the engine, e.g. "native (OpenBLAS 0.3.21, Haswell, 2 threads) + jax-js wasm (2 threads)". */
export function describeEngine(info: EngineInfo | null = engineInfo()): string {
  const wasm = `jax-js wasm (${engineThreads()} thread${engineThreads() === 1 ? "" : "s"})`;
  if (!info) return `not started; ${wasm}`;
  if (info.kind === "wasm") return `wasm: ${wasm}${info.fallbackReason ? ` (native unavailable: ${info.fallbackReason})` : ""}`;
  const b = info.blas!;
  const k = info.kernels;
  const kernels = !k ? "" : "off" in k ? `; elementwise kernels on wasm (${k.off})` : `; elementwise kernels compiled by ${k.compiler}`;
  return `native: ${b.library}, core ${b.corename}, ${b.threads} BLAS thread${b.threads === 1 ? "" : "s"}${kernels} + ${wasm}`;
}
