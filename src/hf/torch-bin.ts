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

/** Checks a tensor view against its storage's declared size: whole non-negative numbers, every element inside. */
function checkView(t: TensorRef, name: string, what: string): void {
  const bad = (v: number) => !Number.isSafeInteger(v) || v < 0;
  if (bad(t.offset) || t.shape.some(bad) || t.stride.some(bad) || t.shape.length !== t.stride.length || bad(t.storage.numel)) {
    throw new CheckpointError(
      `${what}: tensor ${name} has an invalid view (offset ${t.offset}, size [${t.shape}], stride [${t.stride}], storage of ${t.storage.numel}); the file is corrupt or was not written by torch`,
    );
  }
  const n = t.shape.reduce((a, b) => a * b, 1);
  const last = n === 0 ? 0 : t.offset + t.shape.reduce((m, d, i) => m + (d - 1) * t.stride[i], 0);
  if (n > 0 && last >= t.storage.numel) {
    throw new CheckpointError(`${what}: tensor ${name} reads element ${last} of a storage of ${t.storage.numel}; the file is corrupt`);
  }
}

/** Copies a (possibly strided) view out of its storage into a contiguous tensor (the view is checked first). */
function materialize(t: TensorRef, storage: Uint8Array, name: string): HostTensor {
  const size = DTYPE_BYTES[t.storage.dtype];
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(n * size);
  const contiguous = t.stride.every((s, i) => s === t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
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

/** The largest pickle inflated (a state dict's pickle is a few hundred kB even for large models). */
const MAX_PICKLE_BYTES = 256 << 20;

type ZipEntry = { name: string; size: number; originalSize: number; compression: number };

function unzipSome(bytes: Uint8Array, what: string, keep: (f: ZipEntry) => boolean): Record<string, Uint8Array> {
  try {
    return unzipSync(bytes, { filter: keep });
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    const legacy = bytes[0] === 0x80 ? " It looks like a legacy (pre-1.6) torch file, which is not supported: re-save it with a current torch." : "";
    throw new CheckpointError(`${what} is not a readable zip archive (${(e as Error).message}); the file is truncated or corrupt.${legacy}`);
  }
}

/**
 * Reads every tensor of a torch zip checkpoint. `what` names the file in errors. Nothing is inflated before it is
 * checked: the pickle first (size-capped), then only the storages it references, each only if the archive's
 * declared size equals the size the pickle declares, and every tensor view is checked against its storage.
 */
export function readTorchBin(bytes: Uint8Array, what = "pytorch_model.bin"): Map<string, HostTensor> {
  const pklName = (n: string) => n === "data.pkl" || n.endsWith("/data.pkl");
  const pklFiles = unzipSome(bytes, what, (f) => {
    if (!pklName(f.name)) return false;
    if (f.originalSize > MAX_PICKLE_BYTES) throw new CheckpointError(`${what}: ${f.name} declares ${f.originalSize} bytes, more than any state dict's pickle; the file is corrupt`);
    return true;
  });
  const pkl = Object.keys(pklFiles).find(pklName);
  if (!pkl) throw new CheckpointError(`${what} has no data.pkl: it is a zip file but not a torch checkpoint`);
  const root = pkl.slice(0, -"data.pkl".length);
  const state = unpickle(pklFiles[pkl], persistentLoad, what);
  if (!(state instanceof Map)) throw new CheckpointError(`${what} does not hold a state dict (a dict of tensors)`);
  const views = new Map<string, TensorRef>();
  const storageBytes = new Map<string, number>();
  for (const [name, value] of state) {
    if (typeof name !== "string") continue;
    if (!value || typeof value !== "object" || !("kind" in value) || value.kind !== "tensor") continue; // e.g. non-tensor extras
    checkView(value, name, what);
    const bytesDeclared = value.storage.numel * DTYPE_BYTES[value.storage.dtype];
    const seen = storageBytes.get(value.storage.key);
    if (seen !== undefined && seen !== bytesDeclared) throw new CheckpointError(`${what}: storage data/${value.storage.key} is declared with two sizes; the file is corrupt`);
    storageBytes.set(value.storage.key, bytesDeclared);
    views.set(name, value);
  }
  const storages = unzipSome(bytes, what, (f) => {
    if (!f.name.startsWith(`${root}data/`)) return false;
    const declared = storageBytes.get(f.name.slice(`${root}data/`.length));
    if (declared === undefined) return false; // not referenced: never inflated
    if (f.originalSize !== declared) {
      throw new CheckpointError(`${what}: ${f.name} holds ${f.originalSize} bytes but its tensors declare a storage of ${declared}; the file is corrupt`);
    }
    return true;
  });
  const tensors = new Map<string, HostTensor>();
  for (const [name, view] of views) {
    const storage = storages[`${root}data/${view.storage.key}`];
    if (!storage) throw new CheckpointError(`${what}: the storage of ${name} (data/${view.storage.key}) is missing from the archive; it is truncated`);
    if (storage.length !== storageBytes.get(view.storage.key)) throw new CheckpointError(`${what}: the storage of ${name} (data/${view.storage.key}) is truncated`);
    tensors.set(name, materialize(view, storage, name));
  }
  return tensors;
}
