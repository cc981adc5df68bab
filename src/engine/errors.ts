import { eagerJit } from "./shims.js";

/**
 * Errors a user can cause. Each names what was wrong and what to do; the CLI prints `message` without a
 * stack trace and exits with status 2.
 */
export class D2vError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
/** A file, folder or dataset that is missing, empty or unreadable. */
export class DataError extends D2vError {}
/** An output path that is protected, already taken (without --force) or not writable. */
export class OutputError extends D2vError {}
/** A config field that is unknown or out of range. */
export class ConfigError extends D2vError {}
/** A checkpoint that is corrupt, truncated or does not match what it is loaded into. */
export class CheckpointError extends D2vError {}
/** A tokenizer vocabulary that is malformed or does not match a model. */
export class VocabError extends D2vError {}
/** Training stopped because the representations collapsed (see the collapse monitor). */
export class CollapseError extends D2vError {}

/** Training stopped because the loss or the targets grew far beyond their own early level (see the divergence guard). */
export class DivergenceError extends D2vError {}

/** The `d2v` exit status when training stopped because the representations collapsed or diverged (2 is every other user error). */
export const COLLAPSE_EXIT_STATUS = 3;
/** An experiment file that is invalid, or an experiment job that failed. */
export class ExperimentError extends D2vError {}
/** The compute engine asked for (`D2V_ENGINE`) cannot run here. */
export class EngineError extends D2vError {}
/** A run that would not fit in memory (the engine's 4 GiB heap), found before it starts. */
export class ResourceError extends D2vError {}

/** The `d2v` exit status of an internal error (a bug): sysexits.h's EX_SOFTWARE. */
export const INTERNAL_ERROR_EXIT_STATUS = 70;

/** The exit statuses of a run stopped by Ctrl-C (SIGINT) or a polite kill (SIGTERM), as shells report them: 128 + the signal. */
export const SIGNAL_EXIT_STATUS = { SIGINT: 130, SIGTERM: 143 } as const;
export type StopSignal = keyof typeof SIGNAL_EXIT_STATUS;

/** Work stopped by a signal after saving what it could; the CLI exits with 130 (SIGINT) or 143 (SIGTERM). */
export class InterruptedError extends D2vError {
  constructor(
    message: string,
    readonly signal: StopSignal,
  ) {
    super(message);
  }
}

const SYSTEM_REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "the file system is read-only",
  ENOSPC: "the disk is full",
  EDQUOT: "the disk quota is exhausted",
  ENOTDIR: "a part of the path is a file, not a folder",
  EISDIR: "it is a folder, not a file",
  EEXIST: "it already exists",
  ENOENT: "no such file or folder",
  ENOTEMPTY: "the folder is not empty",
  ENAMETOOLONG: "the name is too long",
  EMFILE: "too many open files (raise the limit: ulimit -n)",
  EIO: "an input/output error from the disk",
  ELOOP: "too many symbolic links",
};

/**
 * A Node system error (a failed open, write, rename, …) as a message naming the operation, the path and the
 * reason, or null for any other error: the CLI prints it like a typed error, never as a stack trace.
 */
export function systemErrorMessage(e: unknown): string | null {
  const err = e as NodeJS.ErrnoException & { dest?: string };
  if (!err || typeof err !== "object" || typeof err.code !== "string" || !(err.code in SYSTEM_REASONS)) return null;
  const target = err.path ? ` ${err.path}${err.dest ? ` → ${err.dest}` : ""}` : "";
  return `cannot ${err.syscall ?? "access"}${target}: ${SYSTEM_REASONS[err.code]} (${err.code})`;
}

/** The engine's wasm heap is full: jax-js could not allocate (a run too large for the 4 GiB memory). */
export function isHeapFull(e: unknown): e is RangeError {
  return e instanceof RangeError && /memory32 limit|Out of memory/i.test(e.message);
}

/**
 * What the CLI says when the engine's heap is full: nothing saved is lost, and what to shrink. On worker threads
 * (`D2V_THREADS` above 1) jax-js holds every intermediate of a step until the step ends; one thread, the default,
 * runs steps eagerly in a third to a half of the memory (docs/results/bench.md), so that comes first.
 */
export function heapFullMessage(e: RangeError, eager = eagerJit()): string {
  const whatToShrink = eager
    ? "Use "
    : "This engine runs each step on worker threads (D2V_THREADS), which holds all of a step's intermediates at once: D2V_THREADS=1, the default, runs it eagerly on one thread in a third to a half of the memory. Otherwise use ";
  return (
    `the run ran out of the engine's 4 GiB heap (${e.message}). Files are written whole or not at all, so what was saved before is intact. ` +
    whatToShrink +
    'a smaller batch (--batch-size, with --accumulate to keep the effective batch), shorter inputs (--max-len, --max-seconds), fewer data2vec 2.0 views per sample (data2vec.v2.cloneBatch: each view is a student pass) or a smaller model (see "Base size and memory" in the README)'
  );
}

/** The exit status of a user error: 3 when training stopped on a collapse or divergence (a finding), else 2. */
export function userErrorStatus(e: D2vError): number {
  return e instanceof CollapseError || e instanceof DivergenceError ? COLLAPSE_EXIT_STATUS : 2;
}
