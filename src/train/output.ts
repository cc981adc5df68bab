/**
 * One output policy for every command that writes (`--out`, `--hf`):
 * - an output path that already exists is refused unless it is the command's own resumable output, or `--force`
 *   is given; `.`, `/`, the home directory, a folder holding the current directory and the command's own inputs
 *   (`--init`, `--model`) are refused even with `--force`;
 * - the parent must be writable, checked before any work starts, so a long run never fails at its end;
 * - the output is written to a temporary sibling and renamed into place, so a crash leaves the old output or the
 *   new one, never half of one; temporaries that a killed process left behind are removed on the next write;
 * - permission, read-only and disk-full errors become `OutputError`s naming the path.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, renameSync, rmdirSync, rmSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { OutputError, systemErrorMessage } from "../engine/errors.js";

export type OutputSpec = {
  /** The flag that named the path, for messages (`--out`, `--hf`). */
  flag: string;
  /** What is written, for messages ("fine-tuned checkpoint", "dataset"). */
  what: string;
  /** A file or a directory. */
  kind: "file" | "dir";
  /** Replace an existing output (never a protected path). */
  force?: boolean;
  /** Paths this command reads (`--init`, `--model`): the output may neither be, hold, nor sit inside one. */
  inputs?: (string | undefined)[];
};

/** A system error (EACCES, EROFS, ENOSPC, …) met while writing `out`, as a typed error naming the path. */
export function outputErrorFrom(e: unknown, out: string): unknown {
  const message = systemErrorMessage(e);
  return message ? new OutputError(`${message}, while writing ${out}; choose a writable location with free space`) : e;
}

const isInside = (child: string, parent: string) => {
  const r = relative(parent, child);
  return r === "" || (r !== ".." && !r.startsWith(`..${sep}`) && !isAbsolute(r));
};

/** The canonical form of a path (symlinks followed where they exist), for comparisons. */
function canonical(path: string): string {
  let p = resolve(path);
  const tail: string[] = [];
  while (!existsSync(p) && dirname(p) !== p) {
    tail.unshift(basename(p));
    p = dirname(p);
  }
  try {
    p = realpathSync(p);
  } catch {
    /* keep the resolved path */
  }
  return join(p, ...tail);
}

/** Why `path` may never be replaced, or null. */
function protectedReason(path: string, inputs: (string | undefined)[]): string | null {
  const p = canonical(path);
  if (dirname(p) === p) return "it is the file system's root";
  if (p === canonical(homedir())) return "it is your home directory";
  const cwd = canonical(process.cwd());
  if (p === cwd) return "it is the current directory";
  if (isInside(cwd, p)) return "it holds the current directory";
  for (const input of inputs) {
    if (!input) continue;
    const i = canonical(input);
    if (p === i) return `it is ${input}, which this command reads`;
    if (isInside(i, p)) return `it holds ${input}, which this command reads`;
    if (isInside(p, i)) return `it is inside ${input}, which this command reads`;
  }
  return null;
}

/** The nearest existing folder at or above `path`, checked to be a writable folder. */
function checkWritableParent(path: string, spec: OutputSpec): void {
  let dir = dirname(path);
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  if (!statSync(dir).isDirectory()) throw new OutputError(`${spec.flag} ${path} cannot be created: ${dir} is a file, not a folder`);
  // A real write, not a permission check: root passes access() even on a read-only file system.
  const probe = join(dir, `.d2v-write-probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
  } catch (e) {
    const message = systemErrorMessage(e) ?? (e as Error).message;
    throw new OutputError(`${spec.flag} ${path} cannot be written: ${dir} is not writable (${message}); choose another location`);
  }
}

function describeExisting(path: string): string {
  const st = lstatSync(path);
  if (!st.isDirectory()) return `a file of ${st.size} bytes`;
  const n = readdirSync(path).length;
  return n === 0 ? "an empty folder" : `a folder of ${n} ${n === 1 ? "entry" : "entries"}`;
}

/**
 * Checks an output path before any work: refuses protected paths, an existing output without `--force`, and an
 * unwritable location. Returns the absolute path. `ownOutput` says whether an existing path is this command's own
 * resumable output (which the command then continues or refuses by its own rules).
 */
export function checkOutput(path: string, spec: OutputSpec, ownOutput?: (path: string) => boolean): string {
  const out = resolve(path);
  const exists = existsSync(out) || isDanglingLink(out);
  const protectedWhy = protectedReason(out, spec.inputs ?? []);
  if (protectedWhy && exists) {
    throw new OutputError(`${spec.flag} ${path} cannot receive the ${spec.what}: ${protectedWhy}; name a new path, e.g. ${spec.flag} runs/<name>`);
  }
  if (exists && !(ownOutput?.(out) ?? false)) {
    if (spec.kind === "dir" && statSync(out, { throwIfNoEntry: false })?.isDirectory() && readdirSync(out).length === 0) return out;
    if (!spec.force) {
      throw new OutputError(`${spec.flag} ${path} already exists (${describeExisting(out)}); choose a new path, or pass --force to replace it with the ${spec.what}`);
    }
  }
  checkWritableParent(out, spec);
  return out;
}

function isDanglingLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

const temporaryName = (out: string, tag: "tmp" | "old") => join(dirname(out), `.${basename(out)}.${tag}-${process.pid}`);

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The temporaries (`.name.tmp-PID`, `.name.old-PID`) that processes no longer running left beside `out`. */
export function staleTemporaries(out: string): { path: string; tag: "tmp" | "old"; pid: number }[] {
  const parent = dirname(out);
  if (!existsSync(parent)) return [];
  const prefix = `.${basename(out)}.`;
  const found: { path: string; tag: "tmp" | "old"; pid: number }[] = [];
  for (const name of readdirSync(parent)) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(tmp|old)-(\d+)$/.exec(name.slice(prefix.length));
    if (!m) continue;
    const pid = Number(m[2]);
    if (!processAlive(pid)) found.push({ path: join(parent, name), tag: m[1] as "tmp" | "old", pid });
  }
  return found;
}

/**
 * Finishes a replacement that a killed process left half done, then removes stale temporaries. A replacement writes
 * the new copy completely (`.name.tmp-PID`), moves the old one aside (`.name.old-PID`), renames the new one into
 * place and deletes the old. So when `out` is missing, a `tmp` beside an `old` of the same process is complete and
 * becomes `out`; an `old` alone is restored; a `tmp` alone was never finished and is dropped.
 */
export function recoverInterruptedReplace(out: string): { recovered: string | null; removed: string[] } {
  const stale = staleTemporaries(out);
  let recovered: string | null = null;
  if (!existsSync(out)) {
    const olds = stale.filter((s) => s.tag === "old").sort((a, b) => b.pid - a.pid);
    for (const old of olds) {
      const tmp = stale.find((s) => s.tag === "tmp" && s.pid === old.pid);
      const pick = tmp ?? old;
      renameSync(pick.path, out);
      recovered = pick.path;
      break;
    }
  }
  const removed: string[] = [];
  for (const s of stale) {
    if (s.path === recovered || !existsSync(s.path)) continue;
    rmSync(s.path, { recursive: true, force: true });
    removed.push(s.path);
  }
  return { recovered, removed };
}

/**
 * Writes an output atomically: `fill` writes into a temporary sibling (a folder for `kind: "dir"`, a file path
 * otherwise), which then replaces `out`. Nothing is left behind when `fill` fails.
 */
export async function writeOutput<T>(out: string, kind: "file" | "dir", fill: (tmp: string) => Promise<T> | T): Promise<T> {
  const tmp = temporaryName(out, "tmp");
  const old = temporaryName(out, "old");
  try {
    mkdirSync(dirname(out), { recursive: true });
    recoverInterruptedReplace(out);
    rmSync(tmp, { recursive: true, force: true });
    if (kind === "dir") mkdirSync(tmp);
  } catch (e) {
    throw outputErrorFrom(e, out);
  }
  try {
    const result = await fill(tmp);
    if (existsSync(out) || isDanglingLink(out)) {
      renameSync(out, old);
      renameSync(tmp, out);
      rmSync(old, { recursive: true, force: true });
    } else renameSync(tmp, out);
    return result;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw outputErrorFrom(e, out);
  }
}
