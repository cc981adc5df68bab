import assert from "node:assert/strict";
import { test } from "node:test";
import * as d2v from "../src/index.js";

test("the library entry point exposes each modality's pipeline and the Hugging Face loaders", () => {
  const api = d2v as Record<string, unknown>;
  for (const name of ["pretrainText", "finetuneClassifier", "pretrainVision", "finetuneVision", "pretrainAudio", "finetuneCtc", "evaluateCtc", "transcribeClips", "readAudio", "loadHfModel", "runHfModel", "exportHf", "makeData2VecSteps"]) {
    assert.equal(typeof api[name], "function", name);
  }
  assert.equal(d2v.LIBRISPEECH_VOCAB[0], "<pad>");
});
