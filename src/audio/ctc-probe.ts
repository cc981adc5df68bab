/**
 * A linear CTC probe: are frame features (a frozen encoder's states, or log mel frames) linearly readable as
 * characters? Each feature is standardized with the training utterances' statistics, and one linear layer to the
 * characters is trained with CTC (the loss per character, as in fine-tuning; Adam, β 0.9 / 0.999) on the host in
 * float64. Cheap enough to compare pretrained weights, random weights and a classic front end, which full CTC
 * fine-tuning is not on 2 cores.
 */
import { HostRng } from "../engine/random.js";
import { featureMoments } from "../train/probe.js";
import { BLANK, ctcGreedyDecode, ctcLoss } from "./ctc.js";

/** One utterance's features, [frames × dim] row-major. */
export type FrameFeatures = { rows: Float32Array; frames: number };

export type CtcProbeSettings = { epochs: number; lr: number; batchSize: number; seed: number };
export const CTC_PROBE_DEFAULTS: Omit<CtcProbeSettings, "seed"> = { epochs: 20, lr: 1e-2, batchSize: 8 };

export type CtcProbe = {
  dim: number;
  vocab: string[];
  /** [(dim + 1) × V]: the weights with the bias as the last row. */
  weights: Float64Array;
  moments: { mean: Float64Array; std: Float64Array };
  /** The mean CTC loss per character of each epoch. */
  lossPerChar: number[];
  /** Utterances skipped because they have fewer frames than CTC needs for their transcript. */
  skipped: number;
};

function standardized(x: FrameFeatures, dim: number, m: CtcProbe["moments"]): Float64Array {
  return Float64Array.from(x.rows, (v, i) => (v - m.mean[i % dim]) / m.std[i % dim]);
}

function probeLogits(w: Float64Array, x: Float64Array, frames: number, dim: number, classes: number): Float64Array {
  const out = new Float64Array(frames * classes);
  for (let f = 0; f < frames; f++)
    for (let v = 0; v < classes; v++) {
      let s = w[dim * classes + v];
      for (let d = 0; d < dim; d++) s += x[f * dim + d] * w[d * classes + v];
      out[f * classes + v] = s;
    }
  return out;
}

/**
 * Trains the probe. `labels` are each utterance's character ids in `vocab` (blank = 0); the seed orders the
 * utterances of each epoch (the weights start at zero).
 */
export function trainCtcProbe(train: FrameFeatures[], labels: number[][], dim: number, vocab: string[], s: CtcProbeSettings): CtcProbe {
  if (train.length !== labels.length) throw new Error(`trainCtcProbe: ${train.length} utterances but ${labels.length} transcripts`);
  const V = vocab.length;
  const all = new Float32Array(train.reduce((n, x) => n + x.rows.length, 0));
  train.reduce((offset, x) => (all.set(x.rows, offset), offset + x.rows.length), 0);
  const moments = featureMoments(all, dim);
  const xs = train.map((x) => standardized(x, dim, moments));
  const w = new Float64Array((dim + 1) * V);
  const m1 = new Float64Array(w.length);
  const m2 = new Float64Array(w.length);
  const rng = HostRng.seeded(s.seed);
  const lossPerChar: number[] = [];
  let skipped = 0;
  let t = 0;
  for (let epoch = 0; epoch < s.epochs; epoch++) {
    const order = rng.shuffle(Array.from(xs.keys()));
    let total = 0;
    let chars = 0;
    skipped = 0;
    for (let start = 0; start < order.length; start += s.batchSize) {
      const batch = order.slice(start, start + s.batchSize);
      const grad = new Float64Array(w.length);
      for (const i of batch) {
        const frames = train[i].frames;
        const r = ctcLoss(probeLogits(w, xs[i], frames, dim, V), frames, V, labels[i], BLANK);
        if (!Number.isFinite(r.loss)) {
          skipped++; // shorter than its transcript needs: no alignment exists
          continue;
        }
        total += r.loss;
        chars += labels[i].length;
        for (let f = 0; f < frames; f++)
          for (let v = 0; v < V; v++) {
            const g = r.grad[f * V + v] / labels[i].length;
            if (g === 0) continue;
            grad[dim * V + v] += g;
            for (let d = 0; d < dim; d++) grad[d * V + v] += xs[i][f * dim + d] * g;
          }
      }
      t++;
      for (let k = 0; k < w.length; k++) {
        const g = grad[k] / batch.length;
        m1[k] = 0.9 * m1[k] + 0.1 * g;
        m2[k] = 0.999 * m2[k] + 0.001 * g * g;
        w[k] -= (s.lr * (m1[k] / (1 - 0.9 ** t))) / (Math.sqrt(m2[k] / (1 - 0.999 ** t)) + 1e-8);
      }
    }
    lossPerChar.push(total / Math.max(1, chars));
  }
  return { dim, vocab, weights: w, moments, lossPerChar, skipped };
}

/** Greedy CTC transcripts of each utterance. */
export function ctcProbeTranscripts(probe: CtcProbe, utterances: FrameFeatures[]): string[] {
  const V = probe.vocab.length;
  return utterances.map((x) => {
    const lg = probeLogits(probe.weights, standardized(x, probe.dim, probe.moments), x.frames, probe.dim, V);
    const ids = Array.from({ length: x.frames }, (_, f) => {
      let best = 0;
      for (let v = 1; v < V; v++) if (lg[f * V + v] > lg[f * V + best]) best = v;
      return best;
    });
    return ctcGreedyDecode(ids, probe.vocab, BLANK);
  });
}
