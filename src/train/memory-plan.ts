/**
 * Will a training step fit? jax-js keeps every buffer in one wasm32 heap (the native engine computes on the same
 * buffers), which cannot grow past 4 GiB; a step that needs more dies inside the engine. This estimates a step's
 * peak from its shape, before anything is trained, so a run that cannot fit fails at once with the settings that
 * would. The coefficients count what a step keeps alive; jax-js's heap is a bump allocator that reuses a freed buffer only
 * for one of the same size, so the heap's high-water mark runs above the live peak, and only 80% of it is planned for.
 * `npm run bench -- --base` prints the measured live peak beside the estimate.
 */
import { ResourceError } from "../engine/errors.js";
import { treeLeaves } from "../engine/typed.js";

/** Floats in a parameter tree. */
export function floatsOf(tree: unknown): number {
  return treeLeaves(tree).reduce((n, a) => n + a.size, 0);
}

/** The wasm32 heap jax-js allocates from. */
export const HEAP_BYTES = 4 * 2 ** 30;
const PLANNED = 0.8 * HEAP_BYTES;

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
};

/** Floats a transformer block keeps per position for the backward pass, per model width and per FFN width, and per attention score. */
const PER_DIM = 14;
const PER_FFN = 4;
const PER_SCORE = 4;
/**
 * Copies of each trained parameter alive during an update: the gradient and AdamW's two moments, and while the
 * compiled update runs, the new parameters and moments beside the old ones, and one more for the allocator's reuse.
 */
const PER_TRAINED = 7;

export function stepBytes(s: StepShape): number {
  const perRow = s.layers * (s.positions * (PER_DIM * s.dim + PER_FFN * s.ffnDim) + PER_SCORE * s.heads * s.positions ** 2) + (s.cnnFloats ?? 0);
  return 4 * (s.params + PER_TRAINED * s.trained + s.rows * perRow);
}

/** Floats the speech CNN keeps per clip of `samples` samples: each layer's strided input frames, output, norm and GELU. */
export function cnnActivations(samples: number, layers: { channels: number; kernel: number; stride: number }[]): number {
  let length = samples;
  let channels = 1;
  let floats = 0;
  for (const l of layers) {
    const out = Math.floor((length - l.kernel) / l.stride) + 1;
    floats += out * (l.kernel * channels + 3 * l.channels);
    length = out;
    channels = l.channels;
  }
  return floats;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

/**
 * Refuses a step that will not fit in the heap, naming its estimate and the largest `rows` that would fit;
 * `advice` says which options change the shape (e.g. "--batch-size or --max-len").
 */
export function checkStepFits(s: StepShape, what: string, advice: string): void {
  const need = stepBytes(s);
  if (need <= PLANNED) return;
  let rows = s.rows;
  while (rows > 1 && stepBytes({ ...s, rows }) > PLANNED) rows--;
  const fits = stepBytes({ ...s, rows }) <= PLANNED;
  throw new ResourceError(
    `${what} needs about ${gib(need)} of memory per step (${s.rows} × ${s.positions} positions, ${s.layers} blocks of width ${s.dim}), ` +
      `more than the engine's ${gib(HEAP_BYTES)} heap; ` +
      (fits ? `a batch of ${rows} fits: ${advice}` : `even one row of ${s.positions} positions does not fit: ${advice}`),
  );
}
