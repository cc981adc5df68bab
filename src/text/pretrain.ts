/** data2vec pretraining on unlabeled text: corpus → tokenizer → packed blocks → masked batches → `pretrain`. */
import { tree } from "../engine/jax.js";
import { join, resolve } from "node:path";
import { ConfigError, DataError, VocabError, type StopSignal } from "../engine/errors.js";
import { HostRng } from "../engine/random.js";
import { firstEpoch, freshPretrainState, nextRows, openPretrainRun, type EpochOrder, loadPretrainState, pretrain, runSetup, type PretrainData, type PretrainRecord } from "../train/pretrain.js";
import { BpeTokenizer } from "./bpe.js";
import { loadBrown } from "./brown.js";
import { brownGenreTask } from "./brown-genre.js";
import { parseTextRunConfig, type TextRunConfig } from "./config.js";
import { makePretrainBatch, packBlocks, readTextCorpus } from "./data.js";
import { initTextData2Vec, textModality, type TextEncoderConfig, type TextPretrainBatch } from "./model.js";

export type TextPretrainOptions = {
  config: TextRunConfig;
  /** A .txt file or folder; the Brown corpus's training documents (see CorpusSource) when absent. */
  data?: string;
  /** Documents given directly (instead of `data`). */
  docs?: string[];
  /** Use this tokenizer (vocab.json + merges.txt) instead of training one on the corpus. */
  tokenizer?: string;
  outDir: string;
  /** Continue the checkpoint in outDir with its saved configuration (`config` is then ignored). */
  resume?: boolean;
  /** On resume, train until this many updates instead of the saved total. */
  resumeSteps?: number;
  /** Start over even if outDir holds a checkpoint. */
  force?: boolean;
  quiet?: boolean;
  stopAfter?: number;
  onUpdate?: (record: PretrainRecord) => void;
  log?: (msg: string) => void;
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
type StreamState = EpochOrder & { rng: number[]; source: CorpusSource };

/** Shuffled epochs over packed blocks; masks drawn on the host with a resumable RNG. */
class BlockStream implements PretrainData<TextPretrainBatch> {
  unitName = "tok";
  unitsPerBatch: number;
  #s: StreamState;
  constructor(
    private blocks: Int32Array[],
    private tok: BpeTokenizer,
    private cfg: TextRunConfig,
    saved: StreamState | null,
    source: CorpusSource,
  ) {
    this.unitsPerBatch = cfg.train.batchSize * cfg.train.seqLen;
    if (saved) this.#s = structuredClone(saved);
    else {
      const rng = HostRng.seeded(cfg.train.seed);
      this.#s = { ...firstEpoch(blocks.length, rng), rng: rng.state(), source };
    }
  }
  next(): TextPretrainBatch {
    const rng = HostRng.fromState(this.#s.rng);
    const picked = nextRows(this.#s, this.cfg.train.batchSize, rng).map((i) => this.blocks[i]);
    const batch = makePretrainBatch(picked, this.tok, this.cfg.masking, rng);
    this.#s.rng = rng.state();
    return batch;
  }
  state(): StreamState {
    return structuredClone(this.#s);
  }
}

export function encoderConfig(cfg: TextRunConfig, tok: BpeTokenizer): TextEncoderConfig {
  if (tok.size !== cfg.model.vocabSize) {
    throw new VocabError(`the tokenizer has ${tok.size} entries but model.vocabSize is ${cfg.model.vocabSize}; set model.vocabSize to ${tok.size} or use a matching tokenizer`);
  }
  return { ...cfg.model, padId: tok.pad };
}

export async function pretrainText(o: TextPretrainOptions): Promise<{ records: PretrainRecord[]; checkpoint: string; interrupted: StopSignal | null }> {
  const log = o.log ?? (() => {});
  const { ckpt, saved } = openPretrainRun(o.outDir, o);
  let cfg = o.config;
  if (saved) {
    const savedConfig = parseTextRunConfig(saved.config, join(ckpt, "config.json"));
    cfg = { ...savedConfig, train: { ...savedConfig.train, steps: o.resumeSteps ?? savedConfig.train.steps } };
  }
  // On resume the data is what the run started with (unless the caller passes it again).
  const savedSource = (saved?.source ?? null) as CorpusSource | null;
  const source: CorpusSource = o.docs ? { caller: true } : o.data ? { path: resolve(o.data) } : (savedSource ?? DEFAULT_TEXT_SOURCE);
  if ("caller" in source && !o.docs) throw new ConfigError("this run was started with documents passed through the API; pass the same `docs` to resume it");
  const docs = o.docs ?? ("path" in source ? readTextCorpus(source.path) : "brown" in source ? brownDocuments(source.brown) : []);
  if (o.resume && savedSource && JSON.stringify(savedSource) !== JSON.stringify(source)) {
    log(`note: resuming on ${JSON.stringify(source)} although the run started on ${JSON.stringify(savedSource)}`);
  }
  let tok: BpeTokenizer;
  if (o.resume) tok = BpeTokenizer.load(ckpt);
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

  const fresh = initTextData2Vec(cfg, enc, cfg.train.seed);
  let state;
  let dataState: unknown = null;
  if (o.resume) {
    const loaded = loadPretrainState(ckpt, fresh, cfg.data2vec.emaShared);
    state = loaded.state;
    dataState = loaded.data;
    const savedBlocks = (dataState as StreamState).order.length;
    if (savedBlocks !== blocks.length) {
      throw new DataError(`the corpus changed since the checkpoint was written (${savedBlocks} training blocks then, ${blocks.length} now); resume with the original --data or start a new run`);
    }
    log(`resuming at update ${state.step} of ${cfg.train.steps} with the run's saved settings${o.resumeSteps !== undefined ? ` (--steps ${o.resumeSteps} applied)` : ""}`);
  } else state = freshPretrainState(fresh, cfg.data2vec.emaShared);

  const result = await pretrain(
    runSetup(textModality(enc), cfg, { outDir: o.outDir, quiet: o.quiet, stopAfter: o.stopAfter, onUpdate: o.onUpdate, log: o.log, files: tok.files() }),
    state,
    new BlockStream(blocks, tok, cfg, dataState as StreamState | null, source),
  );
  tree.dispose(result.state as never);
  return { records: result.records, checkpoint: ckpt, interrupted: result.interrupted };
}
