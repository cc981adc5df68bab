/**
 * Key maps between fairseq's data2vec state dicts and our parameter trees. A map is a list of entries (fairseq
 * key → path in our tree, and how the tensor is laid out), used in both directions: to load fairseq weights and
 * to name our gradients and teacher tensors as fairseq does.
 */
import { numpy as np, random } from "../engine/jax.js";
import { disposeTree } from "../engine/typed.js";
import type { ParamTree } from "../engine/tree.js";
import { KeyStream } from "../nn/random.js";
import type { BlockParams } from "../nn/encoder.js";
import { emaSharedOf, initRegressionHead, type Data2VecParams, type Teacher } from "../data2vec/model.js";
import { CheckpointError } from "../engine/errors.js";
import { toFloat32, type HostTensor } from "../engine/safetensors.js";
import { fillTree, namedLeaves } from "../engine/tree.js";

/**
 * How a fairseq tensor is stored in our tree: `same` (identical layout), `linear` (torch's [out, in] is our
 * [in, out]), `conv` (torch's Conv1d [out, in/groups, k] is our im2col weight: [k·in, out], or [G, k·in/G, out/G]
 * for grouped convolutions, row index = tap·in + channel).
 */
export type Layout =
  | { kind: "same" }
  | { kind: "linear" }
  | { kind: "conv"; groups: number }
  /** The same values in our leaf's shape (fairseq's ALiBi scale [1, 1, H, 1, 1] is our [H]). */
  | { kind: "reshape"; shape: number[] }
  /** Rows [start, start + count) of a fused fairseq tensor (data2vec 2.0's qkv projection), laid out as `of`. */
  | { kind: "rows"; start: number; count: number; of: "linear" | "same" };
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

/**
 * data2vec 2.0's `AltBlock` (post-LN, `layer_norm_first: false`) under `prefix`: one fused `qkv` projection,
 * which is our q, k and v.
 */
export function altBlockEntries(prefix: string, path: (string | number)[], dim: number): KeyEntry[] {
  const part = (name: string, i: number): KeyEntry[] => [
    { fairseq: `${prefix}.attn.qkv.weight`, path: [...path, "attn", name, "weight"], layout: { kind: "rows", start: i * dim, count: dim, of: "linear" } },
    { fairseq: `${prefix}.attn.qkv.bias`, path: [...path, "attn", name, "bias"], layout: { kind: "rows", start: i * dim, count: dim, of: "same" } },
  ];
  return [
    ...part("q", 0),
    ...part("k", 1),
    ...part("v", 2),
    ...linearEntries(`${prefix}.attn.proj`, [...path, "attn", "out"]),
    ...layerNormEntries(`${prefix}.norm1`, [...path, "attnNorm"]),
    ...linearEntries(`${prefix}.mlp.fc1`, [...path, "ffn", "fc1"]),
    ...linearEntries(`${prefix}.mlp.fc2`, [...path, "ffn", "fc2"]),
    ...layerNormEntries(`${prefix}.norm2`, [...path, "ffnNorm"]),
  ];
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
  return toOursData(toFloat32(t), t.shape, layout, key);
}

/** A fairseq tensor's values (`data`, `shape`) in our layout. Linear and conv weights may have trailing dims (Conv2d kernels). */
function toOursData(data: Float32Array, fairseqShape: number[], layout: Layout, key: string): { data: Float32Array; shape: number[] } {
  const shape = fairseqShape;
  if (layout.kind === "same") return { data, shape };
  if (layout.kind === "reshape") {
    if (data.length !== layout.shape.reduce((a, b) => a * b, 1)) throw new CheckpointError(`${key}: [${shape}] does not reshape to [${layout.shape}]`);
    return { data, shape: layout.shape };
  }
  if (layout.kind === "rows") {
    const rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
    const part = data.slice(layout.start * rowSize, (layout.start + layout.count) * rowSize);
    return toOursData(part, [layout.count, ...shape.slice(1)], { kind: layout.of }, key);
  }
  if (layout.kind === "linear") {
    if (shape.length < 2) throw new CheckpointError(`${key}: a linear weight must be at least 2-D, got [${shape}]`);
    const o = shape[0];
    const i = shape.slice(1).reduce((a, b) => a * b, 1);
    const out = new Float32Array(o * i);
    for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[c * o + r] = data[r * i + c];
    return { data: out, shape: [i, o] };
  }
  const [o, ig] = shape;
  const k = shape.slice(2).reduce((a, b) => a * b, 1);
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

/**
 * Our tensor (host data in our layout) in fairseq's layout, given fairseq's shape. A `rows` part gives only its
 * rows: `assembleFairseq` puts the parts of a fused tensor together.
 */
export function toFairseq(data: Float32Array, layout: Layout, fairseqShape: number[]): Float32Array {
  if (layout.kind === "same" || layout.kind === "reshape") return data;
  if (layout.kind === "rows") return toFairseq(data, { kind: layout.of }, [layout.count, ...fairseqShape.slice(1)]);
  if (layout.kind === "linear") {
    const o = fairseqShape[0];
    const i = fairseqShape.slice(1).reduce((a, b) => a * b, 1);
    const out = new Float32Array(o * i);
    for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[r * i + c] = data[c * o + r];
    return out;
  }
  const [o, ig] = fairseqShape;
  const k = fairseqShape.slice(2).reduce((a, b) => a * b, 1);
  const out = new Float32Array(o * ig * k);
  forConvIndex(o, ig, k, layout.groups, (ours, theirs) => (out[theirs] = data[ours]));
  return out;
}

/**
 * A fairseq tensor of `shape` from the entries that map to it (one, or the rows of a fused tensor), each entry's
 * values in our layout given by `ours`. Rows no entry covers stay NaN, so a comparison cannot pass on them.
 */
export async function assembleFairseq(entries: KeyEntry[], shape: number[], ours: (e: KeyEntry) => Promise<Float32Array>): Promise<Float32Array> {
  const size = shape.reduce((a, b) => a * b, 1);
  if (entries.length === 1 && entries[0].layout.kind !== "rows") return toFairseq(await ours(entries[0]), entries[0].layout, shape);
  const out = new Float32Array(size).fill(NaN);
  const rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
  for (const e of entries) {
    if (e.layout.kind !== "rows") throw new Error(`${e.fairseq}: several of our tensors map to it, but not as rows`);
    out.set(toFairseq(await ours(e), e.layout, shape), e.layout.start * rowSize);
  }
  return out;
}

/**
 * Our tree `like` (fresh parameters of the fixture's architecture, consumed) with every leaf taken from a fairseq
 * state dict through the key map: each of our leaves must have an entry, each entry a leaf, with a matching shape.
 */
export function buildTree<T>(entries: KeyEntry[], tensors: Map<string, HostTensor>, what: string, like: T): T {
  const byPath = new Map(entries.map((e) => [e.path.join("."), e]));
  const ours = new Set(namedLeaves(like).map(([name]) => name));
  const stray = entries.find((e) => !ours.has(e.path.join(".")));
  if (stray) throw new CheckpointError(`the key map sends ${stray.fairseq} to ${stray.path.join(".")}, which our model does not have`);
  return fillTree(like, (name, leaf) => {
    const e = byPath.get(name);
    if (!e) throw new CheckpointError(`${what}: no fairseq weight maps to our ${name}`);
    const t = tensors.get(e.fairseq);
    if (!t) throw new CheckpointError(`${what} lacks ${e.fairseq}`);
    const { data, shape } = toOurs(t, e.layout, e.fairseq);
    if (shape.join(",") !== leaf.shape.join(",")) throw new CheckpointError(`${what}: ${e.fairseq} gives our ${name} the shape [${shape}], not [${leaf.shape}]`);
    leaf.dispose();
    return np.array(data).reshape(shape);
  });
}

/** The leaf of our tree at `path`. */
export function leafAt(root: unknown, path: (string | number)[]): np.Array {
  let node = root;
  for (const part of path) node = (node as Record<string | number, unknown> | undefined)?.[part];
  if (!(node instanceof np.Array)) throw new Error(`no parameter at ${path.join(".")}`);
  return node;
}

/**
 * A student and its teacher from a fairseq state dict: fresh trees of our architecture (`init`: encoder blocks
 * and shared input side; a regression head of `headLayers`) filled through the key maps. The teacher holds its
 * blocks and the shared groups `emaShared` names.
 */
export function fairseqStudentAndTeacher<Shared extends ParamTree>(
  f: { weights: Map<string, HostTensor>; dir: string },
  init: (keys: KeyStream) => { shared: Shared; layers: BlockParams[] },
  dim: number,
  headLayers: 1 | 2,
  maps: { student: KeyEntry[]; teacher: KeyEntry[] },
  emaShared: readonly string[] = [],
): { params: Data2VecParams<Shared>; teacher: Teacher<Shared> } {
  const what = `${f.dir}/weights.safetensors`;
  const fresh = (seed: number): Data2VecParams<Shared> => {
    const keys = new KeyStream(random.key(seed));
    const { shared, layers } = init(keys);
    const head = initRegressionHead(keys, dim, headLayers);
    keys.close();
    return { shared, layers, head };
  };
  const params = buildTree(maps.student, f.weights, what, fresh(0));
  const like = fresh(1);
  const teacherLike: Teacher<Shared> = { layers: like.layers, shared: emaSharedOf(like.shared, emaShared) };
  const kept = new Set(emaShared);
  disposeTree([like.head, ...Object.entries(like.shared).filter(([k]) => !kept.has(k)).map(([, v]) => v)]);
  return { params, teacher: buildTree(maps.teacher, f.weights, what, teacherLike) };
}
