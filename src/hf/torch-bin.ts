/**
 * `pytorch_model.bin` in torch's zip format: `<root>/data.pkl` (a pickled state dict whose tensors point at
 * storages through persistent ids), `<root>/data/<key>` (raw little-endian storages) and `<root>/version`.
 * The pickle goes through the restricted unpickler; nothing in the file is executed.
 */
import { unzipSync } from "fflate";
import { CheckpointError } from "../engine/errors.js";
import { DTYPE_BYTES, type HostTensor } from "../engine/safetensors.js";
import { unpickle, UnsafePickleError, type PyValue, type StorageRef, type TensorRef } from "./pickle.js";

function persistentLoad(pid: PyValue): PyValue {
  const items = pid && typeof pid === "object" && "kind" in pid && pid.kind === "tuple" ? pid.items : null;
  if (!items || items[0] !== "storage") throw new UnsafePickleError("pytorch_model.bin: a persistent id that is not a tensor storage; refusing to go on");
  const [, type, key, , numel] = items;
  if (!type || typeof type !== "object" || !("kind" in type) || type.kind !== "storage_type") {
    throw new CheckpointError("pytorch_model.bin: a storage without a storage type");
  }
  if (typeof key !== "string" || typeof numel !== "number") throw new CheckpointError("pytorch_model.bin: malformed storage id");
  return { kind: "storage", dtype: type.dtype, key, numel } satisfies StorageRef;
}

/** Copies a (possibly strided) view out of its storage into a contiguous tensor. */
function materialize(t: TensorRef, storage: Uint8Array, name: string): HostTensor {
  const size = DTYPE_BYTES[t.storage.dtype];
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(n * size);
  const contiguous = t.stride.every((s, i) => s === t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const last = n === 0 ? 0 : t.offset + t.shape.reduce((m, d, i) => m + (d - 1) * t.stride[i], 0);
  if (n > 0 && (last + 1) * size > storage.length) {
    throw new CheckpointError(`pytorch_model.bin: tensor ${name} reads past the end of its storage (${storage.length} bytes); the archive is truncated or corrupt`);
  }
  if (contiguous) {
    out.set(storage.subarray(t.offset * size, (t.offset + n) * size));
  } else {
    const index = new Array(t.shape.length).fill(0);
    for (let i = 0; i < n; i++) {
      const src = t.offset + index.reduce((a, k, d) => a + k * t.stride[d], 0);
      out.set(storage.subarray(src * size, (src + 1) * size), i * size);
      for (let d = t.shape.length - 1; d >= 0 && ++index[d] === t.shape[d]; d--) index[d] = 0;
    }
  }
  return { dtype: t.storage.dtype, shape: t.shape, data: out };
}

/** Reads every tensor of a torch zip checkpoint. `what` names the file in errors. */
export function readTorchBin(bytes: Uint8Array, what = "pytorch_model.bin"): Map<string, HostTensor> {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (e) {
    const legacy = bytes[0] === 0x80 ? " It looks like a legacy (pre-1.6) torch file, which is not supported: re-save it with a current torch." : "";
    throw new CheckpointError(`${what} is not a readable zip archive (${(e as Error).message}); the file is truncated or corrupt.${legacy}`);
  }
  const pkl = Object.keys(files).find((k) => k === "data.pkl" || k.endsWith("/data.pkl"));
  if (!pkl) throw new CheckpointError(`${what} has no data.pkl: it is a zip file but not a torch checkpoint`);
  const root = pkl.slice(0, -"data.pkl".length);
  const state = unpickle(files[pkl], persistentLoad, what);
  if (!(state instanceof Map)) throw new CheckpointError(`${what} does not hold a state dict (a dict of tensors)`);
  const tensors = new Map<string, HostTensor>();
  for (const [name, value] of state) {
    if (typeof name !== "string") continue;
    if (!value || typeof value !== "object" || !("kind" in value) || value.kind !== "tensor") continue; // e.g. non-tensor extras
    const storage = files[`${root}data/${value.storage.key}`];
    if (!storage) throw new CheckpointError(`${what}: the storage of ${name} (data/${value.storage.key}) is missing from the archive; it is truncated`);
    tensors.set(name, materialize(value, storage, name));
  }
  return tensors;
}
