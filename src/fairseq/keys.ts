/**
 * Key maps between fairseq's data2vec state dicts and our parameter trees. A map is a list of entries (fairseq
 * key → path in our tree, and how the tensor is laid out), used in both directions: to load fairseq weights and
 * to name our gradients and teacher tensors as fairseq does.
 */
import { numpy as np } from "../engine/jax.js";
import { CheckpointError } from "../engine/errors.js";
import { toFloat32, type HostTensor } from "../engine/safetensors.js";

/**
 * How a fairseq tensor is stored in our tree: `same` (identical layout), `linear` (torch's [out, in] is our
 * [in, out]), `conv` (torch's Conv1d [out, in/groups, k] is our im2col weight: [k·in, out], or [G, k·in/G, out/G]
 * for grouped convolutions, row index = tap·in + channel).
 */
export type Layout = { kind: "same" } | { kind: "linear" } | { kind: "conv"; groups: number };
export type KeyEntry = { fairseq: string; path: (string | number)[]; layout: Layout };

const SAME: Layout = { kind: "same" };
const LINEAR: Layout = { kind: "linear" };

export function linearEntries(fairseq: string, path: (string | number)[], bias = true): KeyEntry[] {
  const out: KeyEntry[] = [{ fairseq: `${fairseq}.weight`, path: [...path, "weight"], layout: LINEAR }];
  if (bias) out.push({ fairseq: `${fairseq}.bias`, path: [...path, "bias"], layout: SAME });
  return out;
}

export function layerNormEntries(fairseq: string, path: (string | number)[]): KeyEntry[] {
  return [
    { fairseq: `${fairseq}.weight`, path: [...path, "weight"], layout: SAME },
    { fairseq: `${fairseq}.bias`, path: [...path, "bias"], layout: SAME },
  ];
}

export function same(fairseq: string, path: (string | number)[]): KeyEntry {
  return { fairseq, path, layout: SAME };
}

/** A post-LN transformer block (`TransformerEncoderLayer` / `TransformerSentenceEncoderLayer`) under `prefix`. */
export function postLnBlockEntries(prefix: string, path: (string | number)[]): KeyEntry[] {
  return [
    ...linearEntries(`${prefix}.self_attn.q_proj`, [...path, "attn", "q"]),
    ...linearEntries(`${prefix}.self_attn.k_proj`, [...path, "attn", "k"]),
    ...linearEntries(`${prefix}.self_attn.v_proj`, [...path, "attn", "v"]),
    ...linearEntries(`${prefix}.self_attn.out_proj`, [...path, "attn", "out"]),
    ...layerNormEntries(`${prefix}.self_attn_layer_norm`, [...path, "attnNorm"]),
    ...linearEntries(`${prefix}.fc1`, [...path, "ffn", "fc1"]),
    ...linearEntries(`${prefix}.fc2`, [...path, "ffn", "fc2"]),
    ...layerNormEntries(`${prefix}.final_layer_norm`, [...path, "ffnNorm"]),
  ];
}

/** A fairseq tensor in our layout (host data, shape). */
export function toOurs(t: HostTensor, layout: Layout, key: string): { data: Float32Array; shape: number[] } {
  const data = toFloat32(t);
  if (layout.kind === "same") return { data, shape: t.shape };
  if (layout.kind === "linear") {
    if (t.shape.length !== 2) throw new CheckpointError(`${key}: a linear weight must be 2-D, got [${t.shape}]`);
    const [o, i] = t.shape;
    const out = new Float32Array(o * i);
    for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[c * o + r] = data[r * i + c];
    return { data: out, shape: [i, o] };
  }
  const [o, ig, k] = t.shape;
  const g = layout.groups;
  const out = new Float32Array(o * ig * k);
  forConvIndex(o, ig, k, g, (ours, theirs) => (out[ours] = data[theirs]));
  // Ours: [G, k·ig, o/G] (or [k·ig, o] when G = 1); row = tap·ig + channel within the group.
  return { data: out, shape: g === 1 ? [k * ig, o] : [g, k * ig, o / g] };
}

/** Visits every conv weight element as (index in our im2col layout, index in torch's [out, in/groups, k]). */
function forConvIndex(o: number, ig: number, k: number, groups: number, visit: (ours: number, theirs: number) => void): void {
  const og = o / groups;
  for (let gi = 0; gi < groups; gi++)
    for (let oc = 0; oc < og; oc++)
      for (let c = 0; c < ig; c++) for (let tap = 0; tap < k; tap++) visit((gi * k * ig + tap * ig + c) * og + oc, ((gi * og + oc) * ig + c) * k + tap);
}

/** Our tensor (host data in our layout) in fairseq's layout, given fairseq's shape. */
export function toFairseq(data: Float32Array, layout: Layout, fairseqShape: number[]): Float32Array {
  if (layout.kind === "same") return data;
  if (layout.kind === "linear") {
    const [o, i] = fairseqShape;
    const out = new Float32Array(o * i);
    for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[r * i + c] = data[c * o + r];
    return out;
  }
  const [o, ig, k] = fairseqShape;
  const out = new Float32Array(o * ig * k);
  forConvIndex(o, ig, k, layout.groups, (ours, theirs) => (out[theirs] = data[ours]));
  return out;
}

type Tree = { [k: string]: unknown } | unknown[];

/** Builds our parameter tree from a fairseq state dict (every entry must be there, with a sane shape). */
export function buildTree(entries: KeyEntry[], tensors: Map<string, HostTensor>, what: string): Tree {
  const root: Tree = {};
  for (const e of entries) {
    const t = tensors.get(e.fairseq);
    if (!t) throw new CheckpointError(`${what} lacks ${e.fairseq}`);
    const { data, shape } = toOurs(t, e.layout, e.fairseq);
    let node = root as Record<string | number, unknown>;
    e.path.forEach((part, i) => {
      if (i === e.path.length - 1) node[part] = np.array(data).reshape(shape);
      else {
        if (node[part] === undefined) node[part] = typeof e.path[i + 1] === "number" ? [] : {};
        node = node[part] as Record<string | number, unknown>;
      }
    });
  }
  return root;
}

/** The leaf of our tree at `path`. */
export function leafAt(root: unknown, path: (string | number)[]): np.Array {
  let node = root as Record<string | number, unknown>;
  for (const part of path) node = node?.[part] as Record<string | number, unknown>;
  if (!node) throw new Error(`no parameter at ${path.join(".")}`);
  return node as unknown as np.Array;
}
