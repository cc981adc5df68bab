import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { heapFullMessage, isHeapFull, OutputError, systemErrorMessage } from "../../src/engine/errors.js";
import { checkOutput, outputErrorFrom, recoverInterruptedReplace, writeOutput } from "../../src/train/output.js";

const dir = () => mkdtempSync(join(tmpdir(), "d2v-out-"));
/** The pid of a process that has exited (stands for a killed d2v). */
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!;
const spec = (extra: object = {}) => ({ flag: "--out", what: "dataset", kind: "dir" as const, ...extra });

test("an existing output is refused without --force, and protected paths even with it", () => {
  const d = dir();
  writeFileSync(join(d, "file.txt"), "mine");
  mkdirSync(join(d, "full"));
  writeFileSync(join(d, "full", "a"), "x");
  mkdirSync(join(d, "empty"));
  assert.throws(() => checkOutput(join(d, "file.txt"), spec()), (e: Error) => e instanceof OutputError && /already exists \(a file of 4 bytes\).*--force/.test(e.message));
  assert.throws(() => checkOutput(join(d, "full"), spec()), /a folder of 1 entry/);
  assert.equal(checkOutput(join(d, "full"), spec({ force: true })), join(d, "full"));
  assert.equal(checkOutput(join(d, "empty"), spec()), join(d, "empty"), "an empty folder is free to use");
  assert.equal(checkOutput(join(d, "new", "deeper"), spec()), join(d, "new", "deeper"));
  // The current directory, a folder holding it, the home directory and the root: never, even with --force.
  for (const p of [".", "..", homedir(), "/"]) {
    assert.throws(() => checkOutput(p, spec({ force: true })), (e: Error) => e instanceof OutputError && /current directory|your home|root/.test(e.message), p);
  }
  // Inputs: the output may not be one, hold one, or sit inside one.
  mkdirSync(join(d, "run", "checkpoint"), { recursive: true });
  writeFileSync(join(d, "run", "checkpoint", "config.json"), "{}");
  const inputs = [join(d, "run")];
  assert.throws(() => checkOutput(join(d, "run"), spec({ force: true, inputs })), /which this command reads/);
  assert.throws(() => checkOutput(join(d, "run", "checkpoint"), spec({ force: true, inputs })), /inside .*which this command reads/);
  assert.throws(() => checkOutput(d, spec({ force: true, inputs })), /holds .*which this command reads/);
  // A parent that is a file.
  assert.throws(() => checkOutput(join(d, "file.txt", "sub"), spec()), (e: Error) => e instanceof OutputError && /is a file, not a folder/.test(e.message));
  // This command's own resumable output is left to the command.
  assert.equal(checkOutput(join(d, "full"), spec(), () => true), join(d, "full"));
});

test("writeOutput replaces atomically and leaves nothing when writing fails", async () => {
  const d = dir();
  const out = join(d, "data");
  mkdirSync(out);
  writeFileSync(join(out, "old.txt"), "old");
  await assert.rejects(
    writeOutput(out, "dir", (tmp) => {
      writeFileSync(join(tmp, "half.txt"), "half");
      throw new Error("disk on fire");
    }),
    /disk on fire/,
  );
  assert.deepEqual(readdirSync(d), ["data"], "no temporary left behind");
  assert.equal(readFileSync(join(out, "old.txt"), "utf8"), "old", "the old output is intact");
  await writeOutput(out, "dir", (tmp) => writeFileSync(join(tmp, "new.txt"), "new"));
  assert.deepEqual(readdirSync(out), ["new.txt"]);
  assert.deepEqual(readdirSync(d), ["data"]);
  await writeOutput(join(d, "f.bin"), "file", (tmp) => writeFileSync(tmp, "bytes"));
  assert.equal(readFileSync(join(d, "f.bin"), "utf8"), "bytes");
});

test("a replacement cut between its two renames is finished, and stale temporaries are removed", () => {
  const d = dir();
  const out = join(d, "checkpoint");
  const make = (p: string, step: number) => {
    mkdirSync(p);
    writeFileSync(join(p, "state.json"), JSON.stringify({ step }));
  };
  // Killed after moving the old copy aside, before renaming the new one into place: the new one wins.
  const pid = deadPid();
  make(join(d, `.checkpoint.old-${pid}`), 10);
  make(join(d, `.checkpoint.tmp-${pid}`), 20);
  const r = recoverInterruptedReplace(out);
  assert.equal(r.recovered, join(d, `.checkpoint.tmp-${pid}`));
  assert.equal(JSON.parse(readFileSync(join(out, "state.json"), "utf8")).step, 20);
  assert.deepEqual(readdirSync(d), ["checkpoint"], "the old copy is removed");
  // Only an old copy is there: it is restored.
  renameSync(out, join(d, `.checkpoint.old-${pid}`));
  recoverInterruptedReplace(out);
  assert.equal(JSON.parse(readFileSync(join(out, "state.json"), "utf8")).step, 20);
  // A new copy being written when the process died: incomplete, removed; the checkpoint stays.
  make(join(d, `.checkpoint.tmp-${pid}`), 30);
  const other = deadPid();
  make(join(d, `.checkpoint.old-${other}`), 5);
  const cleaned = recoverInterruptedReplace(out);
  assert.equal(cleaned.recovered, null);
  assert.equal(cleaned.removed.length, 2);
  assert.equal(JSON.parse(readFileSync(join(out, "state.json"), "utf8")).step, 20);
  // A live process's temporaries are never touched.
  make(join(d, `.checkpoint.tmp-${process.pid}`), 40);
  recoverInterruptedReplace(out);
  assert.ok(existsSync(join(d, `.checkpoint.tmp-${process.pid}`)));
});

test("file system errors become typed errors that name the path and the reason", () => {
  const fake = (code: string, syscall: string, path: string) => Object.assign(new Error(`${code}: boom`), { code, syscall, path });
  const ro = outputErrorFrom(fake("EROFS", "open", "/mnt/ro/x"), "/mnt/ro/x");
  assert.ok(ro instanceof OutputError);
  assert.match((ro as Error).message, /cannot open \/mnt\/ro\/x: the file system is read-only \(EROFS\)/);
  assert.match(systemErrorMessage(fake("ENOSPC", "write", "/data/m.safetensors"))!, /cannot write \/data\/m\.safetensors: the disk is full/);
  assert.match(systemErrorMessage(fake("EACCES", "mkdir", "/root/x"))!, /permission denied/);
  const plain = new Error("a bug");
  assert.equal(outputErrorFrom(plain, "/x"), plain, "other errors pass through");
  assert.equal(systemErrorMessage(plain), null);
});

test("a full heap is told apart from other errors, and the message says what to shrink, worker threads first", () => {
  const full = new RangeError("WebAssembly.Memory.grow(): Maximum memory size exceeded (memory32 limit)");
  assert.ok(isHeapFull(full));
  assert.ok(!isHeapFull(new RangeError("Invalid array length")), "an unrelated RangeError is a bug, not a full heap");
  const deferred = heapFullMessage(full, false);
  assert.match(deferred, /4 GiB heap \(WebAssembly.*memory32 limit\)/);
  assert.match(deferred, /saved before is intact/);
  assert.ok(deferred.indexOf("D2V_THREADS=1") < deferred.indexOf("--batch-size"), "on worker threads the one-thread hint comes first");
  const eager = heapFullMessage(full, true);
  assert.doesNotMatch(eager, /D2V_THREADS/, "an eager engine already runs on one thread");
  assert.match(eager, /Use a smaller batch \(--batch-size.*--max-seconds.*cloneBatch/);
});
