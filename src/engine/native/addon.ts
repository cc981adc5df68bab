/**
 * Loads the optional native addon (`native/d2v_native.c`, built at install time by `scripts/build-native.mjs`
 * against Debian's OpenBLAS). Every way it can fail to load becomes one sentence that says what to do.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** Must equal `D2V_NATIVE_ABI` in native/d2v_native.c: an addon built from other sources is refused as stale. */
export const ADDON_ABI = 4;

export interface BlasInfo {
  abi: number;
  /** OpenBLAS's kernel family for this CPU (e.g. Haswell, SkylakeX, Zen). */
  corename: string;
  /** OpenBLAS's build description (version, threading, max threads). */
  config: string;
  threads: number;
  /** 0 sequential, 1 pthreads, 2 OpenMP. */
  parallel: number;
}

export interface BlasAddon {
  gemm(
    mem: Float32Array,
    plan: Int32Array,
    rel: Int32Array,
    bases: Float64Array,
    alpha: number,
    tableA: Int32Array | null,
    tableB: Int32Array | null,
    tableG: Int32Array | null,
  ): void;
  /** Loads `d2v_kernel` from a compiled kernel object; returns its id. */
  loadKernel(path: string): number;
  /** Runs a loaded kernel; its `outer` outermost iterations are split into `parts` pieces on as many threads. */
  runKernel(id: number, mem: Float32Array, bases: Float64Array, needs: Float64Array, outBase: number, outBytes: number, outer: number, parts: number): void;
  sgemm(a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number): void;
  setThreads(n: number): void;
  info(): BlasInfo;
}

/** The addon's default location: `native/build/Release/` of the package. */
export function defaultAddonPath(): string {
  return fileURLToPath(new URL("../../../../native/build/Release/d2v_native.node", import.meta.url));
}

const REBUILD = "run `npm run build:native` (it needs `apt-get install libopenblas-dev`)";

let loaded: { addon: BlasAddon } | { error: string } | null = null;

/** The addon of this process (default path: `D2V_NATIVE_ADDON`, else the package's build), loaded once. */
export function loadAddon(): { addon: BlasAddon } | { error: string } {
  loaded ??= loadAddonAt(process.env.D2V_NATIVE_ADDON || defaultAddonPath());
  return loaded;
}

/** Loads the addon at `path`. */
export function loadAddonAt(path: string): { addon: BlasAddon } | { error: string } {
  if (!existsSync(path)) return { error: `the native addon is not built (${path} is missing); ${REBUILD}` };
  let addon: BlasAddon;
  try {
    addon = createRequire(import.meta.url)(path) as BlasAddon;
  } catch (err) {
    const msg = (err as Error).message.split("\n")[0];
    // A library the addon links (OpenBLAS and what it needs) that the dynamic loader cannot find or open.
    if (/^(?!.*d2v_native\.node:[^:]*(ELF|short)).*(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.test(msg) || /libopenblas|libblas|libgfortran/.test(msg)) {
      return { error: `OpenBLAS cannot be loaded (${msg}); install it with \`apt-get install libopenblas0\`` };
    }
    if (/ELF|wrong architecture|invalid|exec format|file too short/i.test(msg)) {
      return { error: `the native addon was built for another machine or architecture, or is damaged (${msg}); ${REBUILD}` };
    }
    return { error: `the native addon cannot be loaded (${msg}); ${REBUILD}` };
  }
  if (typeof addon?.info !== "function" || typeof addon.gemm !== "function") {
    return { error: `${path} is not this project's native addon; ${REBUILD}` };
  }
  const abi = addon.info().abi;
  if (abi !== ADDON_ABI) return { error: `the native addon is stale (built from version ${abi} of its sources, this code needs ${ADDON_ABI}); ${REBUILD}` };
  return { addon };
}
