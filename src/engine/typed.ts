/**
 * Typed entries to jax-js's transformations and tree operations. jax-js types a tree as `JsTree<Array>`: nested
 * arrays and index-signature records of arrays. The project's parameter and batch types are records with named
 * (and sometimes optional) fields, which TypeScript will not accept as index signatures, so each call into jax-js
 * would need a cast. The casts live here, once; everything above `src/engine/` calls these and keeps its types.
 */
import { grad, jit, lax, numpy as np, tree, valueAndGrad, vjp } from "./jax.js";

/** A function compiled by `jit`: call it like the original; `dispose` frees the constants it captured. */
export type Compiled<A extends unknown[], R> = ((...args: A) => R) & { dispose(): void };

/** Compiles `f` (its arguments and result are trees of arrays, consumed as jax-js consumes them). */
export function compile<A extends unknown[], R>(f: (...args: A) => R): Compiled<A, R> {
  return jit(f as never) as unknown as Compiled<A, R>;
}

/**
 * `f`'s value and its gradient with respect to the first argument (a tree of the same type). With `hasAux`, `f`
 * returns [loss, aux] and the value is that pair.
 */
export function valueAndGradOf<A extends [unknown, ...unknown[]], R>(f: (...args: A) => R, opts: { hasAux?: boolean } = {}): (...args: A) => [R, A[0]] {
  return valueAndGrad(f as never, { hasAux: opts.hasAux ?? false } as never) as unknown as (...args: A) => [R, A[0]];
}

/** The gradient of scalar `f` with respect to its first argument (a tree of the same type). */
export function gradOf<A extends [unknown, ...unknown[]]>(f: (...args: A) => np.Array): (...args: A) => A[0] {
  return grad(f as never) as unknown as (...args: A) => A[0];
}

/** `f`'s value at `primals` and its vector-Jacobian product: cotangents of the output → cotangents of the arguments. */
export function vjpOf<A extends unknown[], R>(f: (...args: A) => R, primals: A): [R, Compiled<[R], A>] {
  return vjp(f as never, primals as never) as unknown as [R, Compiled<[R], A>];
}

/** A new reference to every array of `t` (each then needs its own dispose or consuming use). */
export function refTree<T>(t: T): T {
  return tree.ref(t as never) as T;
}

/** Frees every array of `t` (null and undefined are nothing to free). */
export function disposeTree(t: unknown): void {
  tree.dispose(t as never);
}

/** `t` with `fn` applied to each array (and the arrays at the same places of `rest`); consumes as `fn` does. */
export function mapTree<T>(fn: (a: np.Array, ...rest: np.Array[]) => np.Array, t: T, ...rest: T[]): T {
  return tree.map(fn, t as never, ...(rest as never[])) as unknown as T;
}

/** `t` under stop-gradient (consumed). */
export function stopGradientTree<T>(t: T): T {
  return mapTree((a) => lax.stopGradient(a), t);
}

/** The arrays of `t` in jax-js's order. */
export function treeLeaves(t: unknown): np.Array[] {
  return tree.leaves(t as never) as np.Array[];
}

/** The structure of a tree of type T, as jax-js describes it. */
export type Structure<T> = { readonly __tree?: T } & ReturnType<typeof tree.structure>;

export function structureOf<T>(t: T): Structure<T> {
  return tree.structure(t as never) as unknown as Structure<T>;
}

/** A tree of type T with `structure` from its leaves in jax-js's order. */
export function rebuildTree<T>(structure: Structure<T>, leaves: Iterable<np.Array>): T {
  return tree.unflatten(structure as never, leaves) as unknown as T;
}

/** A record with each named group replaced by `fn`'s (a parameter group of the same type). */
export function mapGroups<T extends object>(record: T, fn: <K extends keyof T & string>(name: K, group: T[K]) => T[K]): T {
  const out: Partial<T> = {};
  for (const name of Object.keys(record) as (keyof T & string)[]) out[name] = fn(name, record[name]);
  return out as T;
}
