/**
 * BEiT relative position bias. Every (query, key) pair of a gh×gw patch grid with a leading CLS token gets an
 * index into a learned table [(2gh−1)(2gw−1) + 3, heads]: patch pairs by their offset (dy, dx), and three
 * extra entries for CLS→patch, patch→CLS and CLS→CLS.
 */
import { numpy as np } from "../engine/jax.js";

export function relativeTableSize(gh: number, gw: number): number {
  return (2 * gh - 1) * (2 * gw - 1) + 3;
}

/** The [(1 + gh·gw)²] index table, row-major over (query, key), as BEiT builds it. */
export function relativePositionIndex(gh: number, gw: number): Int32Array {
  const n = gh * gw;
  const t = n + 1;
  const size = relativeTableSize(gh, gw);
  const index = new Int32Array(t * t);
  for (let i = 0; i < n; i++) {
    const [yi, xi] = [Math.floor(i / gw), i % gw];
    for (let j = 0; j < n; j++) {
      const [yj, xj] = [Math.floor(j / gw), j % gw];
      index[(1 + i) * t + (1 + j)] = (yi - yj + gh - 1) * (2 * gw - 1) + (xi - xj + gw - 1);
    }
  }
  // BEiT writes row 0, then column 0, then [0, 0]; the corner ends up size − 1.
  for (let j = 0; j < t; j++) index[j] = size - 3;
  for (let i = 0; i < t; i++) index[i * t] = size - 2;
  index[0] = size - 1;
  return index;
}

/**
 * The index in the form `relativeBias` reads: int32 [T·T] for inference, or its one-hot float32 matrix
 * [T·T, size] where the table is trained. jax-js cannot differentiate a jitted `take` whose cotangent is a
 * fused broadcast-and-reduce (as the bias's is), while a matmul with the one-hot matrix differentiates
 * plainly; for a 7×7 grid the matrix is 2500 × 172 floats.
 */
export function relativeIndexInput(gh: number, gw: number, differentiable: boolean): np.Array {
  const index = relativePositionIndex(gh, gw);
  if (!differentiable) return np.array(index, { dtype: np.int32 });
  return np.array(oneHotIndex(gh, gw)).reshape([index.length, relativeTableSize(gh, gw)]);
}

// The host-side one-hot matrix is built once per grid.
const oneHotCache = new Map<string, Float32Array>();

// One device copy of each grid's one-hot index for the whole process: jitted functions capture it as a constant
// (a captured one-hot matrix differentiates plainly; only a gather through an index built inside the trace does not).
const constantCache = new Map<string, np.Array>();

/**
 * The one-hot relative position index of a gh × gw grid ([T·T, size], see `relativeIndexInput`) as a device
 * constant made once per process. Borrow it (`.ref`); never consume or dispose it.
 */
export function relativeIndexConstant(gh: number, gw: number): np.Array {
  const key = `${gh}x${gw}`;
  let index = constantCache.get(key);
  if (!index) {
    index = relativeIndexInput(gh, gw, true);
    constantCache.set(key, index);
  }
  return index;
}

function oneHotIndex(gh: number, gw: number): Float32Array {
  const key = `${gh}x${gw}`;
  let oneHot = oneHotCache.get(key);
  if (!oneHot) {
    const index = relativePositionIndex(gh, gw);
    const size = relativeTableSize(gh, gw);
    oneHot = new Float32Array(index.length * size);
    index.forEach((k, i) => (oneHot![i * size + k] = 1));
    oneHotCache.set(key, oneHot);
  }
  return oneHot;
}

/** Additive attention bias [1, H, T, T] from a table [size, H] and an index from `relativeIndexInput`. Consumes both. */
export function relativeBias(table: np.Array, index: np.Array): np.Array {
  const heads = table.shape[1];
  const t = Math.round(Math.sqrt(index.shape[0]));
  const perPair = index.dtype === np.int32 ? np.take(table, index, 0) : np.matmul(index, table); // [T·T, H]
  return perPair.reshape([t, t, heads]).transpose([2, 0, 1]).reshape([1, heads, t, t]);
}
