/**
 * Our data2vec training step against the official fairseq code: every fixture folder in
 * ../shared/fixtures/fairseq (new ones are picked up). A variant we implement must match every tensor fairseq
 * recorded (loss, predictions, targets, every gradient, the EMA teacher, a second step) within 1e-4; one we do
 * not yet implement must say so instead of crashing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
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
