/**
 * Elementwise jax-js kernels as C: one fused loop per kernel, built by the system's C compiler with the
 * host's vector instructions (see compiler.ts). Like gemm-plan.ts this reads jax-js's kernel IR: the kernel's
 * expression with its views lowered to plain indexed loads by jax-js itself (`rewriteGlobalViews`), so every
 * index is the one its wasm code computes.
 *
 * The C computes exactly what jax-js's wasm code computes, bit for bit: every operation is the same IEEE
 * single-precision operation in the same order (no contraction into FMA, no reassociation), integers wrap,
 * float-to-int conversion saturates (NaN → 0), Min/Max propagate NaN, a load outside the array's data range
 * reads element 0, and exp, log, erf and threefry are jax-js's own algorithms. So a kernel gives the same bits
 * on either engine, and when a kernel becomes native (its compile finishes in the background) nothing a run
 * computes changes. Supported: float32/int32/uint32/bool values, arithmetic, comparisons, Where, casts,
 * bit operations, exp, log, sqrt, reciprocal, floor, ceil, erf, erfc, threefry. Anything else (float16,
 * float64, sin/cos, a reduction) stays on wasm.
 */
import type { JaxAluExp, JaxKernel } from "./gemm-plan.js";

/**
 * Helpers shared by every kernel: jax-js's wasm semantics in C. Every float constant is written as the bits
 * of the float32 jax-js's code generator emits for it (`f32.const(x)` stores Math.fround(x)).
 */
export function kernelPrelude(): string {
  const c = floatConst;
  return String.raw`#include <math.h>
#include <stdint.h>
#include <string.h>
static inline float f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline int32_t trunc_sat_s(float x) { return x != x ? 0 : x >= 2147483648.0f ? INT32_MAX : x <= -2147483648.0f ? INT32_MIN : (int32_t)x; }
static inline uint32_t trunc_sat_u(float x) { return !(x > -1.0f) ? 0u : x >= 4294967296.0f ? UINT32_MAX : (uint32_t)x; }
static inline float fmin_w(float a, float b) { return (a != a || b != b) ? a + b : a == b ? f32(bits(a) | bits(b)) : a < b ? a : b; }
static inline float fmax_w(float a, float b) { return (a != a || b != b) ? a + b : a == b ? f32(bits(a) & bits(b)) : a > b ? a : b; }
/* exp: k = nearest(x/ln2), r = x − k·ln2, 2^k · Taylor(r) to degree 6; inf above 2^127, 0 below 2^-126. */
static inline float exp_w(float x) {
  float kf = rintf(x * ${c(1 / Math.LN2)});
  int32_t k = trunc_sat_s(kf);
  float r = x - kf * ${c(Math.LN2)};
  float p = ${c(1 / 720)};
  p = p * r + ${c(1 / 120)};
  p = p * r + ${c(1 / 24)};
  p = p * r + ${c(1 / 6)};
  p = p * r + ${c(1 / 2)};
  p = p * r + ${c(1)};
  p = p * r + ${c(1)};
  float y = p * f32(((uint32_t)k + 127u) << 23);
  return k > 127 ? INFINITY : k < -126 ? 0.0f : y;
}
/* log: x = m·2^e with m in [1, 2); ln m = 2·atanh((m − 1)/(m + 1)) to degree 7. */
static inline float log_w(float x) {
  uint32_t b = bits(x);
  int32_t e = (int32_t)((b >> 23) & 255u) - 127;
  float m = f32((b & 8388607u) | 1065353216u);
  float t = (m - ${c(1)}) / (m + ${c(1)});
  float t2 = t * t;
  float p = ${c(2 / 7)};
  p = p * t2 + ${c(2 / 5)};
  p = p * t2 + ${c(2 / 3)};
  p = p * t2 + ${c(2)};
  float y = p * t + (float)e * ${c(Math.LN2)};
  return x < 0.0f ? NAN : e == -127 ? -INFINITY : e == 128 ? x : y;
}
/* Abramowitz & Stegun 7.1.26 on |x|: t·poly(t)·exp(−x²). */
static inline float erfapprox_w(float x) {
  float t = ${c(1)} / (${c(1)} + ${c(0.3275911)} * x);
  float p = ${c(1.061405429)};
  p = p * t + ${c(-1.453152027)};
  p = p * t + ${c(1.421413741)};
  p = p * t + ${c(-0.284496736)};
  p = p * t + ${c(0.254829592)};
  p = p * t;
  return p * exp_w(-x * x);
}
static inline float erf_w(float x) { return copysignf(${c(1)} - erfapprox_w(fabsf(x)), x); }
static inline float erfc_w(float x) { float e = erfapprox_w(fabsf(x)); return x < 0.0f ? ${c(2)} - e : e; }
static inline uint32_t rotl_w(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }
#define MIX(r) (x0 += x1, x1 = rotl_w(x1, r) ^ x0)
static inline uint32_t threefry_w(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1, int mode) {
  uint32_t ks2 = k0 ^ k1 ^ 466688986u, x0 = c0 + k0, x1 = c1 + k1;
  MIX(13), MIX(15), MIX(26), MIX(6); x0 += k1, x1 += ks2 + 1u;
  MIX(17), MIX(29), MIX(16), MIX(24); x0 += ks2, x1 += k0 + 2u;
  MIX(13), MIX(15), MIX(26), MIX(6); x0 += k0, x1 += k1 + 3u;
  MIX(17), MIX(29), MIX(16), MIX(24); x0 += k1, x1 += ks2 + 4u;
  MIX(13), MIX(15), MIX(26), MIX(6); x0 += ks2, x1 += k0 + 5u;
  return mode == 0 ? x0 : mode == 1 ? x1 : (x0 ^ x1);
}
`;
}

export interface KernelSource {
  /** The C function `d2v_kernel` (without the prelude). */
  body: string;
  /** The inputs the kernel reads and the bytes of each it may touch (its data range). */
  loads: { input: number; bytes: number }[];
  /** Bytes per output element (4: jax-js stores bool in 32 bits too). */
  outWidth: number;
  /** Iterations of the outermost loop (the unit a kernel's work is split in). */
  outer: number;
  size: number;
}

class Declined extends Error {}
function decline(why: string): never {
  throw new Declined(why);
}

interface Lowerable extends JaxAluExp {
  rewriteGlobalViews(): Lowerable;
  simplify(): Lowerable;
}

const VALUE_TYPES: Record<string, string> = { float32: "float", int32: "int32_t", uint32: "uint32_t", bool: "uint32_t" };

/** A float32 constant as an exact C expression (its bits). */
function floatConst(x: number): string {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  return `f32(0x${u.toString(16)}u)`;
}

function intConst(x: number, dtype: string): string {
  if (dtype === "bool") return x ? "1u" : "0u";
  if (dtype === "uint32") return `${x >>> 0}u`;
  const i = x | 0;
  return i === -2147483648 ? "INT32_MIN" : `(int32_t)${i}`;
}

/** The kernel as a C function, or null when it has a reduction or anything without an exact C translation. */
export function kernelSource(kernel: JaxKernel): KernelSource | null {
  if (kernel.reduction || !(kernel.exp.dtype in VALUE_TYPES) || kernel.size < 1 || kernel.size >= 2 ** 31) return null;
  try {
    return translate(kernel);
  } catch (e) {
    if (e instanceof Declined) return null;
    throw e;
  }
}

/**
 * The output position's mixed-radix digits: cut points 1 = r_0 < r_1 < … < r_k = size, each dividing the next,
 * such that every `(gidx / c) % d`, `gidx / c` and `gidx % d` of the expression is a sum of whole digits
 * g_j = (gidx / r_j) % (r_{j+1} / r_j). Null when the divisions do not nest that way.
 */
function radices(root: JaxAluExp, size: number): number[] | null {
  const cuts = new Set<number>([1, size]);
  const seen = new Set<JaxAluExp>();
  const walk = (e: JaxAluExp) => {
    if (seen.has(e)) return;
    seen.add(e);
    const t = unravelTerm(e, size);
    if (t) {
      cuts.add(Math.min(t.div, size));
      if (Number.isFinite(t.mod)) cuts.add(Math.min(t.div * t.mod, size));
      return;
    }
    e.src.forEach(walk);
  };
  walk(root);
  const r = [...cuts].sort((a, b) => a - b);
  for (let i = 0; i + 1 < r.length; i++) if (r[i + 1] % r[i] !== 0) return null;
  return r;
}

/**
 * `(gidx / div) % mod` (mod Infinity: none) when `e` computes that from the output position through
 * integer divisions and modulos by constants (for gidx < size), else null.
 */
function unravelTerm(e: JaxAluExp, size: number): { div: number; mod: number } | null {
  if (e.dtype !== "int32") return null;
  if (e.op === "Variable" && e.arg === "gidx") return { div: 1, mod: Infinity };
  if (e.op !== "Idiv" && e.op !== "Mod") return null;
  const k = e.src[1].op === "Const" && Number.isInteger(e.src[1].arg) ? (e.src[1].arg as number) : 0;
  const t = k >= 1 ? unravelTerm(e.src[0], size) : null;
  if (!t) return null;
  const norm = (div: number, mod: number) => ({ div, mod: div * mod >= size ? Infinity : mod });
  if (e.op === "Idiv") {
    if (t.mod === Infinity) return norm(t.div * k, Infinity);
    return t.mod % k === 0 ? norm(t.div * k, t.mod / k) : null;
  }
  if (t.mod === Infinity) return norm(t.div, k);
  return t.mod % k === 0 ? norm(t.div, k) : null;
}

function translate(kernel: JaxKernel): KernelSource {
  const root = (kernel.exp as Lowerable).rewriteGlobalViews().simplify();
  const size = kernel.size;
  // Loops over the digits of the output position replace its divisions (often all of a load's index
  // arithmetic) with counters, and leave the innermost loop's indices affine, so that it vectorizes.
  const nested = radices(root, size);
  let r = nested ?? [1, size];
  if (r.length < 2) r = [1, size]; // a single element: one loop of one iteration
  const digits = r.length - 1;
  const digit = (term: { div: number; mod: number }): { c: string; range: [number, number] } => {
    const a = r.indexOf(Math.min(term.div, size));
    const b = Number.isFinite(term.mod) ? r.indexOf(Math.min(term.div * term.mod, size)) : digits;
    if (a >= b) return { c: "0", range: [0, 0] };
    const parts = [];
    for (let j = a; j < b; j++) parts.push(r[j] === r[a] ? `g${j}` : `${r[j] / r[a]} * g${j}`);
    return { c: `(int32_t)(${parts.join(" + ")})`, range: [0, r[b] / r[a] - 1] };
  };
  const lines: string[] = [];
  const names = new Map<JaxAluExp, string>();
  const byKey = new Map<string, string>();
  const ctx: Context = { size, loads: new Map(), pointers: new Map(), ranges: new Map() };
  const emit = (e: JaxAluExp): string => {
    const known = names.get(e);
    if (known) return known;
    // Without nesting digits, divisions stay divisions.
    const term = nested ? unravelTerm(e, size) : null;
    const src = term ? [] : e.src.map(emit);
    const key = term ? `digits ${term.div} ${term.mod}` : `${e.op}|${e.dtype}|${JSON.stringify(e.arg ?? null)}|${src.join(",")}`;
    let name = byKey.get(key);
    if (!name) {
      name = `v${byKey.size}`;
      const type = VALUE_TYPES[e.dtype] ?? decline(`dtype ${e.dtype}`);
      let c: string;
      if (term) {
        const d = digit(term);
        c = d.c;
        ctx.ranges.set(name, d.range);
      } else c = expression(e, src, ctx, name);
      lines.push(`${"  ".repeat(digits + 1)}const ${type} ${name} = ${c};`);
      byKey.set(key, name);
    }
    names.set(e, name);
    return name;
  };
  const out = emit(root);
  const outWidth = 4;
  // Typed restrict pointers: jax-js never writes a kernel's output over one of its inputs, and saying so
  // lets the compiler vectorize.
  const pointers = [...ctx.pointers.values()].map((p) => `  const ${p.type}* restrict ${p.name} = (const ${p.type}*)(mem + bases[${p.input}]);`);
  const outType = VALUE_TYPES[root.dtype];
  const loops: string[] = [];
  const closes: string[] = [];
  for (let j = digits - 1; j >= 0; j--) {
    const indent = "  ".repeat(digits - j);
    // The iterations are independent (no output element is an input): the compiler need not check.
    if (j === 0) loops.push(`${indent}_Pragma("GCC ivdep")`);
    const [from, to] = j === digits - 1 ? ["lo", "hi"] : ["0", String(r[j + 1] / r[j])];
    loops.push(`${indent}for (int32_t g${j} = ${from}; g${j} < ${to}; g${j}++) {`);
    closes.unshift(`${indent}}`);
  }
  const inner = "  ".repeat(digits + 1);
  const position = r.slice(0, -1).map((radix, j) => (radix === 1 ? `(int64_t)g${j}` : `(int64_t)${radix} * g${j}`)).join(" + ");
  const body = [
    // Outputs of the outermost loop's iterations [lo, hi) (the addon splits large kernels across threads).
    "void d2v_kernel(uint8_t* mem, const int64_t* restrict bases, int64_t out_base, int32_t lo, int32_t hi) {",
    ...pointers,
    `  ${outType}* restrict out = (${outType}*)(mem + out_base);`,
    ...loops,
    `${inner}const int64_t g = ${position};`,
    `${inner}const int32_t gidx = (int32_t)g;`,
    ...lines,
    `${inner}out[g] = (${outType})${out};`,
    ...closes,
    "}",
    "",
  ].join("\n");
  return { body, loads: [...ctx.loads].map(([input, bytes]) => ({ input, bytes })), outWidth, size, outer: r[digits] / r[digits - 1] };
}

interface Context {
  size: number;
  /** Bytes each input's loads may touch. */
  loads: Map<number, number>;
  /** One typed pointer per (input, type) loaded. */
  pointers: Map<string, { name: string; type: string; input: number }>;
  /** Known value ranges of integer names (for loads that need no clamp). */
  ranges: Map<string, [number, number]>;
}

/** The range of an int32 node's values from its sources' ranges, where that is simple (else undefined). */
function rangeOf(e: JaxAluExp, s: string[], ctx: Context): [number, number] | undefined {
  if (e.dtype !== "int32") return undefined;
  if (e.op === "Const") return [e.arg as number, e.arg as number];
  const [a, b] = [ctx.ranges.get(s[0]), ctx.ranges.get(s[1])];
  const fits = (x: [number, number]) => (x[0] >= -(2 ** 31) && x[1] < 2 ** 31 ? x : undefined);
  if (!a || (e.src.length > 1 && !b && e.op !== "Where")) return undefined;
  switch (e.op) {
    case "Add":
      return fits([a[0] + b![0], a[1] + b![1]]);
    case "Sub":
      return fits([a[0] - b![1], a[1] - b![0]]);
    case "Mul": {
      const p = [a[0] * b![0], a[0] * b![1], a[1] * b![0], a[1] * b![1]];
      return fits([Math.min(...p), Math.max(...p)]);
    }
    case "Idiv":
      return a[0] >= 0 && b![0] >= 1 ? [Math.floor(a[0] / b![1]), Math.floor(a[1] / b![0])] : undefined;
    case "Mod":
      return a[0] >= 0 && b![0] >= 1 ? [0, Math.min(a[1], b![1] - 1)] : undefined;
    default:
      return undefined;
  }
}

/** The C expression of node `e` whose sources are the C names `s`. */
function expression(e: JaxAluExp, s: string[], ctx: Context, name: string): string {
  const range = rangeOf(e, s, ctx);
  if (range) ctx.ranges.set(name, range);
  const { op, dtype } = e;
  const from = e.src[0]?.dtype;
  const f = dtype === "float32";
  const wrap = (o: string) => (dtype === "int32" ? `(int32_t)((uint32_t)${s[0]} ${o} (uint32_t)${s[1]})` : `${s[0]} ${o} ${s[1]}`);
  for (const x of e.src) if (!(x.dtype in VALUE_TYPES)) decline(`source dtype ${x.dtype}`);
  switch (op) {
    case "Variable":
      if (e.arg !== "gidx") decline(`variable ${String(e.arg)}`);
      ctx.ranges.set(name, [0, ctx.size - 1]);
      return "gidx";
    case "Const":
      if (typeof e.arg !== "number") decline("constant");
      return f ? floatConst(e.arg) : intConst(e.arg, dtype);
    case "GlobalIndex": {
      const [input, len] = e.arg as [number, number];
      if (!Number.isInteger(input) || !Number.isInteger(len) || len < 1 || len >= 2 ** 31) decline("load");
      // Every jax-js dtype here is 4 bytes wide, bool included.
      ctx.loads.set(input, Math.max(ctx.loads.get(input) ?? 0, len * 4));
      const type = VALUE_TYPES[dtype];
      const pkey = `${input}:${type}`;
      if (!ctx.pointers.has(pkey)) ctx.pointers.set(pkey, { name: `in${ctx.pointers.size}`, type, input });
      const p = ctx.pointers.get(pkey)!.name;
      // An index known to lie in the data range needs no clamp (and the load vectorizes).
      const known = ctx.ranges.get(s[0]);
      const value = known && known[0] >= 0 && known[1] < len ? `${p}[${s[0]}]` : `${p}[(uint32_t)${s[0]} < ${len}u ? (uint32_t)${s[0]} : 0u]`;
      return value;
    }
    case "Add":
      return dtype === "bool" ? `${s[0]} | ${s[1]}` : wrap("+");
    case "Sub":
      return dtype === "bool" ? decline("bool sub") : wrap("-");
    case "Mul":
      return dtype === "bool" ? `${s[0]} & ${s[1]}` : wrap("*");
    case "Idiv":
      if (f) return `truncf(${s[0]} / ${s[1]})`;
      // wasm traps on these; the C gives 0 instead of crashing (jax-js never emits them).
      if (dtype === "uint32") return `(${s[1]} ? ${s[0]} / ${s[1]} : 0u)`;
      if (dtype === "int32") return `((${s[1]} == 0 || (${s[0]} == INT32_MIN && ${s[1]} == -1)) ? 0 : ${s[0]} / ${s[1]})`;
      return decline("bool division");
    case "Mod":
      if (f) return `(${s[0]} - truncf(${s[0]} / ${s[1]}) * ${s[1]})`;
      if (dtype === "uint32") return `(${s[1]} ? ${s[0]} % ${s[1]} : 0u)`;
      if (dtype === "int32") return `((${s[1]} == 0 || ${s[1]} == -1) ? 0 : ${s[0]} % ${s[1]})`;
      return decline("bool modulo");
    case "Min":
    case "Max":
      if (f) return `${op === "Min" ? "fmin_w" : "fmax_w"}(${s[0]}, ${s[1]})`;
      return `(${s[0]} ${op === "Min" ? "<" : ">"} ${s[1]} ? ${s[0]} : ${s[1]})`;
    case "BitCombine":
      if (f) decline("bit op on floats");
      return `${s[0]} ${e.arg === "and" ? "&" : e.arg === "or" ? "|" : "^"} ${s[1]}`;
    case "BitShift": {
      if (f) decline("shift on floats");
      const shifted = `(uint32_t)${s[0]} ${e.arg === "shl" ? "<<" : ">>"} ((uint32_t)${s[1]} & 31u)`;
      return dtype === "int32" ? `(int32_t)(${shifted})` : shifted;
    }
    case "BitCount":
      return `(${VALUE_TYPES[dtype]})__builtin_popcount((uint32_t)${s[0]})`;
    case "Cmplt":
      return `(uint32_t)(${s[0]} < ${s[1]})`;
    case "Cmpne":
      return `(uint32_t)(${s[0]} != ${s[1]})`;
    case "Where":
      return `(${s[0]} ? ${s[1]} : ${s[2]})`;
    case "Cast": {
      if (dtype === from) return s[0];
      if (dtype === "bool") return from === "float32" ? `(uint32_t)(${s[0]} != 0.0f)` : `(uint32_t)(${s[0]} != 0)`;
      if (f) return from === "uint32" ? `(float)(uint32_t)${s[0]}` : `(float)(int32_t)${s[0]}`;
      if (from === "float32") return dtype === "int32" ? `trunc_sat_s(${s[0]})` : `trunc_sat_u(${s[0]})`;
      return `(${VALUE_TYPES[dtype]})${s[0]}`;
    }
    case "Bitcast":
      if (dtype === from) return s[0];
      if (f) return `f32((uint32_t)${s[0]})`;
      return from === "float32" ? `(${VALUE_TYPES[dtype]})bits(${s[0]})` : `(${VALUE_TYPES[dtype]})${s[0]}`;
    case "Exp":
    case "Log":
    case "Sqrt":
    case "Reciprocal":
    case "Floor":
    case "Ceil":
    case "Erf":
    case "Erfc": {
      if (!f) decline(`${op} on ${dtype}`);
      const fn = { Exp: "exp_w", Log: "log_w", Sqrt: "sqrtf", Floor: "floorf", Ceil: "ceilf", Erf: "erf_w", Erfc: "erfc_w" } as Record<string, string>;
      return op === "Reciprocal" ? `1.0f / ${s[0]}` : `${fn[op]}(${s[0]})`;
    }
    case "Threefry2x32": {
      const mode = e.arg === "xor" ? 2 : e.arg === 0 ? 0 : e.arg === 1 ? 1 : decline("threefry mode");
      return `threefry_w(${s[0]}, ${s[1]}, ${s[2]}, ${s[3]}, ${mode})`;
    }
    default:
      return decline(`op ${op}`);
  }
}
