/**
 * A genre-classification task built from the Brown corpus, for showing what pretraining buys:
 * documents are split by document into train and test (no passage of a test document is ever trained
 * on, not even unlabeled), cut into passages of about `passageWords` words, and a small labeled subset
 * of the training passages is drawn per genre. The unlabeled pretraining corpus is the training documents.
 */
import { HostRng } from "../engine/random.js";
import { loadBrown, type BrownDocument } from "./brown.js";
import type { LabeledText } from "./data.js";

/** Eight genres with at least 17 documents each: some easy to tell apart (news vs. learned), some not (fiction vs. romance). */
export const BROWN_GENRES = ["news", "editorial", "reviews", "religion", "hobbies", "learned", "fiction", "romance"];

export type BrownGenreTask = {
  labels: string[];
  train: LabeledText[];
  test: LabeledText[];
  /** Full text of the training documents (unlabeled pretraining corpus). */
  pretrainDocs: string[];
  testDocIds: string[];
};

function passages(doc: BrownDocument, words: number): string[] {
  const tokens = doc.text.split(/\s+/).filter(Boolean);
  const out: string[] = [];
  for (let i = 0; i + words <= tokens.length; i += words) out.push(tokens.slice(i, i + words).join(" "));
  return out;
}

export function brownGenreTask(opts: { perClass?: number; testFraction?: number; passageWords?: number; testPerClass?: number; seed?: number } = {}): BrownGenreTask {
  const perClass = opts.perClass ?? 16;
  const testFraction = opts.testFraction ?? 0.25;
  const words = opts.passageWords ?? 80;
  const testPerClass = opts.testPerClass ?? 60;
  const rng = HostRng.seeded(opts.seed ?? 2022);
  const docs = loadBrown();
  const train: LabeledText[] = [];
  const test: LabeledText[] = [];
  const testDocIds: string[] = [];
  const testIds = new Set<string>();
  for (const genre of BROWN_GENRES) {
    const inGenre = rng.shuffle(docs.filter((d) => d.genre === genre));
    const nTest = Math.max(2, Math.round(inGenre.length * testFraction));
    const testDocs = inGenre.slice(0, nTest);
    const trainDocs = inGenre.slice(nTest);
    for (const d of testDocs) testIds.add(d.id);
    testDocIds.push(...testDocs.map((d) => d.id));
    const trainPassages = rng.shuffle(trainDocs.flatMap((d) => passages(d, words)));
    train.push(...trainPassages.slice(0, perClass).map((text) => ({ text, label: genre })));
    const testPassages = rng.shuffle(testDocs.flatMap((d) => passages(d, words)));
    test.push(...testPassages.slice(0, testPerClass).map((text) => ({ text, label: genre })));
  }
  return {
    labels: [...BROWN_GENRES],
    train: rng.shuffle(train),
    test,
    pretrainDocs: docs.filter((d) => !testIds.has(d.id)).map((d) => d.text),
    testDocIds: testDocIds.sort(),
  };
}
