import assert from "node:assert/strict";
import { test } from "node:test";
import { BLANK, LIBRISPEECH_VOCAB, ctcBeamSearch, ctcGreedyDecode, ctcLoss, encodeTranscript, labelsToText, logSoftmax } from "../../src/audio/ctc.js";
import { DataError } from "../../src/engine/errors.js";
import { charErrorRate, editDistance, wordErrorRate } from "../../src/train/metrics.js";

/** −log Σ over every frame path that collapses to `labels` of Π softmax, by enumerating all V^T paths. */
function bruteForce(logits: number[], T: number, V: number, labels: number[]): number {
  const lp = logSoftmax(logits, T, V);
  let total = 0;
  const path = new Array(T).fill(0);
  const visit = (t: number, logp: number) => {
    if (t === T) {
      const collapsed: number[] = [];
      path.forEach((k, i) => {
        if (k !== BLANK && (i === 0 || path[i - 1] !== k)) collapsed.push(k);
      });
      if (collapsed.join() === labels.join()) total += Math.exp(logp);
      return;
    }
    for (let k = 0; k < V; k++) {
      path[t] = k;
      visit(t + 1, logp + lp[t * V + k]);
    }
  };
  visit(0, 0);
  return -Math.log(total);
}

function randomLogits(T: number, V: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: T * V }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 4 - 2);
}

test("CTC loss equals brute-force enumeration of all alignments (repeats, blanks between repeats, empty labels)", () => {
  const cases: [number, number, number[]][] = [
    [4, 3, [1, 2]],
    [5, 3, [1, 1]], // a repeat needs a blank between
    [5, 4, [3, 1, 3]],
    [3, 3, []],
    [6, 3, [2, 1, 2, 1]],
  ];
  cases.forEach(([T, V, labels], i) => {
    const logits = randomLogits(T, V, 7 + i);
    const { loss } = ctcLoss(logits, T, V, labels);
    const expected = bruteForce(logits, T, V, labels);
    assert.ok(Math.abs(loss - expected) < 1e-9, `case ${i}: ${loss} vs ${expected}`);
  });
});

test("CTC gradient with respect to the logits matches central finite differences", () => {
  const [T, V, labels] = [5, 4, [1, 3, 3]];
  const logits = randomLogits(T, V, 99);
  const { grad } = ctcLoss(logits, T, V, labels);
  const h = 1e-5;
  logits.forEach((_, j) => {
    const up = logits.slice();
    const down = logits.slice();
    up[j] += h;
    down[j] -= h;
    const fd = (ctcLoss(up, T, V, labels).loss - ctcLoss(down, T, V, labels).loss) / (2 * h);
    assert.ok(Math.abs(fd - grad[j]) < 1e-6, `logit ${j}: analytic ${grad[j]} vs finite difference ${fd}`);
  });
});

test("CTC is infinite when the labels cannot fit in the frames", () => {
  // Two equal labels need three frames (label, blank, label).
  assert.equal(ctcLoss(randomLogits(2, 3, 1), 2, 3, [1, 1]).loss, Infinity);
  assert.ok(Number.isFinite(ctcLoss(randomLogits(3, 3, 1), 3, 3, [1, 1]).loss));
});

test("greedy decoding collapses repeats, drops blanks, maps | to spaces", () => {
  const v = LIBRISPEECH_VOCAB;
  const id = (c: string) => v.indexOf(c);
  const ids = [0, id("H"), id("H"), 0, id("I"), id("|"), id("|"), 0, id("Y"), id("O"), 0, id("O"), 0];
  assert.equal(ctcGreedyDecode(ids, v), "HI YOO");
});

test("beam search finds the most probable labeling where the best path does not", () => {
  // Per frame: P(blank)=0.4, P(a)=0.35, P(b)=0.25 at both frames. Best path "blank blank" → "" (0.16), but
  // P("a") = 0.35·0.4 + 0.4·0.35 + 0.35·0.35 = 0.4025 beats P("") = 0.16.
  const probs = [0.4, 0.35, 0.25, 0.4, 0.35, 0.25];
  const lp = probs.map(Math.log);
  assert.deepEqual(ctcBeamSearch(lp, 2, 3, 1), []);
  assert.deepEqual(ctcBeamSearch(lp, 2, 3, 8), [1]);
  // With a wide beam the result is the exact argmax over labelings (checked by brute force).
  const logits = randomLogits(4, 3, 5);
  const l = logSoftmax(logits, 4, 3);
  const candidates = [[], [1], [2], [1, 2], [2, 1], [1, 1], [2, 2], [1, 2, 1], [2, 1, 2], [1, 1, 2], [1, 2, 2], [2, 2, 1], [2, 1, 1], [1, 2, 1, 2], [2, 1, 2, 1]];
  const best = candidates.map((c) => ({ c, loss: ctcLoss(logits, 4, 3, c).loss })).sort((a, b) => a.loss - b.loss)[0].c;
  assert.deepEqual(ctcBeamSearch(l, 4, 3, 50), best);
});

test("transcripts map to the wav2vec 2.0 LibriSpeech vocabulary; other characters are a clear error", () => {
  const ids = encodeTranscript("it's  a cat");
  assert.equal(labelsToText(ids), "IT'S A CAT");
  assert.equal(ids[0], LIBRISPEECH_VOCAB.indexOf("I"));
  assert.equal(ids.filter((i) => i === LIBRISPEECH_VOCAB.indexOf("|")).length, 2);
  assert.throws(() => encodeTranscript("room 101!", LIBRISPEECH_VOCAB, "utt-7"), (e: Error) => e instanceof DataError && /utt-7/.test(e.message) && /"1"/.test(e.message) && /"!"/.test(e.message));
});

test("WER and CER count edits over reference length (corpus level)", () => {
  assert.equal(editDistance("kitten", "sitting"), 3);
  // 1 substitution + 1 deletion over 4 + 2 reference words.
  assert.equal(wordErrorRate(["the cat sat down", "hi there"], ["the bat sat", "hi there"]), 2 / 6);
  assert.equal(wordErrorRate(["a b"], ["a b c d"]), 1); // insertions count: WER can exceed… here 2/2
  assert.equal(charErrorRate(["abc"], ["abd"]), 1 / 3);
  assert.equal(charErrorRate(["a  b"], ["a b"]), 0);
});
