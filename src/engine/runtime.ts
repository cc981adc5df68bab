/** jax-js bootstrap for Node: shims first, then the wasm backend. Every entry point awaits `initEngine()`. */
import { configuredThreads } from "./shims.js";
import { init, defaultDevice } from "./jax.js";

let ready: Promise<void> | null = null;

/** Initializes jax-js on the wasm backend (multi-threaded when `Worker` is available). Idempotent. */
export function initEngine(): Promise<void> {
  ready ??= (async () => {
    // init() with no argument probes navigator.gpu, which Node does not have.
    await init("wasm");
    defaultDevice("wasm");
  })();
  return ready;
}

export function engineThreads(): number {
  return configuredThreads();
}
