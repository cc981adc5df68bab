/** The Debian package-description task: deb822 parsing, the join with translations, the split by source package. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { DataError } from "../../src/engine/errors.js";
import { debianDescriptions, debianSectionTask, descriptionText, parseStanzas } from "../../src/text/debian-sections.js";
import { runDebianSections } from "../../src/cli/text-commands.js";
import { readLabeledText, readTextCorpus } from "../../src/text/data.js";

const PACKAGES = `Package: foo
Source: foo-src (1.0-1)
Section: contrib/games
Description: A game of foo
Description-md5: aaa

Package: foo-data
Source: foo-src
Section: games
Description: A game of foo (data)
Description-md5: bbb

Package: bar
Section: science
Description: Bar numerics
Description-md5: ccc
Tag: field::mathematics,
 role::program

Package: twin
Section: science
Description: Bar numerics
Description-md5: ccc
`;

const TRANSLATIONS = `Package: foo
Description-md5: aaa
Description-en: A game of foo
 Foo is a game.
 .
 It has levels.

Package: foo-data
Description-md5: bbb
Description-en: A game of foo (data)
 The data files of foo.
`;

test("deb822: stanzas, continuation lines, and descriptions as prose", () => {
  const stanzas = parseStanzas(PACKAGES, "Packages");
  assert.equal(stanzas.length, 4);
  assert.equal(stanzas[2].get("Tag"), "field::mathematics,\nrole::program");
  assert.equal(descriptionText("Sum\n First line.\n .\n Second para."), "Sum\nFirst line.\nSecond para.");
  assert.throws(() => parseStanzas("Package: x\nno colon here\n", "P"), (e: Error) => e instanceof DataError && /P:2: "no colon here" is not a "Field: value" line/.test(e.message));
  assert.throws(() => parseStanzas(" orphan\n", "P"), (e: Error) => e instanceof DataError && /P:1: a continuation line outside a field/.test(e.message));
});

test("descriptions: long text by md5, area prefix dropped, source without version, duplicates kept once", () => {
  const d = debianDescriptions(parseStanzas(PACKAGES, "P"), parseStanzas(TRANSLATIONS, "T"));
  assert.deepEqual(d, [
    { pkg: "foo", source: "foo-src", section: "games", text: "A game of foo\nFoo is a game.\nIt has levels." },
    { pkg: "foo-data", source: "foo-src", section: "games", text: "A game of foo (data)\nThe data files of foo." },
    // No translation: the one-line summary; "twin" carries the same description and is dropped.
    { pkg: "bar", source: "bar", section: "science", text: "Bar numerics" },
  ]);
});

/** Many source packages with one or two binary packages each, in two sections. */
function synthetic(nSources: number) {
  const d = [];
  for (let i = 0; i < nSources; i++) {
    const section = i % 2 ? "games" : "science";
    d.push({ pkg: `p${i}`, source: `s${i}`, section, text: `package ${i} about ${section}` });
    if (i % 3 === 0) d.push({ pkg: `p${i}-data`, source: `s${i}`, section, text: `package ${i} about ${section} (data)` });
  }
  return d;
}

test("the split is by source package: no test source is trained on, labeled or not", () => {
  const descriptions = synthetic(200);
  const task = debianSectionTask(descriptions, { sections: ["games", "science"], perClass: 5, testPerClass: 10, seed: 7 });
  const sourceOf = new Map(descriptions.map((d) => [d.text, d.source]));
  const testSources = new Set(task.test.map((t) => sourceOf.get(t.text)));
  for (const t of task.train) assert.ok(!testSources.has(sourceOf.get(t.text)));
  for (const doc of task.pretrainDocs) assert.ok(!testSources.has(sourceOf.get(doc)));
  assert.equal(task.counts.testSources, 50);
  // The corpus is every description of the other 150 sources.
  const trainSources = new Set(task.pretrainDocs.map((doc) => sourceOf.get(doc)));
  assert.equal(trainSources.size, 150);
  assert.equal(task.pretrainDocs.length, descriptions.filter((d) => trainSources.has(d.source)).length);
  assert.deepEqual([...new Set(task.train.map((t) => t.label))].sort(), ["games", "science"]);
  assert.equal(task.train.filter((t) => t.label === "games").length, 5);
  // One labeled description per source where the section has enough sources.
  assert.equal(new Set(task.train.map((t) => sourceOf.get(t.text))).size, task.train.length);
  // The same seed, the same task.
  assert.deepEqual(debianSectionTask(descriptions, { sections: ["games", "science"], perClass: 5, testPerClass: 10, seed: 7 }).test, task.test);
  assert.throws(
    () => debianSectionTask(descriptions, { sections: ["games", "mail"], perClass: 5, testPerClass: 10 }),
    (e: Error) => e instanceof DataError && /section "mail" has 0 training and 0 test descriptions/.test(e.message),
  );
});

test("d2v data debian-sections writes the labeled splits and the corpus; bad input leaves nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-deb-"));
  const packages = synthetic(400)
    .map((d, i) => `Package: ${d.pkg}\nSource: ${d.source}\nSection: ${d.section}\nDescription: ${d.text}\nDescription-md5: m${i}\n`)
    .join("\n");
  writeFileSync(join(dir, "Packages"), packages);
  writeFileSync(join(dir, "Translation-en"), "Package: p0\nDescription-md5: m0\nDescription-en: package 0 about science\n longer words.\n");
  const out = join(dir, "deb");
  const given = { packages: join(dir, "Packages"), translations: join(dir, "Translation-en"), perClass: 4, testPerClass: 8, seed: 1 };
  await assert.rejects(runDebianSections({ out, ...given }), (e: Error) => e instanceof DataError && /section "admin" has 0 training/.test(e.message));
  assert.ok(!existsSync(out), "nothing written on a refusal");
  await assert.rejects(runDebianSections({ out, packages: given.packages, perClass: 4, testPerClass: 8, seed: 1 }), /pass both --packages and --translations/);
  writeFileSync(join(dir, "Bad"), "Package: x\n???\n");
  await assert.rejects(runDebianSections({ out, ...given, packages: join(dir, "Bad") }), (e: Error) => e instanceof DataError && /Bad:2/.test(e.message));
  assert.ok(!existsSync(out));
});

test("d2v data debian-sections output reads back as labeled data and a corpus", async () => {
  const dir = mkdtempSync(join(tmpdir(), "d2v-deb-"));
  const sections = ["admin", "games", "graphics", "mail", "net", "science", "sound", "text"];
  const lines: string[] = [];
  for (let i = 0; i < 800; i++) {
    const section = sections[i % 8];
    lines.push(`Package: p${i}\nSection: ${section}\nDescription: tool ${i} for ${section}\nDescription-md5: m${i}\n`);
  }
  writeFileSync(join(dir, "Packages"), lines.join("\n"));
  writeFileSync(join(dir, "Translation-en"), "Package: p0\nDescription-md5: m0\nDescription-en: tool 0 for admin\n Manages\n .\n systems.\n");
  const out = join(dir, "deb");
  await runDebianSections({ out, packages: join(dir, "Packages"), translations: join(dir, "Translation-en"), perClass: 3, testPerClass: 5, seed: 1 });
  const train = readLabeledText(join(out, "train.jsonl"));
  const test = readLabeledText(join(out, "test.jsonl"));
  assert.equal(train.length, 24);
  assert.equal(test.length, 40);
  const corpus = readTextCorpus(join(out, "pretrain"));
  const readme = JSON.parse(readFileSync(join(out, "README.json"), "utf8")) as { pretrainDescriptions: number; testSources: number };
  assert.equal(readme.testSources, 200);
  // Each description is one document of the corpus, multi-line ones included.
  assert.equal(corpus.length, readme.pretrainDescriptions);
  assert.equal(corpus.length, 600);
  const testTexts = new Set(test.map((t) => t.text));
  for (const doc of corpus) assert.ok(!testTexts.has(doc));
  if (corpus.some((d) => d.startsWith("tool 0 for admin"))) assert.ok(corpus.includes("tool 0 for admin\nManages\nsystems."));
});
