/**
 * Byte-level BPE (GPT-2 / RoBERTa): text is split by the GPT-2 pre-tokenization regex, each piece is
 * mapped byte by byte to printable unicode symbols, and ranked merges are applied. Special tokens
 * (`<s> <pad> </s> <unk> <mask>`) written in the text are matched verbatim; `<mask>` also strips the
 * whitespace before it (RoBERTa's `lstrip`). Vocabularies load from and save to `vocab.json` + `merges.txt`,
 * and can be trained on a corpus.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { VocabError } from "../engine/errors.js";

export const SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] as const;
export type SpecialToken = (typeof SPECIAL_TOKENS)[number];

/** GPT-2's pre-tokenizer; `\p{White_Space}` matches what Python's `regex` module calls `\s`. */
const PRETOKENIZE =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

/** GPT-2's reversible byte → unicode map: printable bytes map to themselves, the rest to U+0100 onward. */
function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    map[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  }
  return map;
}
const BYTE_TO_UNICODE = bytesToUnicode();
const UNICODE_TO_BYTE = new Map(BYTE_TO_UNICODE.map((c, b) => [c, b]));
const utf8 = new TextEncoder();

function toByteSymbols(piece: string): string {
  let out = "";
  for (const b of utf8.encode(piece)) out += BYTE_TO_UNICODE[b];
  return out;
}

export class BpeTokenizer {
  readonly vocab: Map<string, number>;
  readonly idToToken: string[];
  readonly merges: [string, string][];
  readonly #ranks: Map<string, number>;
  readonly #cache = new Map<string, string[]>();
  readonly #specialPattern: RegExp;

  constructor(vocab: Map<string, number>, merges: [string, string][]) {
    for (const s of SPECIAL_TOKENS) {
      if (!vocab.has(s)) throw new VocabError(`vocabulary lacks the special token ${s}; a RoBERTa-style vocab.json must define <s> <pad> </s> <unk> <mask>`);
    }
    this.vocab = vocab;
    this.idToToken = [];
    for (const [tok, id] of vocab) this.idToToken[id] = tok;
    this.merges = merges;
    this.#ranks = new Map(merges.map(([a, b], i) => [`${a} ${b}`, i]));
    // <mask> eats the whitespace before it (lstrip); the other special tokens match verbatim.
    this.#specialPattern = /\p{White_Space}*<mask>|<s>|<\/s>|<pad>|<unk>/gu;
  }

  get size(): number {
    return this.idToToken.length;
  }
  id(token: SpecialToken): number {
    return this.vocab.get(token)!;
  }
  get bos() { return this.id("<s>"); }
  get pad() { return this.id("<pad>"); }
  get eos() { return this.id("</s>"); }
  get unk() { return this.id("<unk>"); }
  get mask() { return this.id("<mask>"); }

  /** Byte-level symbols of `text` (the slow RobertaTokenizer's `tokenize`). */
  tokenize(text: string): string[] {
    const out: string[] = [];
    let last = 0;
    for (const m of text.matchAll(this.#specialPattern)) {
      this.#tokenizePlain(text.slice(last, m.index), out);
      out.push(m[0].trimStart());
      last = m.index! + m[0].length;
    }
    this.#tokenizePlain(text.slice(last), out);
    return out;
  }

  #tokenizePlain(text: string, out: string[]) {
    if (!text) return;
    for (const m of text.matchAll(PRETOKENIZE)) out.push(...this.#bpe(toByteSymbols(m[0])));
  }

  #bpe(word: string): string[] {
    const cached = this.#cache.get(word);
    if (cached) return cached;
    let symbols = Array.from(word);
    while (symbols.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < symbols.length - 1; i++) {
        const r = this.#ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const [a, b] = [symbols[best], symbols[best + 1]];
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i < symbols.length - 1 && symbols[i] === a && symbols[i + 1] === b) {
          merged.push(a + b);
          i++;
        } else merged.push(symbols[i]);
      }
      symbols = merged;
    }
    if (this.#cache.size < 200_000) this.#cache.set(word, symbols);
    return symbols;
  }

  /** Token ids; with `addSpecial`, wrapped as `<s> … </s>`. */
  encode(text: string, opts: { addSpecial?: boolean } = {}): number[] {
    const ids = this.tokenize(text).map((t) => this.vocab.get(t) ?? this.unk);
    return opts.addSpecial === false ? ids : [this.bos, ...ids, this.eos];
  }

  decode(ids: number[], opts: { skipSpecial?: boolean } = {}): string {
    const specials = new Set(SPECIAL_TOKENS.map((s) => this.id(s)));
    let text = "";
    const bytes: number[] = [];
    const flush = () => {
      text += new TextDecoder("utf-8").decode(new Uint8Array(bytes));
      bytes.length = 0;
    };
    for (const id of ids) {
      const tok = this.idToToken[id];
      if (tok === undefined) throw new VocabError(`token id ${id} is outside the vocabulary (size ${this.size})`);
      if (specials.has(id)) {
        if (opts.skipSpecial) continue;
        flush();
        text += tok;
        continue;
      }
      for (const ch of tok) {
        const b = UNICODE_TO_BYTE.get(ch);
        if (b === undefined) {
          flush();
          text += ch;
        } else bytes.push(b);
      }
    }
    flush();
    return text;
  }

  /** Loads `vocab.json` + `merges.txt` from a directory. */
  static load(dir: string): BpeTokenizer {
    const vocabPath = join(dir, "vocab.json");
    const mergesPath = join(dir, "merges.txt");
    for (const p of [vocabPath, mergesPath]) {
      if (!existsSync(p)) throw new VocabError(`tokenizer file ${p} is missing; a tokenizer directory holds vocab.json and merges.txt`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(vocabPath, "utf8"));
    } catch (e) {
      throw new VocabError(`${vocabPath} is not valid JSON (${(e as Error).message})`);
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new VocabError(`${vocabPath} must map tokens to ids`);
    const vocab = new Map<string, number>();
    const seen = new Set<number>();
    for (const [tok, id] of Object.entries(raw as Record<string, unknown>)) {
      if (!Number.isInteger(id) || (id as number) < 0) throw new VocabError(`${vocabPath}: token ${JSON.stringify(tok)} has invalid id ${String(id)}`);
      if (seen.has(id as number)) throw new VocabError(`${vocabPath}: id ${String(id)} is used twice`);
      seen.add(id as number);
      vocab.set(tok, id as number);
    }
    if (seen.size > 0 && Math.max(...seen) !== seen.size - 1) throw new VocabError(`${vocabPath}: ids must be 0..${seen.size - 1} without gaps`);
    const merges: [string, string][] = [];
    const lines = readFileSync(mergesPath, "utf8").split("\n");
    lines.forEach((line, i) => {
      if (i === 0 && line.startsWith("#version")) return;
      if (!line.trim()) return;
      const parts = line.split(" ");
      if (parts.length !== 2) throw new VocabError(`${mergesPath}:${i + 1}: a merge line holds two symbols separated by one space`);
      merges.push([parts[0], parts[1]]);
    });
    return new BpeTokenizer(vocab, merges);
  }

  /** The `vocab.json` + `merges.txt` contents (the layout Hugging Face's RobertaTokenizer reads). */
  files(): Record<"vocab.json" | "merges.txt", string> {
    const vocab: Record<string, number> = {};
    this.idToToken.forEach((t, i) => (vocab[t] = i));
    return {
      "vocab.json": JSON.stringify(vocab),
      "merges.txt": ["#version: 0.2", ...this.merges.map(([a, b]) => `${a} ${b}`)].join("\n") + "\n",
    };
  }

  save(dir: string): void {
    mkdirSync(dir, { recursive: true });
    for (const [name, content] of Object.entries(this.files())) writeFileSync(join(dir, name), content);
  }

  /**
   * Trains a vocabulary of `vocabSize` entries: `<s> <pad> </s> <unk>`, the 256 byte symbols, the learned
   * merges, then `<mask>` (RoBERTa's order). Merges are chosen greedily by pair frequency (ties broken by
   * the earlier-created pair), with pair counts maintained incrementally.
   */
  static train(texts: Iterable<string>, vocabSize: number, opts: { minFrequency?: number; onProgress?: (done: number, total: number) => void } = {}): BpeTokenizer {
    const base = 4 + 256 + 1;
    if (!Number.isInteger(vocabSize) || vocabSize < base) {
      throw new VocabError(`vocabulary size ${vocabSize} is too small: byte-level BPE needs at least ${base} entries (5 special tokens + 256 bytes)`);
    }
    if (vocabSize > 65536) throw new VocabError(`vocabulary size ${vocabSize} is too large to train here (at most 65536)`);
    const minFrequency = opts.minFrequency ?? 2;
    // 1. Word frequencies over pre-tokenized pieces.
    const wordFreq = new Map<string, number>();
    for (const text of texts) {
      for (const m of text.matchAll(PRETOKENIZE)) {
        const w = toByteSymbols(m[0]);
        wordFreq.set(w, (wordFreq.get(w) ?? 0) + 1);
      }
    }
    // 2. Symbols as integer ids: 0..255 are the byte symbols.
    const symbols: string[] = [...BYTE_TO_UNICODE];
    const symbolId = new Map(symbols.map((s, i) => [s, i]));
    const words: number[][] = [];
    const freqs: number[] = [];
    for (const [w, f] of wordFreq) {
      words.push(Array.from(w, (ch) => symbolId.get(ch)!));
      freqs.push(f);
    }
    const SHIFT = 1 << 16;
    const key = (a: number, b: number) => a * SHIFT + b;
    const pairCount = new Map<number, number>();
    const pairWords = new Map<number, Set<number>>();
    const addPair = (k: number, wi: number, delta: number) => {
      pairCount.set(k, (pairCount.get(k) ?? 0) + delta);
      if (delta > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
    };
    words.forEach((w, wi) => {
      for (let i = 0; i < w.length - 1; i++) addPair(key(w[i], w[i + 1]), wi, freqs[wi]);
    });
    // 3. Max-heap of (count, key) with lazy invalidation.
    const heap = new PairHeap();
    for (const [k, c] of pairCount) heap.push(c, k);
    const merges: [string, string][] = [];
    const target = vocabSize - base;
    while (merges.length < target) {
      const top = heap.pop();
      if (!top) break;
      const [count, k] = top;
      if (pairCount.get(k) !== count) continue; // stale entry
      if (count < minFrequency) break;
      const a = Math.floor(k / SHIFT);
      const b = k % SHIFT;
      const merged = symbols.length;
      symbols.push(symbols[a] + symbols[b]);
      merges.push([symbols[a], symbols[b]]);
      const touched = new Set<number>();
      for (const wi of pairWords.get(k) ?? []) {
        const w = words[wi];
        const f = freqs[wi];
        let changed = false;
        const out: number[] = [];
        for (let i = 0; i < w.length; i++) {
          if (i < w.length - 1 && w[i] === a && w[i + 1] === b) {
            out.push(merged);
            i++;
            changed = true;
          } else out.push(w[i]);
        }
        if (!changed) continue;
        for (let i = 0; i < w.length - 1; i++) {
          const pk = key(w[i], w[i + 1]);
          pairCount.set(pk, pairCount.get(pk)! - f);
          touched.add(pk);
        }
        for (let i = 0; i < out.length - 1; i++) {
          const pk = key(out[i], out[i + 1]);
          addPair(pk, wi, f);
          touched.add(pk);
        }
        words[wi] = out;
      }
      pairCount.delete(k);
      pairWords.delete(k);
      for (const pk of touched) {
        const c = pairCount.get(pk);
        if (c !== undefined && c > 0) heap.push(c, pk);
      }
      opts.onProgress?.(merges.length, target);
    }
    const vocab = new Map<string, number>();
    for (const s of ["<s>", "<pad>", "</s>", "<unk>"]) vocab.set(s, vocab.size);
    for (const s of symbols) if (!vocab.has(s)) vocab.set(s, vocab.size);
    vocab.set("<mask>", vocab.size);
    return new BpeTokenizer(vocab, merges);
  }
}

/** Binary max-heap on (count, then smaller key first) for deterministic tie-breaking. */
class PairHeap {
  #counts: number[] = [];
  #keys: number[] = [];
  #above(i: number, j: number) {
    return this.#counts[i] > this.#counts[j] || (this.#counts[i] === this.#counts[j] && this.#keys[i] < this.#keys[j]);
  }
  #swap(i: number, j: number) {
    [this.#counts[i], this.#counts[j]] = [this.#counts[j], this.#counts[i]];
    [this.#keys[i], this.#keys[j]] = [this.#keys[j], this.#keys[i]];
  }
  push(count: number, key: number) {
    this.#counts.push(count);
    this.#keys.push(key);
    let i = this.#counts.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#above(i, parent)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }
  pop(): [number, number] | null {
    const n = this.#counts.length;
    if (n === 0) return null;
    const top: [number, number] = [this.#counts[0], this.#keys[0]];
    this.#swap(0, n - 1);
    this.#counts.pop();
    this.#keys.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n - 1 && this.#above(l, m)) m = l;
      if (r < n - 1 && this.#above(r, m)) m = r;
      if (m === i) break;
      this.#swap(i, m);
      i = m;
    }
    return top;
  }
}
