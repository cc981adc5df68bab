import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { BpeTokenizer } from "../../src/text/bpe.js";
import { VocabError } from "../../src/engine/errors.js";
import { HF_FIXTURES } from "../helpers.js";

type Case = { text: string; tokens: string[]; ids: number[]; ids_no_special: number[]; decoded_no_cleanup: string };

test("RoBERTa vocabulary reproduces every id of the HF tokenizer fixture", () => {
  const tok = BpeTokenizer.load(join(HF_FIXTURES, "text-mlm"));
  const { cases } = JSON.parse(readFileSync(join(HF_FIXTURES, "tokenizer", "cases.json"), "utf8")) as { cases: Case[] };
  assert.ok(cases.length >= 40);
  for (const c of cases) {
    assert.deepEqual(tok.tokenize(c.text), c.tokens, `tokens of ${JSON.stringify(c.text)}`);
    assert.deepEqual(tok.encode(c.text), c.ids, `ids of ${JSON.stringify(c.text)}`);
    assert.deepEqual(tok.encode(c.text, { addSpecial: false }), c.ids_no_special);
    assert.equal(tok.decode(c.ids_no_special), c.decoded_no_cleanup, `decode of ${JSON.stringify(c.text)}`);
  }
});

test("trained vocabulary: size, special ids, round trip and save/load", () => {
  const corpus = Array.from({ length: 200 }, (_, i) => `the quick brown fox ${i} jumps over the lazy dog; the dog sleeps. Ünïcode ${i % 7}`);
  const tok = BpeTokenizer.train(corpus, 300);
  assert.equal(tok.size, 300);
  assert.deepEqual([tok.bos, tok.pad, tok.eos, tok.unk, tok.mask], [0, 1, 2, 3, 299]);
  // The most frequent pieces become single tokens.
  assert.deepEqual(tok.tokenize(" the"), ["Ġthe"]);
  const text = "the lazy fox: 123 Ünïcode <mask> end";
  assert.equal(tok.decode(tok.encode(text, { addSpecial: false })), "the lazy fox: 123 Ünïcode<mask> end");
  const dir = mkdtempSync(join(tmpdir(), "bpe-"));
  tok.save(dir);
  const again = BpeTokenizer.load(dir);
  assert.deepEqual(again.encode(text), tok.encode(text));
  // Deterministic training.
  assert.deepEqual(BpeTokenizer.train(corpus, 300).merges, tok.merges);
});

test("bad vocabularies give typed errors", () => {
  assert.throws(() => BpeTokenizer.load("/nonexistent-dir"), VocabError);
  assert.throws(() => BpeTokenizer.train(["abc"], 100), VocabError);
  assert.throws(() => new BpeTokenizer(new Map([["a", 0]]), []), /special token <s>/);
});
