import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { numpy as np, tree } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { instanceNorm } from "../../src/nn/layers.js";
import { data2vecLoss } from "../../src/data2vec/model.js";
import { resolveAudioConfig } from "../../src/audio/config.js";
import { audioModality, frameMaskArray, framesForSamples, initAudioData2Vec, positionalConv } from "../../src/audio/model.js";
import { jitteredViews, pretrainAudio } from "../../src/audio/pretrain.js";
import { HostRng } from "../../src/engine/random.js";
import { LIBRISPEECH_VOCAB } from "../../src/audio/ctc.js";
import { durationBatches, evaluateCtc, finetuneCtc, ladderShape, newCtcHead, toUtterances } from "../../src/audio/ctc-finetune.js";
import { freshAudioEncoder } from "../../src/audio/checkpoints.js";
import { libriSpeechEntries, loadClips } from "../../src/audio/data.js";
import { ROOT } from "../helpers.js";
import { assertClose, toHost } from "../jaxutil.js";

await initEngine();

test("instance norm over time with padding matches a hand computation over the real steps only", async () => {
  // B=1, T=4 (last step padded), D=2.
  const x = [1, 10, 3, 20, 5, 60, 100, -100];
  const y = await toHost(instanceNorm(np.array(x).reshape([1, 4, 2]), 1e-5, np.array([[1, 1, 1, 0]])));
  for (const d of [0, 1]) {
    const v = [x[d], x[2 + d], x[4 + d]];
    const mean = v.reduce((a, b) => a + b) / 3;
    const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / 3;
    v.forEach((vi, t) => assert.ok(Math.abs(y[t * 2 + d] - (vi - mean) / Math.sqrt(variance + 1e-5)) < 1e-5, `t ${t} d ${d}`));
  }
});

const cfg = resolveAudioConfig("tiny", { model: { dropout: 0, featureDropout: 0, attentionDropout: 0 } });

test("padding does not leak: a clip's data2vec loss is the same alone and padded in a batch", async () => {
  const n = 9000;
  const padded = 16000;
  const clip = Float32Array.from({ length: n }, (_, i) => Math.sin(i / 7) * 0.5 + Math.cos(i / 31) * 0.3);
  const frames = framesForSamples(n, cfg.model.convLayers);
  const paddedFrames = framesForSamples(padded, cfg.model.convLayers);
  const masked = [3, 4, 5, 6, 7, 12, 13, 14, 15, 16];
  const maskRow = (t: number) => Float32Array.from({ length: t }, (_, i) => (masked.includes(i) ? 1 : 0));
  const lossOf = async (wave: Float32Array, len: number, t: number) => {
    const params = initAudioData2Vec(cfg, 5);
    const teacher = { layers: tree.map((a: np.Array) => a.ref, params.layers as never) as never, shared: {} };
    const batch = { wave: np.array(wave).reshape([1, len]), frameMask: np.array(frameMaskArray([n], t, cfg.model)).reshape([1, t]), mask: np.array(maskRow(t)).reshape([1, t]) };
    const [loss, m] = data2vecLoss(audioModality(cfg.model), cfg.data2vec, params, teacher, batch, null);
    tree.dispose(m as never);
    return (await loss.data())[0];
  };
  const alone = await lossOf(clip, n, frames);
  const withPadding = new Float32Array(padded);
  withPadding.set(clip);
  const inBatch = await lossOf(withPadding, padded, paddedFrames);
  assert.ok(Math.abs(alone - inBatch) < 1e-4 * Math.abs(alone), `alone ${alone} vs padded ${inBatch}`);
});

test("circular positional convs: a cyclic shift of the frames shifts the output; a layer is zero padding of the sequence wrapped by hand", async () => {
  const [t, d, k, groups] = [12, 8, 5, 2];
  const rng = HostRng.seeded(11);
  const values = (n: number) => Float32Array.from({ length: n }, () => rng.uniform() * 2 - 1);
  const fanIn = (k * d) / groups;
  const layers = [0, 1].map(() => ({ weight: values(groups * fanIn * (d / groups)), bias: values(d) }));
  const convs = (n = layers.length) => layers.slice(0, n).map((l) => ({ weight: np.array(l.weight).reshape([groups, fanIn, d / groups]), bias: np.array(l.bias) }));
  const h = values(t * d);
  const frames = (x: Float32Array, len: number) => np.array(x).reshape([1, len, d]);
  const roll = (x: number[] | Float32Array, s: number) => Float32Array.from({ length: t * d }, (_, i) => x[((Math.floor(i / d) - s + t) % t) * d + (i % d)]);
  const circular = { posConvKernel: k, posConvGroups: groups, circular: true };
  const zeros = { posConvKernel: k, posConvGroups: groups };

  const out = await toHost(positionalConv(convs(), frames(h, t), circular));
  const shifted = await toHost(positionalConv(convs(), frames(roll(h, 5), t), circular));
  assertClose(shifted, Array.from(roll(out, 5)), 1e-5, "circular: shift in, shift out");
  // Zero padding shows the edges, so the same check fails for it.
  const z = await toHost(positionalConv(convs(), frames(h, t), zeros));
  const zShifted = await toHost(positionalConv(convs(), frames(roll(h, 5), t), zeros));
  assert.ok(zShifted.some((v, i) => Math.abs(v - roll(z, 5)[i]) > 1e-2), "zero padding is not shift-equivariant");

  // One layer: the circular conv equals the zero-padded conv of [last pad frames, the frames, first pad frames], centre cut.
  const pad = Math.floor(k / 2);
  const wrapped = new Float32Array((t + 2 * pad) * d);
  wrapped.set(h.subarray((t - pad) * d), 0);
  wrapped.set(h, pad * d);
  wrapped.set(h.subarray(0, pad * d), (t + pad) * d);
  const byHand = (await toHost(positionalConv(convs(1), frames(wrapped, t + 2 * pad), zeros))).slice(pad * d, (pad + t) * d);
  assertClose(await toHost(positionalConv(convs(1), frames(h, t), circular)), byHand, 1e-5, "one circular layer");
});

test("edge jitter: a view that drops a clip's first frames is the clip cut there; masks lie in both views", async () => {
  // Both views drop the first 4 frames: the loss must equal that of the clip cut at 4 × 320 samples.
  const n = 9000;
  const cut = 4;
  const hop = 320; // the tiny CNN's total stride; its receptive field (400) never reaches back across a cut
  const clip = Float32Array.from({ length: n }, (_, i) => Math.sin(i / 7) * 0.5 + Math.cos(i / 31) * 0.3);
  const frames = framesForSamples(n, cfg.model.convLayers);
  assert.equal(framesForSamples(n - cut * hop, cfg.model.convLayers), frames - cut);
  const masked = [8, 9, 10, 11, 12, 17, 18, 19, 20, 21];
  const row = (t: number, on: (i: number) => boolean) => np.array(Float32Array.from({ length: t }, (_, i) => (on(i) ? 1 : 0))).reshape([1, t]);
  const lossOf = async (wave: Float32Array, batch: (t: number) => Record<string, np.Array>) => {
    const params = initAudioData2Vec(cfg, 5);
    const teacher = { layers: tree.map((a: np.Array) => a.ref, params.layers as never) as never, shared: {} };
    const t = framesForSamples(wave.length, cfg.model.convLayers);
    const [loss, m] = data2vecLoss(audioModality(cfg.model), cfg.data2vec, params, teacher, { wave: np.array(wave).reshape([1, wave.length]), ...batch(t) } as never, null);
    tree.dispose(m as never);
    return (await loss.data())[0];
  };
  const trimmed = await lossOf(clip, (t) => ({ frameMask: row(t, (i) => i >= cut), teacherFrameMask: row(t, (i) => i >= cut), mask: row(t, (i) => masked.includes(i)) }));
  const cutClip = await lossOf(clip.slice(cut * hop), (t) => ({ frameMask: row(t, () => true), mask: row(t, (i) => masked.includes(i + cut)) }));
  assert.ok(Math.abs(trimmed - cutClip) < 1e-4 * Math.abs(cutClip), `trimmed views ${trimmed} vs the cut clip ${cutClip}`);
  // Only the teacher's view trimmed: its targets change, so the loss does.
  const teacherOnly = await lossOf(clip, (t) => ({ frameMask: row(t, () => true), teacherFrameMask: row(t, (i) => i >= cut), mask: row(t, (i) => masked.includes(i)) }));
  const same = await lossOf(clip, (t) => ({ frameMask: row(t, () => true), mask: row(t, (i) => masked.includes(i)) }));
  assert.ok(Math.abs(teacherOnly - same) > 1e-3 * Math.abs(same), `the teacher's view changes its targets (${teacherOnly} vs ${same})`);

  // The views the stream draws: contiguous, trimmed by at most J at each end, masks inside both, equal counts.
  const rng = HostRng.seeded(2);
  const J = 6;
  const lengths = [74, 60, 74, 31];
  let differ = 0;
  for (let trial = 0; trial < 50; trial++) {
    const v = jitteredViews(lengths, 74, { spanStartProb: 0.65, spanLength: 10, minSpans: 1 }, J, rng);
    const counts = lengths.map((len, i) => {
      const at = (a: Float32Array, j: number) => a[i * 74 + j];
      for (const view of [v.student, v.teacher]) {
        const on = Array.from({ length: 74 }, (_, j) => at(view, j));
        const first = on.indexOf(1);
        const last = on.lastIndexOf(1);
        assert.ok(first <= J && last >= len - 1 - J && last < len, `row ${i}: view [${first}, ${last}] of ${len} frames`);
        assert.equal(on.slice(first, last + 1).every((x) => x === 1), true, "a view is contiguous");
      }
      let c = 0;
      for (let j = 0; j < 74; j++) if (at(v.mask, j)) (c++, assert.ok(at(v.student, j) && at(v.teacher, j), `row ${i}: masked frame ${j} in both views`));
      if (v.student.slice(i * 74, (i + 1) * 74).some((x, j) => x !== at(v.teacher, j))) differ++;
      return c;
    });
    assert.ok(counts[0] > 0 && counts.every((c) => c === counts[0]), `same masked count per row: ${counts}`);
  }
  assert.ok(differ > 150, `the two views usually differ (${differ} of 200 rows)`);
});

test("removePositionMean: two identical rows leave no target at all, whatever the teacher", async () => {
  const n = 9000;
  const clip = Float32Array.from({ length: n }, (_, i) => Math.sin(i / 7) * 0.5 + Math.cos(i / 31) * 0.3);
  const t = framesForSamples(n, cfg.model.convLayers);
  const wave = new Float32Array(2 * n);
  wave.set(clip);
  wave.set(clip, n);
  const maskRow = Float32Array.from({ length: t }, (_, i) => (i % 5 < 2 ? 1 : 0));
  const lossOf = async (removePositionMean: boolean, teacherSeed: number) => {
    const params = initAudioData2Vec(cfg, 5);
    const other = initAudioData2Vec(cfg, teacherSeed);
    tree.dispose([other.shared, other.head] as never);
    const batch = { wave: np.array(wave).reshape([2, n]), frameMask: np.ones([2, t]), mask: np.array(Float32Array.from([...maskRow, ...maskRow])).reshape([2, t]) };
    const [loss, m] = data2vecLoss(audioModality(cfg.model), { ...cfg.data2vec, removePositionMean }, params, { layers: other.layers, shared: {} }, batch, null);
    const share = (await m.positionShare.ref.data())[0];
    tree.dispose(m as never);
    return { loss: (await loss.data())[0], share };
  };
  const [a, b] = [await lossOf(true, 5), await lossOf(true, 6)];
  assert.ok(Math.abs(a.loss - b.loss) < 1e-5 * Math.abs(a.loss), `centered targets are zero: the teacher does not matter (${a.loss} vs ${b.loss})`);
  assert.ok(Math.abs(a.share - 1) < 1e-4, `identical rows: the step explains everything (${a.share})`);
  const [c, d] = [await lossOf(false, 5), await lossOf(false, 6)];
  assert.ok(Math.abs(c.loss - d.loss) > 1e-3 * Math.abs(c.loss), `without it the teacher's targets count (${c.loss} vs ${d.loss})`);
});

test("audio pretraining resumes exactly (tiny preset, padded short clips)", async () => {
  const clips = [0.7, 1.2, 0.8, 1.5, 2, 0.9, 1.1, 1.3].map((s, k) => ({ name: String(k), samples: Float32Array.from({ length: Math.round(s * 16000) }, (_, i) => Math.sin(i * (0.01 + k * 0.003)) + 0.1 * Math.sin(i * 0.37)) }));
  const config = resolveAudioConfig("tiny", { train: { steps: 4, warmupSteps: 1, checkpointEvery: 100 } });
  const dir = mkdtempSync(join(tmpdir(), "d2v-audio-"));
  const full = await pretrainAudio({ config, clips, outDir: join(dir, "full"), quiet: true });
  await pretrainAudio({ config, clips, outDir: join(dir, "resumed"), quiet: true, stopAfter: 2 });
  const rest = await pretrainAudio({ config, clips, outDir: join(dir, "resumed"), quiet: true, resume: true });
  assert.equal(full.records.length, 4);
  assert.deepEqual(rest.records.map((r) => r.step), [3, 4]);
  for (const k of ["loss", "targetVar", "predVar"] as const) assert.equal(rest.records[1][k], full.records[3][k], k);
  assert.ok(full.records.every((r) => Number.isFinite(r.loss) && r.maskedSteps > 0));
});

test("CTC fine-tuning on the committed LibriSpeech-layout fixture lowers the loss; evaluation reports CER and WER", async () => {
  const clips = await loadClips(libriSpeechEntries(join(ROOT, "test", "fixtures", "audio", "librispeech")).slice(0, 2), 16000, true);
  const utterances = toUtterances(clips, LIBRISPEECH_VOCAB);
  const m = cfg.model;
  const params = { encoder: freshAudioEncoder(cfg, 1), head: newCtcHead(1, m.dim, LIBRISPEECH_VOCAB.length) };
  const r = await finetuneCtc(params, m, utterances, { epochs: 6, batchSize: 2, lr: 1e-3, warmupFraction: 0.2, weightDecay: 0, seed: 1, freezeFeatureEncoder: true, maskProb: 0, maskLength: 10, maxBatchSeconds: 8 }, { quiet: true });
  const losses = r.history.map((h) => h.loss);
  assert.ok(losses[losses.length - 1] < 0.7 * losses[0], `loss ${losses.map((l) => l.toFixed(2)).join(" → ")}`);
  const ev = await evaluateCtc(r.params, m, LIBRISPEECH_VOCAB, clips);
  assert.equal(ev.utterances, 2);
  assert.ok(ev.cer >= 0 && ev.wer >= 0 && ev.hypotheses.length === 2);
  tree.dispose(r.params as never);
});

test("fine-tuning batches follow the shape ladder: every clip once, in rows that hold it, a few shapes of equal size", () => {
  const rate = 16000;
  const m = resolveAudioConfig("tiny").model;
  // budget 8 s, at most 8 rows: 3.9 s → 2 rows of 4 s; 4.1 s → 1 row of 8/√2 s; 2.1 s → 2 rows of 8/√8 s;
  // 0.3 s → 8 rows of 1 s; 9.1 s → alone, 9.5 s.
  assert.deepEqual(ladderShape(3.9 * rate, rate, 8, 8), { rows: 2, samples: 4 * rate });
  assert.deepEqual(ladderShape(4.1 * rate, rate, 8, 8), { rows: 1, samples: Math.floor((8 * rate) / Math.SQRT2) });
  assert.deepEqual(ladderShape(2.1 * rate, rate, 8, 8), { rows: 2, samples: Math.floor((8 * rate) / Math.SQRT2 ** 3) });
  assert.deepEqual(ladderShape(0.3 * rate, rate, 8, 8), { rows: 8, samples: 1 * rate });
  assert.deepEqual(ladderShape(9.1 * rate, rate, 8, 8), { rows: 1, samples: 9.5 * rate });
  const lengths = Array.from({ length: 200 }, (_, i) => Math.round((0.4 + ((i * 37) % 97) / 10) * rate)); // 0.4–10 s
  const batches = durationBatches(lengths, m, 8, 8);
  const seen = batches.flatMap((b) => b.rows).sort((a, b) => a - b);
  assert.deepEqual(seen, lengths.map((_, i) => i));
  for (const { rows, shape } of batches) {
    assert.ok(rows.length >= 1 && rows.length <= shape.rows);
    for (const r of rows) {
      assert.ok(lengths[r] <= shape.samples, `clip ${r} (${lengths[r]}) in ${JSON.stringify(shape)}`);
      // The shortest rung that holds it, so padding adds at most √2.
      if (shape.rows < 8 && shape.samples <= 8 * rate) assert.ok(lengths[r] * Math.SQRT2 > shape.samples, `clip ${r} (${lengths[r]}) in ${JSON.stringify(shape)}`);
    }
  }
  const inBudget = new Set(batches.filter((b) => b.shape.samples <= 8 * rate).map((b) => `${b.shape.rows}x${b.shape.samples}`));
  assert.ok(inBudget.size <= 7, [...inBudget].join());
  for (const key of inBudget) {
    const total = key.split("x").map(Number).reduce((a, b) => a * b);
    assert.ok(total <= 8 * rate && total >= 0.7 * 8 * rate, key);
  }
});
