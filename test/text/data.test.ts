import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { packBlocks, readLabeledText, readTextCorpus } from "../../src/text/data.js";
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
