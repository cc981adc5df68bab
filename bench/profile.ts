/**
 * Where a training step's time goes (not a test). Runs steps with one jax-js thread, so every kernel runs
 * on the main thread when it is dispatched and its time can be read off directly, and sorts kernel time into
 * native matmuls, native (compiled) elementwise kernels, matmuls left on wasm, other reductions (layer norm,
 * softmax, loss sums), wasm elementwise kernels with and without transcendentals (exp, erf, sqrt, …), random
 * bits (threefry, for dropout and masking noise) and routines; what remains of the step's wall time is
 * JavaScript (dispatching the jitted function's kernels, host-side batches, the optimizer's bookkeeping).
 * D2V_ENGINE=wasm profiles the wasm engine; D2V_NATIVE_KERNELS=0 native matmuls with wasm elementwise kernels.
 *   npm run bench -- --profile                      text-tiny, vision-tiny, audio-tiny on the default engine
 *   node dist/bench/profile.js text-small audio-tiny  any steps
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describeEngine, initEngine } from "../src/engine/runtime.js";
import { wasmBackend } from "../src/engine/memory.js";
import { nativeKernelsReady } from "../src/engine/native/engine.js";
import type { JaxAluExp, JaxKernel } from "../src/engine/native/gemm-plan.js";
import { benchStep } from "./steps.js";

type Category = "native matmul" | "native elementwise" | "wasm matmul" | "wasm reduction" | "elementwise, transcendental" | "elementwise" | "random bits" | "routine";

const TRANSCENDENTAL = new Set(["Exp", "Log", "Erf", "Erfc", "Sin", "Cos", "Asin", "Atan", "Sqrt", "Reciprocal", "Tanh"]);

function ops(e: JaxAluExp, out = new Set<string>()): Set<string> {
  out.add(e.op);
  for (const s of e.src) ops(s, out);
  return out;
}

function categorize(kernel: JaxKernel): Category {
  const all = ops(kernel.exp);
  if (kernel.reduction) ops(kernel.reduction.epilogue, all);
  if (all.has("Threefry2x32")) return "random bits";
  if (kernel.reduction) {
    const views = kernel.exp.op === "Mul" ? kernel.exp.src.filter((s) => s.op === "GlobalView").length : 0;
    return views === 2 && kernel.reduction.size >= 8 && kernel.size >= 8 ? "wasm matmul" : "wasm reduction";
  }
  return [...all].some((op) => TRANSCENDENTAL.has(op)) ? "elementwise, transcendental" : "elementwise";
}

async function profile(what: string, steps = 4): Promise<string> {
  const info = await initEngine();
  const backend = (await wasmBackend()) as unknown as { dispatch(exe: { source: unknown }, inputs: number[], outputs: number[]): void };
  const g = globalThis as { __jaxjsHostKernel?: (...a: unknown[]) => unknown };
  const hook = g.__jaxjsHostKernel;
  let tookNative = false;
  if (hook) {
    g.__jaxjsHostKernel = (...a: unknown[]) => {
      const host = hook(...a);
      tookNative = host != null;
      return host;
    };
  }
  const time = new Map<string, { ms: number; n: number }>();
  let counting = false;
  const dispatch = backend.dispatch.bind(backend);
  backend.dispatch = (exe, inputs, outputs) => {
    tookNative = false;
    const t = performance.now();
    dispatch(exe, inputs, outputs);
    const ms = performance.now() - t;
    if (!counting) return;
    const source = exe.source as JaxKernel & { name?: string };
    const cat = source.exp ? (tookNative ? (source.reduction ? "native matmul" : "native elementwise") : categorize(source)) : `routine ${source.name ?? ""}`.trim();
    const e = time.get(cat) ?? { ms: 0, n: 0 };
    e.ms += ms;
    e.n++;
    time.set(cat, e);
  };
  const step = benchStep(what);
  await step.run(0);
  await nativeKernelsReady();
  await step.run(1);
  counting = true;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await step.run(2 + i);
  const wall = (performance.now() - t0) / steps;
  counting = false;
  const rows = [...time.entries()].map(([cat, { ms, n }]) => ({ cat, ms: ms / steps, n: n / steps })).sort((a, b) => b.ms - a.ms);
  const kernels = rows.reduce((a, r) => a + r.ms, 0);
  const lines = [`### ${what}: ${wall.toFixed(0)} ms per update (${describeEngine(info)})`, "", "| where | ms per update | share | kernels per update |", "|---|---:|---:|---:|"];
  for (const r of rows) lines.push(`| ${r.cat} | ${r.ms.toFixed(1)} | ${((100 * r.ms) / wall).toFixed(0)}% | ${r.n.toFixed(0)} |`);
  lines.push(`| JavaScript and everything else | ${(wall - kernels).toFixed(1)} | ${((100 * (wall - kernels)) / wall).toFixed(0)}% | |`);
  return lines.join("\n");
}

const args = process.argv.slice(2);
if (args[0] === "--one") {
  console.log(await profile(args[1]));
} else {
  const self = fileURLToPath(import.meta.url);
  for (const what of args.length ? args : ["text-tiny", "vision-tiny", "audio-tiny"]) {
    const r = spawnSync(process.execPath, [self, "--one", what], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, D2V_THREADS: "1" } });
    if (r.status !== 0) throw new Error(`profile ${what} failed`);
    console.log(r.stdout);
  }
}
