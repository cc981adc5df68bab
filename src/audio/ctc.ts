/**
 * CTC (Graves et al. 2006) for character transcription: the wav2vec 2.0 LibriSpeech vocabulary, the loss and
 * its gradient in log space (float64, on the host), greedy decoding and prefix beam search.
 *
 * The loss runs on the host rather than in the traced graph: the forward–backward recursion is a loop over
 * time with data-dependent lengths, and its exact gradient with respect to the logits has a closed form
 * (softmax − posterior occupancy), which the training step feeds back as the cotangent of the logits.
 */
import { DataError } from "../engine/errors.js";

/** The character vocabulary of facebook/wav2vec2-base-960h and data2vec-audio-*-960h (Wav2Vec2CTCTokenizer). */
export const LIBRISPEECH_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L", "U", "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z"];
export const BLANK = 0;
export const WORD_DELIMITER = "|";

/**
 * Transcript → ids: upper-cased, words joined by `|`. Characters outside the vocabulary are an error (the
 * message names them); map them in the transcripts first (LibriSpeech transcripts need nothing).
 */
export function encodeTranscript(text: string, vocab: string[] = LIBRISPEECH_VOCAB, where = "a transcript"): number[] {
  const index = new Map(vocab.map((c, i) => [c, i]));
  const words = casedFor(vocab, text).trim().split(/\s+/).filter(Boolean);
  const ids: number[] = [];
  const unknown = new Set<string>();
  words.forEach((w, k) => {
    if (k > 0) ids.push(index.get(WORD_DELIMITER)!);
    for (const ch of w) {
      const id = index.get(ch);
      if (id === undefined || id <= 3) unknown.add(ch);
      else ids.push(id);
    }
  });
  if (unknown.size > 0) {
    const letters = vocab.filter((c, i) => i > 3 && c !== WORD_DELIMITER).join("");
    throw new DataError(
      `${where} has characters outside the vocabulary (${[...unknown].map((c) => JSON.stringify(c)).join(", ")}): "${text.slice(0, 60)}"; ` +
        `the model can spell only ${JSON.stringify(letters)} and spaces: map those characters in the transcripts, or fine-tune with --new-head from a model without vocab.json (its vocabulary is then built from the transcripts)`,
    );
  }
  return ids;
}

/** Transcripts are upper-cased for vocabularies of capitals (LibriSpeech's), lower-cased for lower-case ones. */
function casedFor(vocab: string[], text: string): string {
  const upper = vocab.some((c) => c.length === 1 && c !== c.toLowerCase());
  const lower = vocab.some((c) => c.length === 1 && c !== c.toUpperCase());
  return lower && !upper ? text.toLowerCase() : upper ? text.toUpperCase() : text;
}

/**
 * A character vocabulary for transcripts, in Wav2Vec2CTCTokenizer's layout: `<pad>` (the blank), `<s>`, `</s>`,
 * `<unk>`, the word delimiter `|`, then every character the (upper-cased) transcripts use, most frequent first.
 */
export function ctcVocabularyOf(transcripts: string[]): string[] {
  const counts = new Map<string, number>();
  for (const t of transcripts) for (const ch of t.toUpperCase()) if (!/\s/.test(ch)) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  const chars = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([c]) => c);
  return ["<pad>", "<s>", "</s>", "<unk>", WORD_DELIMITER, ...chars];
}

/** Greedy (best path) decoding as Wav2Vec2CTCTokenizer: collapse repeats, drop the blank, `|` → space, trim. */
export function ctcGreedyDecode(ids: ArrayLike<number>, vocab: string[], blank: number = BLANK, wordDelimiter = WORD_DELIMITER): string {
  let out = "";
  let prev = -1;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id !== prev && id !== blank) out += vocab[id] === wordDelimiter ? " " : (vocab[id] ?? "");
    prev = id;
  }
  return out.trim();
}

function logSumExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  return a > b ? a + Math.log1p(Math.exp(b - a)) : b + Math.log1p(Math.exp(a - b));
}

/** Row-wise log-softmax of logits [T, V] (float64). */
export function logSoftmax(logits: ArrayLike<number>, frames: number, classes: number): Float64Array {
  const out = new Float64Array(frames * classes);
  for (let t = 0; t < frames; t++) {
    let max = -Infinity;
    for (let k = 0; k < classes; k++) max = Math.max(max, logits[t * classes + k]);
    let sum = 0;
    for (let k = 0; k < classes; k++) sum += Math.exp(logits[t * classes + k] - max);
    const lse = max + Math.log(sum);
    for (let k = 0; k < classes; k++) out[t * classes + k] = logits[t * classes + k] - lse;
  }
  return out;
}

/**
 * −log p(labels | logits) for one utterance, and its gradient with respect to the logits [T, V] (row-major,
 * `frames` rows). Infinite when no alignment fits (too few frames for the labels and their repeats).
 */
export function ctcLoss(logits: ArrayLike<number>, frames: number, classes: number, labels: number[], blank: number = BLANK): { loss: number; grad: Float64Array } {
  const lp = logSoftmax(logits, frames, classes);
  const S = 2 * labels.length + 1;
  const ext = Array.from({ length: S }, (_, s) => (s % 2 === 0 ? blank : labels[(s - 1) / 2]));
  const alpha = new Float64Array(frames * S).fill(-Infinity);
  const beta = new Float64Array(frames * S).fill(-Infinity);
  const grad = new Float64Array(frames * classes);
  if (frames === 0) return { loss: Infinity, grad };
  // A step may come from s, s−1, or s−2 when s is a label different from the one two back (skip the blank).
  const canSkip = (s: number) => s >= 2 && ext[s] !== blank && ext[s] !== ext[s - 2];
  alpha[0] = lp[ext[0]];
  if (S > 1) alpha[1] = lp[ext[1]];
  for (let t = 1; t < frames; t++) {
    for (let s = 0; s < S; s++) {
      let a = alpha[(t - 1) * S + s];
      if (s >= 1) a = logSumExp(a, alpha[(t - 1) * S + s - 1]);
      if (canSkip(s)) a = logSumExp(a, alpha[(t - 1) * S + s - 2]);
      alpha[t * S + s] = a === -Infinity ? -Infinity : a + lp[t * classes + ext[s]];
    }
  }
  const T = frames - 1;
  const logP = S > 1 ? logSumExp(alpha[T * S + S - 1], alpha[T * S + S - 2]) : alpha[T * S];
  if (logP === -Infinity) return { loss: Infinity, grad };
  beta[T * S + S - 1] = lp[T * classes + ext[S - 1]];
  if (S > 1) beta[T * S + S - 2] = lp[T * classes + ext[S - 2]];
  for (let t = T - 1; t >= 0; t--) {
    for (let s = 0; s < S; s++) {
      let b = beta[(t + 1) * S + s];
      if (s + 1 < S) b = logSumExp(b, beta[(t + 1) * S + s + 1]);
      if (s + 2 < S && canSkip(s + 2)) b = logSumExp(b, beta[(t + 1) * S + s + 2]);
      beta[t * S + s] = b === -Infinity ? -Infinity : b + lp[t * classes + ext[s]];
    }
  }
  // α_t(s)·β_t(s) counts y_t(ext[s]) twice: occupancy_t(k) = Σ_{s: ext[s]=k} exp(α + β − lp_t(k) − log p).
  const occupancy = new Float64Array(classes);
  for (let t = 0; t < frames; t++) {
    occupancy.fill(0);
    for (let s = 0; s < S; s++) {
      const ab = alpha[t * S + s] + beta[t * S + s];
      if (ab !== -Infinity) occupancy[ext[s]] += Math.exp(ab - lp[t * classes + ext[s]] - logP);
    }
    for (let k = 0; k < classes; k++) grad[t * classes + k] = Math.exp(lp[t * classes + k]) - occupancy[k];
  }
  return { loss: -logP, grad };
}

/**
 * CTC prefix beam search (no language model) over log-probabilities [T, V]: keeps the `beamWidth` most
 * probable label prefixes, each with the probability of ending in a blank and in a non-blank, so that
 * alignments of the same labeling are summed rather than competing (unlike greedy best-path decoding).
 */
export function ctcBeamSearch(logProbs: ArrayLike<number>, frames: number, classes: number, beamWidth: number, blank: number = BLANK): number[] {
  type Beam = { blank: number; nonBlank: number };
  const key = (p: number[]) => p.join(",");
  let beams = new Map<string, { prefix: number[]; p: Beam }>([["", { prefix: [], p: { blank: 0, nonBlank: -Infinity } }]]);
  for (let t = 0; t < frames; t++) {
    const next = new Map<string, { prefix: number[]; p: Beam }>();
    const entry = (prefix: number[]) => {
      const k = key(prefix);
      let e = next.get(k);
      if (!e) next.set(k, (e = { prefix, p: { blank: -Infinity, nonBlank: -Infinity } }));
      return e.p;
    };
    for (const { prefix, p } of beams.values()) {
      const total = logSumExp(p.blank, p.nonBlank);
      for (let c = 0; c < classes; c++) {
        const lp = logProbs[t * classes + c];
        if (c === blank) {
          const e = entry(prefix);
          e.blank = logSumExp(e.blank, total + lp);
          continue;
        }
        const last = prefix[prefix.length - 1];
        const extended = entry([...prefix, c]);
        if (c === last) {
          // A repeat extends the prefix only across a blank; otherwise it continues the same label.
          extended.nonBlank = logSumExp(extended.nonBlank, p.blank + lp);
          const same = entry(prefix);
          same.nonBlank = logSumExp(same.nonBlank, p.nonBlank + lp);
        } else extended.nonBlank = logSumExp(extended.nonBlank, total + lp);
      }
    }
    beams = new Map(
      [...next.entries()].sort((a, b) => logSumExp(b[1].p.blank, b[1].p.nonBlank) - logSumExp(a[1].p.blank, a[1].p.nonBlank)).slice(0, beamWidth),
    );
  }
  let best: number[] = [];
  let bestScore = -Infinity;
  for (const { prefix, p } of beams.values()) {
    const s = logSumExp(p.blank, p.nonBlank);
    if (s > bestScore) [best, bestScore] = [prefix, s];
  }
  return best;
}

/** Label ids → text (`|` → space, specials dropped). */
export function labelsToText(ids: number[], vocab: string[] = LIBRISPEECH_VOCAB): string {
  return ids
    .map((id) => (vocab[id] === WORD_DELIMITER ? " " : id <= 3 ? "" : vocab[id]))
    .join("")
    .replace(/ +/g, " ")
    .trim();
}
