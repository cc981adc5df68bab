import { test } from "node:test";
import assert from "node:assert/strict";
import { HostRng } from "../../src/engine/random.js";
import { maskTokens, type TextMaskConfig } from "../../src/text/masking.js";
import { parseTextRunConfig, resolveTextConfig } from "../../src/text/config.js";

const MASK = 999;
const BOS = 0, EOS = 2, PAD = 1;
const special = { maskId: MASK, isSpecial: (id: number) => id < 4 || id === MASK, vocabSize: 1000, firstRegularId: 4 };

function sequence(rng: HostRng, n: number, pad: number): Int32Array {
  const ids = new Int32Array(n + 2 + pad).fill(PAD);
  ids[0] = BOS;
  for (let i = 1; i <= n; i++) ids[i] = rng.int(4, 900);
  ids[n + 1] = EOS;
  return ids;
}

test("BERT masking: 15% of the tokens, 80% <mask> / 10% random / 10% kept, specials untouched", () => {
  const cfg: TextMaskConfig = { kind: "bert", ratio: 0.15, spanLength: 1, randomTokenProb: 0.1, leaveUnmaskedProb: 0.1 };
  const rng = HostRng.seeded(1);
  let regular = 0, masked = 0, replaced = 0, changedOrMasked = 0;
  for (let s = 0; s < 3000; s++) {
    const ids = sequence(rng, 100, 5);
    const { source, lossWeights } = maskTokens(ids, cfg, rng, special);
    ids.forEach((id, i) => {
      if (special.isSpecial(id)) {
        assert.equal(source[i], id, "special tokens are never masked");
        return;
      }
      regular++;
      if (source[i] === MASK) masked++;
      else if (source[i] !== id) replaced++;
      if (source[i] !== id) changedOrMasked++;
      assert.equal(lossWeights[i], source[i] === MASK ? 1 : 0, "the loss covers exactly the <mask> steps");
    });
  }
  const selected = masked / 0.8; // the 10% kept are invisible, infer the selection from the masked share
  assert.ok(Math.abs(selected / regular - 0.15) < 0.006, `selected ${(selected / regular).toFixed(4)}`);
  assert.ok(Math.abs(masked / (masked + replaced) - 8 / 9) < 0.01, `mask share among changed ${(masked / (masked + replaced)).toFixed(4)}`);
  assert.ok(Math.abs(changedOrMasked / regular - 0.135) < 0.006);
});

test("span masking: masking.ratio of the tokens (fairseq's mask_prob 0.35 in spans of 4) in runs of at least 4, all <mask>", () => {
  const cfg: TextMaskConfig = { kind: "span", ratio: 0.31, spanLength: 4, randomTokenProb: 0, leaveUnmaskedProb: 0 };
  const rng = HostRng.seeded(2);
  let regular = 0, masked = 0;
  for (let s = 0; s < 3000; s++) {
    const n = 120;
    const ids = sequence(rng, n, 0);
    const { source, lossWeights } = maskTokens(ids, cfg, rng, special);
    assert.equal(source[0], BOS);
    assert.equal(source[n + 1], EOS);
    let run = 0;
    for (let i = 1; i <= n + 1; i++) {
      const isMasked = source[i] === MASK;
      if (!isMasked && source[i] !== ids[i]) assert.fail("span masking never substitutes random tokens");
      assert.equal(lossWeights[i], isMasked ? 1 : 0);
      if (isMasked) run++;
      else {
        if (run > 0) assert.ok(run >= 4 || i === n + 1, `a masked run of ${run} ended inside the sequence`);
        run = 0;
      }
    }
    regular += n;
    masked += source.filter((x) => x === MASK).length;
  }
  // masking.ratio is the expected masked fraction, overlaps of the spans counted once.
  const frac = masked / regular;
  assert.ok(Math.abs(frac - cfg.ratio) < 0.02, `masked ${frac.toFixed(4)} vs masking.ratio ${cfg.ratio}`);
});

test("masking is deterministic for a seed", () => {
  const cfg: TextMaskConfig = { kind: "bert", ratio: 0.15, spanLength: 1, randomTokenProb: 0.1, leaveUnmaskedProb: 0.1 };
  const ids = sequence(HostRng.seeded(3), 50, 0);
  const a = maskTokens(ids, cfg, HostRng.seeded(9), special);
  const b = maskTokens(ids, cfg, HostRng.seeded(9), special);
  assert.deepEqual(a.source, b.source);
});

test("the text config refuses what BERT masking would ignore; a saved BERT config migrates", () => {
  assert.throws(() => resolveTextConfig("tiny", { masking: { kind: "bert", spanLength: 4 } }), /BERT masking chooses single tokens and ignores spanLength/);
  const bert = resolveTextConfig("tiny", { masking: { kind: "bert", ratio: 0.15, spanLength: 1 } });
  const { ratio: _ratio, ...old } = bert.masking;
  const migrated = parseTextRunConfig({ kind: "data2vec-pretrain", ...bert, masking: { ...old, prob: 0.15, spanLength: 3 } }, "config.json");
  assert.deepEqual(migrated.masking, bert.masking, "BERT's prob is its ratio, and the spanLength it never read becomes 1");
});
