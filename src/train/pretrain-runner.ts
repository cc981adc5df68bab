/**
 * One pretraining runner for every modality. A modality supplies a `PretrainAdapter`: its run configuration, where
 * its unlabeled examples come from, and (from the config and the examples) its model, its batches with their
 * masks, and what a batch is made of. The runner owns everything else: the run directory, the saved config,
 * which data a resumed run reads, the checks that it is the same data, the fresh or restored state, the loop,
 * checkpoints, metrics, progress and interruption (`pretrain`).
 */
import { join, resolve } from "node:path";
import { disposeTree } from "../engine/typed.js";
import type { Data2VecParams, Teacher } from "../data2vec/model.js";
import type { ObjectiveLoss } from "../data2vec/step.js";
import type { RunConfigKit } from "../config/run-config.js";
import type { Data2VecSettings } from "../data2vec/config.js";
import { ConfigError, DataError, type StopSignal } from "../engine/errors.js";
import { HostRng } from "../engine/random.js";
import type { ParamTree } from "../engine/tree.js";
import type { BlockParams } from "../nn/encoder.js";
import { firstEpoch, freshPretrainState, loadPretrainState, nextRows, openPretrainRun, pretrain, runSetup, type EpochOrder, type PretrainData, type PretrainRecord, type PretrainState, type TrainSettings } from "./pretrain.js";
import { checkV2StepFits, floatsOf, type V2StepShape } from "./memory-plan.js";

/** Where a run's unlabeled data comes from: a path, examples passed through the API, or a modality's built-in set. */
export type DataSource = { path: string } | { caller: true } | { [builtin: string]: unknown };

/** What every modality's run config holds for the runner. */
export type PretrainRunConfig = {
  modality: string;
  data2vec: Data2VecSettings;
  train: TrainSettings & { batchSize: number; accumSteps: number; seed: number; checkpointEvery: number };
};

/** Where batches come from: what one epoch shuffles (examples, text blocks, audio length buckets) and how they make batches. */
export type BatchSource<Batch> = {
  items: number;
  itemName: string;
  itemsPerBatch: number;
  /** A batch of these items, its masks drawn from `rng`, and the units (tokens, images, seconds) it holds. */
  batch(items: number[], rng: HostRng): { batch: Batch; units: number };
  unitName: string;
};

/** Batches of `batchSize` examples each, the usual source (text blocks, images); `make` builds one from example indices. */
export function exampleBatches<Batch>(count: number, batchSize: number, names: { item: string; unit: string }, make: (rows: number[], rng: HostRng) => { batch: Batch; units: number }): BatchSource<Batch> {
  return { items: count, itemName: names.item, itemsPerBatch: batchSize, batch: make, unitName: names.unit };
}

/** A modality's data pipeline and model, built from the run config and its examples. */
export type PreparedPretraining<Cfg, Shared extends ParamTree, Batch, Head extends ParamTree = ParamTree> = {
  /** The config the run trains with (text fits its vocabulary size to the corpus). */
  cfg: Cfg;
  /** The objective's loss (data2vec or data2vec 2.0, as `cfg.data2vec.objective` says) for this modality. */
  loss: ObjectiveLoss<Data2VecParams<Shared, Head>, Teacher<Shared>, Batch>;
  /** Fresh parameters (shared input side, student blocks, regression head or decoder). */
  init(seed: number): Data2VecParams<Shared, Head>;
  batches: BatchSource<Batch>;
  /** Side files stored with every checkpoint (text: the tokenizer). */
  files?: Record<string, string>;
  /** data2vec 2.0: the update's shape, so that one that cannot fit the heap is refused before training. */
  v2Shape?: Omit<V2StepShape, "params">;
};

/**
 * A prepared run as the runner sees it: the runner only moves the trees between the objective, the optimizer and
 * checkpoints, so an adapter that prepares either objective (their trees differ) returns it through this.
 */
export type AnyPrepared<Cfg> = PreparedPretraining<Cfg, ParamTree, unknown, ParamTree>;
export function anyPrepared<Cfg, Shared extends ParamTree, Batch, Head extends ParamTree>(p: PreparedPretraining<Cfg, Shared, Batch, Head>): AnyPrepared<Cfg> {
  return p as unknown as AnyPrepared<Cfg>;
}

export interface PretrainAdapter<Cfg extends PretrainRunConfig, Example, Shared extends ParamTree, Batch, Head extends ParamTree = ParamTree> {
  config: RunConfigKit<Cfg>;
  /** The model and the batches of a run, in a line ("4 layers × 256, 300 updates of 8 × 128 tokens"). */
  describe(cfg: Cfg): string;
  /** What the data is, in messages: "corpus", "image set", "audio". */
  dataName: string;
  /** The API option that passes examples directly ("docs", "images", "clips"). */
  givenName: string;
  /** A new run's data without --data, or the message that says what to pass. */
  defaultSource: DataSource | { missing: string };
  /** The examples of a source; `given` are those passed through the API (source `{ caller: true }`). */
  load(cfg: Cfg, source: DataSource, given: Example[] | undefined, log: (msg: string) => void): Promise<Example[]>;
  /** The model and batches of a run; `checkpoint` is the run's checkpoint folder on resume (text reads its tokenizer there). */
  prepare(cfg: Cfg, examples: Example[], ctx: { checkpoint: string | null; log: (msg: string) => void }): PreparedPretraining<Cfg, Shared, Batch, Head>;
}

export type PretrainRunOptions<Cfg, Example, Shared = ParamTree> = {
  config: Cfg;
  /** A path the adapter reads; absent: the examples of `given`, the run's own data on resume, or the default. */
  data?: string;
  given?: Example[];
  /** A new run's starting encoder (continued pretraining from a checkpoint, e.g. a released Hugging Face one); fresh weights otherwise. */
  initialEncoder?: { shared: Shared; layers: BlockParams[] };
  outDir: string;
  /** Continue the checkpoint in outDir with its saved configuration (`config` is then ignored). */
  resume?: boolean;
  /** On resume, train until this many updates instead of the saved total. */
  resumeSteps?: number;
  /** Start over even if outDir holds a checkpoint. */
  force?: boolean;
  quiet?: boolean;
  /** Stop after this update index (exclusive): used to test resume. */
  stopAfter?: number;
  onUpdate?: (record: PretrainRecord) => void;
  log?: (msg: string) => void;
};

export type PretrainRunResult = { records: PretrainRecord[]; checkpoint: string; interrupted: StopSignal | null };

type StreamState = EpochOrder & { rng: number[]; source: DataSource };

/** Shuffled epochs over a prepared run's items; batches and masks drawn from a resumable RNG. */
export class EpochStream<Batch> implements PretrainData<Batch> {
  unitsPerBatch = 0;
  unitName: string;
  #s: StreamState;
  constructor(
    private run: BatchSource<Batch>,
    seed: number,
    saved: StreamState | null,
    source: DataSource,
  ) {
    this.unitName = run.unitName;
    if (saved) this.#s = structuredClone(saved);
    else {
      const rng = HostRng.seeded(seed);
      this.#s = { ...firstEpoch(run.items, rng), rng: rng.state(), source };
    }
  }
  next(): Batch {
    const rng = HostRng.fromState(this.#s.rng);
    const { batch, units } = this.run.batch(nextRows(this.#s, this.run.itemsPerBatch, rng), rng);
    this.#s.rng = rng.state();
    this.unitsPerBatch = units;
    return batch;
  }
  state(): StreamState {
    return structuredClone(this.#s);
  }
}

/** Pretrains (or resumes) a run of the adapter's modality. */
export async function runPretraining<Cfg extends PretrainRunConfig, Example, Shared extends ParamTree, Batch, Head extends ParamTree>(
  adapter: PretrainAdapter<Cfg, Example, Shared, Batch, Head>,
  o: PretrainRunOptions<Cfg, Example, Shared>,
): Promise<PretrainRunResult> {
  const log = o.log ?? (() => {});
  const { ckpt, saved } = openPretrainRun(o.outDir, o);
  let cfg = o.config;
  if (saved) {
    const savedConfig = adapter.config.parse(saved.config, join(ckpt, "config.json"));
    cfg = { ...savedConfig, train: { ...savedConfig.train, steps: o.resumeSteps ?? savedConfig.train.steps } };
  }
  // On resume the data is what the run started with, unless the caller passes it again.
  const savedSource = (saved?.source ?? null) as DataSource | null;
  const source = o.given ? { caller: true as const } : o.data ? { path: resolve(o.data) } : (savedSource ?? adapter.defaultSource);
  if ("missing" in source) throw new DataError(source.missing as string);
  if ("caller" in source && !o.given) throw new ConfigError(`this run was started with ${adapter.givenName} passed through the API; pass the same \`${adapter.givenName}\` to resume it`);
  if (savedSource && JSON.stringify(savedSource) !== JSON.stringify(source)) {
    log(`note: resuming on ${JSON.stringify(source)} although the run started on ${JSON.stringify(savedSource)}`);
  }
  const examples = await adapter.load(cfg, source, o.given, log);
  const run = adapter.prepare(cfg, examples, { checkpoint: saved ? ckpt : null, log });
  cfg = run.cfg;

  const fresh = run.init(cfg.train.seed);
  if (run.v2Shape) {
    try {
      checkV2StepFits({ ...run.v2Shape, params: floatsOf(fresh) });
    } catch (e) {
      disposeTree(fresh);
      throw e;
    }
  }
  if (o.initialEncoder && !saved) {
    // Continued pretraining: student (and so the teacher) start from the given encoder; the regression head is new.
    disposeTree({ shared: fresh.shared, layers: fresh.layers });
    fresh.shared = o.initialEncoder.shared;
    fresh.layers = o.initialEncoder.layers;
  } else if (o.initialEncoder) disposeTree(o.initialEncoder);
  let state: PretrainState<Shared, Head>;
  let streamState: StreamState | null = null;
  if (saved) {
    const loaded = loadPretrainState(ckpt, fresh, cfg.data2vec.emaShared);
    state = loaded.state;
    streamState = loaded.data as StreamState;
    if (streamState.order.length !== run.batches.items) {
      disposeTree(state);
      throw new DataError(`the ${adapter.dataName} changed since the checkpoint was written (${streamState.order.length} ${run.batches.itemName} then, ${run.batches.items} now); resume with the original --data or start a new run`);
    }
    log(`resuming at update ${state.step} of ${cfg.train.steps} with the run's saved settings${o.resumeSteps !== undefined ? ` (--steps ${o.resumeSteps} applied)` : ""}`);
  } else state = freshPretrainState(fresh, cfg.data2vec.emaShared);

  const result = await pretrain(
    runSetup(run.loss, cfg, { outDir: o.outDir, quiet: o.quiet, stopAfter: o.stopAfter, onUpdate: o.onUpdate, log: o.log, files: run.files }),
    state,
    new EpochStream(run.batches, cfg.train.seed, streamState, source),
  );
  disposeTree(result.state);
  return { records: result.records, checkpoint: ckpt, interrupted: result.interrupted };
}

/** A fresh stream of a modality's pretraining batches over `examples` (benchmarks and tests drive steps with it). */
export function pretrainStream<Cfg extends PretrainRunConfig, Example, Shared extends ParamTree, Batch, Head extends ParamTree>(
  adapter: PretrainAdapter<Cfg, Example, Shared, Batch, Head>,
  cfg: Cfg,
  examples: Example[],
): EpochStream<Batch> {
  return new EpochStream(adapter.prepare(cfg, examples, { checkpoint: null, log: () => {} }).batches, cfg.train.seed, null, { caller: true });
}
