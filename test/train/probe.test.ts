import { test } from "node:test";
import assert from "node:assert/strict";
import { numpy as np } from "../../src/engine/jax.js";
import { DataError } from "../../src/engine/errors.js";
import { initEngine } from "../../src/engine/runtime.js";
import { HostRng } from "../../src/engine/random.js";
import { linear } from "../../src/nn/layers.js";
import { featureMoments, foldStandardization, participationRatio, standardize, trainLinearProbe } from "../../src/train/probe.js";
import { assertClose, toHost } from "../jaxutil.js";

await initEngine();

test("feature moments and standardization match a hand computation", () => {
  // Two dimensions over three examples: [1, 10], [2, 10], [6, 10].
  const x = Float32Array.from([1, 10, 2, 10, 6, 10]);
  const m = featureMoments(x, 2);
  assertClose(Array.from(m.mean), [3, 10], 1e-12, "mean");
  assertClose(Array.from(m.std), [Math.sqrt(14 / 3), 1e-6], 1e-9, "population std, a constant dimension floored");
  const z = standardize(x, 2, m);
  assertClose(Array.from(z), [-2 / Math.sqrt(14 / 3), 0, -1 / Math.sqrt(14 / 3), 0, 3 / Math.sqrt(14 / 3), 0], 1e-6, "standardized");
});

test("folding the standardization into the linear layer gives the same logits on raw features", async () => {
  const rng = HostRng.seeded(3);
  const [n, dim, classes] = [5, 4, 3];
  const x = Float32Array.from({ length: n * dim }, (_, i) => 100 * (i % dim === 0 ? 1 : 0) + rng.uniform() * (1 + (i % dim)));
  const m = featureMoments(x, dim);
  const w = Float32Array.from({ length: dim * classes }, () => rng.uniform() - 0.5);
  const b = Float32Array.from({ length: classes }, () => rng.uniform());
  const head = () => ({ weight: np.array(w).reshape([dim, classes]), bias: np.array(b) });
  const onStandardized = await toHost(linear(head(), np.array(standardize(x, dim, m)).reshape([n, dim])));
  const folded = await foldStandardization(head(), m);
  const onRaw = await toHost(linear(folded, np.array(x).reshape([n, dim])));
  assertClose(onRaw, onStandardized, 1e-4, "folded logits");
});

test("the linear probe separates classes that differ along a small direction under a large shared offset", async () => {
  // The failure a raw linear head meets on pretrained speech states: every example shares one large component,
  // and the class signal is a small deviation from it. Standardization brings the signal to unit scale.
  const rng = HostRng.seeded(7);
  const [perClass, classes, dim] = [20, 3, 8];
  const labels: number[] = [];
  const x = new Float32Array(perClass * classes * dim);
  for (let i = 0; i < perClass * classes; i++) {
    const c = i % classes;
    labels.push(c);
    for (let d = 0; d < dim; d++) x[i * dim + d] = 50 + (d === c ? 0.05 : 0) + 0.01 * (rng.uniform() - 0.5);
  }
  const probe = await trainLinearProbe(x, labels, dim, classes, { steps: 200, lr: 1e-2, weightDecay: 1e-4, seed: 1 });
  assert.equal(probe.trainAccuracy, 1);
  assert.deepEqual(probe.head.weight.shape, [dim, classes]);
  probe.head.weight.dispose();
  probe.head.bias?.dispose();
});

test("a linear probe refuses non-finite features, mismatched sizes and labels out of range", async () => {
  const opts = { steps: 1, lr: 1e-2, weightDecay: 0, seed: 1 };
  await assert.rejects(trainLinearProbe(Float32Array.from([1, NaN, 2, 3]), [0, 1], 2, 2, opts), (e: Error) => e instanceof DataError && /feature 1 of example 0 is NaN/.test(e.message));
  await assert.rejects(trainLinearProbe(Float32Array.from([1, 2, 3]), [0, 1], 2, 2, opts), (e: Error) => e instanceof DataError && /3 feature values for 2 examples of dimension 2/.test(e.message));
  await assert.rejects(trainLinearProbe(Float32Array.from([1, 2, 3, 4]), [0, 2], 2, 2, opts), (e: Error) => e instanceof DataError && /label 2 is outside 0…1/.test(e.message));
});

test("participation ratio: 1 for features on one line, the dimension for uncorrelated ones, by hand in between", () => {
  // Four rows, three features that are all multiples (and offsets) of one direction.
  const line = Float32Array.from([1, 2, -1, 2, 4, -2, 3, 6, -3, 4, 8, -4].map((v, i) => v + (i % 3)));
  assert.ok(Math.abs(participationRatio(line, 3) - 1) < 1e-9);
  // ±1 patterns with mean 0 and orthogonal columns over 4 rows: the correlation matrix is the identity.
  const orthogonal = Float32Array.from([1, 1, 1, 1, -1, -1, -1, 1, -1, -1, -1, 1]);
  assert.ok(Math.abs(participationRatio(orthogonal, 3) - 3) < 1e-9);
  // Two features with correlation ρ: eigenvalues 1 ± ρ, so (Σλ)² / Σλ² = 4 / (2 + 2ρ²). Rows (1,1), (1,-1), (-1,1),
  // (-1,-1) and two copies of (1,1), (-1,-1) give ρ = 1/3 (means 0, variances 1, E[xy] = 2/6).
  const rho = Float32Array.from([1, 1, 1, -1, -1, 1, -1, -1, 1, 1, -1, -1]);
  assert.ok(Math.abs(participationRatio(rho, 2) - 4 / (2 + 2 / 9)) < 1e-9);
  // A constant feature adds nothing.
  const withConstant = Float32Array.from([1, 5, 1, 5, -1, 5, -1, 5]);
  assert.ok(Math.abs(participationRatio(withConstant, 2) - 1) < 1e-9);
});
