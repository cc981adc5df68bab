/**
 * Speech datasets: a folder of audio files (recursive), a fairseq manifest (TSV: the root folder on the first
 * line, then `path<TAB>num_samples`, optionally a third column with a class label), the LibriSpeech layout
 * (`speaker/chapter/*.flac` with `speaker-chapter.trans.txt`) for transcribed speech, and a folder per class
 * for audio classification. Clips are decoded once, downmixed, resampled to the model's rate and (when the
 * model says so) normalized per clip.
 */
import { classFolders, filesUnder } from "../data/files.js";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, extname, isAbsolute, join, relative } from "node:path";
import { DataError } from "../engine/errors.js";
import { normalizeClip, readAudio } from "./io.js";

export const AUDIO_EXTENSIONS = [".wav", ".flac"];

export type AudioEntry = { path: string; label?: string; transcript?: string };
/** A decoded clip at the model's rate. */
export type Clip = { name: string; samples: Float32Array; label?: string; transcript?: string };

export function listAudioFiles(dir: string): string[] {
  return filesUnder(dir, AUDIO_EXTENSIONS);
}

/** A fairseq manifest: root on the first line, then `relative/path<TAB>num_samples[<TAB>label]`. */
export function readManifest(path: string): AudioEntry[] {
  const lines = readFileSync(path, "utf8").split(/\r?\n/);
  const root = lines[0]?.trim();
  if (!root) throw new DataError(`${path}: the first line of a manifest must be the root folder of the audio files`);
  const base = isAbsolute(root) ? root : join(dirname(path), root);
  const entries: AudioEntry[] = [];
  lines.slice(1).forEach((line, i) => {
    if (!line.trim()) return;
    const cols = line.split("\t");
    if (cols.length < 2 || !/^\d+$/.test(cols[1].trim())) {
      throw new DataError(`${path} line ${i + 2}: expected "path<TAB>num_samples", got ${JSON.stringify(line.slice(0, 80))}`);
    }
    const entry: AudioEntry = { path: join(base, cols[0]) };
    if (cols[2]?.trim()) entry.label = cols[2].trim();
    entries.push(entry);
  });
  if (entries.length === 0) throw new DataError(`manifest ${path} lists no audio files`);
  return entries;
}

/** Unlabeled audio: a folder (recursive) or a `.tsv` manifest. */
export function unlabeledEntries(path: string): AudioEntry[] {
  if (!existsSync(path)) throw new DataError(`${path} does not exist; pass a folder of WAV/FLAC files or a fairseq .tsv manifest with --data`);
  if (!statSync(path).isDirectory()) {
    if (extname(path) === ".tsv") return readManifest(path);
    return [{ path }];
  }
  const files = listAudioFiles(path);
  if (files.length === 0) throw new DataError(`${path} holds no .wav or .flac files (searched recursively)`);
  return files.map((p) => ({ path: p }));
}

/** Transcribed speech in the LibriSpeech layout: every `*.trans.txt` (recursive) names its folder's files. */
export function libriSpeechEntries(dir: string): AudioEntry[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new DataError(`${dir} is not a folder; transcribed speech must be in the LibriSpeech layout (speaker/chapter/*.flac + *.trans.txt)`);
  const transcripts = filesUnder(dir, [".txt"]).filter((p) => p.endsWith(".trans.txt"));
  if (transcripts.length === 0) throw new DataError(`${dir} holds no *.trans.txt files; transcribed speech must be in the LibriSpeech layout (speaker/chapter/ID.flac + speaker-chapter.trans.txt with lines "ID TRANSCRIPT")`);
  const entries: AudioEntry[] = [];
  for (const t of transcripts) {
    readFileSync(t, "utf8")
      .split(/\r?\n/)
      .forEach((line, i) => {
        if (!line.trim()) return;
        const m = /^(\S+)\s+(.*)$/.exec(line.trim());
        if (!m) throw new DataError(`${t} line ${i + 1}: expected "ID TRANSCRIPT"`);
        const audio = AUDIO_EXTENSIONS.map((e) => join(dirname(t), m[1] + e)).find((p) => existsSync(p));
        if (!audio) throw new DataError(`${t} line ${i + 1}: no audio file ${m[1]}.flac or ${m[1]}.wav next to it`);
        entries.push({ path: audio, transcript: m[2] });
      });
  }
  // An audio file without a transcript line would be left out silently: refuse it, as text and images do.
  const transcribed = new Set(entries.map((e) => e.path));
  const untranscribed = listAudioFiles(dir).filter((p) => !transcribed.has(p));
  if (untranscribed.length > 0) {
    throw new DataError(
      `${untranscribed[0]}${untranscribed.length > 1 ? ` and ${untranscribed.length - 1} more audio files have` : " has"} no transcript line in a *.trans.txt file beside them; ` +
        `add a line "ID TRANSCRIPT" for each, or move the untranscribed audio out of ${dir}`,
    );
  }
  return entries;
}

/** Labeled clips for classification: a folder per class (recursive inside each), or a manifest with a label column. */
export function labeledAudioEntries(path: string): AudioEntry[] {
  if (!existsSync(path)) throw new DataError(`${path} does not exist`);
  if (!statSync(path).isDirectory()) {
    const entries = readManifest(path);
    const unlabeled = entries.find((e) => !e.label);
    if (unlabeled) throw new DataError(`${path}: ${unlabeled.path} has no label; a labeled manifest needs a third column (path<TAB>num_samples<TAB>label)`);
    return entries;
  }
  const classes = classFolders(path);
  if (classes.length < 2) throw new DataError(`${path} must hold one folder of audio files per class (at least two classes; it has ${classes.length})`);
  const entries: AudioEntry[] = [];
  for (const c of classes) {
    const files = listAudioFiles(join(path, c));
    // An empty class would vanish from the label set without a word: refuse it, as text and images do.
    if (files.length === 0) throw new DataError(`class folder ${join(path, c)} holds no WAV or FLAC files; add some or remove the folder`);
    entries.push(...files.map((p) => ({ path: p, label: c })));
  }
  return entries;
}

/**
 * Decodes entries into clips at `rate` Hz (normalized per clip when `normalize`). `onProgress` is called
 * with the number decoded so far.
 */
export async function loadClips(entries: AudioEntry[], rate: number, normalize: boolean, root?: string, onProgress?: (done: number) => void): Promise<Clip[]> {
  const clips: Clip[] = [];
  for (const e of entries) {
    const raw = await readAudio(e.path, rate);
    const clip: Clip = { name: root ? relative(root, e.path) : basename(e.path), samples: normalize ? normalizeClip(raw) : raw };
    if (e.label !== undefined) clip.label = e.label;
    if (e.transcript !== undefined) clip.transcript = e.transcript;
    clips.push(clip);
    onProgress?.(clips.length);
  }
  return clips;
}

export function totalSeconds(clips: Clip[], rate: number): number {
  return clips.reduce((s, c) => s + c.samples.length, 0) / rate;
}

/**
 * Batches of similar length (bucketing): clips sorted by length and cut into consecutive groups of
 * `batchSize`, so that little of each batch is padding or cropped away. Returns the clip indices per batch.
 */
export function lengthBuckets(lengths: number[], batchSize: number): number[][] {
  const order = lengths.map((n, i) => [n, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, i]) => i);
  const batches: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));
  return batches;
}
