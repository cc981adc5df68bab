import { test } from "node:test";
import assert from "node:assert/strict";
import { numpy as np, random, tree } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { contextWindowBias, data2vecLoss, sequenceDistances, type Data2VecParams } from "../../src/data2vec/model.js";
import { copyTree, type ParamTree } from "../../src/engine/tree.js";
import { HostRng } from "../../src/engine/random.js";
import { runEncoder, type BlockParams } from "../../src/nn/encoder.js";
import { BpeTokenizer } from "../../src/text/bpe.js";
import { makePretrainBatch, packBlocks } from "../../src/text/data.js";
import { initTextData2Vec, textModality, type TextShared } from "../../src/text/model.js";
import { loadBrown } from "../../src/text/brown.js";
import { gridDistances } from "../../src/vision/model.js";
import { microConfig } from "../train/fixtures.js";
import { toHost } from "../jaxutil.js";

await initEngine();

test("grid distances: Chebyshev on the patch grid, the CLS step next to everything", () => {
  const d = gridDistances(3, 10); // CLS + 3×3 patches
  const at = (i: number, j: number) => d[i * 10 + j];
  assert.equal(at(0, 9), 0);
  assert.equal(at(7, 0), 0);
  assert.equal(at(1, 1), 0);
  assert.equal(at(1, 2), 1); // (0,0)–(0,1)
  assert.equal(at(1, 5), 1); // (0,0)–(1,1): diagonal neighbours are 1 apart
  assert.equal(at(1, 9), 2); // (0,0)–(2,2)
  assert.equal(at(3, 7), 2); // (0,2)–(2,0)
  assert.throws(() => gridDistances(3, 9), /3×3 grid/);
  assert.deepEqual(Array.from(sequenceDistances(3)), [0, 1, 2, 1, 0, 1, 2, 1, 0]);
});

test("a context window of w: a block's output at step i ignores every input farther than w", async () => {
  const cfg = microConfig({ model: { dropout: 0, attentionDropout: 0 } });
  const enc = { ...cfg.model, vocabSize: 400, padId: 1 };
  const spec = textModality(enc).encoder;
  const params = initTextData2Vec(cfg, enc, 3);
  const oneBlock = copyTree(params.layers.slice(0, 1) as unknown as ParamTree) as unknown as BlockParams[];
  tree.dispose(params as never);
  const [steps, dim, w, i] = [8, cfg.model.dim, 2, 3];
  const x0 = await toHost(random.normal(random.key(7), [1, steps, dim]));
  const outAt = async (x: number[]) => {
    const bias = contextWindowBias(sequenceDistances(steps), steps, w);
    const out = runEncoder(copyTree(oneBlock as unknown as ParamTree) as unknown as BlockParams[], np.array(new Float32Array(x)).reshape([1, steps, dim]), spec, { bias, keys: null }).out;
    bias.dispose();
    return (await toHost(out)).slice(i * dim, (i + 1) * dim);
  };
  const perturb = (j: number) => x0.map((v, k) => (Math.floor(k / dim) === j ? v + 1 : v));
  const base = await outAt(x0);
  const maxDiff = (a: number[]) => Math.max(...a.map((v, k) => Math.abs(v - base[k])));
  for (const far of [0, 6, 7]) assert.ok(maxDiff(await outAt(perturb(far))) < 1e-6, `step ${far} is outside the window of step ${i}`);
  for (const near of [1, 2, 4, 5]) assert.ok(maxDiff(await outAt(perturb(near))) > 1e-3, `step ${near} is inside the window of step ${i}`);
  tree.dispose(oneBlock as never);
});

test("the data2vec loss applies the teacher's window: a window covering everything changes nothing, a narrow one does", async () => {
  const cfg = microConfig({ model: { dropout: 0, attentionDropout: 0 } });
  const docs = loadBrown().slice(0, 3).map((d) => d.text.slice(0, 2000));
  const tok = BpeTokenizer.train(docs, cfg.model.vocabSize);
  const enc = { ...cfg.model, vocabSize: tok.size, padId: tok.pad };
  const blocks = packBlocks(docs, tok, cfg.train.seqLen).slice(0, 2);
  const modality = textModality(enc);
  const params = initTextData2Vec(cfg, enc, 1);
  const lossWith = async (teacherContext: number | null) => {
    const batch = makePretrainBatch(blocks, tok, cfg.masking, HostRng.seeded(5));
    const p = copyTree(params as unknown as ParamTree) as unknown as Data2VecParams<TextShared>;
    const teacher = { layers: copyTree(params.layers as unknown as ParamTree) as unknown as BlockParams[], shared: {} };
    const [loss, metrics] = data2vecLoss(modality, { ...cfg.data2vec, teacherContext }, p, teacher, batch, null);
    tree.dispose(metrics as never);
    return (await toHost(loss))[0];
  };
  const full = await lossWith(null);
  assert.ok(Math.abs((await lossWith(cfg.train.seqLen)) - full) < 1e-6 * Math.max(1, Math.abs(full)));
  assert.ok(Math.abs((await lossWith(1)) - full) > 1e-4, "a window of 1 must change the teacher's targets");
  tree.dispose(params as never);
});
