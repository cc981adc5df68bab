/** Parameter pytrees: plain nested objects / arrays of jax arrays, named by their dotted paths. */
import { numpy as np, tree } from "./jax.js";

export type ParamTree = np.Array | ParamTree[] | { [key: string]: ParamTree };

/** Leaves in a deterministic order with their dotted names (`encoder.layers.0.attn.q.weight`). */
export function namedLeaves(tree: unknown, prefix = ""): [string, np.Array][] {
  const t = tree as ParamTree;
  if (t instanceof np.Array) return [[prefix, t]];
  const out: [string, np.Array][] = [];
  const entries: [string, ParamTree][] = Array.isArray(t) ? t.map((v, i) => [String(i), v]) : Object.entries(t);
  for (const [k, v] of entries) out.push(...namedLeaves(v, prefix ? `${prefix}.${k}` : k));
  return out;
}

/** Rebuilds a tree with the structure of `like`, taking each leaf from `byName`. */
export function fillTree<T>(like: T, byName: (name: string, leaf: np.Array) => np.Array): T {
  const go = (t: ParamTree, prefix: string): ParamTree => {
    if (t instanceof np.Array) return byName(prefix, t);
    if (Array.isArray(t)) return t.map((v, i) => go(v, prefix ? `${prefix}.${i}` : String(i)));
    const out: { [k: string]: ParamTree } = {};
    for (const [k, v] of Object.entries(t)) out[k] = go(v, prefix ? `${prefix}.${k}` : k);
    return out;
  };
  return go(like as ParamTree, "") as T;
}

/** Deep copy into fresh buffers (used to create the EMA teacher, which must not alias the student). */
export function copyTree<T>(t: T): T {
  return tree.map((a: np.Array) => a.ref.add(0), t as never) as unknown as T;
}

