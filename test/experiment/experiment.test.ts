import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { ConfigError } from "../../src/engine/errors.js";
import { checkClaim } from "../../src/experiment/report.js";
import type { JobResult } from "../../src/experiment/run.js";
import { loadExperiment, settingSlug } from "../../src/experiment/spec.js";
import { ROOT } from "../helpers.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");

function d2v(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, D2V_THREADS: "2" } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const MICRO = { model: { dim: 16, layers: 2, heads: 2, ffnDim: 32 }, train: { batchSize: 8, warmupSteps: 1, checkpointEvery: 2 } };

function experimentFile(dir: string, over: Record<string, unknown> = {}): string {
  const spec = {
    name: "micro",
    modality: "vision",
    preset: "tiny",
    seeds: [1],
    pretrain: { steps: 60, config: MICRO },
    finetune: { args: ["--epochs", "1", "--per-class", "2"] },
    eval: { metric: "accuracy", higherIsBetter: true },
    settings: [
      { name: "data2vec (K=2)" },
      { name: "scratch", scratch: true },
      {
        name: "collapse",
        expectCollapse: true,
        config: { data2vec: { ema: { tauStart: 0, tauEnd: 0, annealSteps: 0 }, targetNorm: "none", targetNormAfterAverage: "none", minTargetVar: 10, minPredVar: 10, collapseWarmupSteps: 2 } },
      },
    ],
    claims: [{ better: "data2vec (K=2)", than: "scratch", claim: "pretraining helps" }],
    ...over,
  };
  const path = join(dir, "exp.json");
  writeFileSync(path, JSON.stringify(spec));
  return path;
}

test("experiment files are validated in full before anything runs, with the field and the setting named", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-exp-"));
  assert.throws(() => loadExperiment(experimentFile(dir, { sedes: [1] })), (e: Error) => e instanceof ConfigError && /unknown field "sedes"/.test(e.message));
  assert.throws(() => loadExperiment(experimentFile(dir, { settings: [{ name: "a" }, { name: "a" }] })), /"a" is used twice/);
  assert.throws(() => loadExperiment(experimentFile(dir, { settings: [{ name: "s", scratch: true }] })), /at least one pretrained/);
  assert.throws(() => loadExperiment(experimentFile(dir, { claims: [{ better: "data2vec (K=2)", than: "nope", claim: "x" }] })), /no setting is named "nope"/);
  // A pretraining config error inside one setting: caught now, not an hour into the grid.
  assert.throws(
    () => loadExperiment(experimentFile(dir, { settings: [{ name: "ok" }, { name: "bad K", config: { data2vec: { topK: 9 } } }], claims: [] })),
    (e: Error) => e instanceof ConfigError && /setting "bad K"/.test(e.message) && /exceeds the 2 layers/.test(e.message),
  );
  assert.throws(() => loadExperiment(experimentFile(dir, { settings: [{ name: "s", scratch: true, config: { data2vec: { topK: 1 } } }, { name: "p" }] })), /takes no pretraining config/);
  assert.throws(() => loadExperiment(join(dir, "missing.json")), /cannot read experiment file/);
  assert.equal(settingSlug("data2vec (K=2)"), "data2vec-k-2");
  // A report of runs that do not exist is an error naming the folder, not an empty report.
  const none = d2v("experiment", experimentFile(dir), "--out", join(dir, "never-ran"), "--report-only");
  assert.equal(none.code, 2);
  assert.match(none.stderr, /never-ran holds no runs of "micro" yet; run `d2v experiment/);
  assert.ok(!existsSync(join(dir, "never-ran")));
});

test("claims are checked seed by seed, in the metric's direction", () => {
  const spec = loadExperiment(experimentFile(mkdtempSync(join(tmpdir(), "d2v-exp-")), { seeds: [1, 2, 3] }));
  const r = (setting: string, seed: number, metric?: number): JobResult => ({ setting, seed, status: metric === undefined ? "collapsed" : "ok", metric, seconds: { pretrain: 0, finetune: 0, eval: 0 } });
  const claim = spec.claims[0];
  const verdict = (a: number[], b: number[]) => checkClaim(spec, [...a.map((m, i) => r("data2vec (K=2)", i + 1, m)), ...b.map((m, i) => r("scratch", i + 1, m))], claim);
  assert.equal(verdict([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]).verdict, "agrees");
  assert.deepEqual(verdict([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]).differences.map((d) => +d.toFixed(6)), [0.1, 0.1, 0.1]);
  assert.equal(verdict([0.3, 0.4, 0.5], [0.4, 0.5, 0.6]).verdict, "disagrees");
  assert.equal(verdict([0.5, 0.4, 0.7], [0.4, 0.5, 0.6]).verdict, "mixed");
  assert.equal(verdict([0.5, 0.4, 0.7], [0.5, 0.4, 0.7]).verdict, "no difference");
  assert.equal(checkClaim(spec, [r("data2vec (K=2)", 1), r("scratch", 1, 0.3)], claim).verdict, "disagrees: data2vec (K=2) collapsed");
  assert.equal(checkClaim(spec, [r("data2vec (K=2)", 1, 0.3), r("scratch", 1)], claim).verdict, "agrees: scratch collapsed");
  assert.equal(checkClaim(spec, [r("data2vec (K=2)", 1), r("scratch", 1)], claim).verdict, "n/a: both collapsed");
  // Lower is better (WER): a lower error agrees.
  const wer = { ...spec, eval: { ...spec.eval, metric: "wer", higherIsBetter: false } };
  assert.equal(checkClaim(wer, [r("data2vec (K=2)", 1, 0.2), r("scratch", 1, 0.3)], claim).verdict, "agrees");
});

test("d2v experiment: runs the grid, stops cleanly on SIGTERM and resumes, records a collapse, skips finished jobs, writes the report", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-exp-"));
  const file = experimentFile(dir);
  const out = join(dir, "out");
  const pre = join(out, "data2vec-k-2", "seed-1", "pretrain");
  const metricsPath = join(pre, "metrics.jsonl");
  const steps = () => (existsSync(metricsPath) ? readFileSync(metricsPath, "utf8").trim().split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { step: number }).step) : []);

  // Interrupted during the first pretraining: the grid stops, the checkpoint holds every logged update.
  const child = spawn(process.execPath, [CLI, "experiment", file, "--out", out], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  while (steps().length < 3) await new Promise((r) => setTimeout(r, 50));
  child.kill("SIGTERM");
  assert.equal(await new Promise((r) => child.on("exit", r)), 143, stderr); // 128 + SIGTERM, after the clean save
  assert.match(stderr, /interrupted; run the same command again to continue/);
  const saved = JSON.parse(readFileSync(join(pre, "checkpoint", "state.json"), "utf8")) as { step: number };
  assert.ok(saved.step < 60 && saved.step === steps().length, `checkpoint at ${saved.step}, ${steps().length} updates logged`);
  assert.ok(!existsSync(join(out, "data2vec-k-2", "seed-1", "result.json")));

  const first = d2v("experiment", file, "--out", out);
  assert.equal(first.code, 0, first.stderr);
  assert.match(readFileSync(join(out, "data2vec-k-2", "seed-1", "log.txt"), "utf8"), /pretrain .*--resume/, "the interrupted pretraining is resumed");
  assert.deepEqual(steps(), Array.from({ length: 60 }, (_, i) => i + 1));

  const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { results: JobResult[] };
  const by = new Map(results.results.map((r) => [r.setting, r]));
  const main = by.get("data2vec (K=2)")!;
  assert.equal(main.status, "ok");
  assert.ok(main.metric! >= 0 && main.metric! <= 1);
  assert.equal(main.pretrain!.updates, 60);
  assert.equal(by.get("scratch")!.status, "ok");
  assert.equal(by.get("scratch")!.pretrain, undefined);
  assert.equal(by.get("collapse")!.status, "collapsed");
  assert.match(by.get("collapse")!.collapse!, /collapsed at update 2/);
  assert.ok(!existsSync(join(out, "collapse", "seed-1", "finetune")), "a collapsed run is not fine-tuned");

  const report = readFileSync(join(out, "report.md"), "utf8");
  assert.match(report, /\| data2vec \(K=2\) \| \d+\.\d \(1 seed\) \| /, "one seed is shown without a spread");
  assert.match(report, /\| collapse \| – \| collapsed \|.*\*\*collapsed\*\* in 1 of 1 .* — expected \|/);
  assert.match(report, /\| pretraining helps \(data2vec \(K=2\) vs scratch\) \| [+-]\d+\.\d \| (agrees|disagrees) \|/);
  for (const svg of ["pretrain-loss.svg", "variance.svg", "metric.svg"]) assert.match(readFileSync(join(out, svg), "utf8"), /^<svg /);
  assert.match(first.stdout, /^# Experiment: micro/);

  // A rerun runs only what is missing.
  rmSync(join(out, "scratch", "seed-1", "result.json"));
  const second = d2v("experiment", file, "--out", out);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(second.stderr.match(/\[\d\/3\] [^\n]*/g), ["[2/3] scratch, seed 1"]);

  // A changed fine-tuning keeps every pretrained model and runs the downstream again (the collapse stands).
  const spec = JSON.parse(readFileSync(file, "utf8")) as { finetune: { args: string[] }; pretrain: { config: Record<string, unknown> } };
  const pretrainLog = () => (readFileSync(join(out, "data2vec-k-2", "seed-1", "log.txt"), "utf8").match(/\$ d2v pretrain/g) ?? []).length;
  const pretrainings = pretrainLog();
  spec.finetune.args = ["--epochs", "2", "--per-class", "2"];
  writeFileSync(file, JSON.stringify(spec));
  const refit = d2v("experiment", file, "--out", out);
  assert.equal(refit.code, 0, refit.stderr);
  assert.deepEqual(refit.stderr.match(/\[\d\/3\] [^,\n]*/g), ["[1/3] data2vec (K=2)", "[2/3] scratch"]);
  assert.match(refit.stderr, /data2vec-k-2\/seed-1: fine-tuning or evaluation changed; the pretrained model is kept/);
  assert.equal(pretrainLog(), pretrainings, "nothing is pretrained again");
  assert.match(readFileSync(join(out, "data2vec-k-2", "seed-1", "log.txt"), "utf8"), /finetune .*--epochs 2 --per-class 2/);
  const refitResults = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { results: JobResult[] };
  assert.equal(refitResults.results.find((r) => r.setting === "collapse")!.status, "collapsed");

  // A changed pretraining is refused instead of mixing old and new results.
  spec.pretrain.config = { ...spec.pretrain.config, train: { warmupSteps: 3 } };
  writeFileSync(file, JSON.stringify(spec));
  const changed = d2v("experiment", file, "--out", out);
  assert.equal(changed.code, 2);
  assert.match(changed.stderr, /data2vec-k-2\/seed-1 was pretrained with other settings than "data2vec \(K=2\)" has now/);
});
