/**
 * The Hugging Face preprocessors, reproduced: Wav2Vec2FeatureExtractor (per-clip normalization over unpadded
 * samples, right padding, sample-level attention mask), BeitImageProcessor (Pillow resize, rescale,
 * normalize, CHW), and the RoBERTa tokenizer batch (right padding with <pad>).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { validate, readJsonFile } from "../config/validate.js";
import { decodeImage } from "../vision/images.js";
import { pillowResize } from "../vision/pillow-resize.js";
import type { BpeTokenizer } from "../text/bpe.js";

const imageProcessorSchema = z.looseObject({
  do_resize: z.boolean().default(true),
  size: z.union([z.object({ height: z.number().int().positive(), width: z.number().int().positive() }), z.number().int().positive()]).optional(),
  resample: z.number().int().default(3),
  do_center_crop: z.boolean().default(false),
  crop_size: z.union([z.object({ height: z.number().int().positive(), width: z.number().int().positive() }), z.number().int().positive()]).optional(),
  do_rescale: z.boolean().default(true),
  rescale_factor: z.number().default(1 / 255),
  do_normalize: z.boolean().default(true),
  image_mean: z.array(z.number()).default([0.5, 0.5, 0.5]),
  image_std: z.array(z.number()).default([0.5, 0.5, 0.5]),
});
export type ImageProcessorConfig = z.infer<typeof imageProcessorSchema>;

/** `preprocessor_config.json` of a model directory, or the BEiT defaults at the model's image size. */
export function imageProcessorConfig(dir: string, imageSize: number): ImageProcessorConfig {
  const path = join(dir, "preprocessor_config.json");
  const raw = existsSync(path) ? readJsonFile(path, "preprocessor config") : {};
  const c = validate(imageProcessorSchema, raw, path);
  return { ...c, size: c.size ?? { height: imageSize, width: imageSize } };
}

const hw = (s: { height: number; width: number } | number) => (typeof s === "number" ? { height: s, width: s } : s);

/**
 * Pixel values [B, C, H, W] (float32, flat) for image files, as BeitImageProcessor computes them: RGB uint8,
 * Pillow resize, center crop, x·rescale, (x − mean)/std. Every image must come out the same size.
 */
export async function processImages(files: string[], c: ImageProcessorConfig, channels: 1 | 3): Promise<{ pixels: Float32Array; shape: number[] }> {
  const out: Float32Array[] = [];
  let shape: number[] = [];
  for (const file of files) {
    let img = await decodeImage(file, { channels, size: null });
    if (c.do_resize && c.size !== undefined) {
      const { height, width } = hw(c.size);
      if (img.height !== height || img.width !== width) img = pillowResize(img, width, height, c.resample);
    }
    if (c.do_center_crop && c.crop_size !== undefined) img = centerCrop(img, hw(c.crop_size));
    const values = new Float32Array(img.data.length);
    const plane = img.height * img.width;
    for (let i = 0; i < values.length; i++) {
      const ch = Math.floor(i / plane);
      let v = Math.fround(img.data[i] * (c.do_rescale ? c.rescale_factor : 1));
      if (c.do_normalize) v = Math.fround(Math.fround(v - c.image_mean[ch]) / c.image_std[ch]);
      values[i] = v;
    }
    out.push(values);
    shape = [img.channels, img.height, img.width];
  }
  const pixels = new Float32Array(out.reduce((n, v) => n + v.length, 0));
  out.reduce((at, v) => (pixels.set(v, at), at + v.length), 0);
  return { pixels, shape: [files.length, ...shape] };
}

function centerCrop<T extends { channels: number; height: number; width: number; data: Uint8Array }>(img: T, size: { height: number; width: number }): T {
  const top = Math.floor((img.height - size.height) / 2);
  const left = Math.floor((img.width - size.width) / 2);
  const data = new Uint8Array(img.channels * size.height * size.width);
  for (let c = 0; c < img.channels; c++) {
    for (let y = 0; y < size.height; y++) {
      const sy = y + top;
      for (let x = 0; x < size.width; x++) {
        const sx = x + left;
        const inside = sy >= 0 && sy < img.height && sx >= 0 && sx < img.width;
        data[(c * size.height + y) * size.width + x] = inside ? img.data[(c * img.height + sy) * img.width + sx] : 0;
      }
    }
  }
  return { ...img, height: size.height, width: size.width, data };
}

/** Token ids of each text (with <s> … </s>), right-padded with <pad> to the longest; mask 1 on real tokens. */
export function tokenizeBatch(tok: BpeTokenizer, texts: string[]): { ids: Int32Array; mask: Int32Array; batch: number; seqLen: number } {
  const rows = texts.map((t) => tok.encode(t));
  const seqLen = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(rows.length * seqLen).fill(tok.pad);
  const mask = new Int32Array(rows.length * seqLen);
  rows.forEach((r, b) => r.forEach((id, t) => ((ids[b * seqLen + t] = id), (mask[b * seqLen + t] = 1))));
  return { ids, mask, batch: rows.length, seqLen };
}
