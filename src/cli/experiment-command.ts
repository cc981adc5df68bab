/** `d2v experiment FILE.json`: run (or resume) the grid, then write the report. */
import { existsSync } from "node:fs";
import { ExperimentError } from "../engine/errors.js";
import { collectResults, writeReport } from "../experiment/report.js";
import { runExperiment } from "../experiment/run.js";
import { experimentDir, loadExperiment } from "../experiment/spec.js";

export async function runExperimentCommand(file: string, o: { out?: string; reportOnly?: boolean }): Promise<void> {
  const spec = loadExperiment(file);
  const root = experimentDir(spec, o.out);
  if (o.reportOnly && !existsSync(root)) throw new ExperimentError(`${root} holds no runs of "${spec.name}" yet; run \`d2v experiment ${file}\` first (or pass the --out it ran with)`);
  if (!o.reportOnly) {
    process.stderr.write(`experiment ${spec.name}: ${spec.settings.length} settings × ${spec.seeds.length} seeds → ${root}\n`);
    await runExperiment(spec, { out: o.out });
  }
  const markdown = await writeReport(spec, collectResults(spec, o.out), o.out);
  process.stdout.write(markdown + "\n");
  process.stderr.write(`report: ${root}/report.md\n`);
}
