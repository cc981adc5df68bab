/**
 * Span masking for speech (wav2vec 2.0 / data2vec, fairseq's `compute_mask_indices`, static lengths):
 * every real frame starts a span of `spanLength` frames with probability p / spanLength, spans may overlap,
 * so p = 0.65 with spans of 10 masks about 49% of the frames (`spanStartProbability` turns a masked fraction
 * into p). All rows of a batch end up with the same
 * number of masked frames: rows with more drop randomly chosen ones down to the smallest count.
 */
import type { HostRng } from "../engine/random.js";

export type SpanMaskSettings = {
  /** p: each frame starts a span with probability p / spanLength (fairseq's mask_prob). */
  spanStartProb: number;
  spanLength: number;
  /** At least this many spans per row. */
  minSpans: number;
};

/** The masked frame indices of one row of `frames` real frames (sorted, distinct). */
function rowSpans(frames: number, s: SpanMaskSettings, rng: HostRng): number[] {
  let spans = Math.max(s.minSpans, Math.floor((s.spanStartProb * frames) / s.spanLength + rng.uniform()));
  let span = s.spanLength;
  // A short row: shrink the spans so that `spans` distinct starts fit (fairseq's rule).
  if (frames - span <= spans) span = Math.max(0, frames - spans - 1);
  spans = Math.min(spans, Math.max(0, frames - span));
  const starts = rng.sample(Math.max(0, frames - span), spans);
  const masked = new Set<number>();
  for (const start of starts) for (let j = 0; j < Math.max(1, span); j++) if (start + j < frames) masked.add(start + j);
  return [...masked].sort((a, b) => a - b);
}

/**
 * A [rows × maxFrames] mask (1 = masked) for rows with the given numbers of real frames; padded frames are
 * never masked, and every row has the same number of masked frames.
 */
export function spanMask(frameLengths: number[], maxFrames: number, s: SpanMaskSettings, rng: HostRng): Uint8Array {
  const rows = frameLengths.map((n) => rowSpans(n, s, rng));
  const count = Math.min(...rows.map((r) => r.length));
  const mask = new Uint8Array(frameLengths.length * maxFrames);
  rows.forEach((idx, i) => {
    const keep = idx.length > count ? rng.sample(idx.length, count).map((k) => idx[k]) : idx;
    for (const t of keep) mask[i * maxFrames + t] = 1;
  });
  return mask;
}
