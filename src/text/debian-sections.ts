/**
 * A topic-classification task from Debian's package descriptions: each package's description (its one-line
 * summary and long text, from the archive's English translations) labeled with its archive section (games, science,
 * sound, ...). Lots of unlabeled text and labels nobody made for this project. Packages built from one source package
 * often share most of their words ("... (data files)", "... (development files)"), so the split is by source package:
 * no description of a test source is ever trained on, not even unlabeled. Identical descriptions are kept once.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { DataError } from "../engine/errors.js";
import { HostRng } from "../engine/random.js";
import type { LabeledText } from "./data.js";

/** Eight topical sections with hundreds of distinct descriptions each (not the form-based ones: libs, libdevel, doc). */
export const DEBIAN_SECTIONS = ["admin", "games", "graphics", "mail", "net", "science", "sound", "text"];

/** One deb822 stanza: field name → value (continuation lines joined with "\n", their leading space kept off). */
export type Stanza = Map<string, string>;

/**
 * Parses deb822 text (the format of apt's Packages and Translation files): stanzas separated by blank lines, each a
 * list of `Field: value` lines whose continuation lines start with a space or a tab.
 */
export function parseStanzas(text: string, path: string): Stanza[] {
  const stanzas: Stanza[] = [];
  let current: Stanza = new Map();
  let field = "";
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
    if (!line.trim()) {
      if (current.size > 0) stanzas.push(current);
      current = new Map();
      field = "";
    } else if (line[0] === " " || line[0] === "\t") {
      if (!field) throw new DataError(`${path}:${i + 1}: a continuation line outside a field; pass apt's Packages and Translation-en text`);
      current.set(field, `${current.get(field)}\n${line.slice(1)}`);
    } else {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new DataError(`${path}:${i + 1}: "${line.slice(0, 60)}" is not a "Field: value" line; pass apt's Packages and Translation-en text`);
      field = line.slice(0, colon);
      current.set(field, line.slice(colon + 1).trim());
    }
  }
  if (current.size > 0) stanzas.push(current);
  return stanzas;
}

/** A description field as prose: the summary line, then the long text ("." lines are paragraph breaks). */
export function descriptionText(field: string): string {
  const [summary, ...rest] = field.split("\n");
  const body = rest.map((l) => (l.trim() === "." ? "" : l.trim()));
  return [summary.trim(), ...body].join("\n").replace(/\n{2,}/g, "\n").trim();
}

export type DebianDescription = { pkg: string; source: string; section: string; text: string };

/**
 * Joins the Packages stanzas (name, source, section, Description-md5) with the Translation-en stanzas (md5 → long
 * description); a package without a translation keeps its one-line summary. Sections lose their archive area
 * ("contrib/games" → "games"); identical descriptions are kept once (the first package to carry one).
 */
export function debianDescriptions(packages: Stanza[], translations: Stanza[]): DebianDescription[] {
  const byMd5 = new Map<string, string>();
  for (const t of translations) {
    const md5 = t.get("Description-md5");
    const d = t.get("Description-en");
    if (md5 && d) byMd5.set(md5, d);
  }
  const seen = new Set<string>();
  const out: DebianDescription[] = [];
  for (const p of packages) {
    const pkg = p.get("Package");
    const section = p.get("Section");
    const field = byMd5.get(p.get("Description-md5") ?? "") ?? p.get("Description") ?? p.get("Description-en");
    if (!pkg || !section || !field) continue;
    const text = descriptionText(field);
    if (!text || seen.has(text)) continue;
    seen.add(text);
    const source = (p.get("Source") ?? pkg).split(" ")[0];
    out.push({ pkg, source, section: section.slice(section.lastIndexOf("/") + 1), text });
  }
  return out;
}

export type DebianSectionTask = {
  labels: string[];
  train: LabeledText[];
  test: LabeledText[];
  /** Every description of the training sources, of every section (the unlabeled pretraining corpus). */
  pretrainDocs: string[];
  /** Distinct descriptions, and how many of them each split holds. */
  counts: { descriptions: number; trainSources: number; testSources: number };
};

/**
 * Splits the descriptions by source package (a quarter of the sources to test), then draws `perClass` labeled
 * training descriptions and `testPerClass` test descriptions of each section in `sections`.
 */
export function debianSectionTask(
  descriptions: DebianDescription[],
  opts: { sections?: string[]; perClass?: number; testPerClass?: number; testFraction?: number; seed?: number } = {},
): DebianSectionTask {
  const sections = opts.sections ?? DEBIAN_SECTIONS;
  const perClass = opts.perClass ?? 16;
  const testPerClass = opts.testPerClass ?? 60;
  const rng = HostRng.seeded(opts.seed ?? 2022);
  const sources = rng.shuffle([...new Set(descriptions.map((d) => d.source))].sort());
  const testSources = new Set(sources.slice(0, Math.round(sources.length * (opts.testFraction ?? 0.25))));
  const trainSplit = descriptions.filter((d) => !testSources.has(d.source));
  const testSplit = descriptions.filter((d) => testSources.has(d.source));
  const train: LabeledText[] = [];
  const test: LabeledText[] = [];
  for (const section of sections) {
    const inTrain = rng.shuffle(trainSplit.filter((d) => d.section === section));
    const inTest = rng.shuffle(testSplit.filter((d) => d.section === section));
    if (inTrain.length < perClass || inTest.length < testPerClass) {
      throw new DataError(
        `section "${section}" has ${inTrain.length} training and ${inTest.length} test descriptions, fewer than the ${perClass} and ${testPerClass} asked for; ` +
          "lower --per-class / --test-per-class or pass the full archive's Packages and Translation-en",
      );
    }
    // One labeled description per source package where possible, so the few labels are not near-copies.
    const oneEach = (xs: DebianDescription[], n: number) => {
      const picked: DebianDescription[] = [];
      const used = new Set<string>();
      for (const d of xs) if (picked.length < n && !used.has(d.source)) (picked.push(d), used.add(d.source));
      for (const d of xs) if (picked.length < n && !picked.includes(d)) picked.push(d);
      return picked;
    };
    train.push(...oneEach(inTrain, perClass).map((d) => ({ text: d.text, label: section })));
    test.push(...oneEach(inTest, testPerClass).map((d) => ({ text: d.text, label: section })));
  }
  return {
    labels: [...sections],
    train: rng.shuffle(train),
    test,
    pretrainDocs: trainSplit.map((d) => d.text),
    counts: { descriptions: descriptions.length, trainSources: sources.length - testSources.size, testSources: testSources.size },
  };
}

/** apt's lists folder, where `apt-get update` keeps the archive's Packages and Translation files. */
const APT_LISTS = "/var/lib/apt/lists";

/**
 * The text of this machine's Packages (`apt-cache dumpavail`) and English Translation files (decompressed by apt's
 * own helper). Without translations (container images often turn them off) the error says how to fetch them.
 */
export function readAptDescriptions(): { packages: string; translations: string } {
  let packages: string;
  try {
    packages = execFileSync("apt-cache", ["dumpavail"], { encoding: "utf8", maxBuffer: 1 << 30 });
  } catch (e) {
    throw new DataError(`could not run "apt-cache dumpavail" (${(e as Error).message.split("\n")[0]}); on a machine without apt, pass --packages and --translations files`);
  }
  const files = existsSync(APT_LISTS) ? readdirSync(APT_LISTS).filter((f) => /_i18n_Translation-en(\.|$)/.test(f)) : [];
  if (files.length === 0) {
    throw new DataError(
      `no English package descriptions in ${APT_LISTS} (apt is set not to fetch them); run "apt-get update -o Acquire::Languages=en" as root, or pass --translations with a Translation-en file`,
    );
  }
  const translations = files.map((f) => execFileSync("/usr/lib/apt/apt-helper", ["cat-file", join(APT_LISTS, f)], { encoding: "utf8", maxBuffer: 1 << 30 })).join("\n\n");
  return { packages, translations };
}
