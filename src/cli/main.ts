#!/usr/bin/env node
/** The `d2v` command line. */
import "../engine/shims.js";
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { describeEngine, initEngine } from "../engine/runtime.js";
import { D2vError, heapFullMessage, INTERNAL_ERROR_EXIT_STATUS, InterruptedError, isHeapFull, SIGNAL_EXIT_STATUS, systemErrorMessage, userErrorStatus } from "../engine/errors.js";
import { runClassify, runConfig, runEmbed, runEval, runFinetune, runPretrain } from "./commands.js";
import { runData, runDebianSections, runTokenize } from "./text-commands.js";
import { runHfExport, runHfFillMask, runHfRun, runHfTranscribe } from "./hf-commands.js";
import { runAudioTranscribe, runSynthSpeech, runSynthWords } from "./audio-commands.js";
import { COMMAND_WORDS } from "../audio/synth.js";
import { isHfModelDir } from "../hf/model.js";
import { runExperimentCommand } from "./experiment-command.js";
import { runCheckFairseq } from "./fairseq-command.js";

function int(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`);
    return n;
  };
}
function num(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
    return n;
  };
}

const program = new Command()
  .name("d2v")
  .description("data2vec: self-supervised pretraining for speech, images and text, fine-tuning, evaluation and embeddings")
  .option("-V, --version", "the version and the compute engine (native OpenBLAS or wasm; D2V_ENGINE chooses)")
  .showHelpAfterError();

program
  .command("pretrain")
  .description("pretrain a data2vec model on unlabeled data (default: the Brown corpus's training documents for text, MNIST for vision)")
  .addOption(new Option("--modality <m>", "input modality (default text; on --resume, the run's)").choices(["text", "vision", "audio"]))
  .option("--data <path>", "text: a .txt file (documents separated by blank lines) or a folder of .txt files; vision: a folder of images; audio: a folder of WAV/FLAC files or a fairseq .tsv manifest (all recursive)")
  .option("--preset <name>", "text: tiny | small | base | large; vision and audio: tiny | small | base (default tiny), audio also tiny-mel (log mel frames); each but large also as data2vec 2.0: tiny-v2 | small-v2 | base-v2")
  .addOption(new Option("--objective <o>", "data2vec (v1) or data2vec2 (data2vec 2.0: visible-only student, several masks per sample, conv decoder): picks the preset's -v2 version").choices(["data2vec", "data2vec2"]))
  .option("--config <file.json>", "a JSON file of settings merged over the preset (see `d2v config`)")
  .option("--out <dir>", "run directory (checkpoint/, metrics.jsonl)")
  .option("--tokenizer <dir>", "text: use this vocab.json + merges.txt instead of training a vocabulary")
  .option("--init <dir>", "continue pretraining from a checkpoint: a Hugging Face data2vec directory (e.g. facebook/data2vec-audio-base) or a `d2v pretrain` run; its network and tokenizer are kept, student and teacher start from its weights")
  .option("--steps <n>", "optimizer updates", int("--steps"))
  .option("--batch-size <n>", "sequences (images) per batch", int("--batch-size"))
  .option("--lr <x>", "peak learning rate", num("--lr"))
  .option("--seed <n>", "random seed", int("--seed"))
  .option("--resume", "continue the checkpoint in --out exactly where it stopped, with its saved settings (--steps and --data may change)")
  .option("--force", "start over even if --out already holds a checkpoint (or write the run into a folder that holds other files)")
  .option("--quiet", "no progress output")
  .action(runPretrain);

program
  .command("finetune")
  .description("fine-tune a classifier (text, images or audio) or a CTC transcriber (speech), from a pretrained checkpoint or from scratch")
  .option("--data <path>", 'labeled training data: text .jsonl lines {"text", "label"}, or a folder per class (texts or images); vision default: MNIST')
  .addOption(new Option("--modality <m>", "for --scratch without --init (default text)").choices(["text", "vision", "audio"]))
  .addOption(new Option("--task <task>", "audio: ctc (transcription; --data in the LibriSpeech layout) or classify (a folder per class or a labeled manifest)").choices(["ctc", "classify"]))
  .option("--max-seconds <s>", "audio: longest utterance (ctc, an error beyond it) or crop length (classify)", num("--max-seconds"))
  .option("--no-freeze-feature-encoder", "audio ctc: also train the CNN feature encoder (frozen by default, as in the paper; batches then hold at most 8 s of audio)")
  .option("--mask-prob <p>", "audio ctc: time-masking probability during fine-tuning (0.25)", num("--mask-prob"))
  .option("--head-only-updates <n>", "audio ctc: only the CTC head learns for the first n updates (fairseq's freeze_finetune_updates: 10000 of 20000 for 10 h of labels, 0 for 100 h and more; default 0)", int("--head-only-updates"))
  .option("--init <dir>", "pretrained checkpoint: a `d2v pretrain` run directory, or a Hugging Face data2vec directory (e.g. facebook/data2vec-text-base; its head is kept when it fits the data's classes)")
  .option("--new-head", "with a --init that has a classification or CTC head: train a new head for the data's classes instead")
  .option("--scratch", "random weights with the architecture and tokenizer of --init (or of --preset with --tokenizer)")
  .option("--preset <name>", "architecture for --scratch without --init (default tiny)")
  .option("--per-class <n>", "vision: train on this many labeled images per class (default with MNIST: 8, i.e. 1% of the labels)", int("--per-class"))
  .option("--linear-probe", "vision and audio classification: freeze the encoder and train only a head on its mean-pooled features (audio: each feature standardized first)")
  .option("--augment", "vision: fine-tune on augmented views (the run's crop and color jitter; the default, with 80 epochs)")
  .option("--no-augment", "vision: fine-tune on the images as they are (40 epochs by default)")
  .option("--layer-decay <x>", "vision: layer-wise learning-rate decay, block i of L at x^(L+1-i) of the rate (default 0.65 from a Hugging Face directory, as the paper fine-tunes; else 1, off)", num("--layer-decay"))
  .option("--config <file.json>", "settings merged over --preset (with --scratch and no --init)")
  .option("--tokenizer <dir>", "vocab.json + merges.txt for --scratch without --init")
  .option("--eval-data <path>", "held-out labeled data evaluated after training (vision default with MNIST: its test split)")
  .requiredOption("--out <dir>", "where the fine-tuned checkpoint is written (a new path; see --force)")
  .option("--force", "replace --out if it exists (never `.`, your home, or an input such as --init)")
  .option("--epochs <n>", "passes over the training data (text 10; vision 80, or 40 with --no-augment)", int("--epochs"))
  .option("--batch-size <n>", "examples per batch (16)", int("--batch-size"))
  .option("--accumulate <n>", "gradient accumulation: one optimizer update per n batches, with their mean gradient (an effective batch of n × --batch-size in the memory of one batch)", int("--accumulate"))
  .option("--lr <x>", "peak learning rate (text 1e-4; vision 1e-3, linear probe 1e-2)", num("--lr"))
  .option("--weight-decay <x>", "AdamW weight decay (text 0.01; vision 0.05, linear probe 1e-4)", num("--weight-decay"))
  .option("--max-len <n>", "truncate examples to this many tokens", int("--max-len"))
  .option("--seed <n>", "random seed (head initialization, order, dropout)", int("--seed"), 1)
  .addOption(new Option("--pool <how>", "text: the head reads the <s> state (RoBERTa, the default) or the mean over tokens").choices(["first", "mean"]))
  .option("--pool-norm", "text and audio classification: layer norm on the pooled state before the head")
  .option("--quiet", "no progress output")
  .action(runFinetune);

program
  .command("eval")
  .description("evaluate a fine-tuned classifier; the last line is the metrics as JSON")
  .requiredOption("--model <dir>", "a `d2v finetune` checkpoint")
  .option("--data <path>", "labeled data (.jsonl or a folder per class); vision default: the MNIST test split")
  .option("--batch-size <n>", "examples per batch (text 32; vision: the fine-tuning batch size)", int("--batch-size"))
  .option("--beam <n>", "speech: CTC prefix beam search with this width (default: greedy)", int("--beam"))
  .action(runEval);

program
  .command("embed")
  .description("embeddings (one JSON array per line): texts or audio files (mean-pooled frames) with our checkpoints; texts, images or WAV files with a Hugging Face directory")
  .requiredOption("--model <dir>", "a pretrained or fine-tuned checkpoint, or a Hugging Face data2vec directory")
  .option("--file <path>", "read texts from this file, one per line")
  .addOption(new Option("--pool <how>", "our text checkpoints: mean over tokens, or the <s> state").choices(["mean", "first"]).default("mean"))
  .argument("[inputs...]", "texts, or audio files for speech models, or image files for Hugging Face vision models")
  .action(runEmbed);

program
  .command("classify")
  .description("classify inputs with a fine-tuned model (one JSON line per input)")
  .requiredOption("--model <dir>", "a `d2v finetune` text or vision classifier, or a Hugging Face *ForImageClassification / *ForSequenceClassification directory")
  .option("--top <n>", "how many classes to list", int("--top"), 3)
  .argument("<inputs...>", "texts for text classifiers, image files (PNG, JPEG, WebP, ...) for vision ones, WAV files for Hugging Face audio classifiers")
  .action(runClassify);

program
  .command("transcribe")
  .description("transcribe audio files with a CTC speech model (one JSON line per file)")
  .requiredOption("--model <dir>", "a `d2v finetune --task ctc` checkpoint, or a Hugging Face Data2VecAudioForCTC directory (e.g. facebook/data2vec-audio-base-960h)")
  .option("--beam <n>", "our checkpoints: CTC prefix beam search with this width (default: greedy)", int("--beam"))
  .argument("<files...>", "WAV or FLAC files (any rate; resampled to the model's); Hugging Face models: WAV")
  .action((files: string[], o: { model: string; beam?: number }) => (isHfModelDir(o.model) ? runHfTranscribe(files, o) : runAudioTranscribe(files, o)));

program
  .command("fill-mask")
  .description("predict the tokens at <mask> (one JSON line per text)")
  .requiredOption("--model <dir>", "a Hugging Face Data2VecTextForMaskedLM directory (e.g. facebook/data2vec-text-base)")
  .option("--top <n>", "predictions per <mask>", int("--top"), 5)
  .argument("<texts...>", 'texts with <mask>, e.g. "Paris is the <mask> of France."')
  .action(runHfFillMask);

program
  .command("export")
  .description("write a trained checkpoint as a Hugging Face model directory (config.json + model.safetensors + tokenizer/processor files)")
  .requiredOption("--model <dir>", "a `d2v pretrain` or `d2v finetune` checkpoint (text, vision or speech)")
  .requiredOption("--hf <dir>", "the Hugging Face directory to write (a new path; written atomically)")
  .option("--force", "replace --hf if it exists (never the --model directory)")
  .action(runHfExport);

program
  .command("run")
  .description("run inputs as one batch through a Hugging Face model's processor and model, exactly as transformers does, and save every output")
  .requiredOption("--model <dir>", "a Hugging Face data2vec directory (config.json + model.safetensors or pytorch_model.bin)")
  .requiredOption("--out <file.safetensors>", "where the outputs go (input ids/values/pixels, masks, hidden_states, last_hidden_state, pooler_output, logits)")
  .option("--force", "replace --out if it exists")
  .addOption(new Option("--weights <format>", "which weights file to read when both exist").choices(["safetensors", "bin"]))
  .argument("<inputs...>", "texts, image files or WAV files, by the model's modality")
  .action(runHfRun);

program
  .command("tokenize")
  .description("token ids of each text as a JSON array, one line per text")
  .requiredOption("--tokenizer <dir>", "a directory with vocab.json and merges.txt (or a checkpoint)")
  .option("--no-special", "without <s> … </s>")
  .argument("<texts...>", "texts to tokenize")
  .action(runTokenize);

program
  .command("experiment")
  .description(
    "run a grid of pretrain → fine-tune → evaluate jobs over settings × seeds from a JSON file, then write a report " +
      "(Markdown table, the paper's claims checked, SVG plots); a rerun skips finished jobs and resumes pretraining " +
      "(see experiments/*.json)",
  )
  .argument("<file.json>", "the experiment file")
  .option("--out <dir>", "where runs and the report go (default runs/experiments/<name>)")
  .option("--report-only", "write the report from the jobs finished so far, run nothing")
  .action(runExperimentCommand);

program
  .command("check-fairseq")
  .description(
    "prove our training step equals the official fairseq data2vec code: for each fixture folder (fairseq's weights, " +
      "inputs and mask), compare the loss, predictions, targets, every gradient, the EMA teacher and a second step " +
      "(|Δ| ≤ 1e-4); one JSON line per folder, exit status 1 if any fails",
  )
  .argument("<dirs...>", "fixture folders, e.g. ../shared/fixtures/fairseq/v1-text")
  .action(runCheckFairseq);

program
  .command("config")
  .description("print the full configuration of a preset (a starting point for --config files)")
  .option("--preset <name>", "text: tiny | small | base | large; vision and audio: tiny | small | base, audio also tiny-mel; data2vec 2.0: tiny-v2 | small-v2 | base-v2", "tiny")
  .addOption(new Option("--modality <m>", "input modality").choices(["text", "vision", "audio"]).default("text"))
  .addOption(new Option("--objective <o>", "data2vec or data2vec2 (the preset's data2vec 2.0 version)").choices(["data2vec", "data2vec2"]))
  .action(runConfig);

const data = program.command("data").description("build demo datasets");
data
  .command("synth-speech")
  .description("a synthetic speech corpus in the LibriSpeech layout: Brown-corpus sentences read by espeak-ng (must be installed: apt-get install espeak-ng) with varied voices, rates and pitches, at 16 kHz; splits pretrain/, train/ and test/")
  .requiredOption("--out <dir>", "output directory (a new path; written atomically)")
  .option("--force", "replace --out if it exists")
  .option("--hours <h>", "hours of the unlabeled pretraining split", num("--hours"), 2)
  .option("--labeled-minutes <m>", "minutes of the labeled training split", num("--labeled-minutes"), 15)
  .option("--test-minutes <m>", "minutes of the test split", num("--test-minutes"), 8)
  .option("--speakers <n>", "voices (accent + variant pairs), each with its own rate and pitch", int("--speakers"), 24)
  .option("--snr <dB>", "add white noise at a signal-to-noise ratio drawn from [snr, snr + 10] dB", num("--snr"))
  .option("--seed <n>", "sentence order, voices and noise", int("--seed"), 2022)
  .option("--jobs <n>", "espeak-ng processes at once", int("--jobs"), 4)
  .action(runSynthSpeech);
data
  .command("synth-words")
  .description("spoken words for keyword spotting (like Speech Commands), read by espeak-ng (apt-get install espeak-ng) at 16 kHz: train/<word>/ and test/<word>/, the test split read by voices the training split never heard")
  .requiredOption("--out <dir>", "output directory (a new path; written atomically)")
  .option("--force", "replace --out if it exists")
  .option("--words <list>", "comma-separated words", COMMAND_WORDS.join(","))
  .option("--train-speakers <n>", "voices reading the training split", int("--train-speakers"), 16)
  .option("--test-speakers <n>", "other voices reading the test split", int("--test-speakers"), 8)
  .option("--takes <n>", "readings of each word per voice, each at its own rate and pitch", int("--takes"), 3)
  .option("--snr <dB>", "add white noise at a signal-to-noise ratio drawn from [snr, snr + 10] dB", num("--snr"))
  .option("--seed <n>", "voices, rates, pitches and noise", int("--seed"), 2022)
  .option("--jobs <n>", "espeak-ng processes at once", int("--jobs"), 4)
  .action(runSynthWords);
data
  .command("brown-genre")
  .description("genre classification from the Brown corpus: train.jsonl (small labeled subset), test.jsonl, pretrain/ (unlabeled training documents)")
  .requiredOption("--out <dir>", "output directory (a new path; written atomically)")
  .option("--force", "replace --out if it exists")
  .option("--per-class <n>", "labeled training passages per genre", int("--per-class"), 16)
  .option("--test-per-class <n>", "test passages per genre", int("--test-per-class"), 60)
  .option("--seed <n>", "split seed", int("--seed"), 2022)
  .action(runData);
data
  .command("debian-sections")
  .description(
    "topic classification of Debian package descriptions by archive section (admin, games, graphics, mail, net, science, sound, text), from this machine's apt lists: train.jsonl, test.jsonl, pretrain/ (the unlabeled descriptions of the training source packages); split by source package",
  )
  .requiredOption("--out <dir>", "output directory (a new path; written atomically)")
  .option("--force", "replace --out if it exists")
  .option("--packages <file>", "a Packages file (apt-cache dumpavail) instead of this machine's apt lists; with --translations")
  .option("--translations <file>", "a Translation-en file (long descriptions by Description-md5); with --packages")
  .option("--per-class <n>", "labeled training descriptions per section", int("--per-class"), 16)
  .option("--test-per-class <n>", "test descriptions per section", int("--test-per-class"), 60)
  .option("--seed <n>", "split seed", int("--seed"), 2022)
  .action(runDebianSections);

try {
  const args = process.argv.slice(2);
  if (args.length === 1 && (args[0] === "--version" || args[0] === "-V")) {
    // The version and the engine that would compute: native (OpenBLAS, its core type, threads) or wasm.
    const info = await initEngine();
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
    process.stdout.write(`d2v ${pkg.version}\nengine: ${describeEngine(info)}\n`);
  } else await program.parseAsync();
} catch (e) {
  if (e instanceof D2vError) {
    process.stderr.write(`\nerror: ${e.message}\n`);
    // A collapse is a finding, not a usage error: experiments tell it apart by the status.
    if (e instanceof InterruptedError) process.exit(SIGNAL_EXIT_STATUS[e.signal]);
    process.exit(userErrorStatus(e));
  }
  // A file system failure (permissions, a full disk, a path that is a file) is the user's to fix: no stack trace.
  const system = systemErrorMessage(e);
  if (system) {
    process.stderr.write(`\nerror: ${system}\n`);
    process.exit(2);
  }
  // The engine's heap is full: a run too large for memory (the pre-flight estimate let it through).
  if (isHeapFull(e)) {
    process.stderr.write(`\nerror: ${heapFullMessage(e)}\n`);
    process.exit(2);
  }
  // Anything else is a bug in d2v, not the user's doing: say so in one line; the stack trace is there on request.
  const err = e as Error;
  process.stderr.write(
    `\nerror: an internal error, a bug in d2v: ${err?.name ?? "Error"}: ${err?.message ?? String(e)}\n` +
      (process.env.D2V_DEBUG ? `${err?.stack ?? ""}\n` : "Please report it with the command you ran; D2V_DEBUG=1 shows the stack trace.\n"),
  );
  process.exit(INTERNAL_ERROR_EXIT_STATUS);
}
