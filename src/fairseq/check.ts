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
import { leafAt, toFairseq } from "./keys.js";
import { readFixture, type FairseqVariant, type Fixture } from "./fixture.js";
import { textVariant } from "./text.js";
import { audioVariant } from "./audio.js";

export const TOLERANCE = 1e-4;

/** The variants implemented here: each reads a fixture into our modality and trees, and is checked the same way. */
const VARIANTS: Record<string, (f: Fixture, variant: string) => Promise<CheckResult>> = {
  "v1-text": (f, name) => checkVariant(f, name, textVariant(f)),
  "v1-audio": (f, name) => checkVariant(f, name, audioVariant(f)),
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
  const check = VARIANTS[variant];
  if (!check) return { fixture: variant, ok: false, reason: `variant ${variant} is not implemented here (data2vec 2.0 is its own issue); implemented: ${Object.keys(VARIANTS).join(", ")}` };
  return check(f, variant);
}

async function checkVariant<Shared extends ParamTree, Batch extends { [k: string]: np.Array }>(f: Fixture, variant: string, v: FairseqVariant<Shared, Batch>): Promise<CheckResult> {
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
  const forward = async (params: Data2VecParams<Shared>, teacher: Teacher<Shared>, prefix: string) => {
    const outputs = data2vecOutputs(v.modality, v.d2v, refTree(params), refTree(teacher), v.batch(), null);
    const metrics = stepStatistics(outputs);
    const { pred, target, weights, padding } = outputs;
    padding?.dispose();
    const [loss, lossMetrics] = data2vecLoss(v.modality, v.d2v, refTree(params), refTree(teacher), v.batch(), null);
    disposeTree(lossMetrics);
    compare(prefix ? "step2" : "loss", `${prefix}loss`, (await loss.data()) as Float32Array, `${prefix}loss`);
    compare(prefix ? "step2" : "x", `${prefix}x`, await maskedRows(pred, weights.ref), `${prefix}x`);
    compare(prefix ? "step2" : "y", `${prefix}y`, await maskedRows(target, weights), `${prefix}y`);
    const targetVar = (await metrics.targetVar.data()) as Float32Array;
    const predVar = (await metrics.predVar.data()) as Float32Array;
    metrics.maskedSteps.dispose();
    if (!prefix && f.expected.has("target_var")) compare("y", "target_var", targetVar, "target_var");
    if (!prefix && f.expected.has("pred_var")) compare("x", "pred_var", predVar, "pred_var");
  };
  await forward(v.params, v.teacher, "");

  const lossOf = (p: Data2VecParams<Shared>) => data2vecLoss(v.modality, v.d2v, p, refTree(v.teacher), v.batch(), null)[0];
  const [, grads] = valueAndGradOf(lossOf)(refTree(v.params));
  for (const e of v.student) {
    const name = `grad.${e.fairseq}`;
    if (!f.expected.has(name)) continue; // parameters fairseq does not train
    const shape = f.expected.get(name)!.shape;
    compare("grad", name, toFairseq((await leafAt(grads, e.path).ref.data()) as Float32Array, e.layout, shape), name);
  }

  // w ← w − 0.1·grad, then one EMA step with τ = 0.9, as training does it (the rest is shared with the student).
  const moved = mapTree((w, g) => w.sub(g.mul(0.1)), v.params, grads);
  const teacher = emaUpdate(v.teacher, studentForEma(moved, v.d2v.emaShared ?? []), np.array(0.9));
  for (const t of v.teacherKeys) {
    const name = `ema.${t.key}`;
    if (!f.expected.has(name)) continue;
    const source = t.where === "teacher" ? teacher : moved;
    const shape = f.expected.get(name)!.shape;
    compare("ema", name, toFairseq((await leafAt(source, t.entry.path).ref.data()) as Float32Array, t.entry.layout, shape), name);
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
    settings: v.settings,
  };
}
