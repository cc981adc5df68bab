import { test } from "node:test";
import assert from "node:assert/strict";
import { grad, numpy as np, tree } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { data2vecLoss, type Data2VecParams, type Teacher } from "../../src/data2vec/model.js";
import { copyTree, namedLeaves, type ParamTree } from "../../src/engine/tree.js";
import { HostRng } from "../../src/engine/random.js";
import { BpeTokenizer } from "../../src/text/bpe.js";
import { makePretrainBatch, packBlocks } from "../../src/text/data.js";
import { textModality, type TextShared, type TextPretrainBatch } from "../../src/text/model.js";
import { initTextData2Vec } from "../../src/text/model.js";
import type { BlockParams } from "../../src/nn/encoder.js";
import { loadBrown } from "../../src/text/brown.js";
import { microConfig } from "../train/fixtures.js";
import { toHost } from "../jaxutil.js";

await initEngine();

const cfg = microConfig({ model: { dropout: 0, attentionDropout: 0 } });
const docs = loadBrown().slice(0, 3).map((d) => d.text.slice(0, 2000));
const tok = BpeTokenizer.train(docs, cfg.model.vocabSize);
const enc = { ...cfg.model, vocabSize: tok.size, padId: tok.pad };
const blocks = packBlocks(docs, tok, cfg.train.seqLen).slice(0, 2);
const batch = () => makePretrainBatch(blocks, tok, cfg.masking, HostRng.seeded(5));
const modality = textModality(enc);

test("the teacher receives no gradient, and neither do the shared embeddings through the teacher", async () => {
  const params = initTextData2Vec(cfg, enc, 1);
  // Make the teacher differ from the student, as after some EMA steps.
  const teacher: Teacher<TextShared> = { layers: tree.map((a: np.Array) => a.mul(1.1), copyTree(params.layers as ParamTree) as never) as unknown as BlockParams[], shared: {} };

  // 1. d loss / d teacher = 0 everywhere.
  const teacherGrads = grad((t: Teacher<TextShared>) => data2vecLoss(modality, cfg.data2vec, tree.ref(params as never) as Data2VecParams<TextShared>, t, batch(), null)[0])(
    tree.ref(teacher as never) as Teacher<TextShared>,
  ) as unknown as ParamTree;
  for (const [name, g] of namedLeaves(teacherGrads)) {
    const v = await toHost(g);
    assert.ok(v.every((x) => x === 0), `teacher gradient ${name} is not zero`);
  }

  // 2. The student's gradient equals the gradient with the teacher reading a detached copy of the
  //    shared embeddings: no gradient flows into shared parameters through the teacher's view.
  const studentGrads = grad((p: Data2VecParams<TextShared>) => data2vecLoss(modality, cfg.data2vec, p, tree.ref(teacher as never) as Teacher<TextShared>, batch(), null)[0])(
    tree.ref(params as never) as Data2VecParams<TextShared>,
  ) as unknown as ParamTree;
  const detachedShared = copyTree(params.shared as unknown as ParamTree) as unknown as TextShared;
  const detachedModality = {
    ...modality,
    embed: (shared: TextShared, b: TextPretrainBatch, view: "student" | "teacher", keys: null) => {
      if (view === "student") return modality.embed(shared, b, view, keys);
      tree.dispose(shared as never);
      return modality.embed(tree.ref(detachedShared as never) as TextShared, b, view, keys);
    },
  };
  const referenceGrads = grad((p: Data2VecParams<TextShared>) => data2vecLoss(detachedModality as never, cfg.data2vec, p, tree.ref(teacher as never) as Teacher<TextShared>, batch(), null)[0])(
    tree.ref(params as never) as Data2VecParams<TextShared>,
  ) as unknown as ParamTree;
  const ref = new Map(namedLeaves(referenceGrads));
  let nonzero = 0;
  for (const [name, g] of namedLeaves(studentGrads)) {
    const a = await toHost(g);
    const b = await toHost(ref.get(name)!);
    a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= 1e-6 + 1e-4 * Math.abs(b[i]), `${name}[${i}]: ${x} vs ${b[i]}`));
    if (a.some((x) => x !== 0)) nonzero++;
  }
  assert.ok(nonzero > 10, "the student must receive gradients");
});
