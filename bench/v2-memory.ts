/**
 * Peak engine heap of data2vec 2.0 pretraining updates (not a test): one process per shape, two updates each,
 * every live buffer counted (`trackBuffers`), printed beside `v2StepBytes`'s estimate.
 *   node dist/bench/v2-memory.js                       the table
 *   node dist/bench/v2-memory.js --one text 4 4 128    one shape: modality, blocks per batch, views, positions
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { initEngine } from "../src/engine/runtime.js";
import { peakBytes, resetPeakBytes, trackBuffers } from "../src/engine/memory.js";
import type { ParamTree } from "../src/engine/tree.js";
import { disposeTree } from "../src/engine/typed.js";
import { floatsOf, v2StepBytes } from "../src/train/memory-plan.js";
import type { PretrainAdapter, PretrainRunConfig } from "../src/train/pretrain-runner.js";
import { resolveTextConfig } from "../src/text/config.js";
import { pretrainText, textPretraining } from "../src/text/pretrain.js";
import { resolveAudioConfig } from "../src/audio/config.js";
import { audioPretraining, pretrainAudio } from "../src/audio/pretrain.js";
import { resolveVisionConfig } from "../src/vision/config.js";
import { pretrainVision, visionPretraining } from "../src/vision/pretrain.js";
import { mnistSplits } from "../src/vision/images.js";
import { syntheticClips } from "./steps.js";

const args = process.argv.slice(2);
const one = args.indexOf("--one");
const MB = (b: number) => Math.round(b / 2 ** 20);

if (one >= 0) {
  const [modality, batchText, viewsText, lengthText] = args.slice(one + 1, one + 5);
  const [batchSize, cloneBatch, length] = [Number(batchText), Number(viewsText), Number(lengthText)];
  await initEngine();
  await trackBuffers();
  const outDir = mkdtempSync(join(tmpdir(), "d2v-v2mem-"));
  const train = { batchSize, steps: 2, warmupSteps: 1, checkpointEvery: 1000 };
  const v2 = { cloneBatch };
  try {
    // The estimate from the shape the adapter reports, then two real updates.
    const estimate = <C extends PretrainRunConfig, E>(adapter: PretrainAdapter<C, E, ParamTree, unknown>, config: C, examples: E[]) => {
      const prepared = adapter.prepare(config, examples, { checkpoint: null, log: () => {} });
      const params = prepared.init(0);
      const bytes = v2StepBytes({ ...prepared.v2Shape!, params: floatsOf(params) });
      disposeTree(params);
      resetPeakBytes();
      return bytes;
    };
    let estimated: number;
    if (modality === "text") {
      const config = resolveTextConfig("tiny-v2", { train: { ...train, seqLen: length }, data2vec: { v2 } });
      const docs = [Array.from({ length: 4000 }, (_, i) => `word${i % 97} text${i % 13}`).join(" ")];
      estimated = estimate(textPretraining(), config, docs);
      await pretrainText({ config, outDir, quiet: true, docs });
    } else if (modality === "audio") {
      const config = resolveAudioConfig("tiny-v2", { train, data: { cropSeconds: length }, data2vec: { v2 } });
      const clips = syntheticClips(4 * batchSize, 16000).map((c) => ({ ...c, samples: new Float32Array(Math.round((length + 0.5) * 16000)).map((_, i) => c.samples[i % c.samples.length]) }));
      estimated = estimate(audioPretraining(), config, clips);
      await pretrainAudio({ config, outDir, quiet: true, clips });
    } else {
      const config = resolveVisionConfig(length === 1 ? "tiny-v2" : "small-v2", { train, data2vec: { v2 } });
      const images = mnistSplits().train.images.slice(0, 64);
      estimated = estimate(visionPretraining(), config, images);
      await pretrainVision({ config, outDir, quiet: true, images });
    }
    console.log(JSON.stringify({ modality, batchSize, cloneBatch, length, peakMB: MB(peakBytes()), estimateMB: MB(estimated) }));
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
} else {
  const self = fileURLToPath(import.meta.url);
  const shapes = args.length ? [args] : [
    ["text", "2", "4", "128"], ["text", "4", "4", "128"], ["text", "4", "2", "128"], ["text", "4", "8", "128"], ["text", "8", "4", "128"],
    ["audio", "4", "4", "1"], ["audio", "4", "2", "1"], ["audio", "4", "8", "1"], ["audio", "2", "4", "2"],
    ["vision", "16", "4", "1"], ["vision", "16", "8", "1"], ["vision", "8", "4", "2"],
  ];
  for (const s of shapes) {
    const r = spawnSync(process.execPath, [self, "--one", ...s], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    console.log(r.status === 0 ? r.stdout.trim().split("\n").pop() : JSON.stringify({ shape: s, failed: r.status }));
  }
}
