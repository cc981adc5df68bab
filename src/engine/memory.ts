/**
 * A live-buffer counter for leak tests and benchmarks. jax-js has no public counter, so this wraps the
 * wasm backend's `malloc`/`incRef`/`decRef` (reached through the package's internal chunk, resolved from
 * `dist/index.js` at run time) and mirrors its reference counts.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

type Backend = {
  malloc(size: number, initialData?: Uint8Array): number;
  incRef(slot: number): void;
  decRef(slot: number): void;
};

const live = new Map<number, { ref: number; size: number }>();
let liveBytes = 0;
let peak = 0;
let installed: Promise<void> | null = null;

/** jax-js's wasm backend object (internal; for the buffer counter and the profiler). */
export async function wasmBackend(): Promise<Backend> {
  const require = createRequire(import.meta.url);
  const indexJs = require.resolve("@jax-js/jax").replace(/index\.cjs$/, "index.js");
  const source = readFileSync(indexJs, "utf8");
  const m = /(\w+) as getBackend\b[^}]*\} from "\.\/([\w.-]+\.js)"/.exec(source);
  if (!m) throw new Error("memory: cannot locate jax-js getBackend (jax-js version changed?)");
  const chunk = (await import(pathToFileURL(join(dirname(indexJs), m[2])).href)) as Record<string, unknown>;
  const getBackend = chunk[m[1]] as (device: string) => Backend;
  return getBackend("wasm");
}

/** Starts counting buffers allocated from now on (idempotent). Call after `initEngine()`. */
export function trackBuffers(): Promise<void> {
  installed ??= (async () => {
    const backend = await wasmBackend();
    const { malloc, incRef, decRef } = backend;
    backend.malloc = function (size, initialData) {
      const slot = malloc.call(this, size, initialData);
      live.set(slot, { ref: 1, size });
      liveBytes += size;
      peak = Math.max(peak, liveBytes);
      return slot;
    };
    backend.incRef = function (slot) {
      incRef.call(this, slot);
      const b = live.get(slot);
      if (b) b.ref++;
    };
    backend.decRef = function (slot) {
      decRef.call(this, slot);
      const b = live.get(slot);
      if (b && --b.ref === 0) {
        live.delete(slot);
        liveBytes -= b.size;
      }
    };
  })();
  return installed;
}

/** Buffers allocated since `trackBuffers()` that are still alive. */
export function liveBuffers(): { count: number; bytes: number } {
  let bytes = 0;
  for (const b of live.values()) bytes += b.size;
  return { count: live.size, bytes };
}

/** The most bytes alive at once since `trackBuffers()` or the last `resetPeakBytes()`. */
export function peakBytes(): number {
  return peak;
}

export function resetPeakBytes(): void {
  peak = liveBytes;
}
