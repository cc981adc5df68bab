/**
 * `d2v check-fairseq`: one training step of ours against one of the official fairseq data2vec code, from a
 * fixture folder (see ../shared/fixtures/fairseq/README.md): fairseq's weights, inputs and the mask it used go
 * through our own modality, loss, gradients and EMA; every tensor it recorded is compared.
 *   step 1: loss, predictions x and targets y at the masked steps, d loss / d w for every student parameter;
 *   then w ← w − 0.1·grad and one EMA step with τ = 0.9: the teacher;
 *   step 2: the same batch and mask with the moved student and teacher.
 */
import { disposeTree, mapTree, refTree, valueAndGradOf } from "../engine/typed.js";
import { basename } from "node:path";
import { numpy as np } from "../engine/jax.js";
import { toFloat32 } from "../engine/safetensors.js";
import type { ParamTree } from "../engine/tree.js";
import { data2vecLoss, data2vecOutputs, stepStatistics, studentForEma, type Data2VecParams, type Teacher } from "../data2vec/model.js";
import { emaUpdate } from "../data2vec/ema.js";
import { assembleFairseq, leafAt, type KeyEntry } from "./keys.js";
import { v2AudioCase, v2ImageCase, v2TextCase } from "./v2.js";
import { readFixture, type FairseqVariant, type Fixture } from "./fixture.js";
import { textVariant } from "./text.js";
import { audioVariant } from "./audio.js";

/**
 * The largest error allowed: max |Δ| over a tensor, divided by its largest magnitude where that exceeds 1. So it
 * is an absolute 1e-4 for tensors of order one, and relative for large ones, where float32 itself cannot resolve
 * 1e-4 (the speech CNN's first layer-norm bias gets gradients near 2·10⁶ from padded samples, resolved to 0.25).
 */
export const TOLERANCE = 1e-4;

/** The variants implemented here: each reads a fixture into our modality and trees, and is checked the same way. */
const VARIANTS: Record<string, (f: Fixture, variant: string) => Promise<CheckResult>> = {
  "v1-text": (f, name) => checkCase(f, name, v1Case(textVariant(f))),
  "v1-audio": (f, name) => checkCase(f, name, v1Case(audioVariant(f))),
  "v2-text": (f, name) => checkCase(f, name, v2TextCase(f)),
  "v2-audio": (f, name) => checkCase(f, name, v2AudioCase(f)),
  "v2-image": (f, name) => checkCase(f, name, v2ImageCase(f)),
};

export type CheckResult = {
  fixture: string;
  ok: boolean;
  reason?: string;
  worst?: { loss: number; x: number; y: number; grad: number; ema: number; step2: number };
  worstTensor?: Record<string, string>;
  failures?: string[];
  settings?: Record<string, unknown>;
};

/** max |a − b| over every element, over max(1, max |expected|) (see TOLERANCE; Infinity when the shapes differ). */
function maxDiff(actual: Float32Array, expected: Float32Array): number {
  if (actual.length !== expected.length) return Infinity;
  let m = 0;
  let scale = 1;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  m /= scale;
  return m;
}

/** The rows of x [B, T, D] where weights [B, T] are 1, sample-major then position (fairseq's order). */
export async function maskedRows(x: np.Array, weights: np.Array): Promise<Float32Array> {
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
  const check = VARIANTS[variant];
  if (!check) return { fixture: variant, ok: false, reason: `variant ${variant} is not implemented here; implemented: ${Object.keys(VARIANTS).join(", ")}` };
  return check(f, variant);
}

/**
 * What a check runs: the objective's forward pass (the loss, the predictions and targets at the masked steps, the
 * monitors' statistics and any further tensors fairseq recorded), its loss for the gradients, and what the EMA
 * step averages the teacher with. Every function consumes its params and teacher.
 */
export type CheckObjective<P, T> = {
  forward(params: P, teacher: T): Promise<{ loss: Float32Array; x: Float32Array; y: Float32Array; targetVar: Float32Array; predVar: Float32Array; extra?: Record<string, Float32Array> }>;
  loss(params: P, teacher: T): np.Array;
  studentForEma(params: P): T;
};

/** A fixture as ours: the student and teacher trees, the objective, and the key maps that name their tensors as fairseq does. */
export type FairseqCase<P, T> = {
  params: P;
  teacher: T;
  objective: CheckObjective<P, T>;
  student: KeyEntry[];
  teacherKeys: { key: string; where: "teacher" | "student"; entry: KeyEntry }[];
  settings: Record<string, unknown>;
};

/** A data2vec (v1) variant as a check case. */
function v1Case<Shared extends ParamTree, Batch extends { [k: string]: np.Array }>(v: FairseqVariant<Shared, Batch>): FairseqCase<Data2VecParams<Shared>, Teacher<Shared>> {
  return {
    params: v.params,
    teacher: v.teacher,
    student: v.student,
    teacherKeys: v.teacherKeys,
    settings: v.settings,
    objective: {
      async forward(params, teacher) {
        const outputs = data2vecOutputs(v.modality, v.d2v, refTree(params), refTree(teacher), v.batch(), null);
        const metrics = stepStatistics(outputs);
        const { pred, target, weights, padding } = outputs;
        padding?.dispose();
        disposeTree([metrics.maskedSteps, metrics.targetRank]);
        const [loss, lossMetrics] = data2vecLoss(v.modality, v.d2v, params, teacher, v.batch(), null);
        disposeTree(lossMetrics);
        return {
          loss: (await loss.data()) as Float32Array,
          x: await maskedRows(pred, weights.ref),
          y: await maskedRows(target, weights),
          targetVar: (await metrics.targetVar.data()) as Float32Array,
          predVar: (await metrics.predVar.data()) as Float32Array,
        };
      },
      loss: (params, teacher) => data2vecLoss(v.modality, v.d2v, params, teacher, v.batch(), null)[0],
      studentForEma: (params) => studentForEma(params, v.d2v.emaShared ?? []),
    },
  };
}

/** Groups key entries by fairseq key (a fused tensor has several). */
function byFairseqKey<E>(entries: E[], key: (e: E) => string): Map<string, E[]> {
  const out = new Map<string, E[]>();
  for (const e of entries) out.set(key(e), [...(out.get(key(e)) ?? []), e]);
  return out;
}

async function checkCase<P, T>(f: Fixture, variant: string, c: FairseqCase<P, T>): Promise<CheckResult> {
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
    if (!(d <= TOLERANCE)) failures.push(`${name}: max |Δ| ${d} (relative where the tensor exceeds 1)`);
  };

  // Step 1: forward, loss and gradients on fairseq's weights, inputs and mask.
  const forward = async (params: P, teacher: T, prefix: string) => {
    const out = await c.objective.forward(refTree(params), refTree(teacher));
    compare(prefix ? "step2" : "loss", `${prefix}loss`, out.loss, `${prefix}loss`);
    compare(prefix ? "step2" : "x", `${prefix}x`, out.x, `${prefix}x`);
    compare(prefix ? "step2" : "y", `${prefix}y`, out.y, `${prefix}y`);
    if (!prefix && f.expected.has("target_var")) compare("y", "target_var", out.targetVar, "target_var");
    if (!prefix && f.expected.has("pred_var")) compare("x", "pred_var", out.predVar, "pred_var");
    for (const [name, value] of Object.entries(out.extra ?? {})) if (f.expected.has(`${prefix}${name}`)) compare(prefix ? "step2" : "x", `${prefix}${name}`, value, `${prefix}${name}`);
  };
  await forward(c.params, c.teacher, "");

  const [, grads] = valueAndGradOf((p: P) => c.objective.loss(p, refTree(c.teacher)))(refTree(c.params));
  for (const [key, entries] of byFairseqKey(c.student, (e) => e.fairseq)) {
    const name = `grad.${key}`;
    if (!f.expected.has(name)) continue; // parameters fairseq does not train
    const shape = f.expected.get(name)!.shape;
    compare("grad", name, await assembleFairseq(entries, shape, async (e) => (await leafAt(grads, e.path).ref.data()) as Float32Array), name);
  }

  // w ← w − 0.1·grad, then one EMA step with τ = 0.9, as training does it (the rest is shared with the student).
  const moved = mapTree((w, g) => w.sub(g.mul(0.1)), c.params, grads);
  const teacher = emaUpdate(c.teacher, c.objective.studentForEma(moved), np.array(0.9));
  for (const [key, group] of byFairseqKey(c.teacherKeys, (t) => t.key)) {
    const name = `ema.${key}`;
    if (!f.expected.has(name)) continue;
    const source = group[0].where === "teacher" ? teacher : moved;
    const shape = f.expected.get(name)!.shape;
    compare("ema", name, await assembleFairseq(group.map((t) => t.entry), shape, async (e) => (await leafAt(source, e.path).ref.data()) as Float32Array), name);
  }

  // Step 2: the moved student and teacher on the same batch and mask.
  await forward(moved, teacher, "step2.");
  disposeTree([moved, teacher]);
  const round = (x: number) => (Number.isFinite(x) ? Number(x.toExponential(2)) : x);
  const ok = failures.length === 0;
  return {
    fixture: variant,
    ok,
    worst: Object.fromEntries(Object.entries(worst).map(([k, x]) => [k, round(x)])) as CheckResult["worst"],
    worstTensor,
    ...(ok ? {} : { failures: failures.slice(0, 10) }),
    settings: c.settings,
  };
}
