/**
 * Fuzzing the readers of everything a user can pass: seeded mutations of valid WAV, FLAC, PNG, JSONL,
 * safetensors and torch (zip + pickle) files. Every input must end in a typed error (a D2vError, which the CLI
 * prints as one line) or in a result that is well formed; anything else (a RangeError, a TypeError, a hang) is a
 * crash. The counts are printed so that the suite's log shows them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { decodeAudio, encodeWav16 } from "../src/audio/io.js";
import { D2vError } from "../src/engine/errors.js";
import { HostRng } from "../src/engine/random.js";
import { decodeSafetensors, encodeSafetensors, f32Tensor, i64Tensor } from "../src/engine/safetensors.js";
import { readTorchBin } from "../src/hf/torch-bin.js";
import { readLabeledText } from "../src/text/data.js";
import { decodeImage } from "../src/vision/images.js";
import { ROOT } from "./helpers.js";
import { torchZip } from "./hf/torch-writer.js";

// A deeper search than CI's: D2V_FUZZ_INPUTS=5000 D2V_FUZZ_SEED=7 node --test dist/test/fuzz.test.js
const rng = HostRng.seeded(Number(process.env.D2V_FUZZ_SEED ?? 2026));
const INPUTS_PER_FORMAT = Number(process.env.D2V_FUZZ_INPUTS ?? 60);

/** One random mutation: flipped bytes, a cut, inserted or repeated bytes, or an extreme value over a length field. */
function mutate(src: Uint8Array): Uint8Array {
  const b = Uint8Array.from(src);
  const at = () => rng.int(0, Math.max(0, b.length - 1));
  switch (rng.int(0, 5)) {
    case 0: {
      for (let k = rng.int(1, 8); k > 0; k--) b[at()] = rng.int(0, 255);
      return b;
    }
    case 1:
      return b.slice(0, rng.int(0, b.length - 1));
    case 2: {
      const i = at();
      const junk = Uint8Array.from({ length: rng.int(1, 64) }, () => rng.int(0, 255));
      return Uint8Array.from([...b.subarray(0, i), ...junk, ...b.subarray(i)]);
    }
    case 3: {
      const i = at();
      const chunk = b.subarray(i, i + rng.int(1, 256));
      return Uint8Array.from([...b.subarray(0, i), ...chunk, ...chunk, ...b.subarray(i)]);
    }
    case 4: {
      // A 32-bit field in the first 64 bytes (headers hold the lengths) set to an extreme.
      const i = rng.int(0, Math.min(60, Math.max(0, b.length - 4)));
      const v = [0, 1, 0x7fffffff, 0xffffffff, 0x80000000][rng.int(0, 4)];
      new DataView(b.buffer).setUint32(i, v, true);
      return b;
    }
    default: {
      const i = at();
      b.fill(rng.int(0, 255), i, i + rng.int(1, 32));
      return b;
    }
  }
}

type Outcome = { tried: number; typed: number; ok: number; crashes: string[] };

async function fuzz(name: string, valid: Uint8Array, read: (bytes: Uint8Array) => Promise<void> | void): Promise<Outcome> {
  const o: Outcome = { tried: 0, typed: 0, ok: 0, crashes: [] };
  await read(valid); // the unmutated file reads
  for (let i = 0; i < INPUTS_PER_FORMAT; i++) {
    const input = mutate(valid);
    o.tried++;
    try {
      await read(input);
      o.ok++;
    } catch (e) {
      if (e instanceof D2vError) o.typed++;
      else o.crashes.push(`${name} #${i}: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    }
  }
  process.stdout.write(`# fuzz ${name}: ${o.tried} inputs, ${o.typed} typed errors, ${o.ok} read, ${o.crashes.length} crashes\n`);
  return o;
}

const finite = (xs: Float32Array) => xs.every((x) => Number.isFinite(x));

test("fuzzed WAV, FLAC, PNG, JSONL, safetensors and torch files end in a typed error or a well-formed result, never a crash", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-fuzz-"));
  const sine = Float32Array.from({ length: 1600 }, (_, i) => 0.5 * Math.sin(i / 5));
  const audio = async (bytes: Uint8Array) => {
    const a = await decodeAudio(bytes, "fuzzed audio");
    assert.ok(a.sampleRate > 0 && finite(a.samples), "decoded audio is finite");
  };
  const flac = new Uint8Array(readFileSync(join(ROOT, "test", "fixtures", "audio", "librispeech", "100", "1", "100-1-00000.flac")));
  const png = new Uint8Array(readFileSync(join(ROOT, "test", "fixtures", "images", "rgba-12x10.png")));
  const image = async (bytes: Uint8Array) => {
    const img = await decodeImage(bytes, { channels: 3, size: 8, minSide: 2 });
    assert.equal(img.data.length, 3 * 8 * 8);
  };
  const jsonl = new TextEncoder().encode(['{"text": "good film", "label": "pos"}', '{"text": "bad film", "label": "neg"}', '{"text": "dull", "label": 3}'].join("\n") + "\n");
  const labeled = (bytes: Uint8Array) => {
    const path = join(dir, "fuzz.jsonl");
    writeFileSync(path, bytes);
    for (const x of readLabeledText(path)) assert.ok(typeof x.text === "string" && typeof x.label === "string");
  };
  const tensors = new Map([
    ["w", f32Tensor([2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]))],
    ["ids", i64Tensor([3], [1, 2, 3])],
  ]);
  const wellFormed = (m: Map<string, { dtype: string; shape: number[]; data: Uint8Array }>) => {
    for (const t of m.values()) assert.ok(t.shape.every((d) => Number.isInteger(d) && d >= 0) && t.data.length >= 0);
  };
  const torch = torchZip([
    { name: "w", storage: "FloatStorage", data: new Uint8Array(Float32Array.from([1, 2, 3, 4, 5, 6]).buffer), numel: 6, shape: [2, 3] },
    { name: "b", storage: "FloatStorage", data: new Uint8Array(Float32Array.from([9, 8]).buffer), numel: 2, shape: [2] },
  ]);
  const outcomes = [
    await fuzz("WAV", encodeWav16(sine, 16000), audio),
    await fuzz("FLAC", flac, audio),
    await fuzz("PNG", png, image),
    await fuzz("JSONL", jsonl, labeled),
    await fuzz("safetensors", encodeSafetensors(tensors), (b) => wellFormed(decodeSafetensors(b, "fuzzed.safetensors").tensors)),
    await fuzz("torch", torch, (b) => wellFormed(readTorchBin(b, "fuzzed.bin"))),
  ];
  const total = outcomes.reduce((a, o) => ({ tried: a.tried + o.tried, typed: a.typed + o.typed, ok: a.ok + o.ok, crashes: [...a.crashes, ...o.crashes] }));
  process.stdout.write(`# fuzz total: ${total.tried} inputs, ${total.typed} typed errors, ${total.ok} read, ${total.crashes.length} crashes\n`);
  assert.deepEqual(total.crashes, []);
  assert.ok(total.typed > total.tried / 3, "most mutations are caught as typed errors");
});
