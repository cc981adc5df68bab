/**
 * data2vec 2.0's views: the visible steps of each view gathered in order from its sample, and the decoder's input
 * restored in place; masks with the same count per view, their statistics over many draws.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { initEngine } from "../../src/engine/runtime.js";
import { numpy as np } from "../../src/engine/jax.js";
import { HostRng } from "../../src/engine/random.js";
import { ConfigError } from "../../src/engine/errors.js";
import { restoreViews, viewArrays, visibleSteps } from "../../src/data2vec2/model.js";
import { viewLayout } from "../../src/data2vec2/views.js";
import { inverseBlockMask, spanBlockMasks, tokenMasks } from "../../src/data2vec2/masking.js";
import { resolveAudioConfig } from "../../src/audio/config.js";

await initEngine();

test("viewLayout: per view, its visible steps in order, from its own sample", () => {
  // 2 samples × 2 clones, 4 steps, one masked step per view.
  const mask = [0, 1, 0, 0, /**/ 0, 0, 0, 1, /**/ 1, 0, 0, 0, /**/ 0, 0, 1, 0];
  const l = viewLayout(mask, 2, 2, 4);
  assert.equal(l.visible, 3);
  assert.deepEqual([...l.keep], [0, 2, 3, 0, 1, 2, 5, 6, 7, 4, 5, 7]);
  assert.deepEqual([...l.keepInView], [0, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 15]);
  assert.deepEqual([...l.visiblePositions], [0, 2, 3, 0, 1, 2, 1, 2, 3, 0, 1, 3]);
  assert.deepEqual([...l.viewSample], [0, 0, 1, 1]);
  assert.deepEqual([...l.repeat], [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7]);
  // restore: the view's k-th visible output at its step, the zero row (index N·K = 12) at masked steps.
  assert.deepEqual([...l.restore], [0, 12, 1, 2, 3, 4, 5, 12, 12, 6, 7, 8, 9, 10, 12, 11]);
});

test("viewLayout refuses views with different mask counts, and a mask that hides everything", () => {
  assert.throws(() => viewLayout([1, 0, 0, 1, 1, 0], 2, 1, 3), /view 1 masks 2 steps, view 0 masks 1/);
  assert.throws(() => viewLayout([1, 1, 1, 1], 2, 1, 2), (e: unknown) => e instanceof ConfigError && /student sees nothing/.test((e as Error).message));
});

test("gathering the visible steps and restoring them is the identity at visible steps and zero at masked ones", async () => {
  const rng = HostRng.seeded(3);
  const [b, m, t, d] = [3, 2, 7, 5];
  const candidates = Array.from({ length: b * m }, () => Array.from({ length: t }, (_, i) => i));
  const mask = tokenMasks(candidates, t, 0.4, rng);
  const l = viewLayout(mask, b, m, t);
  const host = Float32Array.from({ length: b * t * d }, (_, i) => i + 1);
  const views = viewArrays(l);
  const visible = visibleSteps(np.array(host).reshape([b, t, d]), views);
  assert.deepEqual(visible.shape, [b * m, l.visible, d]);
  const restored = (await restoreViews(visible, views).data()) as Float32Array;
  for (let r = 0; r < b * m; r++)
    for (let s = 0; s < t; s++)
      for (let c = 0; c < d; c++) {
        const want = mask[r * t + s] ? 0 : host[(Math.floor(r / m) * t + s) * d + c];
        assert.equal(restored[(r * t + s) * d + c], want, `view ${r}, step ${s}, channel ${c}`);
      }
  for (const a of Object.values(views)) a.dispose();
});

test("inverse block masks: the exact count in every view, visible patches in blocks", () => {
  const rng = HostRng.seeded(1);
  for (const [grid, ratio] of [[7, 0.8], [14, 0.8], [14, 0.6]] as const) {
    const steps = grid * grid;
    const visibleWanted = Math.floor(steps * (1 - ratio));
    let withVisibleNeighbour = 0;
    let visibleTotal = 0;
    for (let draw = 0; draw < 200; draw++) {
      const m = inverseBlockMask(grid, { ratio, blockLength: 3, probAdjust: 0.07 }, rng);
      const visible = [...m.keys()].filter((i) => !m[i]);
      assert.equal(visible.length, visibleWanted, `grid ${grid}: ${visible.length} visible patches`);
      for (const i of visible) {
        const [r, c] = [Math.floor(i / grid), i % grid];
        const near = [[r - 1, c], [r + 1, c], [r, c - 1], [r, c + 1]].some(([y, x]) => y >= 0 && y < grid && x >= 0 && x < grid && !m[y * grid + x]);
        withVisibleNeighbour += near ? 1 : 0;
      }
      visibleTotal += visible.length;
    }
    const masked = 1 - visibleWanted / steps;
    assert.ok(Math.abs(masked - ratio) <= 0.02, `grid ${grid}: masked fraction ${masked} vs ${ratio}`);
    // The same count of visible patches scattered at random touch each other far less often.
    let scatteredNear = 0;
    for (let draw = 0; draw < 200; draw++) {
      const visible = new Set(rng.sample(steps, visibleWanted));
      for (const i of visible) {
        const [r, c] = [Math.floor(i / grid), i % grid];
        if ([[r - 1, c], [r + 1, c], [r, c - 1], [r, c + 1]].some(([y, x]) => y >= 0 && y < grid && x >= 0 && x < grid && visible.has(y * grid + x))) scatteredNear++;
      }
    }
    const scattered = scatteredNear / (200 * visibleWanted);
    const contiguity = withVisibleNeighbour / visibleTotal;
    assert.ok(contiguity > 0.85 && contiguity > scattered + 0.05, `grid ${grid}: ${contiguity.toFixed(3)} of visible patches touch another (scattered: ${scattered.toFixed(3)})`);
  }
});

test("token masks: round(ratio · n) of each row's candidates, uniformly over positions", () => {
  const rng = HostRng.seeded(2);
  const t = 32;
  const counts = new Float64Array(t);
  for (let draw = 0; draw < 400; draw++) {
    const rows = [Array.from({ length: 30 }, (_, i) => i + 1), Array.from({ length: 30 }, (_, i) => i + 1)];
    const mask = tokenMasks(rows, t, 0.48, rng);
    for (let r = 0; r < 2; r++) {
      let n = 0;
      for (let s = 0; s < t; s++) {
        n += mask[r * t + s];
        counts[s] += mask[r * t + s];
      }
      assert.equal(n, 14); // round(0.48 · 30)
    }
    assert.equal(mask[0] + mask[31] + mask[32] + mask[63], 0, "never a non-candidate (special) step");
  }
  const rates = [...counts.slice(1, 31)].map((c) => c / 800);
  for (const r of rates) assert.ok(Math.abs(r - 14 / 30) < 0.08, `per-position rate ${r}`);
});

test("speech spans for data2vec 2.0: exactly ⌊ratio · frames⌋ masked in every view, in spans", () => {
  const masking = resolveAudioConfig("tiny-v2").masking;
  const rng = HostRng.seeded(5);
  const frames = 200;
  let inSpans = 0;
  let total = 0;
  for (let draw = 0; draw < 100; draw++) {
    const mask = spanBlockMasks([frames, frames, 180, frames], frames, { ratio: masking.ratio, blockLength: masking.spanLength, probAdjust: masking.probAdjust }, rng);
    for (let r = 0; r < 4; r++) {
      const row = mask.subarray(r * frames, (r + 1) * frames);
      assert.equal(row.reduce((a, v) => a + v, 0), Math.floor(180 * masking.ratio), `row ${r}`);
      if (r === 2) assert.equal(row.subarray(180).reduce((a, v) => a + v, 0), 0, "padded frames are never masked");
      for (let t = 0; t < frames; t++) {
        if (!row[t]) continue;
        total++;
        if ((t > 0 && row[t - 1]) || (t + 1 < frames && row[t + 1])) inSpans++;
      }
    }
  }
  assert.ok(Math.abs(masking.ratio - 0.5) < 1e-9, "the preset masks half of the frames");
  assert.ok(inSpans / total > 0.8, `${(inSpans / total).toFixed(3)} of masked frames sit next to another`);
});
