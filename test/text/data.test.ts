import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { MAX_DOCUMENT_CHARS, packBlocks, readLabeledText, readTextCorpus, readUtf8 } from "../../src/text/data.js";
import { DataError } from "../../src/engine/errors.js";
import { BpeTokenizer } from "../../src/text/bpe.js";
import { detokenizeTagged, loadBrown } from "../../src/text/brown.js";
import { brownGenreTask } from "../../src/text/brown-genre.js";
import { TEXT_PRESETS } from "../../src/text/config.js";
import { HF_FIXTURES } from "../helpers.js";

test("labeled text from JSONL and from a folder per class", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-labeled-"));
  writeFileSync(join(dir, "a.jsonl"), '{"text": "one", "label": "x"}\n\n{"text": "two", "label": 3}\n');
  assert.deepEqual(readLabeledText(join(dir, "a.jsonl")), [{ text: "one", label: "x" }, { text: "two", label: "3" }]);
  writeFileSync(join(dir, "bad.jsonl"), '{"text": "one", "label": "x"}\n{"text": 5}\n');
  assert.throws(() => readLabeledText(join(dir, "bad.jsonl")), /bad\.jsonl:2 must be \{"text": string/);
  mkdirSync(join(dir, "classes", "pos", "deep"), { recursive: true });
  mkdirSync(join(dir, "classes", "neg"));
  writeFileSync(join(dir, "classes", "pos", "deep", "1.txt"), "good");
  writeFileSync(join(dir, "classes", "neg", "1.txt"), "bad");
  assert.deepEqual(readLabeledText(join(dir, "classes")), [{ text: "bad", label: "neg" }, { text: "good", label: "pos" }]);
  mkdirSync(join(dir, "classes", "empty"));
  assert.throws(() => readLabeledText(join(dir, "classes")), (e: Error) => e instanceof DataError && /empty holds no \.txt files/.test(e.message));
});

test("packing: every block is <s> … </s> of seqLen tokens, covering the token stream in order", () => {
  const tok = BpeTokenizer.load(join(HF_FIXTURES, "text-mlm"));
  const docs = ["The quick brown fox jumps over the lazy dog. ".repeat(20), "Second document here. ".repeat(10)];
  const blocks = packBlocks(docs, tok, 16);
  const stream = docs.flatMap((d) => [...tok.encode(d, { addSpecial: false }), tok.eos]);
  let pos = 0;
  for (const b of blocks) {
    assert.equal(b.length, 16);
    assert.equal(b[0], tok.bos);
    const body = Array.from(b.subarray(1)).filter((x) => x !== tok.pad);
    body.pop(); // closing </s>
    assert.deepEqual(body, stream.slice(pos, pos + body.length));
    pos += body.length;
  }
  assert.ok(pos >= stream.length - 14 / 4);
});

test("the Brown corpus loads as 500 plain-text documents in 15 genres", () => {
  const docs = loadBrown();
  assert.equal(docs.length, 500);
  assert.equal(new Set(docs.map((d) => d.genre)).size, 15);
  assert.ok(!/\/(at|nn|np)\b/.test(docs[0].text), "POS tags are stripped");
  assert.equal(detokenizeTagged("He/pps said/vbd ``/`` no/at ''/'' ,/, and/cc it's/pps+bez fine/jj ./."), 'He said "no", and it\'s fine.');
});

test("the Brown genre task splits by document and keeps test documents out of pretraining", () => {
  const t = brownGenreTask();
  assert.equal(t.labels.length, 8);
  assert.equal(t.train.length, 8 * 16);
  const testText = new Set(t.test.map((x) => x.text));
  for (const doc of t.pretrainDocs) for (const p of testText) assert.ok(!doc.includes(p));
  const docs = loadBrown();
  assert.equal(t.pretrainDocs.length, docs.length - t.testDocIds.length);
});

test("the tiny text preset is the one the project specifies", () => {
  const t = TEXT_PRESETS.tiny;
  assert.deepEqual(
    [t.model.layers, t.model.dim, t.model.ffnDim, t.model.heads, t.train.seqLen, t.train.batchSize, t.model.vocabSize, t.data2vec.topK, t.data2vec.targetNorm, t.data2vec.loss, t.data2vec.lossBeta, t.data2vec.headLayers, t.masking.kind],
    [4, 256, 1024, 4, 128, 8, 8000, 4, "layer", "smooth_l1", 4, 2, "span"],
  );
  const b = TEXT_PRESETS.base;
  assert.deepEqual([b.model.layers, b.model.dim, b.model.ffnDim, b.data2vec.topK, b.data2vec.ema.tauStart, b.data2vec.ema.tauEnd], [12, 768, 3072, 10, 0.999, 0.9999]);
});

test("an empty or missing corpus is a DataError", () => {
  assert.throws(() => readTextCorpus("/no/such/corpus"), DataError);
});

test("a corpus file is documents separated by blank lines, streamed: a 50 MB file, one without newlines, UTF-8 across chunks", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-corpus-file-"));
  const small = join(dir, "small.txt");
  writeFileSync(small, "First line.\r\nStill the first.\n\n  \nSecond document.\n\n\nThird, ünïcödé.");
  assert.deepEqual(readTextCorpus(small), ["First line.\nStill the first.", "Second document.", "Third, ünïcödé."]);

  // 50 MB in one file: many paragraphs, each a document; multi-byte characters straddle the 4 MB read chunks.
  const paragraph = "Ein schönes Beispiel — 例文です. ".repeat(40);
  const big = join(dir, "big.txt");
  const count = Math.ceil(50e6 / Buffer.byteLength(paragraph + "\n\n"));
  writeFileSync(big, Array.from({ length: count }, () => paragraph).join("\n\n"));
  const docs = readTextCorpus(big);
  assert.equal(docs.length, count);
  assert.ok(docs.every((d) => d === paragraph), "every document decodes exactly");

  // No blank line, no newline at all: documents are cut at spaces, none longer than MAX_DOCUMENT_CHARS.
  const words = "word ".repeat(600_000);
  const flat = join(dir, "flat.txt");
  writeFileSync(flat, words);
  const pieces = readTextCorpus(flat);
  assert.ok(pieces.length >= 3 && pieces.every((d) => d.length <= MAX_DOCUMENT_CHARS));
  assert.ok(pieces.join("") === words, "the pieces are the file, in order");
});

test("packing a one-document corpus of 1 MB (once a stack overflow) covers its whole token stream", () => {
  const tok = BpeTokenizer.train(["tiny words for a tiny vocabulary of pairs and pairs"], 300);
  const doc = "tiny words for a tiny vocabulary of pairs ".repeat(25_000);
  const blocks = packBlocks([doc], tok, 128);
  const tokens = tok.encode(doc, { addSpecial: false }).length + 1;
  assert.equal(blocks.length, Math.floor(tokens / 126) + (tokens % 126 >= 126 / 4 ? 1 : 0));
});

test("binary and non-UTF-8 files are refused with the offset of the problem", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-binary-"));
  writeFileSync(join(dir, "nul.txt"), Buffer.from("text\0more"));
  assert.throws(() => readTextCorpus(join(dir, "nul.txt")), (e: Error) => e instanceof DataError && /looks like a binary file.*character 4/.test(e.message));
  assert.throws(() => readUtf8(join(dir, "nul.txt")), /binary/);
  const bad = Buffer.concat([Buffer.alloc(5 << 20, 0x61), Buffer.from([0xff, 0x61])]);
  writeFileSync(join(dir, "late.txt"), bad);
  assert.throws(() => readTextCorpus(join(dir, "late.txt")), new RegExp(`near offset ${5 << 20}\\)`));
});
