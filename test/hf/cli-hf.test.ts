import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { decodeSafetensors, toFloat32 } from "../../src/engine/safetensors.js";
import { HF_FIXTURES, ROOT } from "../helpers.js";

const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const d2v = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, D2V_THREADS: "2" } });
const fixture = (name: string) => join(HF_FIXTURES, name);
const info = (name: string) => JSON.parse(readFileSync(join(fixture(name), "expected.json"), "utf8"));

test("d2v run writes every output under the fixture names; transcribe, fill-mask and classify on HF directories", () => {
  const out = join(mkdtempSync(join(tmpdir(), "d2v-run-")), "out.safetensors");
  const wavs = [0, 1].map((i) => join(fixture("audio-ctc"), `input_${i}.wav`));
  let r = d2v("run", "--model", fixture("audio-ctc"), "--weights", "bin", "--out", out, ...wavs);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).results, info("audio-ctc").ctc_greedy_decode.valid_frames_only);
  const got = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
  const expected = decodeSafetensors(new Uint8Array(readFileSync(join(fixture("audio-ctc"), "expected.safetensors")))).tensors;
  for (const name of ["input_values", "extract_features", "hidden_states", "last_hidden_state", "logits"]) {
    const [a, e] = [toFloat32(got.get(name)!), toFloat32(expected.get(name)!)];
    assert.deepEqual(got.get(name)!.shape, expected.get(name)!.shape, name);
    assert.ok(a.every((v, i) => Math.abs(v - e[i]) <= 1e-4), name);
  }
  assert.deepEqual(got.get("predicted_ids")!.data, expected.get("predicted_ids")!.data);

  // transcribe runs each file alone (no padding), as the single-clip reference does.
  r = d2v("transcribe", "--model", fixture("audio-ctc"), ...wavs);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split("\n").map((l) => JSON.parse(l).text), info("audio-ctc").ctc_greedy_decode.single_unpadded);

  const text = info("text-mlm").sentences[info("text-mlm").mask_predictions[0].batch].text;
  r = d2v("fill-mask", "--model", fixture("text-mlm"), "--top", "5", text);
  assert.equal(r.status, 0, r.stderr);
  const masks = JSON.parse(r.stdout).masks;
  assert.deepEqual(masks[0].map((m: { id: number }) => m.id), info("text-mlm").mask_predictions[0].top5_ids);
  assert.ok(masks[0][0].score > masks[0][1].score);

  const pngs = info("vision-cls").inputs.files.map((f: string) => join(fixture("vision-cls"), f));
  r = d2v("classify", "--model", fixture("vision-cls"), ...pngs);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split("\n").map((l) => JSON.parse(l).label), info("vision-cls").predicted_labels);

  // Wrong model for the command, missing inputs, nothing written on failure.
  const failed = join(mkdtempSync(join(tmpdir(), "d2v-run-")), "out.safetensors");
  r = d2v("run", "--model", fixture("vision-cls"), "--out", failed, "missing.png");
  assert.equal(r.status, 2);
  assert.match(r.stderr, /missing\.png does not exist/);
  assert.equal(existsSync(failed), false);
  r = d2v("transcribe", "--model", fixture("text-mlm"), "x.wav");
  assert.equal(r.status, 2);
  assert.match(r.stderr, /needs a Data2VecAudioForCTC model/);
  r = d2v("fill-mask", "--model", fixture("text-mlm"), "no mask here");
  assert.equal(r.status, 2);
  assert.match(r.stderr, /has no <mask> token/);
});
