/**
 * What a user types never loses their data, never ends in a stack trace, and never drops input silently: the
 * output policy on every command that writes, typed file-system errors, settings that would be ignored, and the
 * README's commands agreeing with each other.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { HF_FIXTURES, ROOT } from "../helpers.js";
import { corpusDir } from "../train/fixtures.js";
import { brownGenreTask } from "../../src/text/brown-genre.js";
import { brownDocuments, DEFAULT_TEXT_SOURCE } from "../../src/text/pretrain.js";
import { D2vError, OutputError } from "../../src/engine/errors.js";
import { runClassify, runEmbed, runEval, runFinetune, runPretrain } from "../../src/cli/commands.js";
import { runData } from "../../src/cli/text-commands.js";
import { runHfExport, runHfRun } from "../../src/cli/hf-commands.js";
import { runAudioTranscribe, runSynthSpeech, runSynthWords } from "../../src/cli/audio-commands.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");

function d2v(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: "utf8", env: { ...process.env, D2V_THREADS: "2" } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A user error: status 2, one `error:` line, no stack trace. */
function refused(r: { code: number | null; stderr: string }, pattern: RegExp) {
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
}

const MICRO = {
  model: { vocabSize: 400, maxPositions: 32, dim: 32, layers: 2, heads: 2, ffnDim: 64 },
  data2vec: { topK: 2 },
  train: { batchSize: 4, seqLen: 32, steps: 2, warmupSteps: 5, checkpointEvery: 1 },
};

test("every command that writes refuses an existing --out, protects ., inputs and the run it reads, and says so before any work", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-rel-"));
  writeFileSync(join(dir, "notes.txt"), "my notes");
  mkdirSync(join(dir, "results"));
  writeFileSync(join(dir, "results", "table.csv"), "1,2");
  mkdirSync(join(dir, "run", "checkpoint"), { recursive: true });
  writeFileSync(join(dir, "run", "checkpoint", "config.json"), "{}");
  const hf = join(HF_FIXTURES, "text-mlm");
  const finetune = (o: object) => runFinetune({ init: "run", data: "notes.txt", out: "results", seed: 1, ...o });
  const data = (o: object) => runData({ out: "results", perClass: 16, testPerClass: 60, seed: 1, ...o });
  const cases: [() => Promise<unknown>, RegExp][] = [
    [() => data({ out: "notes.txt" }), /--out notes\.txt already exists \(a file of 8 bytes\); choose a new path, or pass --force/],
    [() => data({}), /already exists \(a folder of 1 entry\)/],
    [() => data({ out: ".", force: true }), /it is the current directory/],
    [() => runSynthWords({ out: "results", words: "yes,no", trainSpeakers: 1, testSpeakers: 1, takes: 1, seed: 1, jobs: 1 }), /already exists/],
    [() => runSynthSpeech({ out: "results", hours: 0.1, labeledMinutes: 1, testMinutes: 1, speakers: 2, seed: 1, jobs: 1 }), /already exists/],
    [() => finetune({}), /already exists/],
    [() => finetune({ out: "run", force: true }), /it is run, which this command reads/],
    [() => finetune({ out: "run/checkpoint", force: true }), /it is inside run, which this command reads/],
    [() => finetune({ data: "results/table.csv", force: true }), /it holds results\/table\.csv, which this command reads/],
    [() => runHfExport({ model: "run", hf: "results" }), /--hf results already exists/],
    [() => runHfExport({ model: "run", hf: "run", force: true }), /which this command reads/],
    [() => runHfRun(["hello"], { model: hf, out: "notes.txt" }), /--out notes\.txt already exists/],
    [() => runPretrain({ out: "notes.txt" }), /--out .*notes\.txt is a file; a pretraining run is a folder/],
    [() => runPretrain({ out: "results" }), /already exists \(a folder of 1 entry\); choose a new path, or pass --force/],
    [() => runPretrain({ out: "notes.txt/sub" }), /notes\.txt is a file, not a folder/],
    // sysfs refuses new folders, even to root: a typed error naming the location, before any work.
    [() => data({ out: "/sys/d2v-test" }), /\/sys\/d2v-test cannot be written: \/sys is not writable \(.*(EPERM|EROFS|EACCES)/],
    [() => runPretrain({ out: "/sys/d2v-test" }), /\/sys is not writable/],
    [() => runHfRun(["hi"], { model: hf, out: "/sys/out.safetensors" }), /\/sys is not writable/],
  ];
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    for (const [run, pattern] of cases) await assert.rejects(run(), (e: Error) => e instanceof OutputError && pattern.test(e.message));
    assert.equal(readFileSync("notes.txt", "utf8"), "my notes");
    assert.equal(readFileSync(join("results", "table.csv"), "utf8"), "1,2");
    assert.deepEqual(readdirSync(".").sort(), ["notes.txt", "results", "run"], "nothing else written");
    // --force replaces atomically.
    await data({ force: true });
    assert.ok(existsSync(join("results", "train.jsonl")) && !existsSync(join("results", "table.csv")));
    assert.deepEqual(readdirSync(".").sort(), ["notes.txt", "results", "run"]);
  } finally {
    process.chdir(cwd);
  }
  // Through the command line: status 2 and one line, no stack trace.
  refused(d2v(dir, "finetune", "--init", "run", "--data", "notes.txt", "--out", "run", "--force"), /error: --out run cannot receive the fine-tuned checkpoint: it is run, which this command reads/);
});

/** One micro pretraining run, shared: its folder (`run` inside it), config file, corpus and the command's stderr. */
const pretrained = (() => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-rel-"));
  const cfg = join(dir, "micro.json");
  writeFileSync(cfg, JSON.stringify(MICRO));
  const data = corpusDir(4);
  const r = d2v(dir, "pretrain", "--config", cfg, "--data", data, "--out", "run", "--quiet");
  assert.equal(r.code, 0, r.stderr);
  return { dir, cfg, data, stderr: r.stderr };
})();

test("pretraining: settings --resume would ignore are refused, a short run warns about its warm-up, a half-done checkpoint swap is finished", async () => {
  const { cfg, data, stderr } = pretrained;
  const dir = mkdtempSync(join(tmpdir(), "d2v-rel-"));
  cpSync(join(pretrained.dir, "run"), join(dir, "run"), { recursive: true });
  assert.match(stderr, /warning: the run is 2 updates but the learning-rate warm-up is 5/);

  const run = join(dir, "run");
  const refusals: [object, RegExp][] = [
    [{ out: run, resume: true, config: cfg }, /--resume continues a run with the settings it was started with, so --config would be ignored/],
    [{ out: run, resume: true, lr: 1, seed: 3 }, /so --lr, --seed would be ignored: drop them/],
    [{ out: run, resume: true, modality: "vision" }, /run is a text run, not vision/],
    [{ out: join(dir, "elsewhere"), resume: true }, /elsewhere does not exist/],
    [{ out: run, config: cfg, data }, /already holds a checkpoint; pass --resume/],
  ];
  for (const [o, pattern] of refusals) await assert.rejects(runPretrain(o), (e: Error) => e instanceof D2vError && pattern.test(e.message));

  // Killed between the two renames of a checkpoint swap (the old copy moved aside, the new one not yet in place):
  // resume finishes the swap and removes the temporaries.
  const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
  const ckpt = join(dir, "run", "checkpoint");
  cpSync(ckpt, join(dir, "run", `.checkpoint.tmp-${dead}`), { recursive: true });
  renameSync(ckpt, join(dir, "run", `.checkpoint.old-${dead}`));
  mkdirSync(join(dir, "run", `.checkpoint.tmp-${dead + 1}`)); // another killed run's partial copy
  const resumed = d2v(dir, "pretrain", "--out", "run", "--resume", "--steps", "3", "--data", data, "--quiet");
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /finished a checkpoint swap that a stopped process left half done/);
  assert.match(resumed.stderr, /resuming at update 2 of 3/);
  assert.deepEqual(readdirSync(join(dir, "run")).sort(), ["checkpoint", "metrics.jsonl"]);
  assert.equal(JSON.parse(readFileSync(join(ckpt, "state.json"), "utf8")).step, 3);
});

test("classify takes our text classifiers; transcribe and embed name the model's modality; binary text and ignored options are refused", async () => {
  const { dir, cfg } = pretrained;
  writeFileSync(join(dir, "train.jsonl"), ["a happy day", "a sad night", "happy happy", "so sad"].map((text, i) => JSON.stringify({ text, label: i % 2 ? "sad" : "happy" })).join("\n"));
  const ft = d2v(dir, "finetune", "--init", "run", "--data", "train.jsonl", "--out", "clf", "--epochs", "1", "--quiet");
  assert.equal(ft.code, 0, ft.stderr);
  const c = d2v(dir, "classify", "--model", "clf", "--top", "2", "a happy day", "a sad night");
  assert.equal(c.code, 0, c.stderr);
  const lines = c.stdout.trim().split("\n").map((l) => JSON.parse(l) as { text: string; top: { label: string; probability: number }[] });
  assert.deepEqual(lines.map((l) => l.text), ["a happy day", "a sad night"]);
  for (const l of lines) {
    assert.deepEqual(l.top.map((t) => t.label).sort(), ["happy", "sad"]);
    assert.ok(Math.abs(l.top[0].probability + l.top[1].probability - 1) < 1e-5 && l.top[0].probability >= l.top[1].probability);
  }
  writeFileSync(join(dir, "garbage.bin"), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00]));
  const refusals: [() => Promise<unknown>, RegExp][] = [
    [() => runAudioTranscribe(["x.wav"], { model: join(dir, "clf") }), /clf is a text model; d2v transcribe needs a speech transcriber/],
    [() => runClassify(["some text"], { model: join(dir, "run"), top: 3 }), /pretrained model without a classifier head/],
    [() => runEmbed([], { model: join(dir, "run"), file: join(dir, "garbage.bin"), pool: "mean" }), /garbage\.bin looks like a binary file/],
    // Options the model would not use are refused, not ignored.
    [() => runFinetune({ init: join(dir, "run"), data: join(dir, "train.jsonl"), out: join(dir, "x"), seed: 1, preset: "small", config: cfg }), /--preset, --config \(the architecture and tokenizer come from --init/],
    [() => runFinetune({ init: join(dir, "run"), data: join(dir, "train.jsonl"), out: join(dir, "x"), seed: 1, augment: true, maxSeconds: 2 }), /--augment \(vision only; this is a text model\); --max-seconds \(audio only/],
    [() => runFinetune({ init: join(dir, "run"), data: join(dir, "train.jsonl"), out: join(dir, "x"), seed: 1, augment: false }), /--no-augment \(vision only; this is a text model\)/],
    [() => runFinetune({ scratch: true, modality: "vision", out: join(dir, "x"), seed: 1, linearProbe: true, augment: false }), /--no-augment \(a linear probe trains its head/],
    [() => runFinetune({ scratch: true, modality: "vision", out: join(dir, "x"), seed: 1, linearProbe: true, epochs: 5 }), /--epochs \(a linear probe trains its head for a fixed 500 full-batch steps/],
    [() => runEval({ model: join(dir, "clf"), data: join(dir, "train.jsonl"), beam: 4 }), /--beam is for speech transcribers; .*clf is a text model/],
  ];
  for (const [run, pattern] of refusals) await assert.rejects(run(), (e: Error) => e instanceof D2vError && pattern.test(e.message));
});

test("the default text corpus keeps the brown-genre test documents out", () => {
  const task = brownGenreTask();
  const docs = brownDocuments(DEFAULT_TEXT_SOURCE.brown);
  assert.equal(docs.length, 500 - task.testDocIds.length);
  const testPassages = task.test.filter((_, i) => i % 12 === 0).map((t) => t.text);
  for (const d of docs.map((x) => x.replace(/\s+/g, " "))) for (const p of testPassages) assert.ok(!d.includes(p));
});

test("the README's first command, its resume line and its Quick tour name the same run directory", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const commands = readme.split("\n").filter((l) => /d2v(\s+--)?\s+(pretrain|finetune|embed|tokenize|eval)\b/.test(l));
  const outOf = (line: string) => /--out\s+(\S+)/.exec(line)?.[1] ?? null;
  const first = commands[0];
  assert.match(first, /pretrain/);
  const firstOut = outOf(first) ?? "runs/pretrain-text-tiny";
  const written = new Set(commands.filter((l) => /pretrain\b/.test(l) && !/--resume/.test(l)).map(outOf));
  for (const l of commands.filter((c) => /--resume/.test(c))) assert.ok(written.has(outOf(l)), `${l.trim()} resumes a run no command writes`);
  const quickTour = readme.slice(readme.indexOf("## Quick tour"), readme.indexOf("### Vision"));
  const inits = [...quickTour.matchAll(/--(?:init|model|tokenizer)\s+(runs\/[^\s/]+)/g)].map((m) => m[1]);
  const pretrained = [...quickTour.matchAll(/pretrain[^\n]*--out\s+(\S+)/g)].map((m) => m[1]);
  assert.ok(inits.some((p) => p === firstOut), `the Quick tour builds on the first command's ${firstOut}`);
  for (const p of inits) assert.ok(pretrained.includes(p) || /--out\s+/.test(quickTour) && quickTour.includes(`--out ${p}`), `${p} is written by a Quick tour command`);
});
