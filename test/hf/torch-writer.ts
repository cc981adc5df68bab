/**
 * A minimal writer of torch zip checkpoints for tests: a protocol-2 pickle of an OrderedDict of
 * `_rebuild_tensor_v2` calls, as `torch.save(state_dict)` writes it, plus raw storages.
 */
import { zipSync } from "fflate";

export type TestTensor = {
  name: string;
  storage: "FloatStorage" | "HalfStorage" | "BFloat16Storage" | "LongStorage";
  /** Raw little-endian storage bytes. */
  data: Uint8Array;
  numel: number;
  offset?: number;
  shape: number[];
  stride?: number[];
};

export class PickleBytes {
  readonly bytes: number[] = [];
  op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  text(s: string): this {
    return this.op(...new TextEncoder().encode(s));
  }
  global(module: string, name: string): this {
    return this.op(0x63).text(`${module}\n${name}\n`);
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.op(0x58, b.length & 0xff, (b.length >> 8) & 0xff, 0, 0, ...b);
  }
  int(n: number): this {
    return this.op(0x4a, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff);
  }
  tuple(items: (() => void)[]): this {
    this.op(0x28);
    items.forEach((f) => f());
    return this.op(0x74);
  }
  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const contiguous = (shape: number[]) => shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));

export function statePickle(tensors: TestTensor[]): Uint8Array {
  const p = new PickleBytes().op(0x80, 2).global("collections", "OrderedDict").op(0x29, 0x52).op(0x28);
  tensors.forEach((t, i) => {
    p.str(t.name).global("torch._utils", "_rebuild_tensor_v2");
    p.tuple([
      () => p.tuple([() => p.str("storage"), () => p.global("torch", t.storage), () => p.str(String(i)), () => p.str("cpu"), () => p.int(t.numel)]).op(0x51),
      () => p.int(t.offset ?? 0),
      () => p.tuple(t.shape.map((d) => () => p.int(d))),
      () => p.tuple((t.stride ?? contiguous(t.shape)).map((d) => () => p.int(d))),
      () => p.op(0x89),
      () => p.global("collections", "OrderedDict").op(0x29, 0x52),
    ]).op(0x52);
  });
  return p.op(0x75, 0x2e).done();
}

/** A torch zip archive with the given pickle (default: the state dict of `tensors`) under `root/`. */
export function torchZip(tensors: TestTensor[], opts: { root?: string; pickle?: Uint8Array } = {}): Uint8Array {
  const root = opts.root ?? "archive";
  const files: Record<string, Uint8Array> = {
    [`${root}/data.pkl`]: opts.pickle ?? statePickle(tensors),
    [`${root}/version`]: new TextEncoder().encode("3\n"),
  };
  tensors.forEach((t, i) => (files[`${root}/data/${i}`] = t.data));
  return zipSync(files, { level: 0 });
}
