/** What the pretrain-then-compare experiments share: resumable pretraining, its summary, and the mean ± std cell. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Runs `pretrain` unless `<pretrainDir>/checkpoint` already holds `steps` updates (resuming a partial run), exits
 * with 130 on an interruption, and returns the run's per-update records and minutes of steps.
 */
export async function ensurePretrained(
  pretrainDir: string,
  steps: number,
  pretrain: (resume: boolean) => Promise<{ interrupted: boolean }>,
  log: (msg: string) => void,
): Promise<{ updates: number; minutes: number; finalLoss: number; last: Record<string, unknown> }> {
  const statePath = join(pretrainDir, "checkpoint", "state.json");
  const done = existsSync(statePath) && (JSON.parse(readFileSync(statePath, "utf8")) as { step: number }).step >= steps;
  if (!done && (await pretrain(existsSync(statePath))).interrupted) {
    log(`interrupted; run the same command again to continue`);
    process.exit(130);
  }
  const metrics = readFileSync(join(pretrainDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { sec: number; loss: number });
  const minutes = metrics.reduce((s, r) => s + r.sec, 0) / 60;
  log(`pretraining: ${metrics.length} updates, ${minutes.toFixed(1)} min of steps`);
  const last = metrics[metrics.length - 1];
  return { updates: metrics.length, minutes, finalLoss: last.loss, last };
}

/** "mean ± std" of fractions, in percent (sample standard deviation). */
export function percentMeanStd(xs: number[]): string {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length - 1));
  return `${(100 * mean).toFixed(1)} ± ${(100 * sd).toFixed(1)}`;
}
