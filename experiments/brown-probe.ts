/**
 * What the Brown-genre readout experiments (text-readout, text-layers) share: the checkpoint and random-weight seed
 * from the command line, the task, and the task's standardized linear probe scored on its test passages.
 */
import { initEngine } from "../src/engine/runtime.js";
import { linear } from "../src/nn/layers.js";
import { accuracy } from "../src/train/metrics.js";
import { headPredictions, trainLinearProbe } from "../src/train/probe.js";
import { brownGenreTask } from "../src/text/brown-genre.js";
import { arg } from "./common.js";

/** The probe of experiments/tasks.ts: 500 full-batch AdamW steps. */
const PROBE = { steps: 500, lr: 1e-2, weightDecay: 1e-4 };

export async function brownReadoutSetup() {
  const dir = arg("checkpoint", "");
  if (!dir) throw new Error("--checkpoint DIR is required (a text pretraining run or its checkpoint)");
  const randomSeed = Number(arg("random-seed", "1"));
  const seeds = [1, 2, 3];
  await initEngine();
  const task = brownGenreTask();
  const labelsOf = (xs: { label: string }[]) => xs.map((e) => task.labels.indexOf(e.label));
  /** Test accuracy of the probe trained on the labeled passages' features [n × dim] with `seed`. */
  async function probeAccuracy(train: Float32Array, test: Float32Array, dim: number, seed: number): Promise<number> {
    const { head } = await trainLinearProbe(train, labelsOf(task.train), dim, task.labels.length, { ...PROBE, seed });
    const pred = await headPredictions(head, (h, x) => linear(h, x), test, dim);
    return accuracy(pred, labelsOf(task.test));
  }
  return { dir, randomSeed, seeds, task, probeAccuracy };
}
