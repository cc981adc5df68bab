/**
 * Is genre information hidden in the pretrained text encoder's pooled states, or absent? The standardized linear
 * probe of the Brown genre task (experiments/tasks.ts) reads mean-pooled final states whose variance across passages
 * lies almost on a line (participation ratio about 2). If the genre were in the small directions, a readout that
 * removes the large ones (the top principal components, estimated on unlabeled passages) or whitens every direction
 * would find it. Each readout is a linear map of the same features, fitted without labels, so it changes what the
 * probe's optimization and weight decay favour, not what a linear classifier can express.
 *
 *   node dist/experiments/text-readout.js --checkpoint runs/helps-brown-tiny-rpm-3000/pretrain [--random-seed 1]
 *       [--unlabeled 1500]
 *
 * Prints a table: for the checkpoint and the same architecture with random weights, the participation ratio of the
 * pooled states, the share of their variance in the top principal components, and the probe's test accuracy per
 * seed with each readout (including the top one or two components alone); then where each genre's test passages
 * sit on the top component.
 */
import { random, tree } from "../src/engine/jax.js";
import { HostRng } from "../src/engine/random.js";
import { KeyStream } from "../src/nn/random.js";
import { participationRatio } from "../src/train/probe.js";
import { loadTextCheckpoint } from "../src/text/checkpoints.js";
import { encodeLabeled, pooledTextFeatures } from "../src/text/classify.js";
import { initTextEncoder } from "../src/text/model.js";
import { brownReadoutSetup } from "./brown-probe.js";
import { arg } from "./common.js";

const { dir, randomSeed, seeds, task, probeAccuracy } = await brownReadoutSetup();
// Unlabeled passages cut from the pretraining documents as the task cuts its labeled ones (80 words).
const unlabeled = HostRng.seeded(7)
  .shuffle(task.pretrainDocs.flatMap((doc) => {
    const words = doc.split(/\s+/);
    const out: string[] = [];
    for (let i = 0; i + 80 <= words.length; i += 80) out.push(words.slice(i, i + 80).join(" "));
    return out;
  }))
  .slice(0, Number(arg("unlabeled", "1500")))
  .map((text) => ({ text, label: task.labels[0] }));

type Readout = (features: Float32Array) => Float32Array;

/** Moments and covariance of standardized features [n × dim] (float64). */
function standardizedCovariance(x: Float32Array, dim: number) {
  const n = x.length / dim;
  const mean = new Float64Array(dim);
  const std = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) mean[d] += x[i * dim + d] / n;
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) std[d] += (x[i * dim + d] - mean[d]) ** 2 / n;
  for (let d = 0; d < dim; d++) std[d] = Math.sqrt(std[d]) + 1e-6;
  const z = (f: Float32Array, i: number) => Float64Array.from({ length: dim }, (_, d) => (f[i * dim + d] - mean[d]) / std[d]);
  const cov = new Float64Array(dim * dim);
  for (let i = 0; i < n; i++) {
    const zi = z(x, i);
    for (let a = 0; a < dim; a++) for (let b = 0; b < dim; b++) cov[a * dim + b] += (zi[a] * zi[b]) / n;
  }
  return { z, cov };
}

/** The top k eigenvectors of a symmetric matrix (power iteration with deflation; consumes `cov`) and their shares of its trace. */
function topEigenvectors(cov: Float64Array, dim: number, k: number) {
  let trace = 0;
  for (let a = 0; a < dim; a++) trace += cov[a * dim + a];
  const rng = HostRng.seeded(1);
  const vectors: Float64Array[] = [];
  const shares: number[] = [];
  for (let j = 0; j < k; j++) {
    let v = Float64Array.from({ length: dim }, () => rng.uniform() - 0.5);
    let lambda = 0;
    for (let it = 0; it < 500; it++) {
      const w = Float64Array.from({ length: dim }, (_, a) => {
        let s = 0;
        for (let b = 0; b < dim; b++) s += cov[a * dim + b] * v[b];
        return s;
      });
      lambda = Math.hypot(...w);
      v = w.map((t) => t / lambda);
    }
    vectors.push(v);
    shares.push(lambda / trace);
    for (let a = 0; a < dim; a++) for (let b = 0; b < dim; b++) cov[a * dim + b] -= lambda * v[a] * v[b];
  }
  return { vectors, shares };
}

/** The unlabeled passages' top `k` principal components of the standardized features. */
function principalComponents(unl: Float32Array, dim: number, k: number) {
  const { z, cov } = standardizedCovariance(unl, dim);
  const { vectors, shares } = topEigenvectors(cov, dim, k);
  /** Each passage's coordinates on the components [n × k]. */
  const scores = (f: Float32Array) => {
    const out = new Float32Array((f.length / dim) * k);
    for (let i = 0; i < f.length / dim; i++) {
      const zi = z(f, i);
      vectors.forEach((v, j) => {
        let s = 0;
        for (let d = 0; d < dim; d++) s += zi[d] * v[d];
        out[i * k + j] = s;
      });
    }
    return out;
  };
  return { z, vectors, shares, scores };
}

/** Standardize with the unlabeled passages' moments, then project out the top `k` principal components. */
function withoutTopComponents(unl: Float32Array, dim: number, k: number): { readout: Readout; shares: number[] } {
  const { z, vectors, shares } = principalComponents(unl, dim, k);
  const readout = (f: Float32Array) => {
    const out = new Float32Array(f.length);
    for (let i = 0; i < f.length / dim; i++) {
      const zi = z(f, i);
      for (const v of vectors) {
        let s = 0;
        for (let d = 0; d < dim; d++) s += zi[d] * v[d];
        for (let d = 0; d < dim; d++) zi[d] -= s * v[d];
      }
      out.set(zi, i * dim);
    }
    return out;
  };
  return { readout, shares };
}

/** Whitening with the unlabeled passages' covariance (ridge × mean variance added): z ↦ L⁻¹z, with LLᵀ = C + ridge. */
function whitening(unl: Float32Array, dim: number, ridge: number): Readout {
  const { z, cov } = standardizedCovariance(unl, dim);
  for (let a = 0; a < dim; a++) cov[a * dim + a] += ridge;
  const L = new Float64Array(dim * dim);
  for (let j = 0; j < dim; j++) {
    let s = cov[j * dim + j];
    for (let k = 0; k < j; k++) s -= L[j * dim + k] ** 2;
    L[j * dim + j] = Math.sqrt(s);
    for (let i = j + 1; i < dim; i++) {
      let t = cov[i * dim + j];
      for (let k = 0; k < j; k++) t -= L[i * dim + k] * L[j * dim + k];
      L[i * dim + j] = t / L[j * dim + j];
    }
  }
  return (f) => {
    const out = new Float32Array(f.length);
    for (let i = 0; i < f.length / dim; i++) {
      const zi = z(f, i);
      for (let a = 0; a < dim; a++) {
        let s = zi[a];
        for (let k = 0; k < a; k++) s -= L[a * dim + k] * out[i * dim + k];
        out[i * dim + a] = s / L[a * dim + a];
      }
    }
    return out;
  };
}

const rows: string[] = [];
const genreRows: string[] = [];
const log = (m: string) => process.stderr.write(`${m}\n`);
const pct = (xs: number[]) => `${((100 * xs.reduce((s, x) => s + x, 0)) / xs.length).toFixed(1)} (${xs.map((x) => (100 * x).toFixed(1)).join(" / ")})`;

for (const weights of ["pretrained", "random"] as const) {
  const loaded = loadTextCheckpoint(dir);
  let encoder = loaded.encoder;
  if (weights === "random") {
    tree.dispose(encoder as never);
    const keys = new KeyStream(random.key(randomSeed));
    encoder = initTextEncoder(keys, loaded.enc);
    keys.close();
  }
  const { tok, enc } = loaded;
  const dim = enc.dim;
  const pooled = (xs: { text: string; label: string }[]) => pooledTextFeatures(encoder, enc, tok, encodeLabeled(xs, tok, task.labels), 16, loaded.run.train.seqLen);
  const [train, test, unl] = [await pooled(task.train), await pooled(task.test), await pooled(unlabeled)];
  tree.dispose(encoder as never);
  const name = weights === "pretrained" ? dir : `random weights (seed ${randomSeed})`;
  const top = withoutTopComponents(unl, dim, 10);
  const shares = top.shares.slice(0, 3).map((s) => s.toFixed(2)).join(", ");
  const components = principalComponents(unl, dim, 2);
  const firstScores = (f: Float32Array) => components.scores(f).filter((_, i) => i % 2 === 0);
  // Each readout maps [n × dim] features to [n × width] ones for the same probe.
  const readouts: [string, Readout, number][] = [
    ["standardized (the task's probe)", (f) => f, dim],
    ["only the top component", firstScores, 1],
    ["only the top 2 components", components.scores, 2],
    ["top 2 components removed", withoutTopComponents(unl, dim, 2).readout, dim],
    ["top 10 components removed", top.readout, dim],
    ["whitened (ridge 0.1)", whitening(unl, dim, 0.1), dim],
    ["whitened (ridge 0.001)", whitening(unl, dim, 0.001), dim],
  ];
  for (const [readout, map, width] of readouts) {
    const [tr, te] = [map(train), map(test)];
    const accs: number[] = [];
    for (const seed of seeds) accs.push(await probeAccuracy(tr, te, width, seed));
    const row = `| ${name} | ${participationRatio(unl, dim).toFixed(1)} | ${shares} | ${readout} | ${pct(accs)} |`;
    log(row);
    rows.push(row);
  }
  // Where each genre's test passages sit on the top component, in units of its spread over the unlabeled passages
  // (its sign is arbitrary): what the one direction that carries most of the variance separates.
  const unlScores = firstScores(unl);
  const spread = Math.sqrt(unlScores.reduce((s, x) => s + x * x, 0) / unlScores.length);
  const testScores = firstScores(test);
  const byGenre = task.labels.map((label) => {
    const own = testScores.filter((_, i) => task.test[i].label === label);
    return { label, mean: own.reduce((s, x) => s + x, 0) / own.length / spread };
  });
  genreRows.push(`| ${name} | ${byGenre.sort((a, b) => a.mean - b.mean).map((g) => `${g.label} ${g.mean.toFixed(2)}`).join(", ")} |`);
}
console.log(`| encoder | participation ratio (${unlabeled.length} unlabeled passages) | variance share of the top 3 components | readout | probe test accuracy, % (seeds ${seeds.join(", ")}) |`);
console.log("|---|---|---|---|---|");
for (const r of rows) console.log(r);
console.log("\n| encoder | the genres' test passages on the top component (mean, in its standard deviations over the unlabeled passages; sorted) |");
console.log("|---|---|");
for (const r of genreRows) console.log(r);
