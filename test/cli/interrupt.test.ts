import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { ROOT } from "../helpers.js";
import { corpusDir } from "../train/fixtures.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");

test("Ctrl-C during pretraining saves a checkpoint at the last finished update, exits 130, and --resume continues from it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-int-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      model: { vocabSize: 400, maxPositions: 32, dim: 32, layers: 2, heads: 2, ffnDim: 64 },
      data2vec: { topK: 2 },
      train: { batchSize: 4, seqLen: 32, steps: 500, warmupSteps: 1, checkpointEvery: 1000 },
    }),
  );
  const out = join(dir, "run");
  const data = corpusDir();
  const child = spawn(process.execPath, [CLI, "pretrain", "--config", cfg, "--data", data, "--out", out, "--quiet"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const metrics = join(out, "metrics.jsonl");
  const lines = () => (existsSync(metrics) ? readFileSync(metrics, "utf8").trim().split("\n").filter(Boolean).length : 0);
  while (lines() < 3) await new Promise((r) => setTimeout(r, 100));
  child.kill("SIGINT");
  const code = await new Promise<number | null>((r) => child.on("exit", r));
  assert.equal(code, 130, stderr); // 128 + SIGINT, as a shell reports a Ctrl-C, after the clean save
  assert.match(stderr, /interrupted; checkpoint saved/);
  const state = JSON.parse(readFileSync(join(out, "checkpoint", "state.json"), "utf8"));
  assert.equal(state.step, lines(), "the checkpoint holds every update that was logged");

  const resumed = spawn(process.execPath, [CLI, "pretrain", "--out", out, "--resume", "--steps", String(state.step + 2), "--quiet"], { stdio: ["ignore", "pipe", "pipe"] });
  let err2 = "";
  resumed.stderr.on("data", (d) => (err2 += d));
  assert.equal(await new Promise((r) => resumed.on("exit", r)), 0, err2);
  assert.equal(JSON.parse(readFileSync(join(out, "checkpoint", "state.json"), "utf8")).step, state.step + 2);
  assert.equal(lines(), state.step + 2);
});
