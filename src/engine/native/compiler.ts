/**
 * Builds elementwise kernels (kernel-c.ts) with the system's C compiler into shared objects, one per kernel,
 * kept in an on-disk cache so a kernel is compiled once per machine. A kernel is compiled once it has run a
 * few times (a training loop's kernels from its first update or two; a one-off command's hardly ever), in
 * the background, one at a time; until its object is ready it runs on wasm. Since the C computes the same
 * bits as jax-js's wasm code (see kernel-c.ts), when a kernel switches engines nothing a run computes changes.
 *
 * The cache lives in `D2V_KERNEL_CACHE`, else `$XDG_CACHE_HOME/data2vec-ts/kernels`, else
 * `~/.cache/data2vec-ts/kernels`, in a folder keyed by the compiler, its flags and this CPU's features
 * (objects are built for the host CPU). `CC` names the compiler (default `cc`).
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { BlasAddon } from "./addon.js";
import type { JaxKernel } from "./gemm-plan.js";
import { kernelPrelude, kernelSource, type KernelSource } from "./kernel-c.js";

/** Bumped when the generated code changes meaning, so older cached objects are not reused. */
const CODEGEN_VERSION = 7;
/**
 * No FMA contraction and no fast-math: every operation keeps its IEEE single-precision result. Without traps
 * and errno, selects and sqrt vectorize; neither changes a value.
 */
const FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-std=gnu11", "-fPIC", "-shared", "-w"];

export interface CompiledKernel extends KernelSource {
  id: number;
}

type Entry =
  | { state: "cold"; runs: number; kernel: JaxKernel }
  | { state: "compiling" }
  | { state: "failed"; why: string }
  | ({ state: "ready" } & CompiledKernel)
  | { state: "unsupported" };

/** Runs of a kernel before it is compiled. */
const HOT_RUNS = 3;

export interface CompilerInfo {
  compiler: string;
  cacheDir: string;
}

/** The compiler's first version line, or null when there is none to run. */
function compilerVersion(cc: string): string | null {
  try {
    return execFileSync(cc, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 }).split("\n")[0].trim();
  } catch {
    return null;
  }
}

function cpuKey(): string {
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? "";
    const flags = /^flags\s*:\s*(.*)$/m.exec(info)?.[1] ?? "";
    return `${process.arch} ${model} ${flags}`;
  } catch {
    return process.arch;
  }
}

export class KernelCompiler {
  readonly info: CompilerInfo;
  #entries = new Map<string, Entry>();
  #queue: { hash: string; source: KernelSource; file: string }[] = [];
  #busy = false;
  #child: ReturnType<typeof execFile> | null = null;
  #idle: (() => void)[] = [];
  /** Compile inline instead of in the background (the startup self-check). */
  synchronous = false;
  compiled = 0;
  failures: string[] = [];

  private constructor(
    private readonly addon: BlasAddon,
    private readonly cc: string,
    version: string,
    private readonly dir: string,
  ) {
    this.info = { compiler: version, cacheDir: dir };
    // A compile still running when the process ends is stopped (its kernel compiles again in a later run).
    process.once("exit", () => this.#child?.kill());
  }

  /** A compiler for this machine, or why there is none (no C compiler, no writable cache). */
  static create(addon: BlasAddon): KernelCompiler | { error: string } {
    const cc = process.env.CC || "cc";
    const version = compilerVersion(cc);
    if (!version) return { error: `no C compiler (${cc}) to build elementwise kernels with` };
    const root = process.env.D2V_KERNEL_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "data2vec-ts", "kernels");
    const key = createHash("sha256").update(`${CODEGEN_VERSION}\n${version}\n${FLAGS.join(" ")}\n${cpuKey()}`).digest("hex").slice(0, 16);
    const dir = join(root, key);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      return { error: `the kernel cache ${dir} cannot be created (${(e as Error).message}); set D2V_KERNEL_CACHE` };
    }
    return new KernelCompiler(addon, cc, version, dir);
  }

  /** The native kernel for `kernel`, or null until it is hot and compiled (or when it cannot be compiled). */
  get(hash: string, kernel: JaxKernel): CompiledKernel | null {
    let entry = this.#entries.get(hash);
    if (!entry) {
      entry = { state: "cold", runs: 0, kernel };
      this.#entries.set(hash, entry);
    }
    if (entry.state === "cold" && (++entry.runs >= HOT_RUNS || this.synchronous)) {
      entry = this.#start(hash, entry.kernel);
      this.#entries.set(hash, entry);
    }
    return entry.state === "ready" ? entry : null;
  }

  /**
   * Compiles every kernel seen so far, however often it ran, and resolves when none is queued or running
   * (the compiles then keep the process alive). Benchmarks and tests call it before they measure.
   */
  idle(): Promise<void> {
    for (const [hash, entry] of this.#entries) if (entry.state === "cold") this.#entries.set(hash, this.#start(hash, entry.kernel));
    if (!this.#busy && this.#queue.length === 0) return Promise.resolve();
    this.#child?.ref();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #start(hash: string, kernel: JaxKernel): Entry {
    const source = kernelSource(kernel);
    if (!source) return { state: "unsupported" };
    const text = kernelPrelude() + source.body;
    const file = join(this.dir, `${createHash("sha256").update(text).digest("hex").slice(0, 32)}.so`);
    if (existsSync(file)) return this.#load(source, file);
    if (this.synchronous) {
      const failed = this.#compileSync(text, file);
      return failed ? { state: "failed", why: failed } : this.#load(source, file);
    }
    this.#queue.push({ hash, source, file });
    this.#pump();
    return { state: "compiling" };
  }

  #load(source: KernelSource, file: string): Entry {
    try {
      return { state: "ready", ...source, id: this.addon.loadKernel(file) };
    } catch (e) {
      // A damaged cached object: remove it, so that the next run compiles it again.
      rmSync(file, { force: true });
      this.failures.push(`${file}: ${(e as Error).message}`);
      return { state: "failed", why: (e as Error).message };
    }
  }

  #paths(file: string) {
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    return { c: `${tmp}.c`, so: `${tmp}.so` };
  }

  #compileSync(text: string, file: string): string | null {
    const p = this.#paths(file);
    try {
      writeFileSync(p.c, text);
      execFileSync(this.cc, [...FLAGS, "-o", p.so, p.c], { stdio: ["ignore", "ignore", "pipe"], timeout: 120_000 });
      renameSync(p.so, file);
      this.compiled++;
      return null;
    } catch (e) {
      this.failures.push((e as Error).message.split("\n")[0]);
      return (e as Error).message;
    } finally {
      rmSync(p.c, { force: true });
      rmSync(p.so, { force: true });
    }
  }

  #pump(): void {
    if (this.#busy) return;
    const job = this.#queue.shift();
    if (!job) {
      for (const resolve of this.#idle.splice(0)) resolve();
      return;
    }
    this.#busy = true;
    const p = this.#paths(job.file);
    const text = kernelPrelude() + job.source.body;
    const finish = (error: string | null) => {
      rmSync(p.c, { force: true });
      rmSync(p.so, { force: true });
      if (error) {
        this.failures.push(error);
        this.#entries.set(job.hash, { state: "failed", why: error });
      } else {
        this.compiled++;
        this.#entries.set(job.hash, this.#load(job.source, job.file));
      }
      this.#busy = false;
      this.#child = null;
      this.#pump();
    };
    try {
      writeFileSync(p.c, text);
    } catch (e) {
      finish(`cannot write ${p.c}: ${(e as Error).message}`);
      return;
    }
    // Unref'd: a process that finishes its work does not wait for a compile; the rename makes a half-written
    // object impossible.
    const child = execFile(this.cc, [...FLAGS, "-o", p.so, p.c], { timeout: 120_000 }, (err, _out, stderr) => {
      if (err) return finish(`${this.cc} failed: ${String(stderr).split("\n")[0] || err.message}`);
      try {
        renameSync(p.so, job.file);
        finish(null);
      } catch (e) {
        finish((e as Error).message);
      }
    });
    this.#child = child;
    if (this.#idle.length === 0) {
      child.unref();
      (child.stdout as { unref?: () => void } | null)?.unref?.();
      (child.stderr as { unref?: () => void } | null)?.unref?.();
    }
  }
}
