/**
 * What the fairseq fixtures do not pin about data2vec 2.0: the student sees only its visible steps, the teacher runs
 * once per sample for M views, training through the runner resumes exactly and holds its memory, and the commands
 * take v2 runs (pretraining, fine-tuning, evaluation; export says what Hugging Face cannot hold).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { initEngine } from "../../src/engine/runtime.js";
import { liveBuffers, trackBuffers } from "../../src/engine/memory.js";
import { numpy as np } from "../../src/engine/jax.js";
import { disposeTree, refTree } from "../../src/engine/typed.js";
import { HostRng } from "../../src/engine/random.js";
import { ConfigError } from "../../src/engine/errors.js";
import { data2vec2Outputs, viewArrays } from "../../src/data2vec2/model.js";
import { imageModality2, imageV2Config } from "../../src/data2vec2/modalities.js";
import { viewLayout } from "../../src/data2vec2/views.js";
import { inverseBlockMask } from "../../src/data2vec2/masking.js";
import { resolveVisionConfig, type VisionRunConfig } from "../../src/vision/config.js";
import { mnistSplits } from "../../src/vision/images.js";
import { initVisionData2Vec2, pretrainVision } from "../../src/vision/pretrain.js";
import { finetuneVision, newVisionHead, predictVision } from "../../src/vision/classify.js";
import { loadVisionCheckpoint } from "../../src/vision/checkpoints.js";

await initEngine();
await trackBuffers();

/** A tiny data2vec 2.0 image run: 28² digits in 7×7 patches of 4 pixels, 2 blocks of width 16. */
function tinyV2(over: Record<string, unknown> = {}): VisionRunConfig {
  return resolveVisionConfig("tiny-v2", { model: { dim: 16, heads: 2, ffnDim: 32 }, data2vec: { v2: { decoder: { dim: 16 } } }, ...over });
}

/** M views of each of B random images, with inverse block masks. */
function batchOf(cfg: VisionRunConfig, b: number, seed: number) {
  const rng = HostRng.seeded(seed);
  const m = cfg.data2vec.v2!.cloneBatch;
  const g = cfg.model.imageSize / cfg.model.patchSize;
  const pixels = Float32Array.from({ length: b * 28 * 28 }, () => rng.uniform() - 0.5);
  const mask = new Uint8Array(b * m * g * g);
  for (let r = 0; r < b * m; r++) mask.set(inverseBlockMask(g, cfg.masking, rng), r * g * g);
  return { pixels, mask, layout: viewLayout(mask, b, m, g * g) };
}

test("the student sees its visible patches only; the teacher runs once per image and its targets serve all M views", async () => {
  const cfg = tinyV2();
  const modality = imageModality2(imageV2Config(cfg.model));
  let localCalls: number[] = [];
  const spied = { ...modality, local: (p: never, batch: never, keys: never) => {
    const out = modality.local(p, batch, keys);
    localCalls.push(out.x.shape[0]);
    return out;
  } };
  const params = initVisionData2Vec2(cfg, 3);
  const teacher = { layers: refTree(params.layers), shared: refTree(params.shared) };
  const { pixels, mask, layout } = batchOf(cfg, 2, 1);
  const g = 7;
  // A patch masked in view 0 of image 0 and visible in another of its views.
  const m = cfg.data2vec.v2!.cloneBatch;
  const other = [...Array(m).keys()].slice(1).find((c) => mask.some((v, p) => p < g * g && v === 1 && mask[c * g * g + p] === 0));
  assert.ok(other !== undefined, "the views of image 0 differ somewhere");
  const patch = [...Array(g * g).keys()].find((p) => mask[p] === 1 && mask[other * g * g + p] === 0)!;
  const run = async (px: Float32Array) => {
    localCalls = [];
    const o = data2vec2Outputs(spied, cfg.data2vec, refTree(params), refTree(teacher), { images: np.array(px).reshape([2, 1, 28, 28]), views: viewArrays(layout) }, null);
    const out = { pred: (await o.pred.data()) as Float32Array, target: (await o.target.data()) as Float32Array, sampleRows: o.sampleTargets.shape[0] };
    disposeTree([o.sampleTargets, o.weights, o.cls, o.padding, o.positionShare]);
    return out;
  };
  const before = await run(pixels);
  // Two local passes of B = 2 images each (student; teacher with its own patch embedding), none per view.
  assert.deepEqual(localCalls, [2, 2]);
  assert.equal(before.sampleRows, 2, "targets are built for the 2 images, not the 2·M views");
  const perView = g * g * cfg.model.dim;
  for (let img = 0; img < 2; img++)
    for (let c = 1; c < m; c++) assert.deepEqual(before.target.subarray((img * m + c) * perView, (img * m + c + 1) * perView), before.target.subarray(img * m * perView, (img * m + 1) * perView), `image ${img}, view ${c}: the same targets`);

  // Change the pixels of that patch: view 0 cannot see them, view 1 can.
  const changed = Float32Array.from(pixels);
  const [py, px] = [Math.floor(patch / g), patch % g];
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) changed[(py * 4 + y) * 28 + px * 4 + x] += 3;
  const after = await run(changed);
  assert.deepEqual(after.pred.subarray(0, perView), before.pred.subarray(0, perView), "view 0's predictions do not depend on a patch it does not see");
  assert.notDeepEqual(after.pred.subarray(other * perView, (other + 1) * perView), before.pred.subarray(other * perView, (other + 1) * perView), `view ${other} sees it`);
  assert.notDeepEqual(after.target.subarray(0, perView), before.target.subarray(0, perView), "the teacher sees the whole image");
  disposeTree([params, teacher]);
});

test("data2vec 2.0 pretraining resumes exactly, and 50 updates hold their memory", async () => {
  const images = mnistSplits().train.images.slice(0, 48);
  const cfg = tinyV2({ train: { batchSize: 4, steps: 6, warmupSteps: 1, checkpointEvery: 3 } });
  const full = await pretrainVision({ config: cfg, images, outDir: mkdtempSync(join(tmpdir(), "d2v2-full-")), quiet: true });
  assert.equal(full.records.length, 6);
  const views = 4 * cfg.data2vec.v2!.cloneBatch;
  assert.ok(full.records.every((r) => Number.isFinite(r.loss) && r.maskedSteps === views * (49 - Math.floor(49 * 0.2))), JSON.stringify(full.records.map((r) => r.maskedSteps)));
  const out = mkdtempSync(join(tmpdir(), "d2v2-split-"));
  await pretrainVision({ config: cfg, images, outDir: out, quiet: true, stopAfter: 3 });
  const second = await pretrainVision({ config: cfg, images, outDir: out, quiet: true, resume: true });
  assert.deepEqual(second.records.map((r) => r.step), [4, 5, 6]);
  for (const r of second.records) {
    assert.equal(r.loss, full.records[r.step - 1].loss, `loss at update ${r.step}`);
    assert.equal(r.gradNorm, full.records[r.step - 1].gradNorm);
  }

  const counts: { count: number; bytes: number }[] = [];
  const long = tinyV2({ train: { batchSize: 4, steps: 50, warmupSteps: 2, checkpointEvery: 25 } });
  await pretrainVision({ config: long, images, outDir: mkdtempSync(join(tmpdir(), "d2v2-leak-")), quiet: true, onUpdate: () => counts.push(liveBuffers()) });
  assert.equal(counts.length, 50);
  assert.deepEqual(counts[49], counts[4], `live buffers at update 5 ${JSON.stringify(counts[4])} vs update 50 ${JSON.stringify(counts[49])}`);

  // The checkpoint fine-tunes and predicts as a v2 encoder.
  const loaded = loadVisionCheckpoint(out);
  const labeled = { images: images.slice(0, 20), labels: Array.from({ length: 20 }, (_, i) => i % 10), classes: [...Array(10).keys()].map(String) };
  const trained = await finetuneVision({ encoder: loaded.encoder, head: newVisionHead(1, 16, 10) }, loaded.run, labeled, { epochs: 1, batchSize: 5, lr: 1e-3, warmupFraction: 0, weightDecay: 0, seed: 1, augment: false }, { quiet: true });
  const pred = await predictVision(trained.params, loaded.run, images.slice(20, 30), 5);
  assert.equal(pred.length, 10);
  disposeTree(trained.params);
});

test("data2vec 2.0 settings that cannot work are refused, naming the setting and a value that does", () => {
  const bad = (over: Record<string, unknown>, pattern: RegExp) =>
    assert.throws(() => resolveVisionConfig("tiny-v2", over), (e: unknown) => e instanceof ConfigError && pattern.test((e as Error).message), JSON.stringify(over));
  bad({ masking: { ratio: 0.99 } }, /masking\.ratio.*leaves none visible; use at most 0\.980/);
  bad({ data2vec: { v2: { decoder: { kernel: 9 } } } }, /decoder\.kernel.*wider than the 7×7 patch grid; use at most 7/);
  bad({ masking: { kind: "blockwise" } }, /masking\.kind.*inverse_block/);
  bad({ data2vec: { v2: { decoder: { groups: 5 } } } }, /groups.*must divide/);
  bad({ data2vec: { objective: "data2vec" } }, /data2vec\.v2 is for objective data2vec2/);
  bad({ data2vec: { emaShared: ["encoderNorm"] } }, /"local" \(feature encoder\) and "context"/);
});
