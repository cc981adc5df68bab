/** Text checkpoints: the pretrained data2vec model and the fine-tuned classifier, each with its tokenizer. */
import { join } from "node:path";
import { tree } from "../engine/jax.js";
import { CheckpointError, VocabError } from "../engine/errors.js";
import type { ParamTree } from "../engine/tree.js";
import { loadTree, readCheckpointJson, resolveCheckpoint, saveCheckpoint } from "../train/checkpoint.js";
import { BpeTokenizer } from "./bpe.js";
import { newHead, type FinetuneSettings, type TextClassifierParams } from "./classify.js";
import { parseTextRunConfig, type TextRunConfig } from "./config.js";
import { initTextData2Vec, type TextEncoderConfig, type TextEncoderParams } from "./model.js";

export type ClassifierConfig = {
  kind: "text-classifier";
  run: TextRunConfig;
  labels: string[];
  finetune: FinetuneSettings;
  initializedFrom: string | null;
};

function loadTokenizerFor(dir: string, vocabSize: number): BpeTokenizer {
  const tok = BpeTokenizer.load(dir);
  if (tok.size !== vocabSize) {
    throw new VocabError(`the tokenizer in ${dir} has ${tok.size} entries but the model was built for ${vocabSize}; the vocabulary does not match this checkpoint (restore the checkpoint's own vocab.json and merges.txt)`);
  }
  return tok;
}

export type LoadedText = {
  kind: "data2vec-pretrain" | "text-classifier";
  dir: string;
  run: TextRunConfig;
  enc: TextEncoderConfig;
  tok: BpeTokenizer;
  encoder: TextEncoderParams;
  /** Present for classifiers. */
  classifier?: { params: TextClassifierParams; labels: string[]; config: ClassifierConfig };
};

/** Loads a pretrained or fine-tuned text checkpoint. */
export function loadTextCheckpoint(path: string): LoadedText {
  const dir = resolveCheckpoint(path);
  const raw = readCheckpointJson(dir, "config.json") as { kind?: string };
  if (raw.kind === "data2vec-pretrain") {
    const run = parseTextRunConfig(raw, join(dir, "config.json"));
    const tok = loadTokenizerFor(dir, run.model.vocabSize);
    const enc: TextEncoderConfig = { ...run.model, padId: tok.pad };
    const like = initTextData2Vec(run, enc, 0);
    const p = loadTree(dir, "model", like as ParamTree, { consumeLike: true }) as typeof like;
    tree.dispose(p.head as never);
    return { kind: "data2vec-pretrain", dir, run, enc, tok, encoder: { shared: p.shared, layers: p.layers } };
  }
  if (raw.kind === "text-classifier") {
    const config = raw as ClassifierConfig;
    const run = parseTextRunConfig(config.run, join(dir, "config.json"));
    const tok = loadTokenizerFor(dir, run.model.vocabSize);
    const enc: TextEncoderConfig = { ...run.model, padId: tok.pad };
    const init = initTextData2Vec(run, enc, 0);
    tree.dispose(init.head as never);
    const like: TextClassifierParams = { encoder: { shared: init.shared, layers: init.layers }, head: newHead(0, enc.dim, config.labels.length, { poolNorm: config.finetune.poolNorm }) };
    const params = loadTree(dir, "model", like as ParamTree, { consumeLike: true }) as TextClassifierParams;
    return { kind: "text-classifier", dir, run, enc, tok, encoder: params.encoder, classifier: { params, labels: config.labels, config } };
  }
  throw new CheckpointError(`${dir}/config.json has kind ${JSON.stringify(raw.kind)}; expected a text checkpoint (data2vec-pretrain or text-classifier)`);
}

export async function saveClassifier(dir: string, params: TextClassifierParams, config: ClassifierConfig, tok: BpeTokenizer): Promise<void> {
  await saveCheckpoint(dir, { config, trees: { model: params as ParamTree }, files: tok.files() });
}
