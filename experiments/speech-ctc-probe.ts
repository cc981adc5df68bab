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
 * positional convolution's output, the input to the first block). Prints one JSON line: test CER and WER with
 * greedy decoding. The probe itself is src/audio/ctc-probe.ts (also the `ctc` task of experiments/helps.ts).
 */
import { join } from "node:path";
import { freshAudioEncoder, loadAudioCheckpoint } from "../src/audio/checkpoints.js";
import { encodeTranscript, LIBRISPEECH_VOCAB } from "../src/audio/ctc.js";
import { encoderStates, referenceTranscripts } from "../src/audio/ctc-finetune.js";
import { CTC_PROBE_DEFAULTS, ctcProbeTranscripts, trainCtcProbe } from "../src/audio/ctc-probe.js";
import { libriSpeechEntries, loadClips } from "../src/audio/data.js";
import { initEngine } from "../src/engine/runtime.js";
import { charErrorRate, wordErrorRate } from "../src/train/metrics.js";
import { arg } from "./common.js";

const model = arg("model", "");
if (!model) throw new Error("--model RUN (an audio pretraining run) is required");
const scratch = arg("scratch", "");
const epochs = Number(arg("epochs", String(CTC_PROBE_DEFAULTS.epochs)));
const lr = Number(arg("lr", String(CTC_PROBE_DEFAULTS.lr)));
const data = arg("data", "data/speech");

await initEngine();
const loaded = loadAudioCheckpoint(model);
let encoder = scratch ? freshAudioEncoder(loaded.run, Number(scratch)) : loaded.encoder;
let m = loaded.run.model;
const depth = Number(arg("layers", String(m.layers)));
encoder = { ...encoder, layers: encoder.layers.slice(0, depth) };
m = { ...m, layers: depth };

const trainClips = await loadClips(libriSpeechEntries(join(data, "train")), 16000, true);
const testClips = await loadClips(libriSpeechEntries(join(data, "test")), 16000, true);
const trainStates = await encoderStates(encoder, m, trainClips, CTC_PROBE_DEFAULTS.batchSize);
const testStates = await encoderStates(encoder, m, testClips, CTC_PROBE_DEFAULTS.batchSize);
const labels = trainClips.map((c) => encodeTranscript(c.transcript ?? "", LIBRISPEECH_VOCAB, c.name));
// The seed orders the utterances; 1, as before the probe took one (the weights start at zero).
const probe = trainCtcProbe(trainStates, labels, m.dim, LIBRISPEECH_VOCAB, { ...CTC_PROBE_DEFAULTS, epochs, lr, seed: 1 });
const hyps = ctcProbeTranscripts(probe, testStates);
const refs = referenceTranscripts(testClips);
console.log(JSON.stringify({ epochs, lossPerChar: probe.lossPerChar[probe.lossPerChar.length - 1], depth, init: scratch ? `random (seed ${scratch})` : model, cer: charErrorRate(refs, hyps), wer: wordErrorRate(refs, hyps), example: { ref: refs[0], hyp: hyps[0] } }));
