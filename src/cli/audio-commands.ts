/** The `d2v` subcommands for speech. Input is validated before any output is written. */
import { configFileSettings, type FinetuneOptions } from "./pretrain-command.js";
import { disposeTree } from "../engine/typed.js";
import { existsSync } from "node:fs";
import { basename, resolve } from "node:path";
import { ConfigError, DataError } from "../engine/errors.js";
import { initEngine } from "../engine/runtime.js";
import { accuracy, macroF1 } from "../train/metrics.js";
import { resolveAudioConfig, type AudioRunConfig } from "../audio/config.js";
import { checkpointModality, saveModel } from "../train/checkpoint.js";
import { audioEncoders, loadAudioCheckpoint, type AudioClassifierConfig, type AudioCtcConfig } from "../audio/checkpoints.js";
import { ctcVocabularyOf, LIBRISPEECH_VOCAB } from "../audio/ctc.js";
import { labeledAudioEntries, libriSpeechEntries, loadClips, totalSeconds, type Clip } from "../audio/data.js";
import { encoderStates, evaluateCtc, finetuneCtc, ladderShape, newCtcHead, toUtterances, transcribeClips } from "../audio/ctc-finetune.js";
import { finetuneAudioClassifier, pooledAudioFeatures, predictAudioClasses, type AudioClassifierParams, type AudioClassifySettings } from "../audio/classify.js";
import { trainLinearProbe } from "../train/probe.js";
import { classNames, headFor, startingEncoder } from "../train/finetune.js";
import { floatsOf, planOptimizer, stepBytes } from "../train/memory-plan.js";
import { framesForSamples } from "../audio/model.js";
import { featureActivations } from "../audio/logmel.js";
import type { LinearParams } from "../nn/layers.js";
import { hfAudioEncoder, hfClassifierProjection, orHf } from "../hf/sources.js";
import { isHfModelDir } from "../hf/model.js";
import { readAudio, normalizeClip } from "../audio/io.js";
import { synthesizeSpeech, synthesizeWords } from "../audio/synth.js";

const log = (msg: string) => process.stderr.write(`${msg}\n`);

async function clipsOf(entries: ReturnType<typeof libriSpeechEntries>, run: AudioRunConfig, what: string): Promise<Clip[]> {
  log(`decoding ${entries.length} ${what} files`);
  return loadClips(entries, run.model.sampleRate, run.model.normalize);
}

export type AudioFinetuneOptions = FinetuneOptions & {
  task?: string;
  headOnlyUpdates?: number;
  maxSeconds?: number;
  freezeFeatureEncoder?: boolean;
  maskProb?: number;
  poolNorm?: boolean;
  linearProbe?: boolean;
};

/** Full-batch AdamW steps of a linear probe (as for vision). */
const PROBE_STEPS = 500;

/** The longest batch (seconds of audio) whose CNN backward pass fits in wasm32 memory (`small`: 8 s ≈ 2.5 GB, 9.5 s fails). */
const TRAINED_CNN_MAX_SECONDS = 8;

export async function runAudioFinetune(o: AudioFinetuneOptions) {
  const task = o.task ?? "ctc";
  if (task !== "ctc" && task !== "classify") throw new ConfigError(`--task ${task}: choose ctc (transcription) or classify`);
  if (task === "classify" && o.headOnlyUpdates !== undefined) throw new ConfigError("--head-only-updates is for --task ctc; a classification would ignore it");
  if (!o.init && !o.scratch) throw new ConfigError("pass --init <pretrained run> to fine-tune a pretrained model, or --scratch to train from random weights");
  if (!o.data) throw new DataError(task === "ctc" ? "--data: pass transcribed speech in the LibriSpeech layout (e.g. from `d2v data synth-speech`)" : "--data: pass a folder per class of audio files, or a manifest with labels");
  if (!existsSync(o.data)) throw new DataError(`--data ${o.data} does not exist`);
  // Read the data before anything is trained or written, so bad input fails first.
  const entries = task === "ctc" ? libriSpeechEntries(o.data) : labeledAudioEntries(o.data);
  await initEngine();
  const start = startingEncoder(orHf(audioEncoders, hfAudioEncoder), o, () => resolveAudioConfig(o.preset, configFileSettings(o.config)));
  const fromHf = start.from !== null && isHfModelDir(start.from);
  const found = start.head;
  const heads = found?.params ?? {};
  const { arch: run, encoder } = start;
  const m = run.model;
  const clips = await clipsOf(entries, run, "training");
  const evalClips = o.evalData ? await clipsOf(task === "ctc" ? libriSpeechEntries(o.evalData) : labeledAudioEntries(o.evalData), run, "evaluation") : null;
  const source = start.from ? `from ${start.from}` : "from scratch";
  const result: Record<string, unknown> = {};
  if (task === "ctc") {
    if (heads.projector || heads.out) disposeTree({ projector: heads.projector, out: heads.out });
    // The checkpoint's character vocabulary (an HF vocab.json), else for a Hugging Face model without one a vocabulary
    // of the transcripts' characters, else (our checkpoints) LibriSpeech's.
    const vocabulary = found?.labels ?? (fromHf ? ctcVocabularyOf(clips.map((c) => c.transcript ?? "")) : LIBRISPEECH_VOCAB);
    const ctcFound = heads.ctc && found?.labels ? { params: heads.ctc, labels: null, classes: found.classes } : undefined;
    if (heads.ctc && !ctcFound) disposeTree(heads.ctc); // a CTC head without its vocab.json cannot be kept
    const chosen = headFor(ctcFound, vocabulary, () => newCtcHead(o.seed, m.dim, vocabulary.length), { newHead: o.newHead, from: start.from, what: "characters (vocab.json)", discarded: !!heads.ctc });
    const utterances = toUtterances(clips, vocabulary);
    // The CNN is frozen unless asked (the paper's fine-tuning; its outputs are then cached). Training it needs
    // about 0.3 GB of wasm memory per second of audio in a batch, so its batches are capped at 8 s.
    const freezeFeatureEncoder = o.freezeFeatureEncoder ?? true;
    const maxSeconds = freezeFeatureEncoder ? (o.maxSeconds ?? 16) : Math.min(o.maxSeconds ?? TRAINED_CNN_MAX_SECONDS, TRAINED_CNN_MAX_SECONDS);
    const long = clips.find((c) => c.samples.length > maxSeconds * m.sampleRate);
    if (long) {
      const fix = freezeFeatureEncoder ? "split long recordings or raise --max-seconds (memory grows with it)" : `with the CNN training (--no-freeze-feature-encoder) utterances can be at most ${TRAINED_CNN_MAX_SECONDS} s in 4 GiB of wasm memory; split long recordings or keep the CNN frozen`;
      throw new DataError(`${long.name} is ${(long.samples.length / m.sampleRate).toFixed(1)} s long, over ${maxSeconds} s; ${fix}`);
    }
    const settings = {
      epochs: o.epochs ?? 20,
      batchSize: o.batchSize ?? 8,
      lr: o.lr ?? 5e-4,
      warmupFraction: 0.1,
      weightDecay: o.weightDecay ?? 0.01,
      seed: o.seed,
      freezeFeatureEncoder,
      maxBatchSeconds: maxSeconds,
      maskProb: o.maskProb ?? 0.25,
      maskLength: 10,
      accumulate: o.accumulate ?? 1,
      headOnlyUpdates: o.headOnlyUpdates ?? 0,
    };
    log(`CTC fine-tuning ${source} on ${utterances.length} utterances (${(totalSeconds(clips, m.sampleRate) / 60).toFixed(1)} min), ${settings.epochs} epochs${settings.freezeFeatureEncoder ? ", feature encoder frozen" : ""}`);
    // Every batch shape the duration ladder will use (clips are padded to their rung; the rungs fill maxBatchSeconds).
    const n = floatsOf({ encoder, head: chosen.head });
    const trainedFloats = freezeFeatureEncoder ? n - floatsOf(encoder.shared.features) : n;
    const shapes = new Map(clips.map((c) => ladderShape(c.samples.length, m.sampleRate, settings.batchSize, settings.maxBatchSeconds)).map((s) => [`${s.rows}x${s.samples}`, s]));
    // The largest shape decides (the ladder's rungs all hold about maxBatchSeconds; longer rows cost more attention).
    const worst = [...shapes.values()].map((shape) => ({ shape, step: { params: n, trained: trainedFloats, rows: shape.rows, positions: framesForSamples(shape.samples, m.convLayers), dim: m.dim, ffnDim: m.ffnDim, heads: m.heads, layers: m.layers, cnnFloats: featureActivations(shape.samples, m, !freezeFeatureEncoder), accumulates: settings.accumulate > 1 } })).sort((a, b) => stepBytes(b.step) - stepBytes(a.step))[0];
    const optimizer = planOptimizer(worst.step, `CTC fine-tuning on batches of ${settings.maxBatchSeconds} s (${worst.shape.rows} × ${(worst.shape.samples / m.sampleRate).toFixed(1)} s)`, "lower --max-seconds (the seconds of audio per batch, padding included)", log);
    if (chosen.kept) log("keeping the CTC head of the checkpoint");
    const trained = await finetuneCtc({ encoder, head: chosen.head }, m, utterances, { ...settings, optimizer }, { quiet: o.quiet });
    const config: AudioCtcConfig = { kind: "audio-ctc", run, vocabulary, finetune: settings, initializedFrom: start.from };
    await saveModel(resolve(o.out), trained.params, config);
    log(`saved the transcriber in ${resolve(o.out)}`);
    result.trainLoss = trained.history[trained.history.length - 1].loss;
    if (evalClips) {
      // At the training batches' shape: the engine's allocator keeps the pools of the sizes it has seen.
      const ev = await evaluateCtc(trained.params, m, vocabulary, evalClips, { batchSize: settings.batchSize, maxBatchSeconds: settings.maxBatchSeconds });
      Object.assign(result, { cer: ev.cer, wer: ev.wer, utterances: ev.utterances });
    }
    disposeTree(trained.params);
  } else {
    if (heads.ctc) disposeTree(heads.ctc);
    const probe = !!o.linearProbe;
    if (probe && o.poolNorm) throw new ConfigError("--pool-norm and --linear-probe do not combine: the probe standardizes each feature with the training set's statistics instead");
    // transformers' classifier (projector → mean → linear) is kept as it is, or built new for a Hugging Face model.
    const projectorWidth = fromHf && !probe ? hfClassifierProjection(start.from!) : undefined;
    if (projectorWidth && o.poolNorm) throw new ConfigError(`--pool-norm: ${start.from} is a Hugging Face model, whose classifier (projector → mean → linear) has no norm; fine-tune without it`);
    const classifierFound = !probe && heads.projector && heads.out && found ? { params: { projector: heads.projector, out: heads.out }, labels: found.labels, classes: found.classes } : undefined;
    if (probe && (heads.projector || heads.out)) disposeTree({ projector: heads.projector, out: heads.out });
    const dataLabels = [...new Set(clips.map((c) => c.label!))].sort();
    const fresh = (): { projector?: LinearParams; out: LinearParams } => ({
      out: newCtcHead(o.seed, projectorWidth ?? m.dim, dataLabels.length),
      ...(projectorWidth ? { projector: newCtcHead(o.seed + 1, m.dim, projectorWidth) } : {}),
    });
    const chosen = headFor(classifierFound, dataLabels, fresh, { newHead: o.newHead, from: start.from, discarded: !!(heads.projector || heads.out) });
    if (probe) disposeTree(chosen.head);
    const labels = chosen.labels;
    const settings: AudioClassifySettings = {
      epochs: probe ? 0 : (o.epochs ?? 20),
      batchSize: o.batchSize ?? 8,
      lr: o.lr ?? (probe ? 1e-2 : 5e-4),
      warmupFraction: 0.1,
      weightDecay: o.weightDecay ?? (probe ? 1e-4 : 0.01),
      seed: o.seed,
      accumulate: o.accumulate ?? 1,
      maxSeconds: o.maxSeconds ?? 2,
      poolNorm: !!o.poolNorm,
      ...(probe ? { linearProbe: { steps: PROBE_STEPS } } : {}),
      ...(chosen.head.projector && !probe ? { projector: chosen.head.projector.weight.shape[1] } : {}),
    };
    const classIndex = clips.map((c) => labels.indexOf(c.label!));
    let params: AudioClassifierParams;
    if (probe) {
      log(`linear probe ${source} on ${clips.length} clips, ${labels.length} classes (the first ${settings.maxSeconds} s of each clip, encoder frozen)`);
      const features = await pooledAudioFeatures(encoder, m, clips, settings.batchSize, settings.maxSeconds);
      const trained = await trainLinearProbe(features, classIndex, m.dim, labels.length, { steps: PROBE_STEPS, lr: settings.lr, weightDecay: settings.weightDecay, seed: o.seed });
      params = { encoder, head: trained.head };
      result.trainAccuracy = trained.trainAccuracy;
    } else {
      log(`audio classification ${source} on ${clips.length} clips, ${labels.length} classes (clips cropped to ${settings.maxSeconds} s)`);
      const n = floatsOf({ encoder, ...chosen.head });
      const samples = Math.round(settings.maxSeconds * m.sampleRate);
      settings.optimizer = planOptimizer(
        { params: n, trained: n, rows: settings.batchSize, positions: framesForSamples(samples, m.convLayers), dim: m.dim, ffnDim: m.ffnDim, heads: m.heads, layers: m.layers, cnnFloats: featureActivations(samples, m), accumulates: (settings.accumulate ?? 1) > 1 },
        `classification fine-tuning on ${settings.maxSeconds}-s crops`,
        "lower --batch-size or --max-seconds",
        log,
      );
      if (chosen.kept) log("keeping the classification head of the checkpoint");
      const trained = await finetuneAudioClassifier({ encoder, head: chosen.head.out, ...(chosen.head.projector ? { projector: chosen.head.projector } : {}) }, m, clips, classIndex, labels.length, settings, { quiet: o.quiet });
      params = trained.params;
      const last = trained.history[trained.history.length - 1];
      Object.assign(result, { trainLoss: last.loss, trainAccuracy: last.trainAccuracy });
    }
    const config: AudioClassifierConfig = { kind: "audio-classifier", run, labels, finetune: settings, initializedFrom: start.from };
    await saveModel(resolve(o.out), params, config);
    log(`saved the classifier in ${resolve(o.out)}`);
    if (evalClips) Object.assign(result, await classifyMetrics(params, m, evalClips, labels, settings.batchSize, settings.maxSeconds, settings.poolNorm ?? false));
    disposeTree(params);
  }
  console.log(JSON.stringify(result));
}

async function classifyMetrics(params: AudioClassifierParams, m: AudioRunConfig["model"], clips: Clip[], labels: string[], batchSize: number, maxSeconds: number, poolNorm: boolean) {
  const unknown = clips.find((c) => !labels.includes(c.label!));
  if (unknown) throw new DataError(`${unknown.name} has label ${JSON.stringify(unknown.label)}, which the model does not know (${labels.join(", ")})`);
  const pred = await predictAudioClasses(params, m, clips, batchSize, maxSeconds, poolNorm);
  const gold = clips.map((c) => labels.indexOf(c.label!));
  return { accuracy: accuracy(pred, gold), macroF1: macroF1(pred, gold, labels.length), examples: clips.length };
}

export async function runAudioEval(o: { model: string; data?: string; batchSize?: number; beam?: number }) {
  if (!o.data) throw new DataError("--data: pass the labeled speech to evaluate on");
  await initEngine();
  if (isHfModelDir(o.model)) return evaluateHfAudio(o.model, o.data, o);
  const loaded = loadAudioCheckpoint(o.model);
  if (!loaded.head) throw new ConfigError(`${o.model} is a pretrained model without a head; fine-tune it first (\`d2v finetune --task ctc --init ${o.model} ...\`)`);
  const { params, config } = loaded.head;
  const m = loaded.run.model;
  if (config.kind === "audio-ctc") {
    const clips = await clipsOf(libriSpeechEntries(o.data), loaded.run, "evaluation");
    const ev = await evaluateCtc(params, m, config.vocabulary, clips, { batchSize: o.batchSize, beam: o.beam });
    disposeTree(params);
    console.log(JSON.stringify({ task: "transcription", cer: ev.cer, wer: ev.wer, utterances: ev.utterances, decoding: (o.beam ?? 1) > 1 ? `beam ${o.beam}` : "greedy" }));
  } else {
    const clips = await clipsOf(labeledAudioEntries(o.data), loaded.run, "evaluation");
    const metrics = await classifyMetrics(params, m, clips, config.labels, o.batchSize ?? config.finetune.batchSize, config.finetune.maxSeconds, config.finetune.poolNorm ?? false);
    disposeTree(params);
    console.log(JSON.stringify({ task: "classification", ...metrics }));
  }
}

/** A released speech model as it is: CTC (with its vocab.json) on transcribed speech, or its classifier on labeled clips (whole). */
async function evaluateHfAudio(dir: string, data: string, o: { batchSize?: number; beam?: number }) {
  const h = hfAudioEncoder(dir);
  const heads = h.head?.params ?? {};
  const m = h.arch.model;
  if (heads.ctc && h.head?.labels) {
    const clips = await clipsOf(libriSpeechEntries(data), h.arch, "evaluation");
    const params = { encoder: h.encoder, head: heads.ctc };
    const ev = await evaluateCtc(params, m, h.head.labels, clips, { batchSize: o.batchSize, beam: o.beam });
    disposeTree(params);
    console.log(JSON.stringify({ task: "transcription", cer: ev.cer, wer: ev.wer, utterances: ev.utterances, decoding: (o.beam ?? 1) > 1 ? `beam ${o.beam}` : "greedy" }));
    return;
  }
  if (heads.projector && heads.out && h.head) {
    const clips = await clipsOf(labeledAudioEntries(data), h.arch, "evaluation");
    const labels = classNames(h.head);
    const params: AudioClassifierParams = { encoder: h.encoder, head: heads.out, projector: heads.projector };
    const longest = Math.max(...clips.map((c) => c.samples.length)) / m.sampleRate;
    const metrics = await classifyMetrics(params, m, clips, labels, o.batchSize ?? 4, longest, false);
    disposeTree(params);
    console.log(JSON.stringify({ task: "classification", ...metrics }));
    return;
  }
  disposeTree({ encoder: h.encoder, heads });
  throw new ConfigError(`${dir} has no head to evaluate (a CTC head with its vocab.json, or a sequence-classification head); fine-tune it first (\`d2v finetune --task ctc --init ${dir} --data …\`)`);
}

/** `d2v transcribe` with one of our CTC checkpoints: one JSON line per file. */
export async function runAudioTranscribe(files: string[], o: { model: string; beam?: number }) {
  const modality = checkpointModality(o.model);
  if (modality !== "audio") throw new ConfigError(`${o.model} is a ${modality} model; d2v transcribe needs a speech transcriber (\`d2v finetune --task ctc\`, or a Hugging Face Data2VecAudioForCTC directory)`);
  if (files.length === 0) throw new DataError("pass at least one WAV or FLAC file");
  for (const f of files) if (!existsSync(f)) throw new DataError(`${f} does not exist`);
  await initEngine();
  const loaded = loadAudioCheckpoint(o.model);
  if (loaded.head?.config.kind !== "audio-ctc") throw new ConfigError(`${o.model} is not a transcriber; fine-tune one with \`d2v finetune --task ctc\``);
  const m = loaded.run.model;
  const clips: Clip[] = [];
  for (const f of files) {
    const x = await readAudio(f, m.sampleRate);
    clips.push({ name: basename(f), samples: m.normalize ? normalizeClip(x) : x });
  }
  const texts = await transcribeClips(loaded.head.params, m, loaded.head.config.vocabulary, clips, { beam: o.beam });
  disposeTree(loaded.head.params);
  files.forEach((f, i) => console.log(JSON.stringify({ file: basename(f), text: texts[i] })));
}

export async function runSynthSpeech(o: { out: string; hours: number; labeledMinutes: number; testMinutes: number; speakers: number; snr?: number; seed: number; jobs: number; force?: boolean }) {
  const summary = await synthesizeSpeech(resolve(o.out), { hours: o.hours, labeledMinutes: o.labeledMinutes, testMinutes: o.testMinutes, speakers: o.speakers, snr: o.snr ?? null, seed: o.seed, sampleRate: 16000, jobs: o.jobs }, log, o.force);
  console.log(JSON.stringify({ out: resolve(o.out), ...summary }));
}

export async function runSynthWords(o: { out: string; words: string; trainSpeakers: number; testSpeakers: number; takes: number; snr?: number; seed: number; jobs: number; force?: boolean }) {
  const settings = { words: o.words.split(","), trainSpeakers: o.trainSpeakers, testSpeakers: o.testSpeakers, takes: o.takes, snr: o.snr ?? null, seed: o.seed, sampleRate: 16000, jobs: o.jobs };
  const summary = await synthesizeWords(resolve(o.out), settings, log, o.force);
  console.log(JSON.stringify({ out: resolve(o.out), ...summary }));
}

/** Mean-pooled final states of each audio file (one JSON array per line), from any of our speech checkpoints. */
export async function runAudioEmbed(files: string[], o: { model: string }) {
  if (files.length === 0) throw new DataError("nothing to embed: pass audio files (WAV or FLAC)");
  const missing = files.find((f) => !existsSync(f));
  if (missing) throw new DataError(`${missing} does not exist`);
  await initEngine();
  const loaded = loadAudioCheckpoint(o.model);
  if (loaded.head) disposeTree({ head: loaded.head.params.head, projector: loaded.head.params.projector });
  const m = loaded.run.model;
  const clips = await clipsOf(files.map((path) => ({ path })), loaded.run, "audio");
  const states = await encoderStates(loaded.encoder, m, clips, 8);
  for (const { rows, frames } of states) {
    const mean = new Float64Array(m.dim);
    for (let f = 0; f < frames; f++) for (let d = 0; d < m.dim; d++) mean[d] += rows[f * m.dim + d] / frames;
    console.log(JSON.stringify(Array.from(mean, (x) => Number(x.toFixed(6)))));
  }
  disposeTree(loaded.encoder);
}
