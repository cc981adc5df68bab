/** Running a trained model over a dataset: fixed-size batches through one compiled function, outputs collected on the host. */
import type { numpy as np } from "../engine/jax.js";
import { compile, refTree } from "../engine/typed.js";

/**
 * Runs `forward(params, inputs)` (compiled once) over `count` examples in batches of `batchSize` rows and collects
 * the first `width` outputs of each example. `inputs(rows)` builds a batch of `batchSize` rows from these example
 * indices (the last batch padded, so that every batch has one shape). Does not consume params.
 */
export async function mapExamples<P, I>(params: P, count: number, batchSize: number, width: number, inputs: (rows: number[]) => I, forward: (p: P, inputs: I) => np.Array): Promise<Float32Array> {
  const compiled = compile(forward);
  const out = new Float32Array(count * width);
  try {
    for (let i = 0; i < count; i += batchSize) {
      const rows = Array.from({ length: Math.min(batchSize, count - i) }, (_, k) => i + k);
      const values = (await compiled(refTree(params), inputs(rows)).data()) as Float32Array | Int32Array;
      out.set(Float32Array.from(values.subarray(0, rows.length * width)), i * width);
    }
  } finally {
    compiled.dispose();
  }
  return out;
}
