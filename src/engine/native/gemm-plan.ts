/**
 * Recognizes jax-js matmul kernels and plans them as OpenBLAS sgemm calls. This is the only module of the
 * project that reads jax-js internals (its kernel IR), so it is the one to check when jax-js changes (the
 * version is pinned in package.json; `test/engine/native.test.ts` compares native and wasm on every matmul
 * form a training step produces).
 *
 * jax-js lowers `x @ w` (and every gradient matmul, batched attention, im2col convolution) to one kernel: an
 * `Add` reduction of an elementwise product of two strided views,
 *
 *   out[i_0, …, i_{n-2}] = epilogue(Σ_k A[view_a(i_0, …, i_{n-2}, k)] · B[view_b(i_0, …, i_{n-2}, k)])
 *
 * where each view is a `ShapeTracker` (a stack of views with shape, strides, offset and an optional validity
 * mask, the way `reshape`, `transpose`, `pad` and broadcasting compose) and the epilogue may scale the sum
 * and add a third view (a bias or an attention mask). The output is contiguous.
 *
 * The plan classifies each output dimension by which operand it indexes: only A (a row of the product, M),
 * only B (a column, N), both or neither (a batch entry). The trailing run of N dimensions and the run of M
 * dimensions just before it become one sgemm per batch entry (the output's trailing dims are then a
 * contiguous M × N matrix). An operand BLAS can read in place (one unit stride, a leading dimension that
 * does not overlap) is passed as it is; otherwise it is packed, from strides when its dimensions merge, or
 * from a precomputed index table when its views do not compose into strides (e.g. a transpose followed by
 * a reshape) or have a mask (padding). Anything else stays on wasm.
 */

/** The parts of jax-js's kernel IR this module reads (`Kernel`, `AluExp`, `ShapeTracker`, `View`). */
export interface JaxAluExp {
  op: string;
  dtype: string;
  src: JaxAluExp[];
  arg: unknown;
}
export interface JaxView {
  shape: number[];
  strides: number[];
  offset: number;
  mask: [number, number][] | null;
}
export interface JaxKernel {
  nargs: number;
  size: number;
  exp: JaxAluExp;
  reduction?: { op: string; dtype: string; size: number; epilogue: JaxAluExp };
}

/** How an operand reaches BLAS (the values match `d2v_native.c`). */
export const OperandMode = { none: 0, direct: 1, strided: 2, table: 3 } as const;
/** An index-table entry that reads as zero (a masked-out element, e.g. padding). */
export const MASKED = -2147483648;

/** Plan slots, in the order `d2v_native.c` reads them. */
const P = { M: 0, N: 1, K: 2, BATCH: 3, A_MODE: 4, A_TRANS: 5, A_S0: 6, A_S1: 7, B_MODE: 8, B_TRANS: 9, B_S0: 10, B_S1: 11, G_MODE: 12, G_S0: 13, G_S1: 14, LEN: 15 };

/** A matmul kernel as sgemm calls: one per batch entry, C[M×N] = alpha·A[M×K]·B[K×N] (+ G). */
export interface GemmPlan {
  M: number;
  N: number;
  K: number;
  batch: number;
  alpha: number;
  /** The kernel's input slots holding A, B and the epilogue's addend G (-1 when there is none). */
  inputA: number;
  inputB: number;
  inputG: number;
  /** The plan as `d2v_native.gemm` reads it. */
  plan: Int32Array;
  /** Per batch entry: offsets of A, B, C and G (elements, or the entry's first table index). */
  rel: Int32Array;
  tables: [Int32Array | null, Int32Array | null, Int32Array | null];
  /** The lowest and highest element offset each operand touches, relative to its buffer (bounds checks). */
  extentA: [number, number];
  extentB: [number, number];
  extentG: [number, number];
  /** Multiply-adds: batch·M·N·K. */
  work: number;
  /** One line for logs: sizes and how each operand is read. */
  describe: string;
}

/** Table-packed operands hold one int32 per element; beyond this many the kernel stays on wasm. */
const MAX_TABLE_ENTRIES = 1 << 24;

const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);

function isVariable(e: JaxAluExp, name: string): boolean {
  return e.op === "Variable" && e.arg === name;
}

function constValue(e: JaxAluExp): number | null {
  return e.op === "Const" && typeof e.arg === "number" ? e.arg : null;
}

/**
 * Decodes a simplified index expression `(gidx / div) % mod` (either part may be absent, a size-1 dim
 * folds to the constant 0). Returns null for anything else.
 */
function decodeIndex(e: JaxAluExp): { div: number; mod: number } | "zero" | null {
  if (constValue(e) === 0) return "zero";
  if (isVariable(e, "gidx")) return { div: 1, mod: Infinity };
  if (e.op === "Idiv") {
    const c = constValue(e.src[1]);
    const inner = decodeIndex(e.src[0]);
    if (c === null || c < 1 || inner === null || inner === "zero" || inner.mod !== Infinity) return null;
    return { div: inner.div * c, mod: Infinity };
  }
  if (e.op === "Mod") {
    const m = constValue(e.src[1]);
    const inner = decodeIndex(e.src[0]);
    if (m === null || m < 1 || inner === null || inner === "zero" || inner.mod !== Infinity) return null;
    return { div: inner.div, mod: m };
  }
  return null;
}

/** True when `src` indexes `outShape` row-major from `gidx` (the output position), as jax-js emits it. */
function indexesOutput(src: JaxAluExp[], outShape: number[]): boolean {
  if (src.length !== outShape.length) return false;
  let div = 1;
  for (let d = outShape.length - 1; d >= 0; d--) {
    const got = decodeIndex(src[d]);
    const size = outShape[d];
    if (got === null) return false;
    if (got === "zero") {
      if (size !== 1) return false;
    } else if (size === 1) {
      if (got.mod !== 1) return false;
    } else if (got.div !== div || !(got.mod === size || (got.mod === Infinity && d === 0))) return false;
    div *= size;
  }
  return true;
}

interface Operand {
  input: number;
  views: JaxView[];
}

function globalView(e: JaxAluExp): Operand | null {
  if (e.op !== "GlobalView" || e.dtype !== "float32") return null;
  const [input, tracker] = e.arg as [number, { views: JaxView[] }];
  if (!Number.isInteger(input) || !tracker || !Array.isArray(tracker.views) || tracker.views.length === 0) return null;
  return { input, views: tracker.views };
}

/** Whether the operand's value can change along logical dim `d` (a stride or a mask on it). */
function dependsOn(op: Operand, d: number): boolean {
  const v = op.views[op.views.length - 1];
  if (v.strides[d] !== 0) return true;
  const m = v.mask?.[d];
  return m !== undefined && !(m[0] <= 0 && m[1] >= v.shape[d]);
}

/** The element offset of a logical index through the view stack, or MASKED where a mask hides it. */
function viewAddress(views: JaxView[], index: number[]): number {
  let idx = index;
  for (let i = views.length - 1; i >= 0; i--) {
    const v = views[i];
    let flat = v.offset;
    for (let d = 0; d < idx.length; d++) {
      if (v.mask && (idx[d] < v.mask[d][0] || idx[d] >= v.mask[d][1])) return MASKED;
      flat += idx[d] * v.strides[d];
    }
    if (i === 0) return flat;
    const below = views[i - 1].shape;
    const next = new Array<number>(below.length);
    for (let d = below.length - 1; d >= 0; d--) {
      next[d] = flat % below[d];
      flat = Math.floor(flat / below[d]);
    }
    idx = next;
  }
  return idx[0];
}

/** The single stride of `dims` merged into one (row-major), 0 if all have size 1, null if they do not merge. */
function mergedStride(shape: number[], strides: number[], dims: number[]): number | null {
  const real = dims.filter((d) => shape[d] !== 1);
  if (real.length === 0) return 0;
  for (let i = 0; i + 1 < real.length; i++) {
    if (strides[real[i]] !== strides[real[i + 1]] * shape[real[i + 1]]) return null;
  }
  return strides[real[real.length - 1]];
}

/** Row-major coordinates of flat position `i` in `shape`. */
function unravel(i: number, shape: number[]): number[] {
  const out = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return out;
}

/** How one operand (a rows × cols matrix per batch entry) is read. */
interface Layout {
  mode: number;
  s0: number;
  s1: number;
  /** Per batch entry: the offset of element (0, 0), or the entry's first table index. */
  rel: number[];
  table: Int32Array | null;
  extent: [number, number];
}

/**
 * Lays out an operand whose logical index is the kernel's: `batchDims` pick the batch entry, `rowDims` and
 * `colDims` (row-major runs) the matrix element. `ndim` is the length of the operand's logical index.
 */
function layoutOf(op: Operand, ndim: number, shape: number[], batchDims: number[], rowDims: number[], colDims: number[]): Layout | null {
  const rows = prod(rowDims.map((d) => shape[d]));
  const cols = prod(colDims.map((d) => shape[d]));
  const batchShape = batchDims.map((d) => shape[d]);
  const batch = prod(batchShape);
  const v = op.views[op.views.length - 1];
  if (op.views.length === 1 && !v.mask) {
    const s0 = mergedStride(shape, v.strides, rowDims);
    const s1 = mergedStride(shape, v.strides, colDims);
    if (s0 !== null && s1 !== null) {
      const rel: number[] = [];
      let lo = Infinity;
      let hi = -Infinity;
      const spanLo = Math.min(0, (rows - 1) * s0) + Math.min(0, (cols - 1) * s1);
      const spanHi = Math.max(0, (rows - 1) * s0) + Math.max(0, (cols - 1) * s1);
      for (let i = 0; i < batch; i++) {
        const coords = unravel(i, batchShape);
        let off = v.offset;
        batchDims.forEach((d, j) => (off += coords[j] * v.strides[d]));
        rel.push(off);
        lo = Math.min(lo, off + spanLo);
        hi = Math.max(hi, off + spanHi);
      }
      return { mode: OperandMode.strided, s0, s1, rel, table: null, extent: [lo, hi] };
    }
  }
  if (batch * rows * cols > MAX_TABLE_ENTRIES) return null;
  const table = new Int32Array(batch * rows * cols);
  const rowShape = rowDims.map((d) => shape[d]);
  const colShape = colDims.map((d) => shape[d]);
  const index = new Array<number>(ndim).fill(0);
  let lo = Infinity;
  let hi = -Infinity;
  let t = 0;
  const rel: number[] = [];
  for (let b = 0; b < batch; b++) {
    rel.push(t);
    const bc = unravel(b, batchShape);
    batchDims.forEach((d, j) => (index[d] = bc[j]));
    for (let r = 0; r < rows; r++) {
      const rc = unravel(r, rowShape);
      rowDims.forEach((d, j) => (index[d] = rc[j]));
      for (let c = 0; c < cols; c++) {
        const cc = unravel(c, colShape);
        colDims.forEach((d, j) => (index[d] = cc[j]));
        const a = viewAddress(op.views, index);
        table[t++] = a;
        if (a !== MASKED) {
          lo = Math.min(lo, a);
          hi = Math.max(hi, a);
        }
      }
    }
  }
  if (lo === Infinity) lo = hi = 0;
  return { mode: OperandMode.table, s0: 0, s1: 0, rel, table, extent: [lo, hi] };
}

/** Flattens a product tree into its factors. */
function factors(e: JaxAluExp, out: JaxAluExp[] = []): JaxAluExp[] {
  if (e.op === "Mul" && e.dtype === "float32") {
    factors(e.src[0], out);
    factors(e.src[1], out);
  } else out.push(e);
  return out;
}

/** Parses `acc`, `acc·c`, `acc + G` or `acc·c + G` (either order); anything else is not a plain GEMM epilogue. */
function parseEpilogue(e: JaxAluExp, outShape: number[]): { alpha: number; addend: Operand | null } | null {
  let addend: Operand | null = null;
  if (e.op === "Add") {
    const [l, r] = e.src;
    const gl = globalView(l);
    const gr = globalView(r);
    if (gr && indexesOutput(r.src, outShape)) {
      addend = gr;
      e = l;
    } else if (gl && indexesOutput(l.src, outShape)) {
      addend = gl;
      e = r;
    } else return null;
  }
  let alpha = 1;
  if (e.op === "Mul") {
    const [l, r] = e.src;
    const cl = constValue(l);
    const cr = constValue(r);
    if (cr !== null && isVariable(l, "acc")) {
      alpha = cr;
      e = l;
    } else if (cl !== null && isVariable(r, "acc")) {
      alpha = cl;
      e = r;
    } else return null;
  }
  if (!isVariable(e, "acc")) return null;
  if (addend && addend.views[addend.views.length - 1].shape.length !== outShape.length) return null;
  return { alpha, addend };
}

/** Sizes that are worth a BLAS call: below this many multiply-adds the wasm kernel is as fast. */
export const DEFAULT_MIN_WORK = 1 << 15;

/** Plans `kernel` as sgemm calls, or returns null when it is not a matmul this module can place. */
export function planGemm(kernel: JaxKernel, minWork = DEFAULT_MIN_WORK): GemmPlan | null {
  const red = kernel.reduction;
  if (!red || red.op !== "Add" || red.dtype !== "float32") return null;
  const fs = factors(kernel.exp);
  let alpha = 1;
  const operands: Operand[] = [];
  for (const f of fs) {
    const c = constValue(f);
    if (c !== null) alpha *= c;
    else {
      const g = globalView(f);
      if (!g) return null;
      operands.push(g);
    }
  }
  if (operands.length !== 2) return null;
  const gvs = fs.filter((f) => f.op === "GlobalView");
  const shape = operands[0].views[operands[0].views.length - 1].shape;
  const n = shape.length;
  if (n < 2 || operands[1].views[operands[1].views.length - 1].shape.length !== n) return null;
  if (!shape.every((s, d) => s === operands[1].views[operands[1].views.length - 1].shape[d])) return null;
  const K = shape[n - 1];
  if (K !== red.size || prod(shape.slice(0, -1)) !== kernel.size) return null;
  const outShape = shape.slice(0, -1);
  for (const g of gvs) {
    if (g.src.length !== n || !isVariable(g.src[n - 1], "ridx") || !indexesOutput(g.src.slice(0, -1), outShape)) return null;
  }
  const epilogue = parseEpilogue(red.epilogue, outShape);
  if (!epilogue) return null;
  alpha *= epilogue.alpha;
  if (!Number.isFinite(alpha)) return null;

  // A is the operand that does not vary along the innermost output dim; B's trailing dims are the columns.
  let [a, b] = operands;
  const last = n - 2;
  if (dependsOn(a, last) && !dependsOn(b, last)) [a, b] = [b, a];
  if (!(dependsOn(b, last) && !dependsOn(a, last))) return null;
  let d = last;
  const nDims: number[] = [];
  while (d >= 0 && dependsOn(b, d) && !dependsOn(a, d)) nDims.unshift(d--);
  const mDims: number[] = [];
  while (d >= 0 && dependsOn(a, d) && !dependsOn(b, d)) mDims.unshift(d--);
  const batchDims = Array.from({ length: d + 1 }, (_, i) => i);
  const M = prod(mDims.map((i) => shape[i]));
  const N = prod(nDims.map((i) => shape[i]));
  const batch = prod(batchDims.map((i) => shape[i]));
  if (N < 2 || batch * M * N * K < minWork) return null;

  const la = layoutOf(a, n, shape, batchDims, mDims, [n - 1]);
  const lb = layoutOf(b, n, shape, batchDims, [n - 1], nDims);
  const lg = epilogue.addend ? layoutOf(epilogue.addend, n - 1, outShape, batchDims, mDims, nDims) : null;
  if (!la || !lb || (epilogue.addend && !lg)) return null;

  const plan = new Int32Array(P.LEN);
  plan[P.M] = M;
  plan[P.N] = N;
  plan[P.K] = K;
  plan[P.BATCH] = batch;
  // A: M × K, read in place when K is contiguous (rows apart by ≥ K) or M is (columns apart by ≥ M).
  let describeA = la.mode === OperandMode.table ? "A table" : "A packed";
  plan[P.A_MODE] = la.mode;
  plan[P.A_S0] = la.s0;
  plan[P.A_S1] = la.s1;
  if (la.mode === OperandMode.strided) {
    if (la.s1 === 1 && (la.s0 >= K || M === 1)) {
      plan[P.A_MODE] = OperandMode.direct;
      plan[P.A_TRANS] = 0;
      plan[P.A_S0] = M === 1 ? K : la.s0;
      describeA = "A";
    } else if (la.s0 === 1 && (la.s1 >= M || K === 1) && K > 1) {
      plan[P.A_MODE] = OperandMode.direct;
      plan[P.A_TRANS] = 1;
      plan[P.A_S0] = la.s1;
      describeA = "Aᵀ";
    }
  }
  // B: K × N.
  let describeB = lb.mode === OperandMode.table ? "B table" : "B packed";
  plan[P.B_MODE] = lb.mode;
  plan[P.B_S0] = lb.s0;
  plan[P.B_S1] = lb.s1;
  if (lb.mode === OperandMode.strided) {
    if (lb.s1 === 1 && (lb.s0 >= N || K === 1)) {
      plan[P.B_MODE] = OperandMode.direct;
      plan[P.B_TRANS] = 0;
      plan[P.B_S0] = K === 1 ? N : lb.s0;
      describeB = "B";
    } else if (lb.s0 === 1 && lb.s1 >= K && K > 1) {
      plan[P.B_MODE] = OperandMode.direct;
      plan[P.B_TRANS] = 1;
      plan[P.B_S0] = lb.s1;
      describeB = "Bᵀ";
    }
  }
  plan[P.G_MODE] = lg ? lg.mode : OperandMode.none;
  plan[P.G_S0] = lg?.s0 ?? 0;
  plan[P.G_S1] = lg?.s1 ?? 0;
  if (![...plan].every((x) => Number.isInteger(x) && Math.abs(x) < 2 ** 31)) return null;

  const rel = new Int32Array(4 * batch);
  for (let i = 0; i < batch; i++) {
    rel[4 * i] = la.rel[i];
    rel[4 * i + 1] = lb.rel[i];
    rel[4 * i + 2] = i * M * N;
    rel[4 * i + 3] = lg ? lg.rel[i] : 0;
  }
  return {
    M,
    N,
    K,
    batch,
    alpha,
    inputA: a.input,
    inputB: b.input,
    inputG: epilogue.addend ? epilogue.addend.input : -1,
    plan,
    rel,
    tables: [la.table, lb.table, lg?.table ?? null],
    extentA: la.extent,
    extentB: lb.extent,
    extentG: lg ? lg.extent : [0, 0],
    work: batch * M * N * K,
    describe: `${batch > 1 ? `${batch} × ` : ""}[${M}×${K}]·[${K}×${N}] ${describeA}, ${describeB}${alpha !== 1 ? `, α=${alpha}` : ""}${lg ? `, + G${lg.mode === OperandMode.table ? " table" : ""}` : ""}`,
  };
}
