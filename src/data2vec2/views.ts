/**
 * data2vec 2.0's masked views, on the host: each of B samples is masked M times ("clone batch"), and the student
 * encodes only the visible steps of each of the N = B·M views (MAE style). A view's mask becomes index arrays
 * that gather its visible steps, in order, from the B samples' features and put the encoder's outputs back in
 * place for the decoder. Every view must hide the same number of steps, so the N views stack into one batch.
 */
import { ConfigError } from "../engine/errors.js";

export type ViewLayout = {
  samples: number;
  clones: number;
  steps: number;
  /** Visible steps per view (K). */
  visible: number;
  /** [N·K] rows of the samples' features [B·T] that each view keeps: (r ÷ M)·T + t for its visible t, in order. */
  keep: Int32Array;
  /** [N·K] the same steps as rows of the views' full sequences [N·T]: r·T + t. */
  keepInView: Int32Array;
  /** [N·T] the sample row of every step of every view, (r ÷ M)·T + t: repeats per-sample arrays (targets) over the views. */
  repeat: Int32Array;
  /** [N·T] where each step of a view comes from in [the N·K encoder outputs; one zero row]: its output, or the zero row when masked. */
  restore: Int32Array;
  /** [N·T] 1 at masked (predicted) steps. */
  mask: Float32Array;
  /** [N·K] the step index t of each visible step (ALiBi's distances between the steps a view keeps). */
  visiblePositions: Float32Array;
  /** [N] the sample of each view, r ÷ M. */
  viewSample: Int32Array;
};

/**
 * The layout of N = samples·clones views from their masks ([N·T], row r = clone r mod M of sample r ÷ M, the order
 * of PyTorch's `repeat_interleave`; nonzero = masked). Refuses views that hide different numbers of steps, and a
 * mask that leaves no step visible.
 */
export function viewLayout(mask: ArrayLike<number>, samples: number, clones: number, steps: number): ViewLayout {
  const n = samples * clones;
  if (mask.length !== n * steps) throw new Error(`viewLayout: a mask of ${mask.length} entries for ${n} views of ${steps} steps`);
  let hidden = -1;
  for (let r = 0; r < n; r++) {
    let count = 0;
    for (let t = 0; t < steps; t++) if (mask[r * steps + t]) count++;
    if (hidden < 0) hidden = count;
    else if (count !== hidden) throw new Error(`viewLayout: view ${r} masks ${count} steps, view 0 masks ${hidden}; data2vec 2.0 needs the same count in every view`);
  }
  const visible = steps - hidden;
  if (visible < 1) throw new ConfigError(`the mask hides all ${steps} steps of every view, so the student sees nothing: lower masking.maskProb (e.g. to 0.8)`);
  const out: ViewLayout = {
    samples,
    clones,
    steps,
    visible,
    keep: new Int32Array(n * visible),
    keepInView: new Int32Array(n * visible),
    repeat: new Int32Array(n * steps),
    restore: new Int32Array(n * steps),
    mask: new Float32Array(n * steps),
    visiblePositions: new Float32Array(n * visible),
    viewSample: new Int32Array(n),
  };
  const zeroRow = n * visible;
  for (let r = 0; r < n; r++) {
    const sample = Math.floor(r / clones);
    out.viewSample[r] = sample;
    let k = 0;
    for (let t = 0; t < steps; t++) {
      const i = r * steps + t;
      out.repeat[i] = sample * steps + t;
      if (mask[i]) {
        out.mask[i] = 1;
        out.restore[i] = zeroRow;
      } else {
        const j = r * visible + k;
        out.keep[j] = sample * steps + t;
        out.keepInView[j] = i;
        out.visiblePositions[j] = t;
        out.restore[i] = j;
        k++;
      }
    }
  }
  return out;
}
