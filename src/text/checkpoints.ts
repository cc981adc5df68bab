/** Text checkpoints: the pretrained data2vec model and the fine-tuned classifier, each with its tokenizer. */
import { disposeTree } from "../engine/typed.js";
import { join } from "node:path";
import { VocabError } from "../engine/errors.js";
import { loadPretrainedEncoder, loadTree, readCheckpointOfKind, type LoadedCheckpoint } from "../train/checkpoint.js";
import { BpeTokenizer } from "./bpe.js";
import { newHead, type FinetuneSettings, type TextClassifierParams } from "./classify.js";
import { parseTextRunConfig, type TextRunConfig } from "./config.js";
import { initTextData2Vec, initTextEncoder, type TextEncoderConfig, type TextEncoderParams } from "./model.js";
import { random } from "../engine/jax.js";
import { KeyStream } from "../nn/random.js";
import type { EncoderSource } from "../train/finetune.js";

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

export type LoadedText = LoadedCheckpoint<"text-classifier", TextRunConfig, TextEncoderParams, { params: TextClassifierParams; labels: string[]; config: ClassifierConfig }> & {
  enc: TextEncoderConfig;
  tok: BpeTokenizer;
};

/** Loads a pretrained or fine-tuned text checkpoint. */
export function loadTextCheckpoint(path: string): LoadedText {
  return readCheckpointOfKind<LoadedText>(path, "text", {
    "data2vec-pretrain": (raw, dir) => {
      const run = parseTextRunConfig(raw, join(dir, "config.json"));
      const tok = loadTokenizerFor(dir, run.model.vocabSize);
      const enc: TextEncoderConfig = { ...run.model, padId: tok.pad };
      return { kind: "data2vec-pretrain", dir, run, enc, tok, encoder: loadPretrainedEncoder(dir, initTextData2Vec(run, enc, 0)) };
    },
    "text-classifier": (raw, dir) => {
    const config = raw as ClassifierConfig;
    const run = parseTextRunConfig(config.run, join(dir, "config.json"));
    const tok = loadTokenizerFor(dir, run.model.vocabSize);
    const enc: TextEncoderConfig = { ...run.model, padId: tok.pad };
    const init = initTextData2Vec(run, enc, 0);
    disposeTree(init.head);
    const like: TextClassifierParams = { encoder: { shared: init.shared, layers: init.layers }, head: newHead(0, enc.dim, config.labels.length, { poolNorm: config.finetune.poolNorm }) };
    const params = loadTree(dir, "model", like, { consumeLike: true });
    return { kind: "text-classifier", dir, run, enc, tok, encoder: params.encoder, classifier: { params, labels: config.labels, config } };
    },
  });
}

/** What describes a text network: its run config, the encoder settings and the tokenizer. */
export type TextArch = { run: TextRunConfig; enc: TextEncoderConfig; tok: BpeTokenizer };

/** Text encoders for fine-tuning: from a checkpoint (its classifier head freed), or fresh. */
export const textEncoders: EncoderSource<TextArch, TextEncoderParams> = {
  load(dir) {
    const { run, enc, tok, encoder, classifier } = loadTextCheckpoint(dir);
    if (classifier) disposeTree(classifier.params.head);
    return { arch: { run, enc, tok }, encoder };
  },
  fresh({ enc }, seed) {
    const keys = new KeyStream(random.key(seed));
    const encoder = initTextEncoder(keys, enc);
    keys.close();
    return encoder;
  },
};
