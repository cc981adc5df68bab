/**
 * 1-D convolution as matmuls (im2col). jax-js's `lax.conv` is correct but about 11× slower on wasm than
 * building the strided frames by reshape and slice and doing one GEMM. Layout is channels-last: [B, T, C].
 */
import { numpy as np } from "../engine/jax.js";

/** Output length of a convolution (PyTorch's formula). */
export function convOutputLength(length: number, kernel: number, stride: number, padding = 0): number {
  return Math.floor((length + 2 * padding - kernel) / stride) + 1;
}

/** Conv parameters: `weight` [k·Cin/G, Cout] for G = 1, or [G, k·Cin/G, Cout/G]; rows in (tap, channel) order. */
export type ConvParams = { weight: np.Array; bias?: np.Array };

/** A torch Conv1d weight [Cout, Cin/G, k] (flat, host) as our matmul weight (see ConvParams). */
export function convWeightFromTorch(torchWeight: Float32Array, outChannels: number, inPerGroup: number, kernel: number, groups: number): np.Array {
  const outPerGroup = outChannels / groups;
  const w = new Float32Array(torchWeight.length);
  // dst[g, j, c, o] = src[g·outPerGroup + o, c, j]
  for (let g = 0; g < groups; g++)
    for (let j = 0; j < kernel; j++)
      for (let c = 0; c < inPerGroup; c++)
        for (let o = 0; o < outPerGroup; o++) {
          w[((g * kernel + j) * inPerGroup + c) * outPerGroup + o] = torchWeight[((g * outPerGroup + o) * inPerGroup + c) * kernel + j];
        }
  const a = np.array(w);
  return groups === 1 ? a.reshape([kernel * inPerGroup, outChannels]) : a.reshape([groups, kernel * inPerGroup, outPerGroup]);
}

/**
 * The k strided frames of x [B, T, C] for a kernel k and stride s: [B, Tout, k, C] with
 * frames[b, t, j] = x[b, t·s + j]. Index t·s + j is (t + a)·s + r for j = a·s + r, so a reshape to
 * [B, M, s, C] turns every tap into a plain slice.
 */
function strideFrames(x: np.Array, kernel: number, stride: number): np.Array {
  const [b, t, c] = x.shape;
  const tOut = convOutputLength(t, kernel, stride);
  if (stride === 1) {
    const taps = Array.from({ length: kernel }, (_, j) => x.ref.slice([], [j, j + tOut]));
    x.dispose();
    return np.stack(taps, 2);
  }
  const m = tOut + Math.floor((kernel - 1) / stride);
  let y = x;
  if (m * stride > t) y = np.pad(y, [[0, 0], [0, m * stride - t], [0, 0]]);
  else if (m * stride < t) y = y.slice([], [0, m * stride]);
  y = y.reshape([b, m, stride, c]);
  const taps = Array.from({ length: kernel }, (_, j) => y.ref.slice([], [Math.floor(j / stride), Math.floor(j / stride) + tOut], j % stride));
  y.dispose();
  return np.stack(taps, 2);
}

/**
 * y = conv1d(x) for x [B, T, Cin] with zero `padding` on both sides → [B, Tout, Cout]. Consumes x and params.
 */
export function conv1d(p: ConvParams, x: np.Array, o: { kernel: number; stride?: number; padding?: number; groups?: number }): np.Array {
  const stride = o.stride ?? 1;
  const groups = o.groups ?? 1;
  const [b, t, cin] = x.shape;
  const cg = cin / groups;
  // Groups first ([G·B, T, Cin/G]), so that the taps stack straight into each group's matmul operand (one copy of
  // the input, not a copy of the k-times larger frames).
  if (groups > 1) x = x.reshape([b, t, groups, cg]).transpose([2, 0, 1, 3]).reshape([groups * b, t, cg]);
  if (o.padding) x = np.pad(x, [[0, 0], [o.padding, o.padding], [0, 0]]);
  const frames = strideFrames(x, o.kernel, stride); // [G·B, Tout, k, Cin/G]
  const tOut = frames.shape[1];
  let y: np.Array;
  if (groups === 1) {
    y = np.matmul(frames.reshape([b * tOut, o.kernel * cin]), p.weight).reshape([b, tOut, -1]);
  } else {
    const out = np.matmul(frames.reshape([groups, b * tOut, o.kernel * cg]), p.weight); // [G, B·Tout, Cout/G]
    y = out.transpose([1, 0, 2]).reshape([b, tOut, -1]);
  }
  return p.bias ? y.add(p.bias) : y;
}

/**
 * y = conv2d(x) for a channels-last grid x [B, H, W, Cin], stride 1, zero `padding` on every side → [B, H', W', Cout].
 * The weight is a conv weight in our layout with k·k taps in row-major (ky, kx) order: a torch Conv2d weight
 * [Cout, Cin/G, k, k] read as [Cout, Cin/G, k·k]. Consumes x and params.
 */
export function conv2d(p: ConvParams, x: np.Array, o: { kernel: number; padding?: number; groups?: number }): np.Array {
  const groups = o.groups ?? 1;
  const pad = o.padding ?? 0;
  const k = o.kernel;
  const [b, hIn, wIn, cin] = x.shape;
  const cg = cin / groups;
  // Groups first ([G·B, H, W, Cin/G]), so that the k·k taps stack straight into each group's matmul operand
  // (one copy of the input, not a copy of the k²-times larger frames).
  let g = groups === 1 ? x : x.reshape([b, hIn, wIn, groups, cg]).transpose([3, 0, 1, 2, 4]).reshape([groups * b, hIn, wIn, cg]);
  if (pad) g = np.pad(g, [[0, 0], [pad, pad], [pad, pad], [0, 0]]);
  const [, h, w] = g.shape;
  const ho = h - k + 1;
  const wo = w - k + 1;
  const taps: np.Array[] = [];
  for (let ky = 0; ky < k; ky++) for (let kx = 0; kx < k; kx++) taps.push(g.ref.slice([], [ky, ky + ho], [kx, kx + wo]));
  g.dispose();
  const rows = b * ho * wo;
  const frames = np.stack(taps, 3); // [G·B, H', W', k·k, Cin/G]
  let y: np.Array;
  if (groups === 1) y = np.matmul(frames.reshape([rows, k * k * cin]), p.weight);
  else y = np.matmul(frames.reshape([groups, rows, k * k * cg]), p.weight).transpose([1, 0, 2]).reshape([rows, -1]); // [G, rows, Cout/G] → [rows, Cout]
  y = y.reshape([b, ho, wo, -1]);
  return p.bias ? y.add(p.bias) : y;
}
