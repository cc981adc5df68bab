#!/usr/bin/env node
/**
 * Builds the optional native engine (native/d2v_native.c → native/build/Release/d2v_native.node) with node-gyp,
 * against the local Node headers and Debian's OpenBLAS (`apt-get install libopenblas-dev`). Nothing is
 * downloaded. Runs after `npm install` / `npm ci`, and as `npm run build:native`.
 *
 * It never fails the install: when something is missing it says what, and the engine runs on wasm.
 * `npm run build:native -- --strict` exits 1 instead (for CI, which must exercise the native path).
 */
import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const strict = process.argv.includes("--strict");
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const native = join(root, "native");
const built = join(native, "build", "Release", "d2v_native.node");
const APT = "apt-get install libopenblas-dev";

function done(ok, message) {
  console.log(`d2v native engine: ${message}`);
  process.exit(ok || !strict ? 0 : 1);
}

if (process.env.D2V_SKIP_NATIVE_BUILD === "1") done(true, "build skipped (D2V_SKIP_NATIVE_BUILD=1); the wasm engine will run");

// Node's own headers: npm's nodedir setting, the installed Node's include/ folder, or Debian's libnode-dev.
const candidates = [process.env.npm_config_nodedir, resolve(process.execPath, "..", ".."), "/usr"].filter(Boolean);
const nodedir = candidates.find((d) => existsSync(join(d, "include", "node", "node_api.h")));
if (!nodedir) done(false, `not built: no Node headers (include/node/node_api.h) under ${candidates.join(", ")}; the wasm engine will run`);

// npm's own node-gyp (npm sets npm_config_node_gyp for lifecycle scripts), else one found beside npm.
const gypCandidates = [
  process.env.npm_config_node_gyp,
  process.env.npm_execpath && join(dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
].filter(Boolean);
let gyp = gypCandidates.find((p) => existsSync(p));
if (!gyp) {
  try {
    gyp = createRequire(import.meta.url).resolve("node-gyp/bin/node-gyp.js");
  } catch {
    done(false, "not built: node-gyp not found (it ships with npm); the wasm engine will run");
  }
}

// node-gyp also reads npm_config_nodedir; both name the local headers, so it never downloads them.
const env = { ...process.env, npm_config_nodedir: nodedir };
const r = spawnSync(process.execPath, [gyp, "rebuild", `--nodedir=${nodedir}`], { cwd: native, encoding: "utf8", env });
if (r.status !== 0) {
  rmSync(join(native, "build"), { recursive: true, force: true });
  const log = `${r.stdout ?? ""}\n${r.stderr ?? ""}`;
  const why = /cblas\.h|lopenblas|cannot find -l/.test(log)
    ? `OpenBLAS's headers or library are missing (${APT})`
    : log.split("\n").filter((l) => /error/i.test(l)).slice(0, 3).join(" | ") || `node-gyp exited with ${r.status}`;
  done(false, `not built: ${why}; the wasm engine will run`);
}

// Load it once here, so that a library missing at run time is reported now rather than at the first command.
try {
  const addon = createRequire(import.meta.url)(built);
  const info = addon.info();
  done(true, `built (${/OpenBLAS\s+[\d.]+/.exec(info.config)?.[0] ?? "OpenBLAS"}, core ${info.corename})`);
} catch (err) {
  done(false, `built but cannot be loaded (${String(err.message).split("\n")[0]}); the wasm engine will run`);
}
