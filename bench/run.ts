/**
 * Benchmarks (not tests): data2vec training-step throughput of every preset on both engines in one run
 * (wasm, and native where the addon works), the ratio, each step's effective GFLOP/s against the engine's
 * own 512³ matmul rate, and peak RSS. Each measurement runs in its own process, so peak RSS is its own.
 *   npm run bench                       the table (markdown)
 *   npm run bench -- --json             one JSON object per measurement
 *   npm run bench -- --only text-tiny   some steps only (comma-separated)
 *   npm run bench -- --threads          native tiny steps at 1 and 2 threads of jax-js and of OpenBLAS
 *   npm run bench -- --base             fine-tuning and inference of each base-size family, peak heap vs estimate
 *   npm run bench -- --eager            native steps with jitted programs run eagerly (the default) and deferred
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describeEngine, engineThreads, initEngine } from "../src/engine/runtime.js";
import { nativeKernelsReady } from "../src/engine/native/engine.js";
import { benchStep, matmulGflops } from "./steps.js";
import { baseFinetune, type BaseRow } from "./finetune-base.js";

type Row = { name: string; engine: string; unit: string; value: number; peakRssMB: number; [k: string]: unknown };

const peakRssMB = () => Math.round(process.resourceUsage().maxRSS / 1024);

async function measure(what: string): Promise<Row[]> {
  const info = await initEngine();
  const engine = info.kind;
  const common = { engine, engineLine: describeEngine(info), jaxThreads: engineThreads(), blasThreads: info.blas?.threads ?? 0 };
  if (what === "matmul") return [{ name: "matmul-512", unit: "GFLOP/s", value: await matmulGflops(), peakRssMB: peakRssMB(), ...common }];
  const step = benchStep(what);
  await step.run(0); // compile
  // The native engine compiles elementwise kernels in the background (once per machine, then cached).
  const compileStart = performance.now();
  await nativeKernelsReady();
  const kernelCompileSeconds = (performance.now() - compileStart) / 1000;
  await step.run(1);
  let units = 0;
  const t0 = performance.now();
  for (let i = 0; i < step.reps; i++) {
    await step.run(2 + i);
    units += step.unitsPerStep();
  }
  const sec = (performance.now() - t0) / 1000 / step.reps;
  const rss = peakRssMB();
  const mm = await matmulGflops();
  return [
    { name: `${step.name}-train-step`, unit: step.unit, value: units / step.reps / sec, stepSeconds: sec, kernelCompileSeconds, peakRssMB: rss, ...step.shape, ...common },
    { name: `${step.name}-train-step-effective`, unit: "GFLOP/s", value: step.flops / sec / 1e9, matmul512: mm, peakRssMB: rss, ...step.shape, ...common },
  ];
}

function child(what: string, env: Record<string, string>): Row[] {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [self, "--one", what], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`benchmark ${what} (${JSON.stringify(env)}) failed`);
  return r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Row);
}

const STEPS = ["text-tiny", "text-small", "vision-tiny", "vision-small", "audio-tiny", "audio-tiny-mel", "audio-small", "text-tiny-v2", "vision-tiny-v2", "vision-small-v2", "audio-tiny-v2"];

const args = process.argv.slice(2);
const json = args.includes("--json");
const one = args.indexOf("--one");
const only = args.indexOf("--only");
const baseOne = args.indexOf("--base-one");
if (one >= 0) {
  for (const row of await measure(args[one + 1])) console.log(JSON.stringify(row));
} else if (baseOne >= 0) {
  console.log(JSON.stringify(await baseFinetune(args[baseOne + 1])));
} else if (args.includes("--base")) {
  // Base sizes on the native engine only (the wasm engine is ~3-6× slower; the heap is the same).
  const self = fileURLToPath(import.meta.url);
  if (!json) {
    console.log("| family (random weights, released base config) | batch | AdamW moments | fine-tune | inference | s / update | peak heap, measured / estimated (MB) | peak RSS (MB) |");
    console.log("|---|---|---|---:|---:|---:|---:|---:|");
  }
  for (const family of ["text", "vision", "audio"]) {
    const r = spawnSync(process.execPath, [self, "--base-one", family], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, D2V_ENGINE: "native" } });
    if (r.status !== 0) throw new Error(`base benchmark ${family} failed`);
    const row = JSON.parse(r.stdout.trim().split("\n").pop()!) as BaseRow;
    console.log(json ? JSON.stringify(row) : `| ${row.name} | ${row.batch} | ${row.optimizer} | ${row.finetune.toFixed(2)} ${row.unit} | ${row.inference.toFixed(2)} ${row.unit} | ${row.stepSeconds.toFixed(1)} | ${row.peakHeapMB} / ${row.estimateMB} | ${row.peakRssMB} |`);
  }
} else if (args.includes("--eager")) {
  // Eager jit (src/engine/shims.ts) frees a step's intermediates as it goes; deferred, they all live until its end.
  const steps = only >= 0 ? args[only + 1].split(",") : STEPS;
  if (!json) console.log("| step | unit | deferred | eager | eager / deferred | peak RSS deferred / eager (MB) |\n|---|---|---:|---:|---:|---:|");
  for (const what of steps) {
    const [lazy] = child(what, { D2V_ENGINE: "native", D2V_EAGER_JIT: "0" });
    const [eager] = child(what, { D2V_ENGINE: "native" });
    if (json) [lazy, eager].forEach((row) => console.log(JSON.stringify({ ...row, eagerJit: row === eager })));
    else console.log(`| ${what} | ${eager.unit} | ${lazy.value.toFixed(1)} | ${eager.value.toFixed(1)} | ${(eager.value / lazy.value).toFixed(2)}× | ${lazy.peakRssMB} / ${eager.peakRssMB} |`);
  }
} else if (args.includes("--threads")) {
  console.log("| step | jax-js threads | BLAS threads | value | unit |\n|---|---:|---:|---:|---|");
  for (const what of ["text-tiny", "vision-tiny", "audio-tiny"]) {
    for (const jax of ["1", "2"]) {
      for (const blas of ["1", "2"]) {
        const [row] = child(what, { D2V_ENGINE: "native", D2V_THREADS: jax, OPENBLAS_NUM_THREADS: blas });
        console.log(json ? JSON.stringify(row) : `| ${what} | ${jax} | ${blas} | ${row.value.toFixed(1)} | ${row.unit} |`);
      }
    }
    for (const jax of ["1", "2"]) {
      const [row] = child(what, { D2V_ENGINE: "wasm", D2V_THREADS: jax });
      console.log(json ? JSON.stringify(row) : `| ${what} (wasm) | ${jax} | – | ${row.value.toFixed(1)} | ${row.unit} |`);
    }
  }
} else {
  const steps = only >= 0 ? args[only + 1].split(",") : STEPS;
  const engines = ["wasm", "native"];
  const rows: Row[] = [];
  for (const engine of engines) {
    for (const what of ["matmul", ...steps]) {
      const got = child(what, { D2V_ENGINE: engine });
      rows.push(...got);
      if (json) got.forEach((row) => console.log(JSON.stringify(row)));
    }
  }
  if (!json) {
    const find = (name: string, engine: string) => rows.find((r) => r.name === name && r.engine === engine);
    console.log(`engines: ${[...new Set(rows.map((r) => r.engineLine))].join("; ")}\n`);
    const mmW = find("matmul-512", "wasm")!;
    const mmN = find("matmul-512", "native")!;
    console.log(`512³ matmul: wasm ${mmW.value.toFixed(1)} GFLOP/s, native ${mmN.value.toFixed(1)} GFLOP/s (${(mmN.value / mmW.value).toFixed(1)}×)\n`);
    console.log("| step | unit | wasm | native | native / wasm | native GFLOP/s (% of its 512³ rate) | peak RSS wasm / native (MB) |");
    console.log("|---|---|---:|---:|---:|---:|---:|");
    for (const s of steps) {
      const w = find(`${s}-train-step`, "wasm")!;
      const n = find(`${s}-train-step`, "native")!;
      const e = find(`${s}-train-step-effective`, "native")!;
      const pct = (100 * e.value) / (e.matmul512 as number);
      console.log(`| ${s} | ${w.unit} | ${w.value.toFixed(1)} | ${n.value.toFixed(1)} | **${(n.value / w.value).toFixed(2)}×** | ${e.value.toFixed(1)} (${pct.toFixed(0)}%) | ${w.peakRssMB} / ${n.peakRssMB} |`);
    }
  }
}
