/**
 * Collapse monitor. data2vec can collapse to a constant representation (too high a learning rate, too
 * short a warm-up, too low a τ, or no target normalization in correlated modalities such as speech).
 * target_var and pred_var (mean per-dimension std of targets and predictions at masked steps) are logged
 * every update; after a warm-up, falling under the thresholds stops training with an explanation.
 */
import { CollapseError } from "../engine/errors.js";
import type { Data2VecSettings } from "./config.js";

export function checkCollapse(cfg: Data2VecSettings, update: number, targetVar: number, predVar: number, positionShare = NaN): void {
  if (update < cfg.collapseWarmupSteps) return;
  const problems: string[] = [];
  if (!Number.isFinite(targetVar) || targetVar < cfg.minTargetVar) problems.push(`target_var ${targetVar.toFixed(4)} < ${cfg.minTargetVar}`);
  if (!Number.isFinite(predVar) || predVar < cfg.minPredVar) problems.push(`pred_var ${predVar.toFixed(4)} < ${cfg.minPredVar}`);
  if (problems.length === 0 && cfg.maxPositionShare != null && positionShare > cfg.maxPositionShare) {
    throw new CollapseError(
      `the targets encode position alone at update ${update}: position_share ${positionShare.toFixed(4)} > ${cfg.maxPositionShare} ` +
        "(the step index explains that share of the targets' variance; about 1/batch size is healthy). The student can predict such targets " +
        "without looking at the input. Try longer crops, a larger batch, a lower learning rate, or (speech) masking.edgeJitter, which shows " +
        "the two views different clip edges. The threshold is data2vec.maxPositionShare.",
    );
  }
  if (problems.length === 0) return;
  throw new CollapseError(
    `representations collapsed at update ${update}: ${problems.join(", ")}. ` +
      "The teacher's targets (or the student's predictions) became nearly constant, so the loss no longer means anything. " +
      "Try a lower learning rate (train.lr), a longer warm-up (train.warmupSteps), a slower teacher (raise data2vec.ema.tauStart / tauEnd), " +
      "or per-layer target normalization (data2vec.targetNorm: \"layer\" or \"instance\"). " +
      "The thresholds are data2vec.minTargetVar / minPredVar, checked after data2vec.collapseWarmupSteps updates.",
  );
}
