/**
 * Will a training step fit? jax-js keeps every buffer in one wasm32 heap (the native engine computes on the same
 * buffers), which cannot grow past 4 GiB; a step that needs more dies inside the engine. This estimates a step's
 * peak from its shape, before anything is trained, so a run that cannot fit fails at once with the settings that
 * would. The coefficients were fitted to peaks of live buffers measured with `trackBuffers` (`npm run bench -- --base`
 * prints the measured peak beside the estimate); only 80% of the heap is planned for, since jax-js's allocator reuses
 * a freed buffer only for one of a similar size.
 */
import { ResourceError } from "../engine/errors.js";
import { eagerJit } from "../engine/shims.js";
import { treeLeaves } from "../engine/typed.js";
import type { OptimizerPlace } from "./finetune.js";
import { relativeTableSize } from "../nn/relpos.js";

/** Floats in a parameter tree. */
export function floatsOf(tree: unknown): number {
  return treeLeaves(tree).reduce((n, a) => n + (a?.size ?? 0), 0); // absent optional parts (undefined) hold nothing
}

/**
 * The coefficients below were fitted to peaks with jitted programs deferred. Run eagerly (src/engine/shims.ts: one
 * jax-js thread, the default of both engines), a step frees each intermediate after its last use and needs less:
 * measured against the deferred peak of the same update (`node dist/bench/v2-memory.js` with and without
 * D2V_EAGER_JIT=0), 0.45–0.49 for text, 0.37–0.43 for speech, 0.34–0.39 for images (docs/results/bench.md), and
 * 0.32 for a CTC fine-tuning step. One factor for all keeps the plan an upper bound: the largest ratio, rounded up.
 */
const EAGER_PEAK_SCALE = 0.5;

/** 1 when jitted programs run deferred, `EAGER_PEAK_SCALE` when they run eagerly (by default: as the engine runs them now). */
export function jitPeakScale(eager = eagerJit()): number {
  return eager ? EAGER_PEAK_SCALE : 1;
}

/** The wasm32 heap jax-js allocates from. */
export const HEAP_BYTES = 4 * 2 ** 30;
/** The part of the heap a step is planned into (the bump allocator's reuse needs the rest). */
export const PLANNED = 0.8 * HEAP_BYTES;

export type StepShape = {
  /** Trainable and frozen parameters (floats). */
  params: number;
  /** Parameters AdamW updates (their gradients and two moments are kept). */
  trained: number;
  /** Rows per batch and positions per row (tokens, patches + CLS, frames). */
  rows: number;
  positions: number;
  dim: number;
  ffnDim: number;
  heads: number;
  layers: number;
  /** Speech with the CNN trained: the floats its forward pass keeps per row (see `cnnActivations`). */
  cnnFloats?: number;
  /** Gradient accumulation over several batches: on the device, their running sum is one more copy of the trained parameters. */
  accumulates?: boolean;
  /** Constants the compiled step holds (vision: the one-hot relative position index; see `relativeIndexFloats`). */
  constantFloats?: number;
};

/**
 * The one-hot relative position index of a ViT with relative position bias (T² × table rows), and the copies of it
 * its backward pass makes: measured at vision-base (113 MB each), three in all.
 */
export function relativeIndexFloats(grid: number, relativeBias: boolean): number {
  if (!relativeBias) return 0;
  const tokens = 1 + grid * grid;
  return 3 * tokens * tokens * relativeTableSize(grid, grid);
}

/**
 * Floats a transformer block's forward and backward hold per row: per position and model width, per position and
 * FFN width, and per attention score. Measured with deferred jit: jax-js then runs a compiled step's backward without
 * freeing the forward's intermediates early, about four times what the backward strictly needs (text, 2–4 blocks of width 256–512, rows
 * 8–16 × 128–256 tokens: these coefficients reproduce the measured peaks within 10%).
 */
const PER_DIM = 56;
const PER_FFN = 16;
const PER_SCORE = 16;
/**
 * Heap bytes per trained parameter, in floats: with AdamW in the compiled step, the parameter, its gradient, both
 * moments, the new copies beside the old ones and the update's temporaries (measured 12–13); with the moments on
 * the host (`HostAdamW`), the parameter, its gradient and the gradient program's temporaries (measured 3.3).
 */
const PER_TRAINED = { device: 13, host: 4 } as const;

export function stepBytes(s: StepShape, optimizer: OptimizerPlace = "device"): number {
  const perRow = s.layers * (s.positions * (PER_DIM * s.dim + PER_FFN * s.ffnDim) + PER_SCORE * s.heads * s.positions ** 2) + (s.cnnFloats ?? 0);
  const perTrained = PER_TRAINED[optimizer] + (s.accumulates && optimizer === "device" ? 1 : 0);
  return jitPeakScale() * 4 * (s.params - s.trained + perTrained * s.trained + s.rows * perRow + (s.constantFloats ?? 0));
}

/**
 * Floats the speech CNN's forward and backward hold per clip of `samples` samples when it trains: each layer's strided
 * input frames, output, norm and GELU, times 8 (measured: the 128-channel CNN of the tiny preset, 4–8 rows of 1–2 s,
 * about 106 MB of heap per second of audio in a batch). A frozen CNN's forward alone (caching its features, and
 * inference) holds about twice the count (measured at audio-base, 4-s batches).
 */
export function cnnActivations(samples: number, layers: { channels: number; kernel: number; stride: number }[], trained = true): number {
  let length = samples;
  let channels = 1;
  let floats = 0;
  for (const l of layers) {
    const out = Math.floor((length - l.kernel) / l.stride) + 1;
    floats += out * (l.kernel * channels + 3 * l.channels);
    length = out;
    channels = l.channels;
  }
  return (trained ? 8 : 2) * floats;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

/**
 * Refuses a step that will not fit in the heap, naming its estimate and the largest `rows` that would fit;
 * `advice` says which options change the shape (e.g. "--batch-size or --max-len").
 */
export function checkStepFits(s: StepShape, what: string, advice: string, optimizer: OptimizerPlace = "device"): void {
  const need = stepBytes(s, optimizer);
  if (need <= PLANNED) return;
  let rows = s.rows;
  while (rows > 1 && stepBytes({ ...s, rows }, optimizer) > PLANNED) rows--;
  const fits = stepBytes({ ...s, rows }, optimizer) <= PLANNED;
  throw new ResourceError(
    `${what} needs about ${gib(need)} of memory per step (${s.rows} × ${s.positions} positions, ${s.layers} blocks of width ${s.dim}), ` +
      `more than the engine's ${gib(HEAP_BYTES)} heap; ` +
      (fits ? `a batch of ${rows} fits: ${advice}` : `even one row of ${s.positions} positions does not fit: ${advice}`),
  );
}

/**
 * Where a fine-tuning keeps AdamW's moments: in the compiled step when the step fits the heap that way (fastest),
 * else on the host when it fits so, else a `ResourceError` with the batch that would fit. `log` hears the choice.
 */
export function planOptimizer(s: StepShape, what: string, advice: string, log: (msg: string) => void): OptimizerPlace {
  // D2V_OPTIMIZER=host (or device) overrides the choice: for tests, and for a user who knows better.
  const forced = process.env.D2V_OPTIMIZER;
  if (forced === "host" || forced === "device") return forced;
  if (stepBytes(s, "device") <= PLANNED) return "device";
  checkStepFits(s, what, advice, "host");
  log(
    `note: ${what} needs about ${gib(stepBytes(s, "device"))} per step with the optimizer's moments on the engine's heap, ` +
      `so they are kept in ordinary memory (${gib(12 * s.trained)}; the heap then needs about ${gib(stepBytes(s, "host"))}); updates are slower`,
  );
  return "host";
}

/** The most rows (up to `max`) a step of this shape fits with the optimizer at `place`, or 0. */
export function largestRows(s: StepShape, place: OptimizerPlace, max: number): number {
  let rows = max;
  while (rows > 0 && stepBytes({ ...s, rows }, place) > PLANNED) rows--;
  return rows;
}

/**
 * A data2vec 2.0 update: `samples` inputs of `steps` steps (tokens, frames, patches), each seen in `views` views of
 * `visible` steps (+ `extra`: the images' CLS) by the student, and once whole by the teacher. `convTaps` lists, per
 * step of a view, the im2col width (taps × input channels) of every convolution that runs over whole views (the
 * decoder's layers; speech's positional convolution too), `convOut` their output widths, `widths` the other
 * per-step widths of a view (the restored sequence, the decoder's projection).
 */
export type V2StepShape = {
  params: number;
  samples: number;
  views: number;
  steps: number;
  visible: number;
  extra: number;
  dim: number;
  ffnDim: number;
  heads: number;
  /** Transformer blocks, prenet blocks included. */
  layers: number;
  convTaps: number[];
  convOut: number[];
  widths: number[];
  /** Floats the local encoder holds per sample while it trains (speech: `cnnActivations`). */
  localFloats?: number;
};

/**
 * Floats per step of a view for its convolutions' im2col frames and outputs, and for its other widths; floats per
 * step of the teacher's blocks (forward only). Fitted to peaks measured by `node dist/bench/v2-memory.js` for text
 * (B 2–4 × M 2–8 × 128 tokens) and speech (4 × 2–8 × 1 s): the peak grows linearly in B·M (69 and 59 MB per view);
 * images were held out of the fit (docs/results/bench.md lists estimate and measurement side by side).
 */
const PER_CONV = 8.3;
const PER_WIDTH = 25;
const PER_TEACHER = 18;

export function v2StepBytes(s: V2StepShape): number {
  const positions = s.visible + s.extra;
  const student = s.layers * (positions * (PER_DIM * s.dim + PER_FFN * s.ffnDim) + PER_SCORE * s.heads * positions ** 2);
  const sum = (xs: number[]) => xs.reduce((a, x) => a + x, 0);
  const perView = student + s.steps * (PER_CONV * (sum(s.convTaps) + sum(s.convOut)) + PER_WIDTH * sum(s.widths));
  const perSample = PER_TEACHER * s.layers * (s.steps + s.extra) * s.dim + (s.localFloats ?? 0);
  // The student's parameters with AdamW in the step, plus the teacher's EMA copy.
  return jitPeakScale() * 4 * ((PER_TRAINED.device + 1) * s.params + s.samples * s.views * perView + s.samples * perSample);
}

/**
 * Refuses a data2vec 2.0 update that will not fit in the heap before anything is trained, naming the largest
 * `data2vec.v2.cloneBatch` that fits at this batch, or else the largest `train.batchSize` with one view.
 */
export function checkV2StepFits(s: V2StepShape): void {
  const need = v2StepBytes(s);
  if (need <= PLANNED) return;
  let views = s.views;
  while (views > 1 && v2StepBytes({ ...s, views }) > PLANNED) views--;
  let samples = s.samples;
  while (samples > 1 && v2StepBytes({ ...s, views: 1, samples }) > PLANNED) samples--;
  const what = `a data2vec 2.0 update of ${s.samples} samples × ${s.views} views (data2vec.v2.cloneBatch) of ${s.visible} visible of ${s.steps} steps needs about ${gib(need)} of memory, more than the engine's ${gib(HEAP_BYTES)} heap holds`;
  if (v2StepBytes({ ...s, views }) <= PLANNED) throw new ResourceError(`${what}; data2vec.v2.cloneBatch ${views} fits (or lower train.batchSize)`);
  if (v2StepBytes({ ...s, views: 1, samples }) <= PLANNED) throw new ResourceError(`${what}; even cloneBatch 1 does not fit at this batch: use train.batchSize ${samples} with cloneBatch 1, or a smaller model`);
  const weights = jitPeakScale() * 4 * (PER_TRAINED.device + 1) * s.params;
  if (weights > PLANNED) throw new ResourceError(`${what}; the ${(s.params / 1e6).toFixed(0)}M parameters with AdamW's state and the teacher alone need about ${gib(weights)}: use a smaller model (a small or tiny -v2 preset)`);
  throw new ResourceError(`${what}; even one sample in one view does not fit: use a smaller model or shorter inputs`);
}
