/**
 * Does data2vec pretraining help on speech? A synthetic corpus (`d2v data synth-speech`): pretrain the audio
 * model on the unlabeled split (transcripts unused), then fine-tune CTC on a few minutes of the labeled split,
 * from the pretrained model and from the same architecture at random initialization, over several seeds, and
 * report test CER and WER (greedy decoding).
 *
 *   node dist/experiments/speech-synth.js --data DIR [--preset small] [--steps N] [--labeled-minutes 10]
 *       [--seeds 1,2,3] [--epochs 4] [--lr 1e-3] [--max-batch-seconds 8] [--jobs 2] [--out runs/speech-synth-small]
 *
 * Both initializations get exactly the same recipe and budget: the transformer and head fine-tuned with CTC,
 * the CNN feature encoder frozen (pretrained, or at its random initialization). Pretraining resumes, and
 * finished runs are cached in <out>/results.json, so an interrupted experiment continues where it stopped.
 * Each run is a child process (jax-js's wasm heap only grows); `--jobs 2` runs two at once (on 2 cores that
 * gives about 1.3 times the throughput of one).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { tree } from "../src/engine/jax.js";
import { HostRng } from "../src/engine/random.js";
import { initEngine } from "../src/engine/runtime.js";
import { freshAudioEncoder, loadAudioCheckpoint } from "../src/audio/checkpoints.js";
import { resolveAudioConfig } from "../src/audio/config.js";
import { LIBRISPEECH_VOCAB } from "../src/audio/ctc.js";
import { libriSpeechEntries, loadClips, totalSeconds, type Clip } from "../src/audio/data.js";
import { evaluateCtc, finetuneCtc, newCtcHead, toUtterances } from "../src/audio/ctc-finetune.js";
import { pretrainAudio } from "../src/audio/pretrain.js";
import { arg, ensurePretrained, percentMeanStd } from "./common.js";

const data = resolve(arg("data", join("data", "synth-speech")));
const preset = arg("preset", "small");
const out = resolve(arg("out", join("runs", `speech-synth-${preset}`)));
const seeds = arg("seeds", "1,2,3").split(",").map(Number);
const labeledMinutes = Number(arg("labeled-minutes", "10"));
const epochs = Number(arg("epochs", "4"));
const lr = Number(arg("lr", "1e-3"));
const maskProb = Number(arg("mask-prob", "0.05"));
const maxBatchSeconds = Number(arg("max-batch-seconds", "8"));
const jobs = Number(arg("jobs", "1"));
const batchSize = 8;
const log = (m: string) => process.stderr.write(`${m}\n`);

for (const split of ["pretrain", "train", "test"]) {
  if (!existsSync(join(data, split))) {
    log(`${join(data, split)} is missing: make the corpus first, e.g. \`d2v data synth-speech --out ${data} --hours 2.5 --snr 20\``);
    process.exit(2);
  }
}

await initEngine();
const config = resolveAudioConfig(preset, undefined, { train: { steps: Number(arg("steps", String(resolveAudioConfig(preset).train.steps))) } });
const pretrainDir = join(out, "pretrain");
const m = config.model;

/** The labeled subset: a fixed random choice of utterances (the same for every run) up to the minutes asked. */
function labeledSubset(clips: Clip[]): Clip[] {
  const order = HostRng.seeded(12345).shuffle(clips.map((_, i) => i));
  const chosen: Clip[] = [];
  let seconds = 0;
  for (const i of order) {
    if (seconds >= labeledMinutes * 60) break;
    chosen.push(clips[i]);
    seconds += clips[i].samples.length / m.sampleRate;
  }
  return chosen;
}

type Result = { init: "pretrained" | "scratch"; seed: number; cer: number; wer: number; trainLoss: number[]; seconds: number; examples: string[] };

const one = process.argv.indexOf("--one");
if (one >= 0) {
  // One seed and initialization.
  const [init, seedText] = process.argv[one + 1].split(":");
  const seed = Number(seedText);
  const t0 = performance.now();
  const train = toUtterances(labeledSubset(await loadClips(libriSpeechEntries(join(data, "train")), m.sampleRate, true)), LIBRISPEECH_VOCAB);
  const test = await loadClips(libriSpeechEntries(join(data, "test")), m.sampleRate, true);
  const loaded = loadAudioCheckpoint(pretrainDir);
  let encoder = loaded.encoder;
  if (init === "scratch") {
    tree.dispose(encoder as never);
    encoder = freshAudioEncoder(loaded.run, seed);
  }
  log(`${init} seed ${seed}: ${train.length} utterances (${(totalSeconds(train.map((u) => u.clip), m.sampleRate) / 60).toFixed(1)} min) for training, ${test.length} for test`);
  const settings = { epochs, batchSize, lr, warmupFraction: 0.1, weightDecay: 0.01, seed, freezeFeatureEncoder: true, maskProb, maskLength: 10, maxBatchSeconds };
  const trained = await finetuneCtc({ encoder, head: newCtcHead(seed, m.dim, LIBRISPEECH_VOCAB.length) }, m, train, settings, {
    quiet: true,
    onEpoch: (e) => log(`  ${init} seed ${seed} epoch ${e.epoch}: loss ${e.loss.toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`),
  });
  const ev = await evaluateCtc(trained.params, m, LIBRISPEECH_VOCAB, test, { batchSize });
  const result: Result = { init: init as Result["init"], seed, cer: ev.cer, wer: ev.wer, trainLoss: trained.history.map((h) => h.loss), seconds: (performance.now() - t0) / 1000, examples: ev.hypotheses.slice(0, 3) };
  log(`  ${init} seed ${seed}: CER ${(100 * ev.cer).toFixed(1)}% WER ${(100 * ev.wer).toFixed(1)}%`);
  console.log(JSON.stringify(result));
  process.exit(0);
}

// 1. Pretraining (resumable).
const pretrained = await ensurePretrained(pretrainDir, config.train.steps, (resume) => pretrainAudio({ config, data: join(data, "pretrain"), outDir: pretrainDir, resume, resumeSteps: config.train.steps, log }), log);

// 2. Fine-tuning, pretrained vs scratch (cached per seed and initialization).
const resultsPath = join(out, "results.json");
const recipe = { labeledMinutes, epochs, lr, maskProb, maxBatchSeconds, batchSize, freezeFeatureEncoder: true };
const cached = existsSync(resultsPath) ? (JSON.parse(readFileSync(resultsPath, "utf8")) as { recipe: typeof recipe; runs: Result[] }) : null;
if (cached && JSON.stringify(cached.recipe) !== JSON.stringify(recipe)) {
  log(`${resultsPath} holds runs of another fine-tuning recipe (${JSON.stringify(cached.recipe)}); pass another --out (the pretraining can be copied) or remove it`);
  process.exit(2);
}
const results: Result[] = cached?.runs ?? [];
mkdirSync(out, { recursive: true });
const save = () => writeFileSync(resultsPath, JSON.stringify({ preset, data, pretrainUpdates: pretrained.updates, pretrainMinutes: pretrained.minutes, finalPretrainLoss: pretrained.finalLoss, recipe, runs: results }, null, 2));
const runOne = (init: string, seed: number) =>
  new Promise<Result>((done, fail) => {
    const child = spawn(process.execPath, [...process.argv.slice(1), "--one", `${init}:${seed}`], { stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.on("close", (code) => (code === 0 ? done(JSON.parse(stdout.trim().split("\n").pop()!) as Result) : fail(new Error(`${init} seed ${seed} failed (exit ${code})`))));
  });
const pending = seeds.flatMap((seed) => (["pretrained", "scratch"] as const).map((init) => ({ init, seed }))).filter(({ init, seed }) => !results.some((r) => r.init === init && r.seed === seed));
await Promise.all(
  Array.from({ length: jobs }, async () => {
    for (let job = pending.shift(); job; job = pending.shift()) {
      results.push(await runOne(job.init, job.seed));
      save();
    }
  }),
);
save();

// 3. Report.
console.log(`| initialization | test CER (%) | test WER (%) | per seed: CER / WER (%) |`);
console.log(`|---|---|---|---|`);
for (const init of ["pretrained", "scratch"] as const) {
  const runs = results.filter((r) => r.init === init && seeds.includes(r.seed)).sort((a, b) => a.seed - b.seed);
  const perSeed = runs.map((r) => `${(100 * r.cer).toFixed(1)} / ${(100 * r.wer).toFixed(1)}`).join(", ");
  console.log(`| ${init} | ${percentMeanStd(runs.map((r) => r.cer))} | ${percentMeanStd(runs.map((r) => r.wer))} | ${perSeed} |`);
}
console.log(`\n${seeds.length} seeds; ${labeledMinutes} min of labeled speech, ${epochs} epochs of CTC fine-tuning (lr ${lr}); pretraining: preset ${preset}, ${pretrained.updates} updates in ${pretrained.minutes.toFixed(1)} min.`);
