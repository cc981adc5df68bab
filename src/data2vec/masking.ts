/**
 * One meaning of `masking.ratio` in every modality: the expected fraction of the steps that are masked. Span
 * masking (text spans, speech) draws span starts instead, each step with probability p / L, and lets spans
 * overlap (fairseq's `mask_prob` is that p). A step is then left unmasked when none of the L starts that would
 * cover it is drawn: 1 − ratio = (1 − p / L)^L. These two functions convert between the two.
 */

/** fairseq's span-start `mask_prob` p that masks `ratio` of the steps with spans of `spanLength` (overlaps counted once). */
export function spanStartProbability(ratio: number, spanLength: number): number {
  return spanLength * (1 - Math.pow(1 - ratio, 1 / spanLength));
}

/** The expected masked fraction of span masking with span-start probability p (fairseq's `mask_prob`). */
export function spanMaskRatio(spanStartProb: number, spanLength: number): number {
  return 1 - Math.pow(1 - spanStartProb / spanLength, spanLength);
}
