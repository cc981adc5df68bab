/**
 * data2vec 2.0's masks, drawn on the host: every view of a batch hides the same number of steps (the student's
 * visible steps must stack), so each mask has an exact count.
 * - images: inverse block masking (fairseq `compute_block_mask_2d` with `inverse_mask`): blocks of
 *   `blockLength`² patches are KEPT around random centres until about (1 − ratio + adjust) of the grid, then
 *   patches are added or dropped at random to keep exactly ⌊L·(1 − ratio)⌋; everything else is masked;
 * - text: a `ratio` of each row's maskable tokens, single tokens drawn uniformly (fairseq `random_masking`);
 * - speech: block masking in 1-D (fairseq `compute_block_mask_1d`, the yaml's precomputed masks): spans of
 *   `blockLength` frames around random centres until about (ratio + adjust) of the frames, then frames are added
 *   or dropped at random to mask exactly ⌊n·ratio⌋ (n: the fewest real frames of the batch's rows).
 */
import type { HostRng } from "../engine/random.js";

/**
 * One inverse block mask over a g×g grid (row-major, 1 = masked): exactly g² − ⌊g²·(1 − ratio)⌋ masked patches;
 * the visible ones are mostly in blocks of `blockLength`² (clipped at the border).
 */
export function inverseBlockMask(grid: number, s: { ratio: number; blockLength: number; probAdjust: number }, rng: HostRng): Uint8Array {
  const steps = grid * grid;
  const keepFraction = 1 - s.ratio;
  const visible = new Uint8Array(steps);
  const centres = Math.floor((steps * (keepFraction + s.probAdjust)) / (s.blockLength * s.blockLength));
  const offset = Math.floor(s.blockLength / 2);
  const clamp = (v: number) => Math.min(grid - 1, Math.max(0, v));
  for (let c = 0; c < centres; c++) {
    const centre = rng.int(0, steps - 1);
    const [row, col] = [Math.floor(centre / grid), centre % grid];
    for (let i = 0; i < s.blockLength; i++) for (let j = 0; j < s.blockLength; j++) visible[clamp(row + i - offset) * grid + clamp(col + j - offset)] = 1;
  }
  // Exactly ⌊L·(1 − ratio)⌋ visible patches: drop or add random ones (fairseq's require_same_masks).
  const target = Math.floor(steps * keepFraction);
  const on = [...visible.keys()].filter((i) => visible[i]);
  const off = [...visible.keys()].filter((i) => !visible[i]);
  if (on.length > target) for (const k of rng.sample(on.length, on.length - target)) visible[on[k]] = 0;
  else if (on.length < target) for (const k of rng.sample(off.length, target - on.length)) visible[off[k]] = 1;
  return visible.map((v) => 1 - v);
}

/**
 * Masks for `rows` views of sequences whose maskable steps are `candidates[r]` (indices into a row of `steps`):
 * each view masks `count` of its candidates, drawn uniformly without replacement. `count` is the same for every
 * view: round(ratio · the fewest candidates of any row), at least 1.
 */
export function tokenMasks(candidates: number[][], steps: number, ratio: number, rng: HostRng): Uint8Array {
  const fewest = Math.min(...candidates.map((c) => c.length));
  const count = Math.max(1, Math.round(ratio * fewest));
  const mask = new Uint8Array(candidates.length * steps);
  candidates.forEach((c, r) => {
    for (const k of rng.sample(c.length, Math.min(count, c.length))) mask[r * steps + c[k]] = 1;
  });
  return mask;
}

/**
 * Span masks for `lengths.length` views of `steps` frames, of which the first lengths[r] are real: each masks
 * exactly ⌊min(lengths)·ratio⌋ real frames, in spans of `blockLength` around ⌊n·(ratio + adjust)/blockLength⌋
 * random centres (clipped at the row's ends), then frames added or dropped at random to reach the count.
 */
export function spanBlockMasks(lengths: number[], steps: number, s: { ratio: number; blockLength: number; probAdjust: number }, rng: HostRng): Uint8Array {
  const count = Math.floor(Math.min(...lengths) * s.ratio);
  const out = new Uint8Array(lengths.length * steps);
  const offset = Math.floor(s.blockLength / 2);
  lengths.forEach((n, r) => {
    const row = out.subarray(r * steps, r * steps + n);
    const centres = Math.floor((n * (s.ratio + s.probAdjust)) / s.blockLength);
    for (let c = 0; c < centres; c++) {
      const centre = rng.int(0, n - 1);
      for (let i = 0; i < s.blockLength; i++) row[Math.min(n - 1, Math.max(0, centre + i - offset))] = 1;
    }
    const on = [...row.keys()].filter((i) => row[i]);
    const off = [...row.keys()].filter((i) => !row[i]);
    if (on.length > count) for (const k of rng.sample(on.length, on.length - count)) row[on[k]] = 0;
    else if (on.length < count) for (const k of rng.sample(off.length, count - on.length)) row[off[k]] = 1;
  });
  return out;
}
