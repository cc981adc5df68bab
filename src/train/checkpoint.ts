/**
 * Checkpoints are directories: `config.json`, `model.safetensors` (the parameters), optional extra
 * tensor files (`teacher.safetensors`, `optimizer.safetensors`), `state.json` (step, RNG and data-order
 * state) and any side files (the tokenizer). They are written atomically: everything goes to a sibling
 * temporary directory that is renamed into place, so a crash leaves either the old or the new checkpoint.
 */
import { disposeTree } from "../engine/typed.js";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { numpy as np } from "../engine/jax.js";
import { CheckpointError } from "../engine/errors.js";
import { decodeSafetensors, encodeSafetensors, f32Tensor, toFloat32, type HostTensor } from "../engine/safetensors.js";
import { fillTree, namedLeaves } from "../engine/tree.js";
import { recoverInterruptedReplace, writeOutput } from "./output.js";

export type CheckpointContents = {
  config: unknown;
  /** Tensor files: file name (without extension) → parameter tree. `model` holds the trainable parameters. */
  trees: Record<string, unknown>;
  state?: unknown;
  /** Extra files written verbatim (e.g. `vocab.json`, `merges.txt`). */
  files?: Record<string, string | Uint8Array>;
};

/** Host copies of a parameter tree as named float32 tensors (the tree stays usable). */
export async function treeToTensors(t: unknown): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  for (const [name, a] of namedLeaves(t)) {
    const data = (await a.ref.data()) as Float32Array;
    out.set(name, f32Tensor(a.shape, data));
  }
  return out;
}

/** Writes a checkpoint directory atomically (replacing an existing one; see `writeOutput`). */
export async function saveCheckpoint(dir: string, c: CheckpointContents): Promise<void> {
  await writeOutput(dir, "dir", async (tmp) => {
    writeFileSync(join(tmp, "config.json"), JSON.stringify(c.config, null, 2) + "\n");
    for (const [name, t] of Object.entries(c.trees)) {
      writeFileSync(join(tmp, `${name}.safetensors`), encodeSafetensors(await treeToTensors(t), { format: "d2v" }));
    }
    if (c.state !== undefined) writeFileSync(join(tmp, "state.json"), JSON.stringify(c.state) + "\n");
    for (const [name, content] of Object.entries(c.files ?? {})) writeFileSync(join(tmp, name), content);
  });
}

/** Writes a file through a temporary name and a rename, so a crash leaves the old file or the new one, never half of one. */
export function writeFileAtomic(path: string, text: string): void {
  writeFileSync(path + ".tmp", text);
  renameSync(path + ".tmp", path);
}

export function readCheckpointJson(dir: string, file: string): unknown {
  const path = join(dir, file);
  if (!existsSync(path)) {
    throw new CheckpointError(`${dir} is not a complete checkpoint: ${file} is missing (pass a directory written by \`d2v pretrain\` or \`d2v finetune\`)`);
  }
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CheckpointError(`${path} is corrupt: ${(e as Error).message}`);
  }
}

/** Reads `name.safetensors` into the structure of `like`; every name and shape must match. */
export function loadTree<T>(dir: string, name: string, like: T, opts: { consumeLike?: boolean } = {}): T {
  const path = join(dir, `${name}.safetensors`);
  if (!existsSync(path)) throw new CheckpointError(`${dir} is not a complete checkpoint: ${name}.safetensors is missing`);
  const { tensors } = decodeSafetensors(new Uint8Array(readFileSync(path)), path);
  const expected = new Set(namedLeaves(like).map(([n]) => n));
  const extra = [...tensors.keys()].filter((k) => !expected.has(k));
  if (extra.length > 0) {
    throw new CheckpointError(`${path} holds tensors the model does not have (${extra.slice(0, 3).join(", ")}${extra.length > 3 ? ", …" : ""}); it was written for a different architecture`);
  }
  return fillTree(like, (leafName, leaf) => {
    const t = tensors.get(leafName);
    if (!t) throw new CheckpointError(`${path} lacks tensor ${leafName}; it was written for a different architecture`);
    if (t.shape.join(",") !== leaf.shape.join(",")) {
      throw new CheckpointError(`${path}: tensor ${leafName} has shape [${t.shape}] but the model expects [${leaf.shape}] (config and weights disagree)`);
    }
    const shape = leaf.shape;
    if (opts.consumeLike) leaf.dispose();
    return np.array(toFloat32(t)).reshape(shape);
  });
}

/** `runs/x` and `runs/x/checkpoint` both name the checkpoint of a run directory. */
export function resolveCheckpoint(path: string): string {
  // A checkpoint swap that a killed process left half done is finished first (see recoverInterruptedReplace).
  if (!existsSync(path)) recoverInterruptedReplace(resolve(path));
  else if (!existsSync(join(path, "config.json"))) recoverInterruptedReplace(resolve(path, "checkpoint"));
  if (existsSync(join(path, "config.json"))) return path;
  if (existsSync(join(path, "checkpoint", "config.json"))) return join(path, "checkpoint");
  throw new CheckpointError(`${path} is not a checkpoint: it has no config.json (pass a directory written by \`d2v pretrain\` or \`d2v finetune\`)`);
}

/** The modality (text, vision, audio) a checkpoint directory holds: ours from its run config, a Hugging Face one from its model_type. */
export function checkpointModality(path: string): string {
  const dir = resolveCheckpoint(path);
  const raw = readCheckpointJson(dir, "config.json") as { kind?: string; modality?: string; run?: { modality?: string }; model_type?: unknown };
  const ours = raw.modality ?? raw.run?.modality;
  if (ours) return ours;
  if (typeof raw.model_type === "string") {
    const m = /^data2vec-(text|vision|audio)$/.exec(raw.model_type);
    if (m) return m[1];
    throw new CheckpointError(`${dir} holds a ${raw.model_type} model (model_type in config.json), not a data2vec one; pass a data2vec-text, data2vec-vision or data2vec-audio checkpoint`);
  }
  return "unknown";
}

/** The encoder (shared input side and blocks) of a pretraining run's checkpoint, read into `like` (consumed); the regression head is freed. */
export function loadPretrainedEncoder<Shared, Layer>(dir: string, like: { shared: Shared; layers: Layer[]; head: unknown }): { shared: Shared; layers: Layer[] } {
  const { shared, layers, head } = loadTree(dir, "model", like, { consumeLike: true });
  disposeTree(head);
  return { shared, layers };
}

/**
 * Reads the checkpoint at `path` (a run directory or its checkpoint folder) with the reader that its config's
 * `kind` names; any other kind is refused with the kinds `what` (a modality) has.
 */
export function readCheckpointOfKind<T>(path: string, what: string, readers: Record<string, (raw: { kind: string }, dir: string) => T>): T {
  const dir = resolveCheckpoint(path);
  const raw = readCheckpointJson(dir, "config.json") as { kind?: unknown };
  const kind = typeof raw.kind === "string" && Object.hasOwn(readers, raw.kind) ? raw.kind : null;
  if (kind === null) throw new CheckpointError(`${dir}/config.json has kind ${JSON.stringify(raw.kind)}; expected a ${what} checkpoint (${Object.keys(readers).join(" or ")})`);
  return readers[kind]({ ...raw, kind }, dir);
}

/** Writes a fine-tuned model: its config (its `kind`, run config, labels, settings), its parameters and side files (a tokenizer). */
export async function saveModel(dir: string, params: unknown, config: { kind: string }, files?: Record<string, string>): Promise<void> {
  await saveCheckpoint(dir, { config, trees: { model: params }, files });
}

/**
 * A checkpoint as a modality reads it: a pretraining run (`data2vec-pretrain`) or a fine-tuned model of one of its
 * kinds, with its run config and encoder; `Fitted` (a fine-tuned model's head with its labels) is present for those.
 */
export type LoadedCheckpoint<Kind extends string, Run, Encoder, Fitted> = {
  kind: "data2vec-pretrain" | Kind;
  dir: string;
  run: Run;
  encoder: Encoder;
  classifier?: Fitted;
};
