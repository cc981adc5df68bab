import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { resolveTextConfig, type TextRunConfig } from "../../src/text/config.js";
import { deepMerge } from "../../src/config/validate.js";
import { loadBrown } from "../../src/text/brown.js";

/** A micro configuration: the same code paths as the presets, small enough for CI. */
export function microConfig(overrides: object = {}): TextRunConfig {
  const base = {
    model: { vocabSize: 400, maxPositions: 32, dim: 32, layers: 2, heads: 2, ffnDim: 64 },
    data2vec: { topK: 2, collapseWarmupSteps: 1000 },
    train: { batchSize: 4, seqLen: 32, steps: 6, warmupSteps: 2, checkpointEvery: 3 },
  };
  return resolveTextConfig("tiny", deepMerge(base, overrides));
}

/** A small unlabeled corpus folder (with a subfolder, to exercise the recursive reader). */
export function corpusDir(docs = 6): string {
  const dir = mkdtempSync(join(tmpdir(), "d2v-corpus-"));
  mkdirSync(join(dir, "sub"));
  loadBrown()
    .slice(0, docs)
    .forEach((d, i) => writeFileSync(join(dir, i % 2 ? "sub" : ".", `doc${i}.txt`), d.text.slice(0, 3000)));
  return dir;
}
