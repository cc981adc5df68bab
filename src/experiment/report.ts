/**
 * The experiment report: a Markdown table (mean ± std per setting), the paper's claims checked against the
 * runs, and plots rendered to SVG with Vega-Lite (pretraining loss, target_var / pred_var, the downstream metric
 * per setting).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { experimentDir, type ExperimentSpec } from "./spec.js";
import { writeFileAtomic } from "../train/checkpoint.js";
import { readPretrainRecords } from "../train/pretrain.js";
import { sampleMeanStd as meanStd } from "../train/metrics.js";
import { jobDir, pretrainDir, type JobResult } from "./run.js";

/** Every finished job's result under the experiment folder (missing jobs are left out). */
export function collectResults(spec: ExperimentSpec, out?: string): JobResult[] {
  const root = experimentDir(spec, out);
  const results: JobResult[] = [];
  for (const seed of spec.seeds) {
    for (const s of spec.settings) {
      const path = join(jobDir(root, s.name, seed), "result.json");
      if (existsSync(path)) results.push(JSON.parse(readFileSync(path, "utf8")) as JobResult);
    }
  }
  return results;
}

/** Metrics in [0, 1] (accuracy, CER, WER) are shown in percent. */
const asPercent = (values: number[]) => values.every((v) => v >= 0 && v <= 1);

export type ClaimVerdict = { claim: string; better: string; than: string; differences: number[]; verdict: string };

/**
 * A claim "A beats B" against the runs, paired by seed: it agrees when A is better in every seed, disagrees
 * when A is worse in every seed, and is mixed otherwise (a tie in every seed is "no difference"). Differences are signed so that positive favours A.
 */
export function checkClaim(spec: ExperimentSpec, results: JobResult[], c: ExperimentSpec["claims"][number]): ClaimVerdict {
  const sign = spec.eval.higherIsBetter ? 1 : -1;
  const at = (setting: string, seed: number) => results.find((r) => r.setting === setting && r.seed === seed);
  const differences: number[] = [];
  const collapsed = new Set<string>();
  for (const seed of spec.seeds) {
    const a = at(c.better, seed);
    const b = at(c.than, seed);
    for (const r of [a, b]) if (r?.status === "collapsed") collapsed.add(r.setting);
    if (a?.metric !== undefined && b?.metric !== undefined) differences.push(sign * (a.metric - b.metric));
  }
  let verdict: string;
  // A collapse is the strongest form of losing: the setting gave no usable representation.
  if (collapsed.has(c.than) && !collapsed.has(c.better)) verdict = `agrees: ${c.than} collapsed`;
  else if (collapsed.has(c.better) && !collapsed.has(c.than)) verdict = `disagrees: ${c.better} collapsed`;
  else if (collapsed.size > 0) verdict = "n/a: both collapsed";
  else if (differences.length === 0) verdict = "not run yet";
  else if (differences.every((d) => d === 0)) verdict = "no difference";
  else if (differences.every((d) => d > 0)) verdict = "agrees";
  else if (differences.every((d) => d < 0)) verdict = "disagrees";
  else verdict = "mixed";
  return { claim: c.claim, better: c.better, than: c.than, differences, verdict };
}

/** Writes report.md, results.json and the SVG plots into the experiment folder; returns the Markdown. */
export async function writeReport(spec: ExperimentSpec, results: JobResult[], out?: string): Promise<string> {
  const root = experimentDir(spec, out);
  const percent = asPercent(results.filter((r) => r.metric !== undefined).map((r) => r.metric!));
  const fmt = (v: number) => (percent ? (100 * v).toFixed(1) : v.toPrecision(4));
  const unit = percent ? " (%)" : "";
  const metricName = `${spec.eval.metric}${unit}, ${spec.eval.higherIsBetter ? "higher" : "lower"} is better`;

  const lines: string[] = [`# Experiment: ${spec.name}`, ""];
  if (spec.description) lines.push(spec.description, "");
  const done = results.length;
  const total = spec.settings.length * spec.seeds.length;
  lines.push(
    `${spec.modality}, preset \`${spec.preset}\`, ${spec.pretrain.steps} pretraining updates per run, seeds ${spec.seeds.join(", ")}; ` +
      `${done} of ${total} jobs finished. Test metric: ${metricName}.`,
    "",
    `| setting | ${spec.eval.metric}${unit}: mean ± std | per seed | pretraining: final loss | final target_var / pred_var | pretraining min | status |`,
    "|---|---|---|---|---|---|---|",
  );
  for (const s of spec.settings) {
    const rs = results.filter((r) => r.setting === s.name);
    const ok = rs.filter((r) => r.metric !== undefined);
    const m = ok.length ? meanStd(ok.map((r) => r.metric!)) : null;
    // One finished seed has no spread to show.
    const cell = !m ? "–" : ok.length === 1 ? `${fmt(m.mean)} (1 seed)` : `${fmt(m.mean)} ± ${fmt(m.std)}`;
    const perSeed = rs.map((r) => (r.metric !== undefined ? fmt(r.metric) : "collapsed")).join(" / ") || "–";
    const pre = rs.filter((r) => r.pretrain).map((r) => r.pretrain!);
    const loss = pre.length ? meanStd(pre.map((p) => p.finalLoss)).mean.toPrecision(3) : "–";
    const vars = pre.length ? `${meanStd(pre.map((p) => p.finalTargetVar)).mean.toFixed(3)} / ${meanStd(pre.map((p) => p.finalPredVar)).mean.toFixed(3)}` : "–";
    const minutes = pre.length ? meanStd(pre.map((p) => p.minutes)).mean.toFixed(1) : "–";
    const collapsed = rs.filter((r) => r.status === "collapsed");
    let status = rs.length === 0 ? "not run yet" : s.scratch ? "from scratch" : "ok";
    if (collapsed.length) status = `**collapsed** in ${collapsed.length} of ${rs.length} (${collapsed[0].collapse})`;
    if (s.expectCollapse) status += collapsed.length ? " — expected" : rs.length ? " — expected to collapse, did not" : "";
    lines.push(`| ${s.name} | ${cell} | ${perSeed} | ${loss} | ${vars} | ${minutes} | ${status} |`);
  }
  const notes = spec.settings.filter((s) => s.note);
  if (notes.length) lines.push("", ...notes.map((s) => `- **${s.name}**: ${s.note}`));

  if (spec.claims.length) {
    lines.push("", "## The paper's claims at this scale", "", "| claim | difference per seed (positive = as the paper says) | verdict |", "|---|---|---|");
    for (const c of spec.claims) {
      const v = checkClaim(spec, results, c);
      const diffs = v.differences.map((d) => (d >= 0 ? "+" : "") + fmt(d)).join(", ") || "–";
      lines.push(`| ${v.claim} (${v.better} vs ${v.than}) | ${diffs} | ${v.verdict} |`);
    }
  }

  const plots = await writePlots(spec, results, root);
  lines.push("", "## Plots", "", ...plots.map((p) => `![${p.title}](${p.file})`), "");
  const markdown = lines.join("\n");
  writeFileAtomic(join(root, "report.md"), markdown);
  writeFileAtomic(join(root, "results.json"), JSON.stringify({ experiment: spec, results }, null, 2) + "\n");
  return markdown;
}

/** At most `n` evenly spaced records of a run, the last always kept. */
function thin<T>(xs: T[], n: number): T[] {
  if (xs.length <= n) return xs;
  const every = xs.length / n;
  return xs.filter((_, i) => Math.floor(i / every) !== Math.floor((i + 1) / every) || i === xs.length - 1);
}

/** A Vega-Lite chart as SVG (rendered without a browser). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

async function writePlots(spec: ExperimentSpec, results: JobResult[], root: string): Promise<{ title: string; file: string }[]> {
  const curves: { setting: string; seed: number; update: number; loss: number; target_var: number; pred_var: number }[] = [];
  for (const s of spec.settings.filter((x) => !x.scratch)) {
    for (const seed of spec.seeds) {
      for (const r of thin(readPretrainRecords(pretrainDir(root, s.name, seed)), 150)) {
        curves.push({ setting: s.name, seed, update: r.step, loss: r.loss, target_var: r.targetVar, pred_var: r.predVar });
      }
    }
  }
  const written: { title: string; file: string }[] = [];
  const save = async (file: string, title: string, vl: TopLevelSpec) => {
    writeFileAtomic(join(root, file), await renderSvg(vl));
    written.push({ title, file });
  };
  const schema = "https://vega.github.io/schema/vega-lite/v6.json";
  const color = { field: "setting", type: "nominal", sort: spec.settings.map((s) => s.name), legend: { labelLimit: 320 } } as const;
  if (curves.length) {
    await save("pretrain-loss.svg", "pretraining loss", {
      $schema: schema,
      title: `${spec.name}: data2vec loss (mean over seeds)`,
      width: 520,
      height: 300,
      data: { values: curves },
      mark: { type: "line", strokeWidth: 1.5 },
      encoding: { x: { field: "update", type: "quantitative" }, y: { aggregate: "mean", field: "loss", type: "quantitative", scale: { type: "log" }, title: "data2vec loss" }, color },
    });
    await save("variance.svg", "target_var and pred_var", {
      $schema: schema,
      title: `${spec.name}: target_var and pred_var (mean over seeds; a fall to 0 is a collapse)`,
      data: { values: curves },
      transform: [{ fold: ["target_var", "pred_var"], as: ["quantity", "value"] }],
      facet: { column: { field: "quantity", type: "nominal", title: null } },
      spec: {
        width: 300,
        height: 240,
        mark: { type: "line", strokeWidth: 1.5 },
        encoding: { x: { field: "update", type: "quantitative" }, y: { aggregate: "mean", field: "value", type: "quantitative", title: "mean per-dimension std" }, color },
      },
    });
  }
  const points = results.filter((r) => r.metric !== undefined).map((r) => ({ setting: r.setting, seed: r.seed, metric: r.metric! }));
  if (points.length) {
    const x = { field: "setting", type: "nominal", sort: spec.settings.map((s) => s.name), axis: { labelAngle: -30 } } as const;
    await save("metric.svg", `test ${spec.eval.metric} per setting`, {
      $schema: schema,
      title: `${spec.name}: test ${spec.eval.metric} (dots: seeds; bar: mean ± std)`,
      width: Math.max(240, 60 * spec.settings.length),
      height: 260,
      data: { values: points },
      layer: [
        { mark: { type: "errorbar", extent: "stdev", ticks: true }, encoding: { x, y: { field: "metric", type: "quantitative", title: spec.eval.metric, scale: { zero: false } } } },
        { mark: { type: "tick", thickness: 2, size: 24 }, encoding: { x, y: { aggregate: "mean", field: "metric", type: "quantitative", title: spec.eval.metric } } },
        { mark: { type: "point", filled: true, opacity: 0.7 }, encoding: { x, y: { field: "metric", type: "quantitative" }, color } },
      ],
    });
  }
  return written;
}
