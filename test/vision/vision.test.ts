import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { numpy as np, random, tree } from "../../src/engine/jax.js";
import { DataError } from "../../src/engine/errors.js";
import { HostRng } from "../../src/engine/random.js";
import { initEngine } from "../../src/engine/runtime.js";
import { decodeSafetensors } from "../../src/engine/safetensors.js";
import { KeyStream } from "../../src/nn/random.js";
import { relativeBias, relativeIndexInput, relativePositionIndex, relativeTableSize } from "../../src/nn/relpos.js";
import { flipHorizontal, resizeBox, sampleCrop } from "../../src/vision/augment.js";
import { resolveVisionConfig } from "../../src/vision/config.js";
import { decodeImage, readImageFolder } from "../../src/vision/images.js";
import { blockMask, minBlockFor } from "../../src/vision/masking.js";
import { embedImages, initVisionEncoder, patchify, visionModality } from "../../src/vision/model.js";
import { HF_FIXTURES, ROOT } from "../helpers.js";

await initEngine();
const FIX = join(ROOT, "test", "fixtures", "images");

test("block masks: never above the target, close to it on average, blocks at least the minimum size", () => {
  const rng = HostRng.seeded(3);
  for (const [g, ratio] of [
    [14, 120 / 196],
    [7, 0.6],
    [4, 0.6],
  ]) {
    const target = Math.round(ratio * g * g);
    const settings = { ratio, minBlockPatches: null, minAspect: 0.3 };
    let total = 0;
    const perPatch = new Float64Array(g * g);
    const n = 400;
    for (let i = 0; i < n; i++) {
      const m = blockMask(g, g, settings, rng);
      const count = m.reduce((s, v) => s + v, 0);
      assert.ok(count <= target, `grid ${g}: ${count} masked > target ${target}`);
      total += count;
      m.forEach((v, k) => (perPatch[k] += v));
    }
    const mean = total / n;
    assert.ok(mean >= 0.9 * target, `grid ${g}: mean masked ${mean} far below target ${target}`);
    // Every patch gets masked sometimes (blocks are placed anywhere on the grid).
    assert.ok(perPatch.every((v) => v > 0), `grid ${g}: some patch is never masked`);
  }
  assert.equal(minBlockFor({ ratio: 0.6, minBlockPatches: null, minAspect: 0.3 }, 196), 16);
  assert.equal(minBlockFor({ ratio: 0.6, minBlockPatches: null, minAspect: 0.3 }, 49), 4);
  // Masks are made of blocks: with 16 patches to mask and blocks of at least 16, nearly all of them form
  // one 4-connected region (a rounded 3×5 block leaves one patch for a second block).
  for (let i = 0; i < 50; i++) {
    const m = blockMask(14, 14, { ratio: 16 / 196, minBlockPatches: 16, minAspect: 0.3 }, rng);
    assert.ok(largestRegion(m, 14) >= 12, `largest region ${largestRegion(m, 14)}`);
  }
});

/** Size of the largest 4-connected region of ones in a g×g mask. */
function largestRegion(m: Uint8Array, g: number): number {
  const seen = new Uint8Array(m.length);
  let best = 0;
  for (let start = 0; start < m.length; start++) {
    if (!m[start] || seen[start]) continue;
    let size = 0;
    const stack = [start];
    seen[start] = 1;
    while (stack.length) {
      const k = stack.pop()!;
      size++;
      const [y, x] = [Math.floor(k / g), k % g];
      for (const [dy, dx] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
        const [ny, nx] = [y + dy, x + dx];
        const n = ny * g + nx;
        if (ny >= 0 && ny < g && nx >= 0 && nx < g && m[n] && !seen[n]) {
          seen[n] = 1;
          stack.push(n);
        }
      }
    }
    best = Math.max(best, size);
  }
  return best;
}

test("patch embedding equals a convolution with stride = kernel = patch size", async () => {
  const [b, c, size, p, d] = [2, 3, 8, 4, 5];
  const keys = new KeyStream(random.key(0));
  const x = keys.normal([b, c, size, size]);
  const w = keys.normal([c * p * p, d]);
  keys.close();
  const xs = (await x.ref.data()) as Float32Array;
  const ws = (await w.ref.data()) as Float32Array;
  const got = (await np.matmul(patchify(x, p).reshape([-1, c * p * p]), w).data()) as Float32Array;
  // Direct convolution: out[b, (gy, gx), o] = Σ_{ch, ky, kx} x[b, ch, gy·p + ky, gx·p + kx] · K[o, ch, ky, kx].
  const g = size / p;
  for (let bi = 0; bi < b; bi++)
    for (let gy = 0; gy < g; gy++)
      for (let gx = 0; gx < g; gx++)
        for (let o = 0; o < d; o++) {
          let s = 0;
          for (let ch = 0; ch < c; ch++)
            for (let ky = 0; ky < p; ky++)
              for (let kx = 0; kx < p; kx++) {
                const kernel = ws[(ch * p * p + ky * p + kx) * d + o];
                s += xs[((bi * c + ch) * size + gy * p + ky) * size + gx * p + kx] * kernel;
              }
          const row = (bi * g + gy) * g + gx;
          assert.ok(Math.abs(got[row * d + o] - s) < 1e-4, `patch ${row} channel ${o}`);
        }
});

test("relative position index: BEiT's 14×14 table and the fixture checkpoint's buffer", () => {
  const idx = relativePositionIndex(14, 14);
  const t = 197;
  assert.equal(relativeTableSize(14, 14), 732);
  assert.equal(idx[0], 731);
  for (let j = 1; j < t; j++) assert.equal(idx[j], 729, "CLS query row");
  for (let i = 1; i < t; i++) assert.equal(idx[i * t], 730, "CLS key column");
  // (yi − yj + 13)·27 + (xi − xj + 13) for patches i, j.
  const at = (i: number, j: number) => idx[(1 + i) * t + 1 + j];
  assert.equal(at(0, 0), 13 * 27 + 13);
  assert.equal(at(0, 195), 0); // i at (0,0), j at (13,13)
  assert.equal(at(195, 0), 728);
  assert.equal(at(14 + 3, 5), (1 - 0 + 13) * 27 + (3 - 5 + 13));
  // The Hugging Face fixture stores the buffer for its 4×4 grid (int64).
  const st = decodeSafetensors(readFileSync(join(HF_FIXTURES, "vision-cls", "model.safetensors")));
  const buf = st.tensors.get("data2vec_vision.encoder.layer.0.attention.attention.relative_position_bias.relative_position_index")!;
  const hf = new BigInt64Array(buf.data.buffer.slice(buf.data.byteOffset, buf.data.byteOffset + buf.data.byteLength));
  assert.deepEqual(Array.from(hf, Number), Array.from(relativePositionIndex(4, 4)));
});

test("relative bias: the one-hot (trainable) and gather (inference) forms agree", async () => {
  const keys = new KeyStream(random.key(1));
  const table = keys.normal([relativeTableSize(3, 3), 2]);
  keys.close();
  const a = (await relativeBias(table.ref, relativeIndexInput(3, 3, false)).data()) as Float32Array;
  const b = (await relativeBias(table, relativeIndexInput(3, 3, true)).data()) as Float32Array;
  assert.equal(a.length, 2 * 10 * 10);
  assert.deepEqual(Array.from(a), Array.from(b));
});

test("augmentations: a flip twice is the identity, crops stay inside the image, the full box is exact", () => {
  const rng = HostRng.seeded(5);
  const x = Float32Array.from({ length: 3 * 6 * 6 }, () => rng.uniform());
  assert.deepEqual(flipHorizontal(flipHorizontal(x.slice(), 3, 6), 3, 6), x);
  assert.notDeepEqual(flipHorizontal(x.slice(), 3, 6), x);
  for (let i = 0; i < 2000; i++) {
    const [h, w] = [rng.int(1, 40), rng.int(1, 40)];
    const box = sampleCrop(h, w, [0.08, 1], [3 / 4, 4 / 3], rng);
    assert.ok(box.top >= 0 && box.left >= 0 && box.height >= 1 && box.width >= 1, JSON.stringify(box));
    assert.ok(box.top + box.height <= h && box.left + box.width <= w, `${JSON.stringify(box)} in ${h}×${w}`);
  }
  const img = { channels: 1, height: 5, width: 5, data: Uint8Array.from({ length: 25 }, (_, i) => i * 10) };
  assert.deepEqual(Array.from(resizeBox(img, { top: 0, left: 0, height: 5, width: 5 }, 5)), Array.from(img.data, (v) => Math.fround(v / 255)));
});

test("decoding: PNG and lossless WebP exactly, alpha dropped, grayscale replicated, JPEG close", async () => {
  for (const file of ["rgba-12x10.png", "rgba-12x10.webp"]) {
    const img = await decodeImage(join(FIX, file), { channels: 3, size: null });
    assert.deepEqual([img.channels, img.height, img.width], [3, 10, 12]);
    const plane = 120;
    for (const [y, x] of [
      [0, 0],
      [3, 7],
      [9, 11],
    ]) {
      assert.deepEqual([img.data[y * 12 + x], img.data[plane + y * 12 + x], img.data[2 * plane + y * 12 + x]], [20 * x, 25 * y, 128], `${file} (${y}, ${x})`);
    }
  }
  const gray = await decodeImage(join(FIX, "gray-16.png"), { channels: 3, size: null });
  assert.equal(gray.data[5 * 16 + 7], 96);
  assert.equal(gray.data[2 * 256 + 5 * 16 + 7], 96);
  const jpeg = await decodeImage(join(FIX, "gray-16.jpg"), { channels: 1, size: null });
  const err = Array.from(jpeg.data).reduce((m, v, i) => Math.max(m, Math.abs(v - 8 * ((i % 16) + Math.floor(i / 16)))), 0);
  assert.ok(err <= 12, `JPEG max error ${err}`);
  const resized = await decodeImage(join(HF_FIXTURES, "vision-cls", "input_0.png"), { channels: 3, size: 32 });
  assert.deepEqual([resized.channels, resized.height, resized.width], [3, 32, 32]);
});

test("bad images: truncated, unsupported, smaller than a patch, empty class folder, one class", async () => {
  const opts = { channels: 3 as const, size: 16, minSide: 4 };
  await assert.rejects(decodeImage(join(FIX, "truncated.png"), opts), (e: Error) => e instanceof DataError && /corrupt or truncated/.test(e.message));
  await assert.rejects(decodeImage(join(FIX, "drawing.svg"), opts), (e: Error) => e instanceof DataError && /svg.*not supported/.test(e.message));
  await assert.rejects(decodeImage(join(FIX, "make.mjs"), opts), (e: Error) => e instanceof DataError && /not an image/.test(e.message));
  await assert.rejects(decodeImage(join(FIX, "tiny-3x3.png"), opts), (e: Error) => e instanceof DataError && /3×3 pixels, smaller than one 4-pixel patch/.test(e.message));
  const dir = mkdtempSync(join(tmpdir(), "d2v-folder-"));
  mkdirSync(join(dir, "cats"));
  copyFileSync(join(FIX, "gray-16.png"), join(dir, "cats", "a.png"));
  await assert.rejects(readImageFolder(dir, opts), (e: Error) => e instanceof DataError && /single class folder/.test(e.message));
  mkdirSync(join(dir, "dogs"));
  await assert.rejects(readImageFolder(dir, opts), (e: Error) => e instanceof DataError && /dogs holds no images/.test(e.message));
  copyFileSync(join(FIX, "rgba-12x10.png"), join(dir, "dogs", "b.png"));
  const set = await readImageFolder(dir, opts);
  assert.deepEqual(set.classes, ["cats", "dogs"]);
  assert.deepEqual(set.labels, [0, 1]);
});

test("vision data2vec views: masked patches become the mask token, the loss covers masked patches only", async () => {
  const cfg = resolveVisionConfig("tiny", { model: { imageSize: 8, patchSize: 4, dim: 8, heads: 2, ffnDim: 16, relativePositionBias: "none" } });
  const keys = new KeyStream(random.key(2));
  const enc = initVisionEncoder(keys, cfg.model);
  const images = keys.normal([2, 1, 8, 8]);
  keys.close();
  const mask = np.array([1, 0, 0, 1, 0, 0, 0, 0]).reshape([2, 4]).astype(np.float32);
  const maskToken = (await enc.shared.maskToken.ref.data()) as Float32Array;
  const cls = (await enc.shared.cls.ref.data()) as Float32Array;
  const student = embedImages(enc.shared, images.ref, cfg.model, mask, null, null);
  const x = (await student.x.data()) as Float32Array; // [2, 5, 8]
  const row = (b: number, t: number) => Array.from(x.slice((b * 5 + t) * 8, (b * 5 + t + 1) * 8));
  assert.deepEqual(row(0, 0), Array.from(cls));
  assert.deepEqual(row(0, 1), Array.from(maskToken)); // patch 0 of image 0
  assert.deepEqual(row(0, 4), Array.from(maskToken)); // patch 3 of image 0
  assert.notDeepEqual(row(0, 2), Array.from(maskToken));
  assert.notDeepEqual(row(1, 1), Array.from(maskToken));
  const modality = visionModality(cfg.model);
  const weights = (await modality.lossWeights({ images, mask }).data()) as Float32Array;
  assert.deepEqual(Array.from(weights), [0, 1, 0, 0, 1, 0, 0, 0, 0, 0]);
  images.dispose();
  mask.dispose();
  tree.dispose(enc.layers as never);
});
