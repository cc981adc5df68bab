/**
 * A fourth modality, 1-D float sequences, defined entirely in this file: its run config, its data, its masking and
 * its model. It pretrains, resumes exactly and fine-tunes through the same runners as text, images and speech, which
 * is the claim that a modality is its data, masking and encoder, nothing else.
 */
import { data2vecObjective } from "../../src/data2vec/step.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { z } from "zod";
import { numpy as np, random } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { HostRng } from "../../src/engine/random.js";
import { disposeTree } from "../../src/engine/typed.js";
import { decodeSafetensors, toFloat32 } from "../../src/engine/safetensors.js";
import { data2vecSchema, trainFields } from "../../src/config/schemas.js";
import { checkCommonRunFields, runConfigKit } from "../../src/config/run-config.js";
import { DEFAULT_DIVERGENCE } from "../../src/data2vec/monitor.js";
import { initRegressionHead, type Data2VecParams, type Modality, type RegressionHead } from "../../src/data2vec/model.js";
import type { BlockParams, EncoderSpec } from "../../src/nn/encoder.js";
import { runEncoder } from "../../src/nn/encoder.js";
import { initLayerNorm, initLinear, initNormal, initPostLnBlock } from "../../src/nn/init.js";
import { layerNorm, linear, type LayerNormParams, type LinearParams } from "../../src/nn/layers.js";
import { KeyStream } from "../../src/nn/random.js";
import { exampleBatches, runPretraining, type PretrainAdapter } from "../../src/train/pretrain-runner.js";
import { loadPretrainedEncoder, readCheckpointJson, resolveCheckpoint } from "../../src/train/checkpoint.js";
import { labelArrays, startingEncoder, trainClassifier, type EncoderSource } from "../../src/train/finetune.js";
import { readPretrainRecords } from "../../src/train/pretrain.js";

await initEngine();

// --- The run configuration: a schema, presets, and the shared checks. -------------------------------------------
const toySchema = z
  .object({
    modality: z.literal("toy"),
    preset: z.string(),
    model: z.object({ length: z.number().int().min(4), dim: z.number().int(), layers: z.number().int(), heads: z.number().int(), ffnDim: z.number().int() }).strict(),
    data2vec: data2vecSchema,
    masking: z.object({ ratio: z.number().gt(0).lt(1) }).strict(),
    train: z.object(trainFields).strict(),
  })
  .strict()
  .superRefine((c, ctx) => checkCommonRunFields(c, (path, message) => ctx.addIssue({ code: "custom", path, message })));
type ToyConfig = z.infer<typeof toySchema>;

const tiny: ToyConfig = {
  modality: "toy",
  preset: "tiny",
  model: { length: 16, dim: 32, layers: 2, heads: 2, ffnDim: 64 },
  data2vec: {
    objective: "data2vec", topK: 2, targetLayer: "ffn", targetNorm: "instance", targetNormAfterAverage: "none", targetNormPadding: "exclude", emaShared: [], removePositionMean: false,
    loss: "l2", lossBeta: 0, lossScale: null, headLayers: 1, ema: { tauStart: 0.9, tauEnd: 0.99, annealSteps: 10 }, teacherContext: null,
    minTargetVar: 0, minPredVar: 0, maxPositionShare: null, minTargetRank: null, collapseWarmupSteps: 0, divergence: { ...DEFAULT_DIVERGENCE },
  },
  masking: { ratio: 0.5 },
  train: { batchSize: 8, steps: 8, accumSteps: 1, lr: 1e-3, schedule: "cosine", warmupSteps: 2, minLr: 0, weightDecay: 0.01, beta1: 0.9, beta2: 0.98, eps: 1e-6, clipNorm: 1, seed: 3, checkpointEvery: 4 },
};
const toyConfig = runConfigKit("toy", toySchema, { tiny });

// --- The model: each step's value projected to the width, learned positions, a mask embedding, post-LN blocks. ----
type ToyShared = { project: LinearParams; positions: np.Array; maskEmbedding: np.Array; norm: LayerNormParams };
type ToyEncoder = { shared: ToyShared; layers: BlockParams[] };
type ToyBatch = { x: np.Array; mask: np.Array };
type Sequence = { values: Float32Array; label: number };

const spec = (c: ToyConfig): EncoderSpec => ({ kind: "post_ln", heads: c.model.heads, eps: 1e-5, dropout: 0, attentionDropout: 0, activationDropout: 0 });

function initToyEncoder(keys: KeyStream, c: ToyConfig): ToyEncoder {
  const { dim, length, layers, ffnDim } = c.model;
  const shared = { project: initLinear(keys, 1, dim), positions: initNormal(keys, [length, dim]), maskEmbedding: initNormal(keys, [dim]), norm: initLayerNorm(dim) };
  return { shared, layers: Array.from({ length: layers }, () => initPostLnBlock(keys, dim, ffnDim)) };
}

/** [B, T, D] states of x [B, T]; masked steps (mask [B, T], 1 = masked) show the mask embedding. Consumes shared and x; borrows mask. */
function embedToy(s: ToyShared, x: np.Array, mask: np.Array | null): np.Array {
  const [b, t] = x.shape;
  let h = linear(s.project, x.reshape([b, t, 1]));
  if (mask) {
    const m = mask.ref.reshape([b, t, 1]);
    h = h.mul(m.ref.mul(-1).add(1)).add(m.mul(s.maskEmbedding.reshape([1, 1, -1])));
  } else s.maskEmbedding.dispose();
  return layerNorm(s.norm, h.add(s.positions.reshape([1, t, -1])));
}

function toyModality(c: ToyConfig): Modality<ToyShared, ToyBatch> {
  return {
    encoder: spec(c),
    embed: (shared, batch, view) => ({ x: embedToy(shared, batch.x.ref, view === "student" ? batch.mask : null), padding: null }),
    lossWeights: (batch) => batch.mask.ref,
  };
}

function initToyData2Vec(c: ToyConfig, seed: number): Data2VecParams<ToyShared> {
  const keys = new KeyStream(random.key(seed));
  const { shared, layers } = initToyEncoder(keys, c);
  const head = initRegressionHead(keys, c.model.dim, 1);
  keys.close();
  return { shared, layers, head };
}

// --- The data: sine waves of 4 frequencies (the class), random phase and noise; masks of `ratio` of the steps. ---
function sequences(n: number, length: number, seed: number): Sequence[] {
  const rng = HostRng.seeded(seed);
  return Array.from({ length: n }, () => {
    const label = rng.int(0, 3);
    const phase = 2 * Math.PI * rng.uniform();
    const values = Float32Array.from({ length }, (_, t) => Math.sin(phase + ((label + 1) * 2 * Math.PI * t) / length) + 0.1 * (2 * rng.uniform() - 1));
    return { values, label };
  });
}

const toyPretraining: PretrainAdapter<ToyConfig, Sequence, ToyShared, ToyBatch, RegressionHead> = {
  config: toyConfig,
  describe: (c) => `${c.model.layers} layers × ${c.model.dim}`,
  dataName: "sequences",
  givenName: "sequences",
  defaultSource: { builtin: "sines" },
  load: async (cfg, source, given) => ("caller" in source ? (given ?? []) : sequences(64, cfg.model.length, 1)),
  prepare: (cfg, examples) => ({
    cfg,
    loss: data2vecObjective(toyModality(cfg), cfg.data2vec),
    init: (seed) => initToyData2Vec(cfg, seed),
    batches: exampleBatches(examples.length, cfg.train.batchSize, { item: "sequences", unit: "seq" }, (rows, rng) => {
      const t = cfg.model.length;
      const x = new Float32Array(rows.length * t);
      const mask = new Float32Array(rows.length * t);
      const masked = Math.round(cfg.masking.ratio * t);
      rows.forEach((r, i) => {
        x.set(examples[r].values, i * t);
        for (const step of rng.sample(t, masked)) mask[i * t + step] = 1;
      });
      return { batch: { x: np.array(x).reshape([rows.length, t]), mask: np.array(mask).reshape([rows.length, t]) }, units: rows.length };
    }),
  }),
};

const toyEncoders: EncoderSource<ToyConfig, ToyEncoder> = {
  load: (dir) => {
    const checkpoint = resolveCheckpoint(dir);
    const arch = toyConfig.parse(readCheckpointJson(checkpoint, "config.json"), join(checkpoint, "config.json"));
    return { arch, encoder: loadPretrainedEncoder(checkpoint, initToyData2Vec(arch, 0)) };
  },
  fresh: (arch, seed) => {
    const keys = new KeyStream(random.key(seed));
    const encoder = initToyEncoder(keys, arch);
    keys.close();
    return encoder;
  },
};

// --- The tests. ------------------------------------------------------------------------------------------------
test("a modality defined in one file pretrains and resumes exactly through the pretraining runner", async () => {
  const full = await runPretraining(toyPretraining, { config: tiny, outDir: mkdtempSync(join(tmpdir(), "d2v-toy-full-")), quiet: true });
  assert.equal(full.records.length, 8);
  assert.ok(full.records.every((r) => Number.isFinite(r.loss) && r.maskedSteps === 8 * 8), "every batch masks ratio × length steps per row");
  const out = mkdtempSync(join(tmpdir(), "d2v-toy-split-"));
  await runPretraining(toyPretraining, { config: tiny, outDir: out, quiet: true, stopAfter: 5 });
  const rest = await runPretraining(toyPretraining, { config: tiny, outDir: out, quiet: true, resume: true });
  assert.deepEqual(rest.records.map((r) => r.step), [6, 7, 8]);
  for (const r of rest.records) assert.equal(r.loss, full.records[r.step - 1].loss, `loss at update ${r.step}`);
  assert.equal(readPretrainRecords(out).length, 8);
  // The run's saved config is the modality's, read back by its kit.
  await assert.rejects(runPretraining(toyPretraining, { config: tiny, outDir: out, quiet: true }), /already holds a checkpoint/);
});

test("the toy modality fine-tunes from its pretrained checkpoint through the fine-tuning runner", async () => {
  const out = mkdtempSync(join(tmpdir(), "d2v-toy-ft-"));
  await runPretraining(toyPretraining, { config: tiny, outDir: out, quiet: true });
  const start = startingEncoder(toyEncoders, { init: out, seed: 1 }, () => tiny);
  assert.equal(start.from, out);
  // The encoder is the checkpoint's trained one: its weights are those in the checkpoint's model file.
  const { tensors } = decodeSafetensors(new Uint8Array(readFileSync(join(out, "checkpoint", "model.safetensors"))), "model.safetensors");
  assert.deepEqual(await start.encoder.shared.positions.ref.data(), toFloat32(tensors.get("shared.positions")!));

  const train = sequences(48, tiny.model.length, 7);
  const classes = 4;
  const keys = new KeyStream(random.key(5));
  const head = initLinear(keys, tiny.model.dim, classes);
  keys.close();
  const history: number[] = [];
  const trained = await trainClassifier({
    params: { encoder: start.encoder, head },
    examples: train.length,
    settings: { epochs: 6, batchSize: 8, lr: 3e-3, warmupFraction: 0.1, weightDecay: 0, seed: 1 },
    adam: { beta1: 0.9, beta2: 0.999, eps: 1e-8, clipNorm: 1 },
    batch: (rows) => {
      const t = tiny.model.length;
      const x = new Float32Array(8 * t);
      rows.forEach((r, i) => x.set(train[r].values, i * t));
      return { x: np.array(x).reshape([8, t]), ...labelArrays(train.map((s) => s.label), rows, 8, classes) };
    },
    logits: (p, b) => {
      const h = runEncoder(p.encoder.layers, embedToy(p.encoder.shared, b.x, null), spec(tiny), { keys: null }).out;
      return linear(p.head, h.mean(1));
    },
    quiet: true,
    onEpoch: (r) => history.push(r.loss),
  });
  assert.ok(history[history.length - 1] < history[0], `fine-tuning lowers the loss: ${history.map((l) => l.toFixed(3)).join(" → ")}`);
  disposeTree(trained.params);
});

test("the toy run config gets the shared checks and the shared migrations", () => {
  assert.throws(() => toyConfig.resolve("tiny", { data2vec: { topK: 3 } }), /K = 3 exceeds the 2 layers/);
  assert.throws(() => toyConfig.resolve("tiny", { train: { schedule: "tri_stage" } }), /tri-stage schedule .* ignores train.warmupSteps/);
  assert.throws(() => toyConfig.resolve("huge"), /unknown toy preset "huge"; choose one of tiny/);
  assert.throws(() => toyConfig.resolve("tiny", { data2vec: { lossBeta: 2 } }), /L2 loss ignores lossBeta/);
  assert.throws(() => toyConfig.resolve("tiny", { train: { schedule: "constant", minLr: 1e-5 } }), /only the cosine schedule decays to train.minLr/);
  // A saved tri-stage config with warm-up steps (never read) loads, with them dropped.
  const saved = toyConfig.parse({ kind: "data2vec-pretrain", ...tiny, train: { ...tiny.train, schedule: "tri_stage", warmupSteps: 100 } }, "config.json");
  assert.equal(saved.train.warmupSteps, 0);
  assert.equal(toyConfig.parse({ ...tiny, data2vec: { ...tiny.data2vec, lossBeta: 4 } }, "config.json").data2vec.lossBeta, 0);
});
