/**
 * Text datasets: unlabeled corpora (a .txt file or a folder of them, recursive) packed into fixed-length
 * blocks for pretraining, and labeled examples (JSONL lines {"text", "label"} or a folder per class).
 */
import { classFolders, filesUnder } from "../data/files.js";
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { numpy as np } from "../engine/jax.js";
import { DataError } from "../engine/errors.js";
import type { HostRng } from "../engine/random.js";
import type { BpeTokenizer } from "./bpe.js";
import { maskTokens, type TextMaskConfig } from "./masking.js";
import { positionIds, type TextPretrainBatch } from "./model.js";
import { viewArrays } from "../data2vec2/model.js";
import { tokenMasks } from "../data2vec2/masking.js";
import type { TextV2Batch } from "../data2vec2/modalities.js";
import { viewLayout } from "../data2vec2/views.js";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The byte offset of the first invalid UTF-8 sequence in `bytes` (which must hold one). */
function firstBadByte(bytes: Uint8Array): number {
  let offset = 0;
  for (let step = 1 << 24; step >= 1; step >>= 1) {
    while (offset + step <= bytes.length) {
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, offset + step));
        offset += step;
      } catch {
        break;
      }
    }
  }
  return offset;
}

const notUtf8 = (path: string, offset: number) =>
  new DataError(`${path} is not valid UTF-8 (first bad byte near offset ${offset}); convert it, e.g. \`iconv -f latin1 -t utf-8\``);

/** Text that holds NUL bytes is a binary file (valid UTF-8 or not), not text to train on or embed. */
function checkNotBinary(path: string, text: string): void {
  const nul = text.indexOf("\u0000");
  if (nul >= 0) throw new DataError(`${path} looks like a binary file, not text (a NUL byte at character ${nul}); pass plain UTF-8 text`);
}

/** A whole UTF-8 text file (labeled examples, lists of texts); binary files and bad encodings are refused. */
export function readUtf8(path: string): string {
  const bytes = readFileSync(path);
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw notUtf8(path, firstBadByte(bytes));
  }
  checkNotBinary(path, text);
  return text;
}

/** Bytes read at a time from a corpus file: a corpus of any size streams through this much memory. */
const READ_CHUNK_BYTES = 4 << 20;
/**
 * The longest document, in characters. Documents are paragraphs (separated by blank lines); a longer one (a corpus
 * with no blank lines) is cut at line ends, so that shuffling and held-out splits have units to work with and no
 * single string grows with the corpus.
 */
export const MAX_DOCUMENT_CHARS = 1 << 20;

/**
 * The documents of one corpus file, streamed: read in chunks, decoded incrementally, split on blank lines (and at
 * line ends past `MAX_DOCUMENT_CHARS`); lines within a document keep their newlines.
 */
export function* readDocuments(path: string): Generator<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const fd = openSync(path, "r");
  const buf = new Uint8Array(READ_CHUNK_BYTES);
  let lines: string[] = [];
  let chars = 0;
  let partial = "";
  let offset = 0;
  const flush = function* () {
    if (chars > 0 && lines.some((l) => l.trim())) yield lines.join("\n");
    lines = [];
    chars = 0;
  };
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      let text: string;
      try {
        text = decoder.decode(buf.subarray(0, n), { stream: n > 0 });
      } catch {
        throw notUtf8(path, offset + firstBadByte(buf.subarray(0, n)));
      }
      checkNotBinary(path, text);
      offset += n;
      const pieces = (partial + text).split("\n");
      partial = n > 0 ? pieces.pop()! : "";
      // A line longer than a document (a file without newlines) is cut at a space, so no string outgrows the limit.
      while (partial.length > MAX_DOCUMENT_CHARS) {
        let cut = partial.lastIndexOf(" ", MAX_DOCUMENT_CHARS);
        if (cut <= 0) cut = MAX_DOCUMENT_CHARS - (/[\ud800-\udbff]/.test(partial[MAX_DOCUMENT_CHARS - 1]) ? 1 : 0);
        pieces.push(partial.slice(0, cut));
        partial = partial.slice(cut);
      }
      for (const raw of pieces) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (!line.trim()) {
          yield* flush();
          continue;
        }
        if (chars + line.length > MAX_DOCUMENT_CHARS) yield* flush();
        lines.push(line);
        chars += line.length + 1;
      }
      if (n === 0) break;
    }
    yield* flush();
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads an unlabeled corpus: a .txt file or a folder of them (recursive), as documents separated by blank lines
 * (see `readDocuments`). Errors name the path and the fix.
 */
export function readTextCorpus(path: string): string[] {
  if (!existsSync(path)) throw new DataError(`corpus ${path} does not exist; pass a .txt file or a folder of .txt files with --data`);
  const files = statSync(path).isDirectory() ? filesUnder(path, [".txt"]) : [path];
  if (files.length === 0) throw new DataError(`corpus folder ${path} holds no .txt files (searched recursively)`);
  const docs: string[] = [];
  for (const file of files) for (const doc of readDocuments(file)) docs.push(doc);
  if (docs.length === 0) throw new DataError(`corpus ${path} is empty: every .txt file is blank`);
  return docs;
}

export type LabeledText = { text: string; label: string };

/** Labeled text: a .jsonl file of {"text": ..., "label": ...} lines, or a folder with one subfolder per class. */
export function readLabeledText(path: string): LabeledText[] {
  if (!existsSync(path)) throw new DataError(`labeled data ${path} does not exist; pass a .jsonl file or a folder per class with --data`);
  let out: LabeledText[] = [];
  if (statSync(path).isDirectory()) {
    const classes = classFolders(path);
    if (classes.length === 0) throw new DataError(`labeled folder ${path} has no class subfolders; lay it out as ${path}/<label>/*.txt`);
    for (const label of classes) {
      const files = filesUnder(join(path, label), [".txt"]);
      if (files.length === 0) throw new DataError(`class folder ${join(path, label)} holds no .txt files`);
      out.push(...files.map((f) => ({ text: readUtf8(f), label })));
    }
  } else {
    readUtf8(path)
      .split("\n")
      .forEach((line, i) => {
        if (!line.trim()) return;
        let obj: unknown;
        try {
          obj = JSON.parse(line);
        } catch (e) {
          throw new DataError(`${path}:${i + 1} is not valid JSON (${(e as Error).message})`);
        }
        const { text, label } = (obj ?? {}) as { text?: unknown; label?: unknown };
        if (typeof text !== "string" || (typeof label !== "string" && typeof label !== "number")) {
          throw new DataError(`${path}:${i + 1} must be {"text": string, "label": string or number}`);
        }
        out.push({ text, label: String(label) });
      });
  }
  out = out.filter((x) => x.text.trim().length > 0);
  if (out.length === 0) throw new DataError(`labeled data ${path} has no examples`);
  return out;
}

/**
 * Packs documents into blocks of `seqLen` tokens: each block is `<s>` + up to seqLen − 2 tokens of the
 * running token stream (documents separated by `</s>`) + `</s>`, padded at the end of the corpus.
 */
export function packBlocks(docs: Iterable<string>, tok: BpeTokenizer, seqLen: number): Int32Array[] {
  const body = seqLen - 2;
  const blocks: Int32Array[] = [];
  // The running token stream is consumed a block at a time, never held whole (a corpus can be any size).
  const pending = new Int32Array(body);
  let filled = 0;
  const emit = () => {
    const block = new Int32Array(seqLen).fill(tok.pad);
    block[0] = tok.bos;
    block.set(pending.subarray(0, filled), 1);
    block[filled + 1] = tok.eos;
    blocks.push(block);
    filled = 0;
  };
  const push = (id: number) => {
    pending[filled++] = id;
    if (filled === body) emit();
  };
  for (const d of docs) {
    for (const id of tok.encode(d, { addSpecial: false })) push(id);
    push(tok.eos);
  }
  if (filled >= body / 4) emit(); // a tiny tail is not worth a mostly padded block
  if (blocks.length === 0) throw new DataError("the corpus is too short to fill one training sequence; add more text");
  return blocks;
}

/** Pads token sequences into [B, T] arrays (ids, positions, padding mask), truncating to seqLen. */
export function padBatch(seqs: Int32Array[], seqLen: number, padId: number, eosId: number) {
  const b = seqs.length;
  const ids = new Int32Array(b * seqLen).fill(padId);
  const padding = new Float32Array(b * seqLen);
  seqs.forEach((s, i) => {
    let row = s;
    if (row.length > seqLen) {
      row = row.slice(0, seqLen);
      row[seqLen - 1] = eosId; // keep the closing </s> when truncating
    }
    ids.set(row, i * seqLen);
    for (let t = 0; t < row.length; t++) padding[i * seqLen + t] = row[t] === padId ? 0 : 1;
  });
  return { ids, padding, positions: positionIds(ids, b, seqLen, padId) };
}

/** Builds one masked pretraining batch from blocks on the host. */
export function makePretrainBatch(blocks: Int32Array[], tok: BpeTokenizer, masking: TextMaskConfig, rng: HostRng): TextPretrainBatch {
  const seqLen = blocks[0].length;
  const { ids, padding, positions } = padBatch(blocks, seqLen, tok.pad, tok.eos);
  const source = new Int32Array(ids.length);
  const lossWeights = new Float32Array(ids.length);
  const specials = new Set([tok.bos, tok.pad, tok.eos, tok.unk, tok.mask]);
  blocks.forEach((_, i) => {
    const row = ids.subarray(i * seqLen, (i + 1) * seqLen);
    const m = maskTokens(row, masking, rng, {
      maskId: tok.mask,
      isSpecial: (id) => specials.has(id),
      vocabSize: tok.size,
      firstRegularId: 4,
    });
    source.set(m.source, i * seqLen);
    lossWeights.set(m.lossWeights, i * seqLen);
  });
  const shape = [blocks.length, seqLen];
  return {
    source: np.array(source, { dtype: np.int32 }).reshape(shape),
    target: np.array(ids, { dtype: np.int32 }).reshape(shape),
    positions: np.array(positions, { dtype: np.int32 }).reshape(shape),
    padding: np.array(padding).reshape(shape),
    lossWeights: np.array(lossWeights).reshape(shape),
  };
}


/**
 * A data2vec 2.0 batch: the blocks as they are (the teacher's input, padding and positions), and `clones` masks of
 * each for the student, each hiding round(ratio · n) of the n non-special tokens (n: the fewest in the batch).
 */
export function makeViewsBatch(blocks: Int32Array[], tok: BpeTokenizer, ratio: number, clones: number, rng: HostRng): TextV2Batch {
  const seqLen = blocks[0].length;
  const { ids, padding, positions } = padBatch(blocks, seqLen, tok.pad, tok.eos);
  const specials = new Set([tok.bos, tok.pad, tok.eos, tok.unk, tok.mask]);
  const candidates: number[][] = [];
  blocks.forEach((_, i) => {
    const row: number[] = [];
    for (let t = 0; t < seqLen; t++) if (!specials.has(ids[i * seqLen + t])) row.push(t);
    for (let c = 0; c < clones; c++) candidates.push(row);
  });
  const mask = tokenMasks(candidates, seqLen, ratio, rng);
  const shape = [blocks.length, seqLen];
  return {
    source: np.array(ids, { dtype: np.int32 }).reshape(shape),
    positions: np.array(positions, { dtype: np.int32 }).reshape(shape),
    padding: np.array(padding).reshape(shape),
    views: viewArrays(viewLayout(mask, blocks.length, clones, seqLen)),
  };
}
