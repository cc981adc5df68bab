/**
 * A restricted unpickler for PyTorch state dicts. It interprets the pickle opcodes itself and never calls
 * anything by name: the only globals it accepts are the ones a tensor state dict needs (the tensor-rebuild
 * functions, the typed storage classes, `OrderedDict`), each mapped to a JavaScript function written here.
 * Any other global (`os.system`, `builtins.eval`, ...) or any opcode that would instantiate a class is
 * refused with an `UnsafePickleError` before anything is built.
 */
import { CheckpointError } from "../engine/errors.js";
import type { SafeDType } from "../engine/safetensors.js";

/** A pickle that asks for something a state dict never needs; nothing from it was run. */
export class UnsafePickleError extends CheckpointError {}

/** A storage reference from a persistent id: `('storage', torch.XStorage, key, location, numel)`. */
export type StorageRef = { kind: "storage"; dtype: SafeDType; key: string; numel: number };
/** A tensor view of a storage, from `torch._utils._rebuild_tensor_v2`. */
export type TensorRef = { kind: "tensor"; storage: StorageRef; offset: number; shape: number[]; stride: number[] };

type PyCallable = { kind: "callable"; name: string; call: (args: PyValue[]) => PyValue };
type StorageType = { kind: "storage_type"; dtype: SafeDType };
export type PyValue =
  | null
  | boolean
  | number
  | string
  | PyValue[]
  | { kind: "tuple"; items: PyValue[] }
  | Map<PyValue, PyValue>
  | PyCallable
  | StorageType
  | StorageRef
  | TensorRef;

const STORAGE_DTYPES: Record<string, SafeDType> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  DoubleStorage: "F64",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

const tuple = (items: PyValue[]): PyValue => ({ kind: "tuple", items });
const itemsOf = (v: PyValue): PyValue[] | null =>
  Array.isArray(v) ? v : v && typeof v === "object" && "kind" in v && v.kind === "tuple" ? v.items : null;

function intList(v: PyValue, what: string): number[] {
  const items = itemsOf(v);
  if (!items || !items.every((x) => typeof x === "number")) throw new CheckpointError(`pickle: ${what} is not a tuple of integers`);
  return items as number[];
}

function rebuildTensor(args: PyValue[]): PyValue {
  const [storage, offset] = args;
  if (!storage || typeof storage !== "object" || !("kind" in storage) || storage.kind !== "storage") {
    throw new CheckpointError("pickle: _rebuild_tensor_v2 got something other than a storage");
  }
  if (typeof offset !== "number") throw new CheckpointError("pickle: _rebuild_tensor_v2 offset is not an integer");
  return { kind: "tensor", storage, offset, shape: intList(args[2], "tensor size"), stride: intList(args[3], "tensor stride") };
}

/** The whitelist: `module name` → what it means here. Everything else is refused. */
function resolveGlobal(module: string, name: string): PyValue {
  const full = `${module}.${name}`;
  if (full === "collections.OrderedDict") return { kind: "callable", name: full, call: () => new Map() };
  if (full === "torch._utils._rebuild_tensor_v2") return { kind: "callable", name: full, call: rebuildTensor };
  // A Parameter wraps a tensor; only the data matters for inference.
  if (full === "torch._utils._rebuild_parameter") return { kind: "callable", name: full, call: (args) => args[0] };
  if (module === "torch" && name in STORAGE_DTYPES) return { kind: "storage_type", dtype: STORAGE_DTYPES[name] };
  throw new UnsafePickleError(
    `refusing to load this checkpoint: its pickle references ${full}, which a tensor state dict never needs. ` +
      "Loading it with torch.load would have run that code. Nothing from the file was executed. " +
      "Use a model.safetensors file, or a pytorch_model.bin from a source you trust re-saved as safetensors.",
  );
}

const MARK = Symbol("mark");

/**
 * Interprets `bytes` (protocols 2 to 5). `persistentLoad` turns persistent ids (BINPERSID) into values.
 */
export function unpickle(bytes: Uint8Array, persistentLoad: (pid: PyValue) => PyValue, what = "pickle"): PyValue {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: (PyValue | typeof MARK)[] = [];
  const memo = new Map<number, PyValue>();
  const text = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  const fail = (why: string) => new CheckpointError(`${what}: ${why} at byte ${pos}. The file is corrupt or truncated; re-download it.`);
  const need = (n: number) => {
    if (pos + n > bytes.length) throw fail("unexpected end of data");
  };
  const u8 = () => (need(1), bytes[pos++]);
  const u16 = () => (need(2), (pos += 2), dv.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), dv.getUint32(pos - 4, true));
  const i32 = () => (need(4), (pos += 4), dv.getInt32(pos - 4, true));
  const take = (n: number) => (need(n), (pos += n), bytes.subarray(pos - n, pos));
  const utf8 = (b: Uint8Array) => {
    try {
      return text.decode(b);
    } catch {
      throw fail("a string that is not valid UTF-8");
    }
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw fail("unterminated line");
    const s = new TextDecoder().decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw fail("stack underflow");
    return v;
  };
  const popMark = (): PyValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) throw fail("MARK missing");
    const items = stack.splice(i) as PyValue[];
    items.shift();
    return items;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw fail("stack underflow");
    return v;
  };
  const setItems = (dict: PyValue, kv: PyValue[]) => {
    if (!(dict instanceof Map)) throw fail("SETITEM on something that is not a dict");
    for (let i = 0; i + 1 < kv.length; i += 2) dict.set(kv[i], kv[i + 1]);
  };
  const memoGet = (k: number) => {
    if (!memo.has(k)) throw fail(`memo entry ${k} is missing`);
    return memo.get(k)!;
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: take(8); break; // FRAME: framing is only a read-ahead hint
      case 0x2e: return pop(); // STOP
      case 0x28: stack.push(MARK); break; // MARK
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x8a: { // LONG1: little-endian two's complement
        const b = take(u8());
        let v = 0n;
        for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (b.length && b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) throw fail("integer too large");
        stack.push(Number(v));
        break;
      }
      case 0x47: need(8); stack.push(dv.getFloat64(pos, false)); pos += 8; break; // BINFLOAT (big-endian)
      case 0x58: stack.push(utf8(take(u32()))); break; // BINUNICODE
      case 0x8c: stack.push(utf8(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: { // BINUNICODE8
        need(8);
        const n = Number(dv.getBigUint64(pos, true));
        pos += 8;
        stack.push(utf8(take(n)));
        break;
      }
      case 0x55: stack.push(new TextDecoder("latin1").decode(take(u8()))); break; // SHORT_BINSTRING
      case 0x54: stack.push(new TextDecoder("latin1").decode(take(u32()))); break; // BINSTRING
      case 0x29: stack.push(tuple([])); break; // EMPTY_TUPLE
      case 0x85: stack.push(tuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push(tuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(tuple([a, b, c])); break; } // TUPLE3
      case 0x74: stack.push(tuple(popMark())); break; // TUPLE
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x61: { const v = pop(); const l = top(); if (!Array.isArray(l)) throw fail("APPEND to a non-list"); l.push(v); break; }
      case 0x65: { const vs = popMark(); const l = top(); if (!Array.isArray(l)) throw fail("APPENDS to a non-list"); l.push(...vs); break; }
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const kv = popMark(); setItems(top(), kv); break; } // SETITEMS
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: stack.push(memoGet(u8())); break; // BINGET
      case 0x6a: stack.push(memoGet(u32())); break; // LONG_BINGET
      case 0x63: { const module = line(); const name = line(); stack.push(resolveGlobal(module, name)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") throw fail("STACK_GLOBAL needs two strings");
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x51: stack.push(persistentLoad(pop())); break; // BINPERSID
      case 0x52: { // REDUCE: only whitelisted callables exist on the stack
        const args = itemsOf(pop());
        const fn = pop();
        if (!args) throw fail("REDUCE arguments are not a tuple");
        if (!fn || typeof fn !== "object" || !("kind" in fn) || fn.kind !== "callable") throw new UnsafePickleError(`${what}: REDUCE on something that is not an allowed function; refusing to go on`);
        stack.push(fn.call(args));
        break;
      }
      case 0x62: { // BUILD: state for an OrderedDict (torch's `_metadata`) carries no tensors; drop it
        pop();
        if (!(top() instanceof Map)) throw new UnsafePickleError(`${what}: BUILD on an object other than a dict; refusing to go on`);
        break;
      }
      default:
        throw new UnsafePickleError(
          `${what}: pickle opcode 0x${op.toString(16).padStart(2, "0")} at byte ${pos - 1} is not one a tensor state dict uses ` +
            "(it could create objects or run code); refusing to go on. Use a model.safetensors file instead.",
        );
    }
  }
}
