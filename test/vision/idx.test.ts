/** IDX image files (the MNIST format; Fashion-MNIST from Debian): decoding by hand-made files, and bad files refused. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { gzipSync } from "node:zlib";
import { DataError } from "../../src/engine/errors.js";
import { FASHION_MNIST_DIR, fashionMnistSplits, readIdxImages } from "../../src/vision/images.js";

/** An IDX file: magic (0, 0, type 0x08 = unsigned byte, number of dimensions), big-endian sizes, the bytes. */
function idx(dims: number[], body: number[]): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(0x800 + dims.length, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(body)]);
}

test("IDX images: row-major pixels per image, labels in order, gzipped or not", () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-idx-"));
  // Two 2 × 3 images: pixel (r, c) of image i is 10·i + 3·r + c.
  const pixels = [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15];
  writeFileSync(join(dir, "img.gz"), gzipSync(idx([2, 2, 3], pixels)));
  writeFileSync(join(dir, "lab"), idx([2], [1, 0]));
  const set = readIdxImages(join(dir, "img.gz"), join(dir, "lab"), ["a", "b"], "test data");
  assert.deepEqual(set.labels, [1, 0]);
  assert.deepEqual(set.images.map((im) => [im.channels, im.height, im.width]), [[1, 2, 3], [1, 2, 3]]);
  assert.deepEqual(Array.from(set.images[1].data), [10, 11, 12, 13, 14, 15]);

  const refuses = (img: string, lab: string, pattern: RegExp) =>
    assert.throws(() => readIdxImages(join(dir, img), join(dir, lab), ["a", "b"], "make them again"), (e: Error) => e instanceof DataError && pattern.test(e.message));
  writeFileSync(join(dir, "short"), idx([2, 2, 3], pixels.slice(0, 11)));
  refuses("short", "lab", /holds 11 bytes of data where its header says 2 × 2 × 3 = 12; the file is truncated/);
  refuses("lab", "lab", /is not an IDX file of unsigned bytes with 3 dimension/);
  writeFileSync(join(dir, "bad.gz"), Buffer.from("not gzip"));
  refuses("bad.gz", "lab", /not a valid gzip file/);
  refuses("missing.gz", "lab", /missing.gz does not exist; make them again/);
  writeFileSync(join(dir, "lab3"), idx([3], [0, 1, 1]));
  refuses("img.gz", "lab3", /holds 2 images but .*lab3 3 labels/);
  writeFileSync(join(dir, "lab9"), idx([2], [0, 9]));
  refuses("img.gz", "lab9", /label 9 at 1 is outside the 2 classes/);
});

test("Fashion-MNIST: a missing install names the package", () => {
  if (existsSync(FASHION_MNIST_DIR)) {
    const { train, test: held } = fashionMnistSplits();
    assert.equal(train.images.length, 60000);
    assert.equal(held.images.length, 10000);
    // Zalando's documented first training labels: ankle boot, t-shirt/top, t-shirt/top, dress.
    assert.deepEqual(train.labels.slice(0, 4), [9, 0, 0, 3]);
  }
  assert.throws(() => fashionMnistSplits(join(tmpdir(), "no-such-dir")), (e: Error) => e instanceof DataError && /should hold Fashion-MNIST's four idx .gz files/.test(e.message));
});
