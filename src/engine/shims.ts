/**
 * Node shims that jax-js needs. They must run before jax-js is evaluated (it creates its wasm backend on
 * load), so the project imports jax-js only through `./jax.ts`, which imports this module first:
 * 1. `Float16Array` (jax-js references it; Node 20 lacks it),
 * 2. iterator helpers (`np.einsum` calls `.map`/`.toArray` on `matchAll` results; Node 20 lacks them),
 * 3. a global `Worker` backed by `worker_threads`, so the wasm backend runs kernels on real threads,
 * 4. `navigator.hardwareConcurrency`, which sizes jax-js's worker pool (it assumes 4 when missing).
 *
 * The thread count is `configuredThreads()`: 1 (no workers) unless `D2V_THREADS=N` asks for N.
 */
import { resolveObjectURL } from "node:buffer";
import { Worker as ThreadWorker } from "node:worker_threads";

const g = globalThis as Record<string, unknown>;

/**
 * jax-js's worker threads: `D2V_THREADS`, else 1. With the native engine its matmuls use every core through
 * OpenBLAS, and the remaining small kernels run faster on the main thread than through a worker's message round
 * trip. On the wasm engine one thread runs each step eagerly (below): on the 2-core project machine that took a
 * third of the memory of two workers and was faster for images and speech, 17% slower for text
 * (docs/results/bench.md), and the 4 GiB heap is what fails first. `D2V_THREADS=N` gives wasm N workers.
 */
export function configuredThreads(): number {
  const fromEnv = Number(process.env.D2V_THREADS ?? "");
  if (Number.isInteger(fromEnv) && fromEnv >= 1) return fromEnv;
  return 1;
}

// 1. Float16Array: a stub is enough, the project never allocates float16 arrays.
if (typeof g.Float16Array === "undefined") {
  g.Float16Array = class Float16Array {
    constructor() {
      throw new Error("Float16Array is not supported on this Node version");
    }
  };
}

// 2. Iterator helpers used by jax-js on RegExp iterators.
const iteratorProto = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())) as Record<string, unknown>;
function defineIteratorHelper(name: string, impl: (this: Iterator<unknown>, ...args: never[]) => unknown) {
  if (typeof iteratorProto[name] !== "function") {
    Object.defineProperty(iteratorProto, name, { value: impl, writable: true, configurable: true });
  }
}
defineIteratorHelper("toArray", function (this: Iterator<unknown>) {
  const out: unknown[] = [];
  for (let r = this.next(); !r.done; r = this.next()) out.push(r.value);
  return out;
});
defineIteratorHelper("map", function* (this: Iterator<unknown>, fn: (v: unknown, i: number) => unknown) {
  let i = 0;
  for (let r = this.next(); !r.done; r = this.next()) yield fn(r.value, i++);
} as never);
defineIteratorHelper("filter", function* (this: Iterator<unknown>, fn: (v: unknown, i: number) => boolean) {
  let i = 0;
  for (let r = this.next(); !r.done; r = this.next()) if (fn(r.value, i++)) yield r.value;
} as never);
defineIteratorHelper("forEach", function (this: Iterator<unknown>, fn: (v: unknown, i: number) => void) {
  let i = 0;
  for (let r = this.next(); !r.done; r = this.next()) fn(r.value, i++);
});

// 3 + 4. Worker threads. The worker source jax-js generates uses `self.onmessage` and `postMessage`;
// the prelude below maps those onto `parentPort`.
const WORKER_PRELUDE = `
const { parentPort } = require("node:worker_threads");
globalThis.self = globalThis;
globalThis.postMessage = (m) => parentPort.postMessage(m);
parentPort.on("message", (data) => { if (typeof self.onmessage === "function") self.onmessage({ data }); });
`;

/**
 * Each message jax-js posts gets exactly one reply ("ready" or "done"), so the thread is ref'd while a
 * reply is outstanding (an awaited kernel keeps the process alive) and unref'd when idle (the process
 * can exit without terminating the pool).
 */
class NodeBlobWorker {
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onerror: ((e: { message: string }) => void) | null = null;
  #thread: ThreadWorker | null = null;
  #pending: unknown[] = [];
  #outstanding = 0;
  #terminated = false;

  constructor(url: string | URL) {
    const blob = resolveObjectURL(String(url));
    if (!blob) throw new Error(`Worker shim: cannot resolve ${String(url)} (only blob: URLs are supported)`);
    void blob.text().then(
      (source) => this.#start(source),
      (err: unknown) => this.onerror?.({ message: String(err) }),
    );
  }

  #start(source: string) {
    if (this.#terminated) return;
    // The worker source is CommonJS: a parent started with --input-type=module (e.g. `node -e` of an ES
    // module) must not pass that flag on, or the worker fails to start.
    const execArgv = process.execArgv.filter((a) => !a.startsWith("--input-type"));
    const thread = new ThreadWorker(WORKER_PRELUDE + source, { eval: true, execArgv });
    thread.on("message", (data: unknown) => {
      if (--this.#outstanding === 0) thread.unref();
      this.onmessage?.({ data });
    });
    thread.on("error", (err: Error) => {
      // jax-js skips the kernels of a pool whose worker failed and reads their outputs uncomputed:
      // stopping here is the only way not to return wrong numbers.
      process.stderr.write(`d2v: a jax-js worker thread failed (${err.message}); stopping rather than compute without it\n`);
      process.exit(70);
    });
    this.#thread = thread;
    for (const msg of this.#pending) thread.postMessage(msg);
    this.#pending = [];
    if (this.#outstanding === 0) thread.unref();
  }

  postMessage(msg: unknown) {
    if (this.#outstanding++ === 0) this.#thread?.ref();
    if (this.#thread) this.#thread.postMessage(msg);
    else this.#pending.push(msg);
  }

  terminate() {
    this.#terminated = true;
    void this.#thread?.terminate();
  }
}

const threads = configuredThreads();
if (threads > 1 && typeof g.Worker === "undefined") g.Worker = NodeBlobWorker;
// Without workers every kernel runs on this thread, in order: jitted programs then run as they are scheduled and free
// each intermediate after its last use (patches/@jax-js+jax: "eager jit"), which lowers a training step's peak memory
// 2–3×. With workers they stay deferred. D2V_EAGER_JIT=0 turns it off.
if (threads === 1 && process.env.D2V_EAGER_JIT !== "0") g.__jaxjsEagerJit = true;

/** Whether jitted programs run eagerly in this process (the flag above; tests may set it to measure either mode). */
export function eagerJit(): boolean {
  return g.__jaxjsEagerJit === true;
}
const nav = (g.navigator ?? {}) as Record<string, unknown>;
try {
  Object.defineProperty(nav, "hardwareConcurrency", { value: threads, configurable: true });
} catch {
  /* read-only navigator on newer Node: jax-js then uses the platform's own count */
}
if (typeof g.navigator === "undefined") g.navigator = nav;
