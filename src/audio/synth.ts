/**
 * A synthetic speech corpus for demos and experiments (no speech corpus can be downloaded here): sentences
 * from the Brown corpus read by espeak-ng (an external program: `apt-get install espeak-ng`) with varied
 * accents, voice variants, speaking rates and pitches, optionally with white noise, resampled to 16 kHz and
 * written in the LibriSpeech layout (`split/speaker/chapter/speaker-chapter-utt.wav` + `.trans.txt`).
 * Also spoken words in a folder per word (a keyword-spotting task like Speech Commands), with the test
 * split read by voices the training split never heard.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { DataError } from "../engine/errors.js";
import { HostRng } from "../engine/random.js";
import { loadBrown } from "../text/brown.js";
import { checkOutput, writeOutput } from "../train/output.js";
import { decodeWav, encodeWav16, resample } from "./io.js";

const run = promisify(execFile);

const ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"];
const VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"];

export type SynthSettings = {
  /** Hours of the unlabeled pretraining split. */
  hours: number;
  /** Minutes of the labeled training split and of the test split. */
  labeledMinutes: number;
  testMinutes: number;
  speakers: number;
  /** White noise at a signal-to-noise ratio drawn from [snr, snr + 10] dB; null for clean audio. */
  snr: number | null;
  seed: number;
  sampleRate: number;
  /** espeak-ng processes run at once. */
  jobs: number;
};

export type SynthSummary = Record<string, { utterances: number; seconds: number }>;

/**
 * Brown sentences with 5 to 20 words, in the vocabulary of the CTC model: upper-case A–Z and the apostrophe.
 * Sentences with digits or other symbols are left out rather than spelled out.
 */
export function speechSentences(): string[] {
  const out: string[] = [];
  for (const doc of loadBrown()) {
    for (const raw of doc.text.split(/(?<=[.!?])\s+|\n/)) {
      if (/[0-9&$%@#*/=+]/.test(raw)) continue;
      const words = raw
        .replace(/--/g, " ")
        .replace(/[^A-Za-z'\s-]/g, " ")
        .replace(/-/g, " ")
        .split(/\s+/)
        .map((w) => w.replace(/^'+|'+$/g, "").toUpperCase())
        .filter((w) => /^[A-Z][A-Z']*$/.test(w));
      if (words.length >= 5 && words.length <= 20) out.push(words.join(" "));
    }
  }
  return [...new Set(out)];
}

function checkEspeak(): void {
  const r = spawnSync("espeak-ng", ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) {
    throw new DataError("espeak-ng is not installed or not on PATH; install it (Debian/Ubuntu: `apt-get install espeak-ng`) to synthesize speech");
  }
}

type Speaker = { id: number; voice: string; rate: number; pitch: number };

function makeSpeakers(n: number, rng: HostRng): Speaker[] {
  const voices = ACCENTS.flatMap((a) => VARIANTS.map((v) => `${a}+${v}`));
  return rng
    .sample(voices.length, Math.min(n, voices.length))
    .map((k, i) => ({ id: 100 + i, voice: voices[k], rate: rng.int(140, 190), pitch: rng.int(30, 70) }));
}

async function speak(text: string, s: Speaker, rng: HostRng, o: Pick<SynthSettings, "snr" | "sampleRate">): Promise<Float32Array> {
  const rate = s.rate + rng.int(-15, 15);
  const pitch = Math.max(0, Math.min(99, s.pitch + rng.int(-8, 8)));
  const noiseSeed = rng.seed32();
  const snr = o.snr === null ? null : o.snr + 10 * rng.uniform();
  const { stdout } = await run("espeak-ng", ["-v", s.voice, "-s", String(rate), "-p", String(pitch), "--stdout", text], { encoding: "buffer", maxBuffer: 1 << 28 });
  const wav = decodeWav(new Uint8Array(stdout), `espeak-ng output for "${text.slice(0, 40)}"`);
  // espeak-ng writes a streaming header with unset sizes; wavefile reads the data to the end, which is what we want.
  let x = resample(wav.samples, wav.sampleRate, o.sampleRate);
  if (snr !== null) {
    let power = 0;
    for (const v of x) power += v * v;
    power /= x.length;
    const sigma = Math.sqrt(power / 10 ** (snr / 10));
    const noise = HostRng.seeded(noiseSeed);
    x = Float32Array.from(x, (v) => {
      // Box–Muller normal noise.
      const u = 1 - noise.uniform();
      return v + sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * noise.uniform());
    });
  }
  return x;
}

/** Runs `tasks` with at most `jobs` in flight. */
async function pool<T>(tasks: (() => Promise<T>)[], jobs: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, jobs) }, async () => {
      while (next < tasks.length) {
        const i = next++;
        results[i] = await tasks[i]();
      }
    }),
  );
  return results;
}

/**
 * Builds the corpus in `outDir` (written to a temporary folder and renamed at the end, so a crash leaves
 * nothing partial). Splits: `pretrain/` (≥ hours), `train/` (≥ labeledMinutes), `test/` (≥ testMinutes),
 * disjoint in sentences, sharing the speakers.
 */
export async function synthesizeSpeech(outDir: string, o: SynthSettings, log: (msg: string) => void = () => {}, force = false): Promise<SynthSummary> {
  checkOutput(outDir, { flag: "--out", what: "corpus", kind: "dir", force });
  checkEspeak();
  const rng = HostRng.seeded(o.seed);
  const sentences = rng.shuffle(speechSentences());
  const speakers = makeSpeakers(o.speakers, rng);
  return writeOutput(outDir, "dir", async (tmp) => {
    const summary: SynthSummary = {};
    let cursor = 0;
    const splits: [string, number][] = [["test", o.testMinutes * 60], ["train", o.labeledMinutes * 60], ["pretrain", o.hours * 3600]];
    for (const [split, seconds] of splits) {
      let done = 0;
      let utterances = 0;
      const lines = new Map<string, string[]>();
      // Rounds of utterances, one per speaker in turn, until the split is long enough.
      while (done < seconds) {
        if (cursor + speakers.length > sentences.length) throw new DataError(`the Brown corpus has ${sentences.length} usable sentences; ask for fewer hours`);
        const round = speakers.map((s) => ({ s, text: sentences[cursor++], utt: utterances++, rng: HostRng.seeded(rng.seed32()) }));
        const audio = await pool(round.map((r) => () => speak(r.text, r.s, r.rng, o)), o.jobs);
        round.forEach((r, i) => {
          const chapter = 1;
          const id = `${r.s.id}-${chapter}-${String(r.utt).padStart(5, "0")}`;
          const dir = join(tmp, split, String(r.s.id), String(chapter));
          mkdirSync(dir, { recursive: true });
          writeFileSync(join(dir, `${id}.wav`), encodeWav16(audio[i], o.sampleRate));
          const key = join(dir, `${r.s.id}-${chapter}.trans.txt`);
          lines.set(key, [...(lines.get(key) ?? []), `${id} ${r.text}`]);
          done += audio[i].length / o.sampleRate;
        });
        log(`${split}: ${(done / 60).toFixed(1)} of ${(seconds / 60).toFixed(0)} min`);
      }
      for (const [file, ls] of lines) writeFileSync(file, ls.join("\n") + "\n");
      summary[split] = { utterances, seconds: Math.round(done) };
    }
    writeFileSync(join(tmp, "speakers.json"), JSON.stringify({ settings: o, speakers, summary }, null, 2) + "\n");
    return summary;
  });
}

/** The ten command words of Speech Commands' keyword-spotting task. */
export const COMMAND_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"];

export type WordSynthSettings = {
  words: string[];
  /** Voices reading the training split, and other voices reading the test split. */
  trainSpeakers: number;
  testSpeakers: number;
  /** Readings of each word by each voice (rate and pitch vary per reading). */
  takes: number;
  snr: number | null;
  seed: number;
  sampleRate: number;
  jobs: number;
};

/**
 * Spoken words in `outDir/{train,test}/<word>/<speaker>-<take>.wav` (the folder-per-class layout that
 * `d2v finetune --task classify` reads). Test voices are disjoint from training voices. Written to a
 * temporary folder and renamed at the end.
 */
export async function synthesizeWords(outDir: string, o: WordSynthSettings, log: (msg: string) => void = () => {}, force = false): Promise<SynthSummary> {
  const words = [...new Set(o.words.map((w) => w.trim().toLowerCase()))];
  const bad = words.find((w) => !/^[a-z][a-z']*$/.test(w));
  if (bad !== undefined) throw new DataError(`--words: ${JSON.stringify(bad)} is not a word of letters; pass a comma-separated list such as yes,no,up`);
  if (words.length < 2) throw new DataError("--words: pass at least two distinct words");
  if (o.trainSpeakers < 1 || o.testSpeakers < 1 || o.takes < 1) throw new DataError("--train-speakers, --test-speakers and --takes must each be at least 1");
  checkOutput(outDir, { flag: "--out", what: "corpus", kind: "dir", force });
  checkEspeak();
  const rng = HostRng.seeded(o.seed);
  const speakers = makeSpeakers(o.trainSpeakers + o.testSpeakers, rng);
  if (speakers.length < o.trainSpeakers + o.testSpeakers) throw new DataError(`espeak-ng has ${speakers.length} voice variants here; ask for fewer speakers`);
  const bySplit: [string, Speaker[]][] = [["train", speakers.slice(0, o.trainSpeakers)], ["test", speakers.slice(o.trainSpeakers)]];
  return writeOutput(outDir, "dir", async (tmp) => {
    const summary: SynthSummary = {};
    for (const [split, voices] of bySplit) {
      const jobs = voices.flatMap((s) => words.flatMap((word) => Array.from({ length: o.takes }, (_, take) => ({ s, word, take, rng: HostRng.seeded(rng.seed32()) }))));
      const audio = await pool(jobs.map((j) => () => speak(j.word, j.s, j.rng, o)), o.jobs);
      let seconds = 0;
      jobs.forEach((j, i) => {
        const dir = join(tmp, split, j.word);
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, `${j.s.id}-${j.take}.wav`), encodeWav16(audio[i], o.sampleRate));
        seconds += audio[i].length / o.sampleRate;
      });
      summary[split] = { utterances: jobs.length, seconds: Math.round(seconds) };
      log(`${split}: ${jobs.length} words from ${voices.length} voices (${(seconds / 60).toFixed(1)} min)`);
    }
    writeFileSync(join(tmp, "speakers.json"), JSON.stringify({ settings: { ...o, words }, train: bySplit[0][1], test: bySplit[1][1], summary }, null, 2) + "\n");
    return summary;
  });
}
