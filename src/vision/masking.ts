/**
 * BEiT block-wise masking (BEiT's `MaskingGenerator`, used by data2vec for images): rectangles of at least
 * `minBlock` patches with a log-uniform aspect ratio are added until the target count is reached or a block
 * adds nothing; a block is kept only if it adds between 1 and the remaining count of new patches, so the
 * count never exceeds the target.
 */
import type { HostRng } from "../engine/random.js";

export type BlockMaskSettings = {
  /** Fraction of the grid to mask. */
  ratio: number;
  /** Smallest block in patches; null scales BEiT's 16 (on 14×14 = 196 patches) to the grid, at least 1. */
  minBlockPatches: number | null;
  /** Aspect ratios are drawn log-uniformly from [minAspect, 1 / minAspect]. */
  minAspect: number;
};

export function minBlockFor(s: BlockMaskSettings, patches: number): number {
  return s.minBlockPatches ?? Math.max(1, Math.round((16 * patches) / 196));
}

/** One mask over a gh×gw grid: Uint8Array in row-major order, 1 = masked. */
export function blockMask(gh: number, gw: number, s: BlockMaskSettings, rng: HostRng): Uint8Array {
  const mask = new Uint8Array(gh * gw);
  const target = Math.round(s.ratio * gh * gw);
  const minBlock = minBlockFor(s, gh * gw);
  const [logLo, logHi] = [Math.log(s.minAspect), Math.log(1 / s.minAspect)];
  let count = 0;
  while (count < target) {
    const maxBlock = target - count;
    let delta = 0;
    for (let attempt = 0; attempt < 10 && delta === 0; attempt++) {
      // Python's random.uniform(a, b) also accepts a > b (the last blocks can be smaller than minBlock).
      const area = minBlock + (maxBlock - minBlock) * rng.uniform();
      const aspect = Math.exp(logLo + (logHi - logLo) * rng.uniform());
      const h = Math.round(Math.sqrt(area * aspect));
      const w = Math.round(Math.sqrt(area / aspect));
      if (w >= gw || h >= gh) continue;
      const top = rng.int(0, gh - h);
      const left = rng.int(0, gw - w);
      let already = 0;
      for (let y = top; y < top + h; y++) for (let x = left; x < left + w; x++) already += mask[y * gw + x];
      const added = h * w - already;
      if (added > 0 && added <= maxBlock) {
        for (let y = top; y < top + h; y++) for (let x = left; x < left + w; x++) mask[y * gw + x] = 1;
        delta = added;
      }
    }
    if (delta === 0) break;
    count += delta;
  }
  return mask;
}
