/**
 * `d2v check-fairseq`: one training step of ours against one of the official fairseq data2vec code, from a
 * fixture folder (see ../shared/fixtures/fairseq/README.md): fairseq's weights, inputs and the mask it used go
 * through our own modality, loss, gradients and EMA; every tensor it recorded is compared.
 *   step 1: loss, predictions x and targets y at the masked steps, d loss / d w for every student parameter;
 *   then w ← w − 0.1·grad and one EMA step with τ = 0.9: the teacher;
 *   step 2: the same batch and mask with the moved student and teacher.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { numpy as np, tree, valueAndGrad } from "../engine/jax.js";
import { D2vError } from "../engine/errors.js";
import { decodeSafetensors, toFloat32, type HostTensor } from "../engine/safetensors.js";
import type { ParamTree } from "../engine/tree.js";
import { data2vecLoss, data2vecOutputs, studentForEma, type Data2VecParams, type Modality, type Teacher } from "../data2vec/model.js";
import { emaUpdate } from "../data2vec/ema.js";
import type { Data2VecSettings } from "../data2vec/config.js";
import { leafAt, toFairseq, type KeyEntry } from "./keys.js";
import { textVariant } from "./text.js";
import { audioVariant } from "./audio.js";

export const TOLERANCE = 1e-4;

/** What a variant supplies: our modality and settings, the student as our tree, the batch, and the key maps. */
export type FairseqVariant = {
  modality: Modality<ParamTree, { [k: string]: np.Array }>;
  d2v: Data2VecSettings;
  params: Data2VecParams<ParamTree>;
  /** The teacher as fairseq saved it: its blocks, and its own copy of the shared groups `d2v.emaShared` names. */
  teacher: Teacher;
  batch: () => { [k: string]: np.Array };
  /** Student key map (fairseq key → our path in `params`). */
  student: KeyEntry[];
  /** Teacher key (without `teacher.`) → our path: in the teacher (`teacher`: its blocks and own groups) or shared with the student (`student`). */
  teacherKeys: { key: string; where: "teacher" | "student"; entry: KeyEntry }[];
  /** The settings that reproduce fairseq where our default differs (shown in the JSON line). */
  settings: Record<string, unknown>;
};

export type Fixture = { dir: string; config: { model: Record<string, unknown>; fixture: Record<string, unknown> }; weights: Map<string, HostTensor>; inputs: Map<string, HostTensor>; expected: Map<string, HostTensor> };

const VARIANTS: Record<string, (f: Fixture) => FairseqVariant> = { "v1-text": textVariant, "v1-audio": audioVariant };

export type CheckResult = {
  fixture: string;
  ok: boolean;
  reason?: string;
  worst?: { loss: number; x: number; y: number; grad: number; ema: number; step2: number };
  worstTensor?: Record<string, string>;
  failures?: string[];
  settings?: Record<string, unknown>;
};

export function readFixture(dir: string): Fixture {
  const read = (f: string) => {
    const p = join(dir, f);
    if (!existsSync(p)) throw new D2vError(`${dir} is not a fairseq fixture folder: ${f} is missing`);
    return p;
  };
  const config = JSON.parse(readFileSync(read("config.json"), "utf8"));
  const tensors = (f: string) => decodeSafetensors(new Uint8Array(readFileSync(read(`${f}.safetensors`))), join(dir, `${f}.safetensors`)).tensors;
  return { dir, config, weights: tensors("weights"), inputs: tensors("inputs"), expected: tensors("expected") };
}

/** max |a − b| over every element (Infinity when the shapes differ). */
function maxDiff(actual: Float32Array, expected: Float32Array): number {
  if (actual.length !== expected.length) return Infinity;
  let m = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** The rows of x [B, T, D] where weights [B, T] are 1, sample-major then position (fairseq's order). */
async function maskedRows(x: np.Array, weights: np.Array): Promise<Float32Array> {
  const [b, t, d] = x.shape;
  const xs = (await x.data()) as Float32Array;
  const w = (await weights.data()) as Float32Array;
  const rows: number[] = [];
  for (let i = 0; i < b * t; i++) if (w[i] > 0) rows.push(i);
  const out = new Float32Array(rows.length * d);
  rows.forEach((r, k) => out.set(xs.subarray(r * d, (r + 1) * d), k * d));
  return out;
}

/** Runs one fixture; a variant we do not implement gives `ok: false` with the reason. */
export async function checkFairseq(dir: string): Promise<CheckResult> {
  const f = readFixture(dir);
  const variant = String(f.config.fixture?.variant ?? basename(dir));
  const make = VARIANTS[variant];
  if (!make) return { fixture: variant, ok: false, reason: `variant ${variant} is not implemented here (data2vec 2.0 is its own issue); implemented: ${Object.keys(VARIANTS).join(", ")}` };
  const v = make(f);
  const worst = { loss: 0, x: 0, y: 0, grad: 0, ema: 0, step2: 0 };
  const worstTensor: Record<string, string> = {};
  const failures: string[] = [];
  const compare = (group: keyof typeof worst, name: string, actual: Float32Array, expectedName: string) => {
    const e = f.expected.get(expectedName);
    if (!e) {
      failures.push(`${expectedName} is missing from expected.safetensors`);
      return;
    }
    const d = maxDiff(actual, toFloat32(e));
    if (!(group in worstTensor) || d > worst[group]) {
      worst[group] = d;
      worstTensor[group] = name;
    }
    if (!(d <= TOLERANCE)) failures.push(`${name}: max |Δ| ${d}`);
  };

  // Step 1: forward, loss and gradients on fairseq's weights, inputs and mask.
  const forward = async (params: Data2VecParams<ParamTree>, teacher: Teacher, prefix: string) => {
    const { pred, target, weights, metrics } = data2vecOutputs(v.modality, v.d2v, tree.ref(params as never) as Data2VecParams<ParamTree>, tree.ref(teacher as never) as Teacher, v.batch(), null);
    const [loss] = data2vecLoss(v.modality, v.d2v, tree.ref(params as never) as Data2VecParams<ParamTree>, tree.ref(teacher as never) as Teacher, v.batch(), null);
    compare(prefix ? "step2" : "loss", `${prefix}loss`, (await loss.data()) as Float32Array, `${prefix}loss`);
    compare(prefix ? "step2" : "x", `${prefix}x`, await maskedRows(pred, weights.ref), `${prefix}x`);
    compare(prefix ? "step2" : "y", `${prefix}y`, await maskedRows(target, weights), `${prefix}y`);
    const targetVar = (await metrics.targetVar.data()) as Float32Array;
    const predVar = (await metrics.predVar.data()) as Float32Array;
    tree.dispose([metrics.maskedSteps, metrics.positionShare] as never);
    if (!prefix && f.expected.has("target_var")) compare("y", "target_var", targetVar, "target_var");
    if (!prefix && f.expected.has("pred_var")) compare("x", "pred_var", predVar, "pred_var");
  };
  await forward(v.params, v.teacher, "");

  const lossOf = (p: Data2VecParams<ParamTree>) => data2vecLoss(v.modality, v.d2v, p, tree.ref(v.teacher as never) as Teacher, v.batch(), null)[0];
  const [, grads] = valueAndGrad(lossOf)(tree.ref(v.params as never) as Data2VecParams<ParamTree>) as unknown as [np.Array, Data2VecParams<ParamTree>];
  for (const e of v.student) {
    const name = `grad.${e.fairseq}`;
    if (!f.expected.has(name)) continue; // parameters fairseq does not train
    const shape = f.expected.get(name)!.shape;
    compare("grad", name, toFairseq((await leafAt(grads, e.path).ref.data()) as Float32Array, e.layout, shape), name);
  }

  // w ← w − 0.1·grad, then one EMA step with τ = 0.9, as training does it (the rest is shared with the student).
  const moved = tree.map((w: np.Array, g: np.Array) => w.sub(g.mul(0.1)), v.params as never, grads as never) as unknown as Data2VecParams<ParamTree>;
  const teacher = emaUpdate(v.teacher as unknown as ParamTree, studentForEma(moved, v.d2v.emaShared ?? []) as unknown as ParamTree, np.array(0.9)) as unknown as Teacher;
  for (const t of v.teacherKeys) {
    const name = `ema.${t.key}`;
    if (!f.expected.has(name)) continue;
    const source = t.where === "teacher" ? teacher : moved;
    const shape = f.expected.get(name)!.shape;
    compare("ema", name, toFairseq((await leafAt(source, t.entry.path).ref.data()) as Float32Array, t.entry.layout, shape), name);
  }

  // Step 2: the moved student and teacher on the same batch and mask.
  await forward(moved, teacher, "step2.");
  tree.dispose([moved, teacher] as never);
  const round = (x: number) => (Number.isFinite(x) ? Number(x.toExponential(2)) : x);
  const ok = failures.length === 0;
  return {
    fixture: variant,
    ok,
    worst: Object.fromEntries(Object.entries(worst).map(([k, x]) => [k, round(x)])) as CheckResult["worst"],
    worstTensor,
    ...(ok ? {} : { failures: failures.slice(0, 10) }),
    settings: v.settings,
  };
}
