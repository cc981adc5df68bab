/** `d2v` subcommands on Hugging Face model directories: run, transcribe, fill-mask, and the HF side of classify and embed. */
import { existsSync, writeFileSync } from "node:fs";
import { checkOutput, writeOutput } from "../train/output.js";
import { basename } from "node:path";
import { numpy as np, nn as jnn } from "../engine/jax.js";
import { ConfigError, DataError } from "../engine/errors.js";
import { initEngine } from "../engine/runtime.js";
import { encodeSafetensors, toFloat32 } from "../engine/safetensors.js";
import { audioForward, ctcGreedyDecode } from "../hf/audio.js";
import { exportHf } from "../hf/export.js";
import { ctcVocabulary, loadHfModel, loadTokenizer, processAudio, runHfModel, type HfModel } from "../hf/model.js";
import { textForward } from "../hf/text.js";
import { tokenizeBatch } from "../hf/processors.js";
import type { WeightsFormat } from "../hf/weights.js";

const log = (msg: string) => process.stderr.write(`${msg}\n`);

function checkFiles(m: HfModel, inputs: string[]): void {
  if (inputs.length === 0) throw new DataError(`pass at least one ${m.modality === "text" ? "text" : `${m.modality === "vision" ? "image" : "audio"} file`}`);
  if (m.modality !== "text") for (const f of inputs) if (!existsSync(f)) throw new DataError(`${f} does not exist`);
}

async function load(dir: string, weights?: WeightsFormat): Promise<HfModel> {
  await initEngine();
  const m = loadHfModel(dir, weights);
  if (m.unusedKeys.length) log(`note: ${m.unusedKeys.length} weights in ${dir} are not used by ${m.architecture} (e.g. ${m.unusedKeys.slice(0, 3).join(", ")})`);
  return m;
}

/** `d2v run`: one batch through processor and model; every output into a safetensors file (written atomically). */
export async function runHfRun(inputs: string[], o: { model: string; out: string; weights?: WeightsFormat; force?: boolean }) {
  const out = checkOutput(o.out, { flag: "--out", what: "outputs", kind: "file", force: o.force, inputs: [o.model, ...inputs] });
  const m = await load(o.model, o.weights);
  checkFiles(m, inputs);
  const { tensors, summary } = await runHfModel(m, o.model, inputs);
  await writeOutput(out, "file", (tmp) => writeFileSync(tmp, encodeSafetensors(tensors)));
  for (const [name, t] of tensors) log(`${name} ${t.dtype} [${t.shape.join(", ")}]`);
  console.log(JSON.stringify({ model: m.architecture, out, outputs: [...tensors.keys()], ...(summary.length ? { results: summary } : {}) }));
}

/** `d2v transcribe --model DIR`: each file on its own (no padding), greedy CTC. */
export async function runHfTranscribe(files: string[], o: { model: string }) {
  const m = await load(o.model);
  checkFiles(m, files);
  if (m.modality !== "audio" || !m.ctcHead) throw new ConfigError(`${o.model} is a ${m.architecture}; transcription needs a Data2VecAudioForCTC model`);
  const vocab = ctcVocabulary(o.model);
  for (const f of files) {
    const a = processAudio(o.model, [f]);
    const r = audioForward(m, np.array(a.values).reshape([1, a.length]), null);
    r.extractFeatures.dispose();
    r.hiddenStates.dispose();
    r.lastHiddenState.dispose();
    const ids = (await np.argmax(r.logits!, -1).astype(np.int32).data()) as Int32Array;
    console.log(JSON.stringify({ file: basename(f), text: ctcGreedyDecode(ids, vocab, m.hf.pad_token_id) }));
  }
}

/** `d2v fill-mask`: the top predictions at every <mask> of each text, with softmax probabilities. */
export async function runHfFillMask(texts: string[], o: { model: string; top: number }) {
  const m = await load(o.model);
  if (m.modality !== "text" || !m.mlm) throw new ConfigError(`${o.model} is a ${m.architecture}; fill-mask needs a Data2VecTextForMaskedLM model`);
  if (texts.length === 0) throw new DataError('pass at least one text containing <mask>, e.g. "Paris is the <mask> of France."');
  const tok = loadTokenizer(o.model);
  for (const text of texts) {
    const { ids, mask, seqLen } = tokenizeBatch(tok, [text]);
    const positions = [...ids.keys()].filter((t) => ids[t] === tok.mask);
    if (positions.length === 0) throw new DataError(`"${text}" has no <mask> token to fill`);
    const r = textForward(m, ids, mask, 1, seqLen);
    r.hiddenStates.dispose();
    r.lastHiddenState.dispose();
    const probs = (await jnn.softmax(r.logits!, -1).data()) as Float32Array;
    const V = m.config.vocabSize;
    const masks = positions.map((t) =>
      Array.from(probs.subarray(t * V, (t + 1) * V))
        .map((p, id) => ({ id, p }))
        .sort((a, b) => b.p - a.p)
        .slice(0, o.top)
        .map(({ id, p }) => ({ token: tok.decode([id]), id, score: Number(p.toFixed(6)) })),
    );
    console.log(JSON.stringify({ text, masks }));
  }
}

/** `d2v classify --model DIR`: texts, images or audio files by the model's modality; one JSON line per input. */
export async function runHfClassify(inputs: string[], o: { model: string; top: number }) {
  const m = await load(o.model);
  checkFiles(m, inputs);
  if (!m.classifier) throw new ConfigError(`${o.model} is a ${m.architecture}, which has no classification head; use a *ForSequenceClassification or *ForImageClassification model`);
  for (const input of inputs) {
    const { tensors } = await runHfModel(m, o.model, [input]);
    const logits = toFloat32(tensors.get("logits")!);
    const max = Math.max(...logits);
    const e = Array.from(logits, (v) => Math.exp(v - max));
    const sum = e.reduce((a, b) => a + b, 0);
    const top = e
      .map((v, k) => ({ label: m.labels?.[k] ?? String(k), probability: Number((v / sum).toFixed(6)) }))
      .sort((a, b) => b.probability - a.probability)
      .slice(0, o.top);
    console.log(JSON.stringify({ input: m.modality === "text" ? input : basename(input), label: top[0].label, top }));
  }
}

/**
 * `d2v embed --model DIR`: one vector per input: the pooled output where the model has a pooling layer norm
 * (vision with mean pooling), else the mean of the last hidden states over real tokens or frames.
 */
export async function runHfEmbed(inputs: string[], o: { model: string }) {
  const m = await load(o.model);
  checkFiles(m, inputs);
  for (const input of inputs) {
    const { tensors } = await runHfModel(m, o.model, [input]);
    const pooled = m.modality === "vision" && tensors.has("pooler_output") && m.poolerNorm ? toFloat32(tensors.get("pooler_output")!) : meanLast(tensors.get("last_hidden_state")!.shape, toFloat32(tensors.get("last_hidden_state")!), m.modality === "vision");
    console.log(JSON.stringify(Array.from(pooled, (x) => Number(x.toFixed(6)))));
  }
}

/** Mean over the positions of [1, T, D] (for vision, over the patch tokens only). Single inputs have no padding. */
function meanLast(shape: number[], h: Float32Array, skipFirst: boolean): Float32Array {
  const [, t, d] = shape;
  const out = new Float32Array(d);
  const start = skipFirst ? 1 : 0;
  for (let i = start; i < t; i++) for (let k = 0; k < d; k++) out[k] += h[i * d + k] / (t - start);
  return out;
}

/** `d2v export --hf DIR`: one of our checkpoints as a Hugging Face directory. */
export async function runHfExport(o: { model: string; hf: string; force?: boolean }) {
  const out = checkOutput(o.hf, { flag: "--hf", what: "Hugging Face directory", kind: "dir", force: o.force, inputs: [o.model] });
  await initEngine();
  const r = await exportHf(o.model, out);
  for (const n of r.notes) log(`note: ${n}`);
  log(`wrote ${r.outDir}: ${r.architecture}, ${r.tensors} tensors (load with transformers: AutoModel.from_pretrained("${r.outDir}"))`);
  console.log(JSON.stringify({ architecture: r.architecture, out: r.outDir, tensors: r.tensors }));
}
