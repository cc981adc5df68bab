/** Text checkpoints: the pretrained data2vec model and the fine-tuned classifier, each with its tokenizer. */
import { disposeTree } from "../engine/typed.js";
import { join } from "node:path";
import { CheckpointError, VocabError } from "../engine/errors.js";
import type { V2Shared } from "../data2vec2/model.js";
import type { BlockParams } from "../nn/encoder.js";
import { initTextData2Vec2 } from "./pretrain.js";
import { loadPretrainedEncoder, loadTree, readCheckpointOfKind, type LoadedCheckpoint } from "../train/checkpoint.js";
import { BpeTokenizer } from "./bpe.js";
import { newHead, type FinetuneSettings, type TextClassifierParams } from "./classify.js";
import { parseTextRunConfig, type TextRunConfig } from "./config.js";
import { initTextData2Vec, initTextEncoder, type TextEncoderConfig, type TextEncoderParams, type TextShared } from "./model.js";
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
      const encoder = run.data2vec.objective === "data2vec2" ? textEncoderOfV2(loadPretrainedEncoder(dir, initTextData2Vec2(run, enc, 0)), dir) : loadPretrainedEncoder(dir, initTextData2Vec(run, enc, 0));
      return { kind: "data2vec-pretrain", dir, run, enc, tok, encoder };
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

/**
 * A data2vec 2.0 text encoder as ours: without prenet blocks its context encoder is empty, and its blocks are the
 * post-LN blocks of data2vec's (the query scaled before Q·Kᵀ instead of the scores after: the same function up to
 * float rounding), so fine-tuning, evaluation, embedding and the Hugging Face export take it as it is.
 */
function textEncoderOfV2(e: { shared: V2Shared<TextShared>; layers: BlockParams[] }, dir: string): TextEncoderParams {
  const { local, context } = e.shared;
  if (context.prenet.length || context.norm) {
    disposeTree(e);
    throw new CheckpointError(`${dir}: a data2vec 2.0 text model with prenet blocks (data2vec.v2.prenetDepth > 0) is not supported by fine-tuning yet; pretrain with prenetDepth 0`);
  }
  disposeTree(context);
  return { shared: local, layers: e.layers };
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
