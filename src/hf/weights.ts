/**
 * A Hugging Face model directory (`config.json` + `model.safetensors` and/or `pytorch_model.bin`) and a
 * state-dict accessor that turns named tensors into model parameters with shape checks against the config.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { numpy as np } from "../engine/jax.js";
import { CheckpointError, ConfigError } from "../engine/errors.js";
import { decodeSafetensors, toFloat32, type HostTensor } from "../engine/safetensors.js";
import { readJsonFile } from "../config/validate.js";
import type { LayerNormParams, LinearParams } from "../nn/layers.js";
import { readTorchBin } from "./torch-bin.js";

export type WeightsFormat = "safetensors" | "bin";

export type HfDirectory = {
  dir: string;
  config: Record<string, unknown>;
  tensors: Map<string, HostTensor>;
  /** The weights file that was read. */
  weightsFile: string;
};

/** The weight files present in a model directory, in the order they are preferred. */
export function weightFiles(dir: string): { format: WeightsFormat; path: string }[] {
  const out: { format: WeightsFormat; path: string }[] = [];
  if (existsSync(join(dir, "model.safetensors"))) out.push({ format: "safetensors", path: join(dir, "model.safetensors") });
  if (existsSync(join(dir, "pytorch_model.bin"))) out.push({ format: "bin", path: join(dir, "pytorch_model.bin") });
  return out;
}

/** Reads `config.json` and one weights file (safetensors first, unless `format` picks one). */
export function readHfDirectory(dir: string, format?: WeightsFormat): HfDirectory {
  if (!existsSync(join(dir, "config.json"))) {
    throw new CheckpointError(`${dir} has no config.json: a Hugging Face model directory needs config.json plus model.safetensors or pytorch_model.bin`);
  }
  const config = readJsonFile(join(dir, "config.json"), "model config");
  if (!config || typeof config !== "object" || Array.isArray(config)) throw new ConfigError(`${join(dir, "config.json")} is not a JSON object`);
  const files = weightFiles(dir).filter((f) => !format || f.format === format);
  if (files.length === 0) {
    const which = format === "bin" ? "pytorch_model.bin" : format === "safetensors" ? "model.safetensors" : "model.safetensors or pytorch_model.bin";
    throw new CheckpointError(`${dir} has no ${which}; download the weights into the directory next to config.json`);
  }
  const { format: f, path } = files[0];
  const bytes = new Uint8Array(readFileSync(path));
  const tensors = f === "safetensors" ? decodeSafetensors(bytes, path).tensors : readTorchBin(bytes, path);
  return { dir, config: config as Record<string, unknown>, tensors, weightsFile: path };
}

const shapeText = (s: readonly number[]) => `[${s.join(", ")}]`;

/**
 * Named access to a state dict. Names are looked up with the base-model prefix (`data2vec_text.`) and then
 * without it, as HF's `base_model_prefix` logic does; head weights are looked up as given. Every read checks
 * the shape that the config implies and names the key and both shapes when they differ.
 */
export class StateDict {
  readonly #used = new Set<string>();
  constructor(
    readonly tensors: Map<string, HostTensor>,
    readonly prefix: string,
    readonly source: string,
  ) {}

  /** The stored key for a base-model name, or null. */
  key(name: string): string | null {
    if (this.tensors.has(this.prefix + name)) return this.prefix + name;
    if (this.tensors.has(name)) return name;
    return null;
  }

  has(name: string): boolean {
    return this.key(name) !== null;
  }

  /** The tensor as float32 host data, checked against `shape`. */
  host(name: string, shape: readonly number[]): Float32Array {
    const key = this.key(name);
    if (!key) throw new CheckpointError(`${this.source} lacks the weight ${this.prefix}${name} (shape ${shapeText(shape)}) that the config needs`);
    const t = this.tensors.get(key)!;
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(`${this.source}: ${key} has shape ${shapeText(t.shape)} but the config implies ${shapeText(shape)}; config.json and the weights do not belong together`);
    }
    this.#used.add(key);
    return toFloat32(t);
  }

  array(name: string, shape: readonly number[]): np.Array {
    return np.array(this.host(name, shape)).reshape([...shape]);
  }

  /** A torch Linear (`weight [out, in]`, `bias [out]`) as our LinearParams (`weight [in, out]`). */
  linear(name: string, inDim: number, outDim: number, bias = true): LinearParams {
    const weight = this.array(`${name}.weight`, [outDim, inDim]).transpose([1, 0]).add(0);
    return bias ? { weight, bias: this.array(`${name}.bias`, [outDim]) } : { weight };
  }

  layerNorm(name: string, dim: number): LayerNormParams {
    return { weight: this.array(`${name}.weight`, [dim]), bias: this.array(`${name}.bias`, [dim]) };
  }

  /** Integer buffers that are recomputed here rather than read (position ids, relative position index). */
  markBuffer(name: string): void {
    const key = this.key(name);
    if (key) this.#used.add(key);
  }

  /** Stored keys that no part of the model read (reported, not an error: HF also ignores unexpected keys). */
  unused(): string[] {
    return [...this.tensors.keys()].filter((k) => !this.#used.has(k));
  }
}
