/** What the experiments share: command-line values, resumable pretraining with its summary, and the mean ± std cell. */
import { sampleMeanStd } from "../src/train/metrics.js";
import { checkpointedUpdates, readPretrainRecords, type PretrainRecord } from "../src/train/pretrain.js";

/**
 * Runs `pretrain` unless `pretrainDir`'s checkpoint already holds `steps` updates (resuming a partial run), exits
 * with 130 on an interruption, and returns the run's per-update records and minutes of steps.
 */
export async function ensurePretrained(
  pretrainDir: string,
  steps: number,
  pretrain: (resume: boolean) => Promise<{ interrupted: unknown }>,
  log: (msg: string) => void,
): Promise<{ updates: number; minutes: number; finalLoss: number; last: PretrainRecord }> {
  const checkpointed = checkpointedUpdates(pretrainDir);
  if (checkpointed < steps && (await pretrain(checkpointed > 0)).interrupted) {
    log(`interrupted; run the same command again to continue`);
    process.exit(130);
  }
  const metrics = readPretrainRecords(pretrainDir);
  const minutes = metrics.reduce((s, r) => s + r.sec, 0) / 60;
  log(`pretraining: ${metrics.length} updates, ${minutes.toFixed(1)} min of steps`);
  const last = metrics[metrics.length - 1];
  return { updates: metrics.length, minutes, finalLoss: last.loss, last };
}

/** The value after `--name` on the command line, or `fallback`. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

/** "mean ± std" of fractions, in percent (sample standard deviation). */
export function percentMeanStd(xs: number[]): string {
  const { mean, std } = sampleMeanStd(xs);
  return `${(100 * mean).toFixed(1)} ± ${(100 * std).toFixed(1)}`;
}

/**
 * Whether pretraining helps, from paired accuracies per seed (fractions): "yes" when the pretrained model is ahead in
 * every seed and by at least `minPoints` points on the mean; the differences in points, per seed.
 */
export function helpsVerdict(pretrained: number[], scratch: number[], minPoints = 5): { helps: boolean; everySeed: boolean; meanPoints: number; diffs: number[] } {
  if (pretrained.length !== scratch.length || pretrained.length === 0) throw new Error("helpsVerdict needs one pretrained and one scratch accuracy per seed");
  const diffs = pretrained.map((p, i) => 100 * (p - scratch[i]));
  const meanPoints = diffs.reduce((a, b) => a + b, 0) / diffs.length;
  const everySeed = diffs.every((d) => d > 0);
  return { helps: everySeed && meanPoints >= minPoints, everySeed, meanPoints, diffs };
}

/**
 * Whether pretraining helps, from paired error rates per seed (CER, lower is better): "yes" when the pretrained
 * model's is lower in every seed and by at least `minRelative` of the from-scratch mean on the mean; the differences
 * in points, per seed (negative: pretrained better).
 */
export function helpsVerdictErrorRate(pretrained: number[], scratch: number[], minRelative = 0.15): { helps: boolean; everySeed: boolean; relative: number; diffs: number[] } {
  if (pretrained.length !== scratch.length || pretrained.length === 0) throw new Error("helpsVerdictErrorRate needs one pretrained and one scratch error rate per seed");
  const diffs = pretrained.map((p, i) => 100 * (p - scratch[i]));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const relative = (mean(scratch) - mean(pretrained)) / mean(scratch);
  const everySeed = diffs.every((d) => d < 0);
  return { helps: everySeed && relative >= minRelative, everySeed, relative, diffs };
}
