import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { numpy as np } from "../../src/engine/jax.js";
import { initEngine } from "../../src/engine/runtime.js";
import { emaDecay, emaStepDue, emaUpdate } from "../../src/data2vec/ema.js";
import { namedLeaves } from "../../src/engine/tree.js";
import { decodeSafetensors, toFloat32 } from "../../src/engine/safetensors.js";
import { readFileSync } from "node:fs";
import { pretrainText } from "../../src/text/pretrain.js";
import { freshPretrainState } from "../../src/train/pretrain.js";
import { initTextData2Vec } from "../../src/text/model.js";
import { microConfig, corpusDir } from "../train/fixtures.js";
import { toHost } from "../jaxutil.js";

await initEngine();

test("τ rises linearly from τ0 to τe over τn updates, then stays", () => {
  const s = { tauStart: 0.999, tauEnd: 0.9999, annealSteps: 1000 };
  assert.equal(emaDecay(s, 0), 0.999);
  assert.ok(Math.abs(emaDecay(s, 500) - 0.99945) < 1e-12);
  assert.ok(Math.abs(emaDecay(s, 250) - (0.999 + 0.25 * 0.0009)) < 1e-12);
  assert.equal(emaDecay(s, 1000), 0.9999);
  assert.equal(emaDecay(s, 50000), 0.9999);
  assert.equal(emaDecay({ tauStart: 0.9998, tauEnd: 0.9998, annealSteps: 0 }, 7), 0.9998);
});

test("the EMA runs before every update but the first, and stops once τ reaches 1", () => {
  const s = { tauStart: 0.9, tauEnd: 1, annealSteps: 10 };
  assert.equal(emaStepDue(s, 0), false); // the teacher is a copy of the student at update 0
  assert.equal(emaStepDue(s, 1), true);
  assert.equal(emaStepDue(s, 9), true);
  assert.equal(emaStepDue(s, 10), false); // τ = 1: the teacher is frozen
  assert.equal(emaStepDue(s, 11), false);
});

test("emaUpdate computes τ·teacher + (1−τ)·student leaf by leaf", async () => {
  const teacher = { a: np.array([1, 2, 3]), b: [np.array([[10]])] };
  const student = { a: np.array([3, 2, 1]), b: [np.array([[0]])] };
  const out = emaUpdate(teacher, student, np.array(0.75));
  const a = await toHost(out.a);
  [1 * 0.75 + 3 * 0.25, 2, 3 * 0.75 + 1 * 0.25].forEach((v, i) => assert.ok(Math.abs(a[i] - v) < 1e-6));
  assert.ok(Math.abs((await toHost(out.b[0]))[0] - 7.5) < 1e-6);
});

test("the teacher averages only the transformer blocks", () => {
  const cfg = microConfig();
  const params = initTextData2Vec(cfg, { ...cfg.model, padId: 1 }, 0);
  const state = freshPretrainState(params);
  const teacherNames = namedLeaves(state.teacher as never).map(([n]) => n);
  const layerNames = namedLeaves(params as never).map(([n]) => n).filter((n) => n.startsWith("layers."));
  assert.deepEqual(teacherNames, layerNames);
  // Embeddings, positions, embedding norm and the regression head are not in the teacher.
  for (const n of namedLeaves(params as never).map(([n]) => n)) {
    if (!n.startsWith("layers.")) assert.ok(!teacherNames.includes(n), n);
  }
});

function readTensors(path: string): Map<string, Float32Array> {
  const { tensors } = decodeSafetensors(new Uint8Array(readFileSync(path)));
  return new Map([...tensors].map(([k, t]) => [k, toFloat32(t)]));
}

test("one EMA step per optimizer update, also with gradient accumulation", async () => {
  const cfg = microConfig({ train: { steps: 2, accumSteps: 3, checkpointEvery: 1 }, data2vec: { ema: { tauStart: 0.5, tauEnd: 0.9, annealSteps: 4 } } });
  const data = corpusDir();
  const out = mkdtempSync(join(tmpdir(), "d2v-ema-"));
  await pretrainText({ config: cfg, data, outDir: out, quiet: true, stopAfter: 1 });
  const ckpt = join(out, "checkpoint");
  const student1 = readTensors(join(ckpt, "model.safetensors"));
  const teacher1 = readTensors(join(ckpt, "teacher.safetensors"));
  await pretrainText({ config: cfg, data, outDir: out, quiet: true, resume: true });
  const teacher2 = readTensors(join(ckpt, "teacher.safetensors"));
  const tau = emaDecay(cfg.data2vec.ema, 1); // 0.6
  for (const [name, t2] of teacher2) {
    const t1 = teacher1.get(name)!;
    const s1 = student1.get(`layers.${name.slice("layers.".length)}`)!;
    for (let i = 0; i < t2.length; i += 7) {
      const expected = tau * t1[i] + (1 - tau) * s1[i];
      assert.ok(Math.abs(t2[i] - expected) < 1e-6, `${name}[${i}]: ${t2[i]} vs ${expected} (three EMA steps would give a different value)`);
    }
  }
});
