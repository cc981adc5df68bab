/**
 * An independent plain-JavaScript (float64) reference of the blocks, for checking the jax-js code against
 * hand computation. Matrices are row-major number[][]; nothing here shares code with src/.
 */
export type Mat = number[][];

export const matmul = (a: Mat, b: Mat): Mat => a.map((row) => b[0].map((_, j) => row.reduce((s, v, k) => s + v * b[k][j], 0)));
export const addRow = (a: Mat, v: number[]): Mat => a.map((row) => row.map((x, j) => x + v[j]));
export const add = (a: Mat, b: Mat): Mat => a.map((row, i) => row.map((x, j) => x + b[i][j]));
export const transpose = (a: Mat): Mat => a[0].map((_, j) => a.map((row) => row[j]));

export function layerNorm(a: Mat, eps: number, g?: number[], b?: number[]): Mat {
  return a.map((row) => {
    const mean = row.reduce((s, x) => s + x, 0) / row.length;
    const v = row.reduce((s, x) => s + (x - mean) ** 2, 0) / row.length;
    return row.map((x, j) => ((x - mean) / Math.sqrt(v + eps)) * (g ? g[j] : 1) + (b ? b[j] : 0));
  });
}

/** erf by its Maclaurin series (|x| ≤ 3) or the continued-fraction tail, accurate to ~1e-12. */
export function erf(x: number): number {
  const s = Math.sign(x);
  x = Math.abs(x);
  if (x < 3) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 100; n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return (s * 2 * sum) / Math.sqrt(Math.PI);
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (x + f);
  return s * (1 - Math.exp(-x * x) / Math.sqrt(Math.PI) / (x + f));
}

export const gelu = (a: Mat): Mat => a.map((row) => row.map((x) => 0.5 * x * (1 + erf(x / Math.SQRT2))));

export function softmaxRows(a: Mat): Mat {
  return a.map((row) => {
    const m = Math.max(...row);
    const e = row.map((x) => Math.exp(x - m));
    const s = e.reduce((p, q) => p + q, 0);
    return e.map((x) => x / s);
  });
}

export type RefLinear = { w: Mat; b?: number[] }; // w: [in, out]
export const linear = (x: Mat, p: RefLinear): Mat => (p.b ? addRow(matmul(x, p.w), p.b) : matmul(x, p.w));

/** Self-attention over one sequence x [T, D]; keyMask[t] = false hides key t. */
export function attention(x: Mat, p: { q: RefLinear; k: RefLinear; v: RefLinear; out: RefLinear }, heads: number, keyMask?: boolean[]): Mat {
  const d = x[0].length;
  const hd = d / heads;
  const q = linear(x, p.q);
  const k = linear(x, p.k);
  const v = linear(x, p.v);
  const ctx: Mat = x.map(() => new Array(d).fill(0));
  for (let h = 0; h < heads; h++) {
    const cols = (m: Mat) => m.map((row) => row.slice(h * hd, (h + 1) * hd));
    const scores = matmul(cols(q), transpose(cols(k))).map((row) => row.map((s, j) => (keyMask && !keyMask[j] ? -1e9 : s / Math.sqrt(hd))));
    const out = matmul(softmaxRows(scores), cols(v));
    out.forEach((row, t) => row.forEach((val, j) => (ctx[t][h * hd + j] = val)));
  }
  return linear(ctx, p.out);
}

export type RefPostLn = {
  attn: { q: RefLinear; k: RefLinear; v: RefLinear; out: RefLinear };
  attnNorm: { g: number[]; b: number[] };
  fc1: RefLinear;
  fc2: RefLinear;
  ffnNorm: { g: number[]; b: number[] };
};

/** Post-LN block; returns the output and the FFN output before the last residual. */
export function postLnBlock(x: Mat, p: RefPostLn, heads: number, eps: number, keyMask?: boolean[]): { out: Mat; ffn: Mat } {
  const h = layerNorm(add(x, attention(x, p.attn, heads, keyMask)), eps, p.attnNorm.g, p.attnNorm.b);
  const ffn = linear(gelu(linear(h, p.fc1)), p.fc2);
  return { out: layerNorm(add(h, ffn), eps, p.ffnNorm.g, p.ffnNorm.b), ffn };
}
