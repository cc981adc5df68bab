/**
 * Our data2vec training step against the official fairseq code: every fixture folder in
 * ../shared/fixtures/fairseq (new ones are picked up). A variant we implement must match every tensor fairseq
 * recorded (loss, predictions, targets, every gradient, the EMA teacher, a second step) within 1e-4; one we do
 * not yet implement must say so instead of crashing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { decodeSafetensors, encodeSafetensors, f32Tensor, toFloat32 } from "../src/engine/safetensors.js";
import { initEngine } from "../src/engine/runtime.js";
import { checkFairseq, TOLERANCE } from "../src/fairseq/check.js";
import { ROOT, SHARED } from "./helpers.js";

const FIXTURES = join(SHARED, "fixtures", "fairseq");
const folders = existsSync(FIXTURES) ? readdirSync(FIXTURES).filter((d) => existsSync(join(FIXTURES, d, "config.json"))).sort() : [];
const IMPLEMENTED = new Set(["v1-text", "v1-audio"]);

await initEngine();

test("the fairseq fixtures are there", () => {
  assert.ok(folders.includes("v1-text") && folders.includes("v1-audio"), `fixture folders: ${folders.join(", ")}`);
});

for (const folder of folders) {
  const what = IMPLEMENTED.has(folder) ? "our step equals the official code's within 1e-4" : "not implemented yet: said so, no crash";
  test(`fairseq ${folder}: ${what}`, async () => {
    const r = await checkFairseq(join(FIXTURES, folder));
    if (!IMPLEMENTED.has(r.fixture)) {
      assert.equal(r.ok, false);
      assert.match(r.reason ?? "", /is not implemented here/);
      return;
    }
    assert.ok(r.ok, JSON.stringify(r));
    for (const [group, worst] of Object.entries(r.worst!)) assert.ok(worst <= TOLERANCE, `${group}: ${worst}`);
  });
}

test("d2v check-fairseq prints one JSON line per folder and exits 1 when any fails", () => {
  const dirs = ["v1-text", "v2-text"].map((d) => join(FIXTURES, d)).filter(existsSync);
  const r = spawnSync(process.execPath, [join(ROOT, "dist", "src", "cli", "main.js"), "check-fairseq", ...dirs], { encoding: "utf8" });
  const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { fixture: string; ok: boolean });
  assert.deepEqual(lines.map((l) => [l.fixture, l.ok]), [["v1-text", true], ["v2-text", false]]);
  assert.equal(r.status, 1, r.stderr);
});

test("the check fails, naming the tensor, when one gradient element is off by 1e-3", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-fairseq-"));
  cpSync(join(FIXTURES, "v1-text"), dir, { recursive: true });
  const path = join(dir, "expected.safetensors");
  const { tensors } = decodeSafetensors(new Uint8Array(readFileSync(path)));
  const name = "grad.encoder.regression_head.0.bias";
  const values = toFloat32(tensors.get(name)!);
  values[3] += 1e-3;
  tensors.set(name, f32Tensor(tensors.get(name)!.shape, values));
  writeFileSync(path, encodeSafetensors(tensors));
  const r = await checkFairseq(dir);
  assert.equal(r.ok, false);
  assert.equal(r.worstTensor?.grad, name);
  assert.ok(r.failures?.some((f) => f.startsWith(`${name}: max |Δ| 0.00100`)), JSON.stringify(r.failures));
});
