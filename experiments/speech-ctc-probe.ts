/**
 * Are a speech encoder's states linearly readable as characters? A CTC probe: the encoder (up to a given
 * depth) frozen, its states computed once, each dimension standardized with the labeled clips' statistics, and a
 * linear layer to the wav2vec 2.0 characters trained with CTC (Adam, batches of 8 utterances). Cheap enough to
 * compare pretrained and random weights at several depths, which full CTC fine-tuning is not on 2 cores.
 *
 *   node dist/experiments/speech-ctc-probe.js --model RUN [--scratch SEED] [--layers N] [--epochs 20] [--lr 1e-2]
 *       [--data data/speech]
 *
 * `--scratch SEED`: the same architecture with random weights. `--layers N`: the states after block N (0: the
 * positional convolution's output, the input to the first block). Prints one JSON line per evaluation; the
 * last one is the result: test CER and WER with greedy decoding.
 */
import { join } from "node:path";
import { freshAudioEncoder, loadAudioCheckpoint } from "../src/audio/checkpoints.js";
import { ctcGreedyDecode, ctcLoss, encodeTranscript, LIBRISPEECH_VOCAB } from "../src/audio/ctc.js";
import { libriSpeechEntries, loadClips } from "../src/audio/data.js";
import { encoderStates } from "../src/audio/ctc-finetune.js";
import { initEngine } from "../src/engine/runtime.js";
import { charErrorRate, wordErrorRate } from "../src/train/metrics.js";
import { featureMoments } from "../src/train/probe.js";
import { arg } from "./common.js";

const model = arg("model", "");
if (!model) throw new Error("--model RUN (an audio pretraining run) is required");
const scratch = arg("scratch", "");
const epochs = Number(arg("epochs", "20"));
const lr = Number(arg("lr", "1e-2"));
const data = arg("data", "data/speech");
const batch = 8;

await initEngine();
const loaded = loadAudioCheckpoint(model);
let encoder = scratch ? freshAudioEncoder(loaded.run, Number(scratch)) : loaded.encoder;
let m = loaded.run.model;
const depth = Number(arg("layers", String(m.layers)));
encoder = { ...encoder, layers: encoder.layers.slice(0, depth) };
m = { ...m, layers: depth };

const trainClips = await loadClips(libriSpeechEntries(join(data, "train")), 16000, true);
const testClips = await loadClips(libriSpeechEntries(join(data, "test")), 16000, true);
const D = m.dim;
const V = LIBRISPEECH_VOCAB.length;
const trainStates = await encoderStates(encoder, m, trainClips, batch);
const testStates = await encoderStates(encoder, m, testClips, batch);
const all = new Float32Array(trainStates.reduce((s, x) => s + x.rows.length, 0));
trainStates.reduce((offset, x) => (all.set(x.rows, offset), offset + x.rows.length), 0);
const moments = featureMoments(all, D);
const standardize = (rows: Float32Array) => Float64Array.from(rows, (v, i) => (v - moments.mean[i % D]) / moments.std[i % D]);
const train = trainStates.map((s, i) => ({ x: standardize(s.rows), frames: s.frames, labels: encodeTranscript(trainClips[i].transcript ?? "") }));
const test = testStates.map((s) => ({ x: standardize(s.rows), frames: s.frames }));

// The probe: logits = x W + b, W stored with the bias as its last row, trained with Adam (β 0.9, 0.999).
const W = new Float64Array((D + 1) * V);
const m1 = new Float64Array(W.length);
const m2 = new Float64Array(W.length);
const logits = (x: Float64Array, frames: number) => {
  const out = new Float64Array(frames * V);
  for (let f = 0; f < frames; f++)
    for (let v = 0; v < V; v++) {
      let s = W[D * V + v];
      for (let d = 0; d < D; d++) s += x[f * D + d] * W[d * V + v];
      out[f * V + v] = s;
    }
  return out;
};
const evaluate = () => {
  const hyps = test.map(({ x, frames }) => {
    const lg = logits(x, frames);
    const ids = Array.from({ length: frames }, (_, f) => {
      let best = 0;
      for (let v = 1; v < V; v++) if (lg[f * V + v] > lg[f * V + best]) best = v;
      return best;
    });
    return ctcGreedyDecode(ids, LIBRISPEECH_VOCAB);
  });
  const refs = testClips.map((c) => (c.transcript ?? "").toUpperCase().trim().replace(/\s+/g, " "));
  return { cer: charErrorRate(refs, hyps), wer: wordErrorRate(refs, hyps), example: { ref: refs[0], hyp: hyps[0] } };
};
let t = 0;
for (let epoch = 1; epoch <= epochs; epoch++) {
  let total = 0;
  let chars = 0;
  for (let start = 0; start < train.length; start += batch) {
    const grad = new Float64Array(W.length);
    const rows = train.slice(start, start + batch);
    for (const { x, frames, labels } of rows) {
      const r = ctcLoss(logits(x, frames), frames, V, labels);
      if (!Number.isFinite(r.loss)) continue; // an utterance shorter than its transcript cannot be aligned
      total += r.loss;
      chars += labels.length;
      // The loss per character, as in fine-tuning.
      for (let f = 0; f < frames; f++)
        for (let v = 0; v < V; v++) {
          const g = r.grad[f * V + v] / labels.length;
          if (g === 0) continue;
          grad[D * V + v] += g;
          for (let d = 0; d < D; d++) grad[d * V + v] += x[f * D + d] * g;
        }
    }
    t++;
    for (let k = 0; k < W.length; k++) {
      const g = grad[k] / rows.length;
      m1[k] = 0.9 * m1[k] + 0.1 * g;
      m2[k] = 0.999 * m2[k] + 0.001 * g * g;
      W[k] -= (lr * (m1[k] / (1 - 0.9 ** t))) / (Math.sqrt(m2[k] / (1 - 0.999 ** t)) + 1e-8);
    }
  }
  if (epoch % 5 === 0 || epoch === epochs) console.log(JSON.stringify({ epoch, updates: t, lossPerChar: total / chars, depth, init: scratch ? `random (seed ${scratch})` : model, ...evaluate() }));
}
