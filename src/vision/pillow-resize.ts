/**
 * Pillow's convolution resampler (`Image.resize` for 8-bit images), reproduced pixel for pixel, because the
 * Hugging Face image processors resize with Pillow and pretrained vision models expect exactly those pixels.
 * Separable: a horizontal pass, then a vertical pass, each with per-output-pixel filter weights that are
 * stretched by the scale when downscaling (antialiasing), normalized, and quantized to 22-bit fixed point;
 * each pass rounds and clips to uint8, as Pillow does.
 */
import { DataError } from "../engine/errors.js";
import type { Image } from "./images.js";

type Filter = { support: number; weight: (x: number) => number };

const FILTERS: Record<number, Filter> = {
  // PIL.Image.Resampling: LANCZOS 1, BILINEAR 2, BICUBIC 3, BOX 4, HAMMING 5.
  1: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  2: { support: 1, weight: (x) => ((x = Math.abs(x)) < 1 ? 1 - x : 0) },
  3: { support: 2, weight: bicubic },
  4: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  5: { support: 1, weight: hamming },
};

function sinc(x: number): number {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

function bicubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function hamming(x: number): number {
  x = Math.abs(x);
  if (x === 0) return 1;
  if (x >= 1) return 0;
  x *= Math.PI;
  return (Math.sin(x) / x) * (Math.fround(0.54) + Math.fround(0.46) * Math.cos(x));
}

const PRECISION_BITS = 32 - 8 - 2;

type Coefficients = { ksize: number; bounds: Int32Array; weights: Int32Array };

/** Per-output-pixel source ranges and fixed-point weights (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`). */
function coefficients(inSize: number, outSize: number, filter: Filter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = filter.weight((x + xmin - center + 0.5) / filterScale);
      sum += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = sum !== 0 ? k[x] / sum : k[x];
      weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

const clip8 = (acc: number) => Math.min(255, Math.max(0, acc >> PRECISION_BITS));

/**
 * Resizes an 8-bit CHW image as `PIL.Image.resize((outWidth, outHeight), resample)` does (no reducing gap,
 * full-image box): each channel plane independently, horizontal pass first.
 */
export function pillowResize(image: Image, outWidth: number, outHeight: number, resample = 3): Image {
  const filter = FILTERS[resample];
  if (!filter) throw new DataError(`resample ${resample} is not supported; use 1 (lanczos), 2 (bilinear), 3 (bicubic), 4 (box) or 5 (hamming)`);
  const { channels, height, width } = image;
  let src = image.data;
  let w = width;
  const half = 1 << (PRECISION_BITS - 1);
  if (outWidth !== width) {
    const { ksize, bounds, weights } = coefficients(width, outWidth, filter);
    const out = new Uint8Array(channels * height * outWidth);
    for (let row = 0; row < channels * height; row++) {
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = bounds[xx * 2];
        const n = bounds[xx * 2 + 1];
        let acc = half;
        for (let x = 0; x < n; x++) acc += src[row * w + x + xmin] * weights[xx * ksize + x];
        out[row * outWidth + xx] = clip8(acc);
      }
    }
    src = out;
    w = outWidth;
  }
  if (outHeight !== height) {
    const { ksize, bounds, weights } = coefficients(height, outHeight, filter);
    const out = new Uint8Array(channels * outHeight * w);
    for (let c = 0; c < channels; c++) {
      const plane = c * height * w;
      for (let yy = 0; yy < outHeight; yy++) {
        const ymin = bounds[yy * 2];
        const n = bounds[yy * 2 + 1];
        for (let x = 0; x < w; x++) {
          let acc = half;
          for (let y = 0; y < n; y++) acc += src[plane + (y + ymin) * w + x] * weights[yy * ksize + y];
          out[(c * outHeight + yy) * w + x] = clip8(acc);
        }
      }
    }
    src = out;
  }
  return { channels, height: outHeight, width: outWidth, data: src === image.data ? image.data.slice() : src };
}
