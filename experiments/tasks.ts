/**
 * The labeled tasks the experiments evaluate pretraining on, two per modality. Each brings its unlabeled
 * pretraining data, its few labels, its test set, and three evaluations of an encoder: a linear probe, full
 * fine-tuning, and a classic baseline on the same labels (no encoder: raw pixels, tf-idf or log mel + logistic
 * regression).
 *
 * - images: `mnist` (8 labeled digits per class of the `mnist` package's 7,996 training digits; 2,004 test digits)
 *   and `fashion` (Fashion-MNIST from Debian's dataset-fashion-mnist: 10 labeled images per class of 60,000; the
 *   10,000 test images), each pretrained on its own training images;
 * - text: `brown` (8 Brown-corpus genres, 128 labeled passages, 480 test passages of held-out documents) and
 *   `debian` (8 Debian archive sections, 128 labeled package descriptions, 480 test descriptions of held-out source
 *   packages: `d2v data debian-sections`), each pretrained on its own training documents;
 * - speech: `words` (10 command words, 480 clips by 16 voices, 240 test clips by 8 other voices: `d2v data
 *   synth-words`) and `ctc` (transcription of the synthetic corpus's 15 labeled minutes, tested on unseen voices,
 *   scored by CER), both pretrained on the synthetic corpus (`d2v data synth-speech`).
 *
 * Every evaluation draws what it uses from the seed (the labeled subset where the task has a pool, the head, the
 * data order), the same for a pretrained and a from-scratch encoder of that seed.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { linear } from "../src/nn/layers.js";
import { HostRng } from "../src/engine/random.js";
import { disposeTree } from "../src/engine/typed.js";
import { accuracy, charErrorRate, wordErrorRate } from "../src/train/metrics.js";
import type { PretrainRunResult } from "../src/train/pretrain-runner.js";
import { headPredictions, participationRatio, trainLinearProbe } from "../src/train/probe.js";
import type { EncoderSource } from "../src/train/finetune.js";
import type { RunConfigKit } from "../src/config/run-config.js";
import { finetuneVision, imageFeatures, newVisionHead, predictVision, probePredict, trainProbe } from "../src/vision/classify.js";
import { visionEncoders } from "../src/vision/checkpoints.js";
import { visionRunConfig, type VisionRunConfig } from "../src/vision/config.js";
import { balancedSubset, fashionMnistSplits, mnistSplits, type LabeledImages } from "../src/vision/images.js";
import { pretrainVision } from "../src/vision/pretrain.js";
import { textEncoders, type TextArch } from "../src/text/checkpoints.js";
import { encodeLabeled, finetuneClassifier, newHead, pooledTextFeatures, predictClasses } from "../src/text/classify.js";
import { brownGenreTask } from "../src/text/brown-genre.js";
import { textRunConfig, type TextRunConfig } from "../src/text/config.js";
import { readLabeledText, type LabeledText } from "../src/text/data.js";
import { pretrainText } from "../src/text/pretrain.js";
import type { TextEncoderParams } from "../src/text/model.js";
import { audioEncoders } from "../src/audio/checkpoints.js";
import { finetuneAudioClassifier, pooledAudioFeatures, predictAudioClasses } from "../src/audio/classify.js";
import { audioRunConfig, type AudioRunConfig } from "../src/audio/config.js";
import { encodeTranscript, LIBRISPEECH_VOCAB } from "../src/audio/ctc.js";
import { encoderStates, evaluateCtc, finetuneCtc, newCtcHead, referenceTranscripts, toUtterances } from "../src/audio/ctc-finetune.js";
import { CTC_PROBE_DEFAULTS, ctcProbeTranscripts, trainCtcProbe, type FrameFeatures } from "../src/audio/ctc-probe.js";
import { labeledAudioEntries, libriSpeechEntries, loadClips, type Clip } from "../src/audio/data.js";
import { pretrainAudio } from "../src/audio/pretrain.js";
import { logSpectrumFeatures, logisticRegression, splicedLogMelFrames, tfidfFeatures } from "./baselines.js";
import { arg } from "./common.js";

/** `featureDims`: for a probe, the participation ratio of its standardized training features (train/probe.ts). */
export type AccuracyScore = { accuracy: number; trainAccuracy: number; featureDims?: number };
/** Classification is scored by accuracy (higher is better), transcription by character error rate (lower is better). */
export type Score = AccuracyScore | { cer: number; wer: number; trainLossPerChar: number };
export type Metric = "accuracy" | "cer";
/** The number a task is judged by. */
export const scoreValue = (score: Score, metric: Metric): number => (metric === "cer" ? (score as { cer: number }).cer : (score as { accuracy: number }).accuracy);
type RunCfg = { data2vec: { ema: { tauStart: number; tauEnd: number; annealSteps: number } } };

export type LabeledTask<Cfg extends RunCfg = RunCfg, Arch = unknown, Encoder = unknown> = {
  name: string;
  title: string;
  modality: "vision" | "text" | "audio";
  metric: Metric;
  /** What the probe and fine-tuning train on and are tested on, in words. */
  labeledName: string;
  baselineName: string;
  kit: RunConfigKit<Cfg>;
  /** Pretrains on the task's own unlabeled data (a checkpoint is written where it stops). */
  pretrain(config: Cfg, outDir: string, resume: boolean, stopAfter?: number): Promise<PretrainRunResult>;
  encoders: EncoderSource<Arch, Encoder>;
  /** The architecture of a run config, where it needs nothing the run makes (text's tokenizer is trained by the run). */
  archOf?: (config: Cfg) => Arch;
  /** Linear probe on the frozen encoder's pooled (transcription: per-frame) features (the encoder is consumed). */
  probe(arch: Arch, encoder: Encoder, seed: number): Promise<Score>;
  /** Full fine-tuning with a new head (the encoder is consumed); `changes` override the task's fine-tuning settings. */
  finetune(arch: Arch, encoder: Encoder, seed: number, changes?: Record<string, unknown>): Promise<Score>;
  /** The classic baseline on the same labels. */
  baseline(seed: number): Promise<Score>;
};

const PROBE = { steps: 500, lr: 1e-2, weightDecay: 1e-4 };
const log = (m: string) => process.stderr.write(`${m}\n`);

/** The probe of text and speech: standardized features, a linear layer (train/probe.ts). */
async function linearProbe(train: Float32Array, trainLabels: number[], test: Float32Array, testLabels: number[], dim: number, classes: number, seed: number): Promise<Score> {
  const { head, trainAccuracy } = await trainLinearProbe(train, trainLabels, dim, classes, { ...PROBE, seed });
  const pred = await headPredictions(head, (h, x) => linear(h, x), test, dim);
  disposeTree(head);
  return { accuracy: accuracy(pred, testLabels), trainAccuracy, featureDims: participationRatio(train, dim) };
}

/** Stops with the command that makes missing data, instead of a stack trace. */
function needs(paths: string[], make: string): void {
  for (const p of paths) {
    if (!existsSync(p)) {
      log(`${p} is missing: make the data first (${make})`);
      process.exit(2);
    }
  }
}

// ---------------------------------------------------------------------------------------------------- images

/**
 * Fine-tuning of the image tasks: 80 epochs of batch 16 at lr 1e-3 on augmented views (the pretraining's crops of
 * 70–100% of the area and brightness/contrast jitter). Chosen on MNIST, seed 1 (docs/results/pretraining-helps.md):
 * without augmentation (40 epochs) the pretrained encoder memorizes its 80 images and tests at 50%, with it at 83%.
 */
const IMAGE_FINETUNE = { epochs: 80, batchSize: 16, lr: 1e-3, warmupFraction: 0.1, weightDecay: 0.05, augment: true };

function imageTask(o: { name: string; title: string; splits: () => { train: LabeledImages; test: LabeledImages }; perClass: number }): LabeledTask<VisionRunConfig, VisionRunConfig, unknown> {
  const labeled = (seed: number) => balancedSubset(o.splits().train, o.perClass, (xs) => HostRng.seeded(1000 + seed).shuffle(xs));
  const classes = () => o.splits().train.classes.length;
  return {
    name: o.name,
    title: o.title,
    modality: "vision",
    metric: "accuracy",
    labeledName: `${o.perClass} labeled images per class (a draw per seed), tested on the ${o.name === "mnist" ? "2,004" : "10,000"} test images`,
    baselineName: "raw pixels + logistic regression",
    kit: visionRunConfig,
    pretrain: (config, outDir, resume, stopAfter) => pretrainVision({ config, images: o.splits().train.images, outDir, resume, quiet: true, stopAfter, log }),
    encoders: visionEncoders as EncoderSource<VisionRunConfig, unknown>,
    archOf: (config) => config,
    async probe(run, encoder, seed) {
      const train = labeled(seed);
      const test = o.splits().test;
      const trainFeats = await imageFeatures(encoder as never, run, train.images, 16);
      const testFeats = await imageFeatures(encoder as never, run, test.images, 16);
      disposeTree(encoder);
      const probe = await trainProbe(trainFeats, train.labels, run.model.dim, classes(), { ...PROBE, seed });
      const pred = await probePredict(probe.head, testFeats, run.model.dim);
      return { accuracy: accuracy(pred, test.labels), trainAccuracy: probe.trainAccuracy, featureDims: participationRatio(trainFeats, run.model.dim) };
    },
    async finetune(run, encoder, seed, changes) {
      const train = labeled(seed);
      const test = o.splits().test;
      const settings = { ...IMAGE_FINETUNE, ...changes, seed };
      const trained = await finetuneVision({ encoder: encoder as never, head: newVisionHead(seed, run.model.dim, classes()) }, run, train, settings, { quiet: true });
      const pred = await predictVision(trained.params, run, test.images, settings.batchSize);
      return { accuracy: accuracy(pred, test.labels), trainAccuracy: trained.history[trained.history.length - 1].trainAccuracy };
    },
    async baseline(seed) {
      const train = labeled(seed);
      const test = o.splits().test;
      const pixels = (images: LabeledImages["images"]) => Float32Array.from(images.flatMap((im) => Array.from(im.data, (v) => v / 255)));
      return logisticRegression(pixels(train.images), train.labels, pixels(test.images), test.labels, train.images[0].data.length, classes(), seed);
    },
  };
}

/** MNIST with 1% of the labels. */
export const mnistTask = () => imageTask({ name: "mnist", title: "MNIST, 80 labels", splits: mnistSplits, perClass: 8 });

let fashion: ReturnType<typeof fashionMnistSplits> | undefined;
/** Fashion-MNIST with 100 labels. */
export const fashionTask = () => imageTask({ name: "fashion", title: "Fashion-MNIST, 100 labels", splits: () => (fashion ??= fashionMnistSplits()), perClass: 10 });

// ------------------------------------------------------------------------------------------------------ text

/** Fine-tuning of the text tasks (docs/results/text-brown-genre.md): mean-pooled, layer-normed head, lr 1e-3. */
const TEXT_FINETUNE = { epochs: 10, batchSize: 16, lr: 1e-3, warmupFraction: 0.1, weightDecay: 0.01, pooling: "mean" as const, poolNorm: true };

function textTask(o: { name: string; title: string; labeledName: string; data: () => { labels: string[]; train: LabeledText[]; test: LabeledText[] }; corpus?: string }): LabeledTask<TextRunConfig, TextArch, TextEncoderParams> {
  const labelsOf = (xs: LabeledText[], labels: string[]) => xs.map((e) => labels.indexOf(e.label));
  return {
    name: o.name,
    title: o.title,
    modality: "text",
    metric: "accuracy",
    labeledName: o.labeledName,
    baselineName: "tf-idf + logistic regression",
    kit: textRunConfig,
    // Without a corpus path: the Brown documents that hold no test passage of the genre task (the default corpus).
    pretrain: (config, outDir, resume, stopAfter) => pretrainText({ config, ...(o.corpus ? { data: o.corpus } : {}), outDir, resume, quiet: true, stopAfter, log }),
    encoders: textEncoders,
    async probe({ run, enc, tok }, encoder, seed) {
      const task = o.data();
      const features = (xs: LabeledText[]) => pooledTextFeatures(encoder, enc, tok, encodeLabeled(xs, tok, task.labels), 16, run.train.seqLen);
      const train = await features(task.train);
      const test = await features(task.test);
      disposeTree(encoder);
      return linearProbe(train, labelsOf(task.train, task.labels), test, labelsOf(task.test, task.labels), enc.dim, task.labels.length, seed);
    },
    async finetune({ run, enc, tok }, encoder, seed, changes) {
      const task = o.data();
      const train = encodeLabeled(task.train, tok, task.labels);
      const test = encodeLabeled(task.test, tok, task.labels);
      const settings = { ...TEXT_FINETUNE, ...changes, seed, seqLen: run.train.seqLen };
      const head = newHead(seed, enc.dim, task.labels.length, { poolNorm: settings.poolNorm });
      const trained = await finetuneClassifier({ encoder, head }, enc, tok, train, task.labels.length, settings, { quiet: true });
      const pred = await predictClasses(trained.params, enc, tok, test, task.labels.length, settings.batchSize, settings.seqLen, settings.pooling);
      return { accuracy: accuracy(pred, test.labels), trainAccuracy: trained.history[trained.history.length - 1].trainAccuracy };
    },
    async baseline(seed) {
      const task = o.data();
      const { train, test, dim } = tfidfFeatures(task.train.map((e) => e.text), task.test.map((e) => e.text));
      return logisticRegression(train, labelsOf(task.train, task.labels), test, labelsOf(task.test, task.labels), dim, task.labels.length, seed);
    },
  };
}

/** Brown-corpus genres: 128 labeled passages, 480 test passages of documents pretraining never saw. */
export const brownTask = () => {
  let task: ReturnType<typeof brownGenreTask> | undefined;
  return textTask({
    name: "brown",
    title: "Brown genres, 128 labels",
    labeledName: "128 labeled passages (8 genres), tested on 480 passages of 69 held-out documents",
    data: () => (task ??= brownGenreTask()),
  });
};

/** Debian package descriptions by archive section (`d2v data debian-sections`). */
export const debianTask = () => {
  const dir = resolve(arg("debian", join("data", "debian-sections")));
  needs([join(dir, "train.jsonl"), join(dir, "test.jsonl"), join(dir, "pretrain")], `\`d2v data debian-sections --out ${dir}\``);
  let data: { labels: string[]; train: LabeledText[]; test: LabeledText[] } | undefined;
  return textTask({
    name: "debian",
    title: "Debian sections, 128 labels",
    labeledName: "128 labeled package descriptions (8 sections), tested on 480 descriptions of held-out source packages",
    data: () =>
      (data ??= {
        labels: (JSON.parse(readFileSync(join(dir, "README.json"), "utf8")) as { labels: string[] }).labels,
        train: readLabeledText(join(dir, "train.jsonl")),
        test: readLabeledText(join(dir, "test.jsonl")),
      }),
    corpus: join(dir, "pretrain"),
  });
};

// ---------------------------------------------------------------------------------------------------- speech

/** Fine-tuning of the speech task (`d2v finetune --modality audio`'s defaults, 10 epochs). */
const AUDIO_FINETUNE = { epochs: 10, batchSize: 8, lr: 5e-4, warmupFraction: 0.1, weightDecay: 0.01 };

/** Spoken command words read by voices the evaluations never heard; pretraining on the synthetic corpus. */
export function wordsTask(): LabeledTask<AudioRunConfig, AudioRunConfig, unknown> {
  const words = resolve(arg("words", join("data", "words")));
  const speech = resolve(arg("speech", join("data", "speech", "pretrain")));
  needs(
    [join(words, "train"), join(words, "test"), speech],
    "`d2v data synth-speech --out data/speech --hours 2.5 --labeled-minutes 15 --test-minutes 8 --snr 20` and `d2v data synth-words --out data/words --snr 20`",
  );
  const maxSeconds = 1.5;
  let clips: { train: Clip[]; test: Clip[]; labels: string[] } | undefined;
  const labeled = async () => {
    if (!clips) {
      const train = await loadClips(labeledAudioEntries(join(words, "train")), 16000, true);
      const test = await loadClips(labeledAudioEntries(join(words, "test")), 16000, true);
      clips = { train, test, labels: [...new Set(train.map((c) => c.label!))].sort() };
    }
    return clips;
  };
  const indexOf = (cs: Clip[], labels: string[]) => cs.map((c) => labels.indexOf(c.label!));
  return {
    name: "words",
    title: "Spoken command words, 480 clips",
    modality: "audio",
    metric: "accuracy",
    labeledName: `480 clips of 16 voices (10 words; the first ${maxSeconds} s), tested on 240 clips of 8 other voices`,
    baselineName: "log mel spectrum (mean and std over time) + logistic regression",
    kit: audioRunConfig,
    pretrain: (config, outDir, resume, stopAfter) => pretrainAudio({ config, data: speech, outDir, resume, quiet: true, stopAfter, log }),
    encoders: audioEncoders as EncoderSource<AudioRunConfig, unknown>,
    archOf: (config) => config,
    async probe(run, encoder, seed) {
      const { train, test, labels } = await labeled();
      const trainFeats = await pooledAudioFeatures(encoder as never, run.model, train, 8, maxSeconds);
      const testFeats = await pooledAudioFeatures(encoder as never, run.model, test, 8, maxSeconds);
      disposeTree(encoder);
      return linearProbe(trainFeats, indexOf(train, labels), testFeats, indexOf(test, labels), run.model.dim, labels.length, seed);
    },
    async finetune(run, encoder, seed, changes) {
      const { train, test, labels } = await labeled();
      const settings = { ...AUDIO_FINETUNE, ...changes, seed, maxSeconds };
      const params = { encoder: encoder as never, head: newCtcHead(seed, run.model.dim, labels.length) };
      const trained = await finetuneAudioClassifier(params, run.model, train, indexOf(train, labels), labels.length, settings, { quiet: true });
      const pred = await predictAudioClasses(trained.params, run.model, test, settings.batchSize, maxSeconds);
      return { accuracy: accuracy(pred, indexOf(test, labels)), trainAccuracy: trained.history[trained.history.length - 1].trainAccuracy };
    },
    async baseline(seed) {
      const { train, test, labels } = await labeled();
      const first = (cs: Clip[]) => cs.map((c) => c.samples.subarray(0, Math.round(maxSeconds * 16000)));
      const trainF = logSpectrumFeatures(first(train));
      const testF = logSpectrumFeatures(first(test), trainF.moments);
      return logisticRegression(trainF.features, indexOf(train, labels), testF.features, indexOf(test, labels), trainF.dim, labels.length, seed);
    },
  };
}

/** CTC fine-tuning of the transcription task: `d2v finetune --task ctc`'s defaults (the CNN frozen, 20 epochs). */
const CTC_FINETUNE = { epochs: 20, batchSize: 8, lr: 5e-4, warmupFraction: 0.1, weightDecay: 0.01, freezeFeatureEncoder: true, maxBatchSeconds: 16, maskProb: 0.25, maskLength: 10 };

/**
 * Transcription of voices the evaluations never heard: the synthetic corpus's 15 labeled minutes and its test
 * voices (`d2v data synth-speech`), pretraining on its unlabeled hours (the same pretraining as `words`). Scored by
 * CER with greedy decoding; the probe is a linear CTC layer on the frozen final states, the classic baseline the same
 * layer on spliced log mel frames.
 */
export function ctcTask(): LabeledTask<AudioRunConfig, AudioRunConfig, unknown> {
  const root = resolve(arg("speech-data", join("data", "speech")));
  needs([join(root, "train"), join(root, "test"), join(root, "pretrain")], "`d2v data synth-speech --out data/speech --hours 2.5 --labeled-minutes 15 --test-minutes 8 --snr 20`");
  let clips: { train: Clip[]; test: Clip[] } | undefined;
  const labeled = async () => (clips ??= { train: await loadClips(libriSpeechEntries(join(root, "train")), 16000, true), test: await loadClips(libriSpeechEntries(join(root, "test")), 16000, true) });
  const transcriptLabels = (cs: Clip[]) => cs.map((c) => encodeTranscript(c.transcript ?? "", LIBRISPEECH_VOCAB, c.name));
  const probeScore = (train: FrameFeatures[], test: FrameFeatures[], trainClips: Clip[], testClips: Clip[], dim: number, seed: number): Score => {
    const probe = trainCtcProbe(train, transcriptLabels(trainClips), dim, LIBRISPEECH_VOCAB, { ...CTC_PROBE_DEFAULTS, seed });
    const hyps = ctcProbeTranscripts(probe, test);
    const refs = referenceTranscripts(testClips);
    return { cer: charErrorRate(refs, hyps), wer: wordErrorRate(refs, hyps), trainLossPerChar: probe.lossPerChar[probe.lossPerChar.length - 1] };
  };
  return {
    name: "ctc",
    title: "Transcription (CTC), 15 labeled minutes, unseen voices",
    modality: "audio",
    metric: "cer",
    labeledName: "the synthetic corpus's 15 labeled minutes, tested on 8 minutes of voices never heard in training",
    baselineName: "spliced log mel frames (±4) + linear CTC layer",
    kit: audioRunConfig,
    pretrain: (config, outDir, resume, stopAfter) => pretrainAudio({ config, data: join(root, "pretrain"), outDir, resume, quiet: true, stopAfter, log }),
    encoders: audioEncoders as EncoderSource<AudioRunConfig, unknown>,
    archOf: (config) => config,
    async probe(run, encoder, seed) {
      const { train, test } = await labeled();
      const trainStates = await encoderStates(encoder as never, run.model, train, 8);
      const testStates = await encoderStates(encoder as never, run.model, test, 8);
      disposeTree(encoder);
      return probeScore(trainStates, testStates, train, test, run.model.dim, seed);
    },
    async finetune(run, encoder, seed, changes) {
      const { train, test } = await labeled();
      const settings = { ...CTC_FINETUNE, ...changes, seed };
      const params = { encoder: encoder as never, head: newCtcHead(seed, run.model.dim, LIBRISPEECH_VOCAB.length) };
      const trained = await finetuneCtc(params, run.model, toUtterances(train, LIBRISPEECH_VOCAB), settings, { quiet: true });
      const ev = await evaluateCtc(trained.params, run.model, LIBRISPEECH_VOCAB, test, { batchSize: settings.batchSize, maxBatchSeconds: settings.maxBatchSeconds });
      disposeTree(trained.params);
      return { cer: ev.cer, wer: ev.wer, trainLossPerChar: trained.history[trained.history.length - 1].loss };
    },
    async baseline(seed) {
      const { train, test } = await labeled();
      const frames = (cs: Clip[]) => cs.map((c) => splicedLogMelFrames(c.samples));
      const trainF = frames(train);
      return probeScore(trainF, frames(test), train, test, trainF[0].dim, seed);
    },
  };
}

/** Every task by name (each built on first use: some read large data). */
export const TASKS: Record<string, () => LabeledTask<never, never, never>> = {
  mnist: mnistTask as never,
  fashion: fashionTask as never,
  brown: brownTask as never,
  debian: debianTask as never,
  words: wordsTask as never,
  ctc: ctcTask as never,
};
