/** data2vec pretraining on unlabeled text: corpus → tokenizer → packed blocks → masked batches, through `runPretraining`. */
import { ConfigError, VocabError } from "../engine/errors.js";
import { anyPrepared, exampleBatches, runPretraining, type PretrainAdapter, type PretrainRunOptions, type PretrainRunResult } from "../train/pretrain-runner.js";
import type { ParamTree } from "../engine/tree.js";
import { data2vecObjective } from "../data2vec/step.js";
import { data2vec2Objective, settingsV2, type Data2Vec2Params } from "../data2vec2/model.js";
import { initContext, initData2Vec2, textModality2 } from "../data2vec2/modalities.js";
import { v2UpdateShape } from "../data2vec2/decoder.js";
import { BpeTokenizer } from "./bpe.js";
import { loadBrown } from "./brown.js";
import { brownGenreTask } from "./brown-genre.js";
import { textRunConfig, type TextRunConfig } from "./config.js";
import { makePretrainBatch, makeViewsBatch, packBlocks, readTextCorpus } from "./data.js";
import { initTextData2Vec, initTextEncoder, textModality, type TextEncoderConfig, type TextShared } from "./model.js";

export type TextPretrainOptions = Omit<PretrainRunOptions<TextRunConfig, string>, "given"> & {
  /** Documents given directly (instead of `data`: a .txt file or folder; the Brown corpus's training documents by default). */
  docs?: string[];
  /** Use this tokenizer (vocab.json + merges.txt) instead of training one on the corpus. */
  tokenizer?: string;
};

/**
 * Where the corpus came from: a path, the Brown corpus, or documents passed by the caller. The default is the
 * Brown corpus without the test documents of `d2v data brown-genre` (`brown: "genre-train"`), so that a model
 * pretrained by default never saw the demo task's test passages; `brown: true` (all 500 documents) is what runs
 * started before that change resume with.
 */
type CorpusSource = { path: string } | { brown: true | "genre-train" } | { caller: true };

/** The corpus of a new run without --data. */
export const DEFAULT_TEXT_SOURCE = { brown: "genre-train" } as const satisfies CorpusSource;

/** The Brown documents of a corpus source: all 500, or those `d2v data brown-genre` keeps out of its test split. */
export function brownDocuments(which: true | "genre-train"): string[] {
  return which === "genre-train" ? brownGenreTask().pretrainDocs : loadBrown().map((d) => d.text);
}

export function encoderConfig(cfg: TextRunConfig, tok: BpeTokenizer): TextEncoderConfig {
  if (tok.size !== cfg.model.vocabSize) {
    throw new VocabError(`the tokenizer has ${tok.size} entries but model.vocabSize is ${cfg.model.vocabSize}; set model.vocabSize to ${tok.size} or use a matching tokenizer`);
  }
  return { ...cfg.model, padId: tok.pad };
}

/**
 * Text for the pretraining runner: documents → a byte-level BPE vocabulary (trained on the corpus, given, or the
 * run's own on resume) → blocks of `train.seqLen` tokens; each batch masks its blocks on the host.
 */
export function textPretraining(o: { tokenizer?: string } = {}): PretrainAdapter<TextRunConfig, string, ParamTree, unknown> {
  return {
    config: textRunConfig,
    describe: (c) => `${c.model.layers} layers × ${c.model.dim}, ${c.train.steps} updates of ${c.train.batchSize} × ${c.train.seqLen} tokens`,
    dataName: "corpus",
    givenName: "docs",
    defaultSource: DEFAULT_TEXT_SOURCE,
    async load(_cfg, source, given) {
      const s = source as CorpusSource;
      if ("caller" in s) return given ?? [];
      return "path" in s ? readTextCorpus(s.path) : brownDocuments(s.brown);
    },
    prepare(cfg, docs, { checkpoint, log }) {
      let tok: BpeTokenizer;
      if (checkpoint) tok = BpeTokenizer.load(checkpoint);
      else if (o.tokenizer) tok = BpeTokenizer.load(o.tokenizer);
      else {
        log(`training a ${cfg.model.vocabSize}-entry byte-level BPE vocabulary on ${docs.length} documents`);
        tok = BpeTokenizer.train(docs, cfg.model.vocabSize);
        if (tok.size < cfg.model.vocabSize) {
          log(`the corpus supports only ${tok.size} vocabulary entries (pairs seen at least twice); using that`);
          cfg = { ...cfg, model: { ...cfg.model, vocabSize: tok.size } };
        }
      }
      const enc = encoderConfig(cfg, tok);
      const blocks = packBlocks(docs, tok, cfg.train.seqLen);
      log(`${blocks.length} blocks of ${cfg.train.seqLen} tokens (${docs.length} documents)`);
      if (cfg.data2vec.objective === "data2vec2") {
        return anyPrepared({
          cfg,
          loss: data2vec2Objective(textModality2(enc), cfg.data2vec),
          init: (seed) => initTextData2Vec2(cfg, enc, seed),
          batches: exampleBatches(blocks.length, cfg.train.batchSize, { item: "training blocks", unit: "tok" }, (rows, rng) => ({
            batch: makeViewsBatch(
              rows.map((i) => blocks[i]),
              tok,
              cfg.masking.ratio,
              settingsV2(cfg.data2vec).cloneBatch,
              rng,
            ),
            units: cfg.train.batchSize * cfg.train.seqLen,
          })),
          files: tok.files(),
          v2Shape: v2UpdateShape({
            samples: cfg.train.batchSize,
            v2: settingsV2(cfg.data2vec),
            encoder: enc,
            steps: cfg.train.seqLen,
            visible: cfg.train.seqLen - Math.round(cfg.masking.ratio * (cfg.train.seqLen - 2)),
            extra: 0,
            decoderShape: { kind: "1d" },
          }),
        });
      }
      return anyPrepared({
        cfg,
        loss: data2vecObjective(textModality(enc), cfg.data2vec),
        init: (seed) => initTextData2Vec(cfg, enc, seed),
        batches: exampleBatches(blocks.length, cfg.train.batchSize, { item: "training blocks", unit: "tok" }, (rows, rng) => ({
          batch: makePretrainBatch(rows.map((i) => blocks[i]), tok, cfg.masking, rng),
          units: cfg.train.batchSize * cfg.train.seqLen,
        })),
        files: tok.files(),
      });
    },
  };
}

/** Fresh data2vec 2.0 parameters for text: the embeddings, prenet blocks if any, the blocks and the 1-D decoder. */
export function initTextData2Vec2(cfg: TextRunConfig, enc: TextEncoderConfig, seed: number): Data2Vec2Params<TextShared> {
  const v2 = settingsV2(cfg.data2vec);
  const prenet = v2.prenetDepth ?? 0;
  return initData2Vec2(seed, {
    local: (keys) => initTextEncoder(keys, { ...enc, layers: 0 }).shared,
    // fairseq's text context encoder has a layer norm only in front of prenet blocks.
    context: (keys) => initContext(keys, { dim: enc.dim, ffnDim: enc.ffnDim, norm: prenet > 0, prenet }),
    dim: enc.dim,
    ffnDim: enc.ffnDim,
    layers: enc.layers,
    decoder: v2.decoder,
    decoderShape: { kind: "1d" },
  });
}

export async function pretrainText(o: TextPretrainOptions): Promise<PretrainRunResult> {
  if (o.docs && o.data) throw new ConfigError("pass the corpus as `docs` or as `data`, not both");
  return runPretraining(textPretraining({ tokenizer: o.tokenizer }), { ...o, given: o.docs });
}
