/**
 * safetensors read and write. Layout: u64 little-endian header length N, N bytes of JSON
 * (`{"__metadata__": {...}, name: {dtype, shape, data_offsets: [begin, end]}}`, space-padded to a multiple
 * of 8), then the raw little-endian tensor data; offsets are relative to the start of the data.
 */
import { CheckpointError } from "./errors.js";

export type SafeDType = "F32" | "F16" | "BF16" | "F64" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";
export type HostTensor = { dtype: SafeDType; shape: number[]; data: Uint8Array };

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Record<SafeDType, number> = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export function f32Tensor(shape: number[], values: Float32Array): HostTensor {
  return { dtype: "F32", shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/** An int64 tensor from (safe) integers. */
export function i64Tensor(shape: number[], values: ArrayLike<number>): HostTensor {
  const a = BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
  return { dtype: "I64", shape, data: new Uint8Array(a.buffer) };
}

export function i32Tensor(shape: number[], values: Int32Array): HostTensor {
  return { dtype: "I32", shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/** Serializes tensors (sorted by name, as the reference implementation does). */
export function encodeSafetensors(tensors: Map<string, HostTensor>, metadata?: Record<string, string>): Uint8Array {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new Error(`safetensors: ${name} has ${t.data.byteLength} bytes, shape [${t.shape}] ${t.dtype} needs ${expected}`);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  // Pad again in case multi-byte characters made the byte length differ from the string length.
  const padded = new Uint8Array(Math.ceil(headerBytes.length / 8) * 8).fill(0x20);
  padded.set(headerBytes);
  const out = new Uint8Array(8 + padded.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded.length), true);
  out.set(padded, 8);
  let pos = 8 + padded.length;
  for (const name of names) {
    const t = tensors.get(name)!;
    out.set(t.data, pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** Parses a safetensors buffer; `what` names the file in errors. Tensor data is copied (aligned). */
export function decodeSafetensors(
  bytes: Uint8Array,
  what = "safetensors file",
): { tensors: Map<string, HostTensor>; metadata: Record<string, string> } {
  const fail = (why: string) =>
    new CheckpointError(`${what} is not a valid safetensors file: ${why}. The file is corrupt or truncated; re-create or re-download it.`);
  if (bytes.byteLength < 8) throw fail("shorter than its 8-byte header length");
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n > bytes.byteLength - 8 || n > 100_000_000) throw fail(`header length ${n} exceeds the file size ${bytes.byteLength}`);
  let header: Record<string, { dtype: SafeDType; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw fail(`header is not JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + n;
  const dataLen = bytes.byteLength - dataStart;
  const tensors = new Map<string, HostTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets } = entry as { dtype: SafeDType; shape: number[]; data_offsets: [number, number] };
    if (!(dtype in DTYPE_BYTES)) throw fail(`tensor ${name} has unsupported dtype ${dtype}`);
    if (!Array.isArray(shape) || !Array.isArray(data_offsets)) throw fail(`tensor ${name} lacks shape or data_offsets`);
    const [b, e] = data_offsets;
    const size = shape.reduce((a, c) => a * c, 1) * DTYPE_BYTES[dtype];
    if (!(b >= 0 && e >= b && e <= dataLen)) throw fail(`tensor ${name} data [${b}, ${e}) lies outside the ${dataLen} data bytes`);
    if (e - b !== size) throw fail(`tensor ${name} has ${e - b} bytes but shape [${shape}] ${dtype} needs ${size}`);
    tensors.set(name, { dtype, shape, data: bytes.slice(dataStart + b, dataStart + e) });
  }
  return { tensors, metadata };
}

/** A float32 view of a tensor (F32 as is; F16, BF16 and F64 converted). */
export function toFloat32(t: HostTensor): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  switch (t.dtype) {
    case "F32":
      return new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
    case "F64": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return out;
    }
    case "BF16": {
      const out = new Float32Array(n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(i * 2, true) << 16;
      return out;
    }
    case "F16": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(i * 2, true));
      return out;
    }
    default:
      throw new CheckpointError(`tensor of dtype ${t.dtype} cannot be read as float32`);
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}
