/**
 * Seeded augmentations on the host, applied once per image so the teacher and the student see the same
 * augmented view (as data2vec does): random resized crop (torchvision's sampling), horizontal flip, color
 * jitter (brightness, contrast, saturation), then normalization by mean and std.
 */
import type { HostRng } from "../engine/random.js";
import type { AugmentConfig } from "./config.js";
import type { Image } from "./images.js";

/** A crop box in source pixels. */
export type Box = { top: number; left: number; height: number; width: number };

/** torchvision `RandomResizedCrop.get_params`: 10 tries at a random area and aspect, then a center crop. */
export function sampleCrop(height: number, width: number, scale: [number, number], ratio: [number, number], rng: HostRng): Box {
  const area = height * width;
  const [logLo, logHi] = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (scale[0] + (scale[1] - scale[0]) * rng.uniform());
    const aspect = Math.exp(logLo + (logHi - logLo) * rng.uniform());
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { top: rng.int(0, height - h), left: rng.int(0, width - w), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** Bilinear resampling of a box of an 8-bit CHW image to size × size floats in [0, 1] (half-pixel centers). */
export function resizeBox(img: Image, box: Box, size: number): Float32Array {
  const { channels, width } = img;
  const plane = img.height * width;
  const out = new Float32Array(channels * size * size);
  const sy = box.height / size;
  const sx = box.width / size;
  for (let y = 0; y < size; y++) {
    const fy = Math.min(Math.max(box.top + (y + 0.5) * sy - 0.5, box.top), box.top + box.height - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, box.top + box.height - 1);
    const wy = fy - y0;
    for (let x = 0; x < size; x++) {
      const fx = Math.min(Math.max(box.left + (x + 0.5) * sx - 0.5, box.left), box.left + box.width - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, box.left + box.width - 1);
      const wx = fx - x0;
      for (let c = 0; c < channels; c++) {
        const p = img.data.subarray(c * plane, (c + 1) * plane);
        const top = p[y0 * width + x0] * (1 - wx) + p[y0 * width + x1] * wx;
        const bottom = p[y1 * width + x0] * (1 - wx) + p[y1 * width + x1] * wx;
        out[c * size * size + y * size + x] = (top * (1 - wy) + bottom * wy) / 255;
      }
    }
  }
  return out;
}

/** Mirrors a CHW float image left–right in place. */
export function flipHorizontal(x: Float32Array, channels: number, size: number): Float32Array {
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < size; y++) {
      const row = c * size * size + y * size;
      for (let i = 0, j = size - 1; i < j; i++, j--) [x[row + i], x[row + j]] = [x[row + j], x[row + i]];
    }
  }
  return x;
}

function grayscale(x: Float32Array, channels: number, plane: number): Float32Array {
  if (channels === 1) return x.slice(0, plane);
  const g = new Float32Array(plane);
  for (let i = 0; i < plane; i++) g[i] = 0.299 * x[i] + 0.587 * x[plane + i] + 0.114 * x[2 * plane + i];
  return g;
}

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** torchvision's color jitter (brightness, contrast, saturation; in that order), values clamped to [0, 1]. */
export function colorJitter(x: Float32Array, channels: number, size: number, a: AugmentConfig, rng: HostRng): Float32Array {
  const plane = size * size;
  const factor = (s: number) => 1 - s + 2 * s * rng.uniform();
  if (a.brightness > 0) {
    const f = factor(a.brightness);
    for (let i = 0; i < x.length; i++) x[i] = clamp01(x[i] * f);
  }
  if (a.contrast > 0) {
    const f = factor(a.contrast);
    const g = grayscale(x, channels, plane);
    const mean = g.reduce((s, v) => s + v, 0) / plane;
    for (let i = 0; i < x.length; i++) x[i] = clamp01(f * x[i] + (1 - f) * mean);
  }
  if (a.saturation > 0 && channels === 3) {
    const f = factor(a.saturation);
    const g = grayscale(x, channels, plane);
    for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) x[c * plane + i] = clamp01(f * x[c * plane + i] + (1 - f) * g[i]);
  }
  return x;
}

export function normalize(x: Float32Array, channels: number, size: number, mean: number[], std: number[]): Float32Array {
  const plane = size * size;
  for (let c = 0; c < channels; c++) for (let i = 0; i < plane; i++) x[c * plane + i] = (x[c * plane + i] - mean[c]) / std[c];
  return x;
}

/** A training view: crop (if enabled), flip, jitter, normalize. Returns normalized CHW floats at size × size. */
export function augmentImage(img: Image, size: number, a: AugmentConfig, rng: HostRng): Float32Array {
  const box = a.cropScale ? sampleCrop(img.height, img.width, a.cropScale, a.cropRatio, rng) : { top: 0, left: 0, height: img.height, width: img.width };
  let x = resizeBox(img, box, size);
  if (a.flipProb > 0 && rng.uniform() < a.flipProb) x = flipHorizontal(x, img.channels, size);
  x = colorJitter(x, img.channels, size, a, rng);
  return normalize(x, img.channels, size, a.mean, a.std);
}

/** The evaluation view: the whole image resized (if needed) and normalized. */
export function prepareImage(img: Image, size: number, a: AugmentConfig): Float32Array {
  return normalize(resizeBox(img, { top: 0, left: 0, height: img.height, width: img.width }, size), img.channels, size, a.mean, a.std);
}
