/**
 * Collapse monitor. data2vec can collapse to a constant representation (too high a learning rate, too
 * short a warm-up, too low a τ, or no target normalization in correlated modalities such as speech).
 * target_var and pred_var (mean per-dimension std of targets and predictions at masked steps) are logged
 * every update; after a warm-up, falling under the thresholds stops training with an explanation.
 *
 * Dimensional collapse is subtler: the targets keep their per-dimension variance while all dimensions move together
 * (target_rank, their effective number of dimensions, falls towards 1). It is logged every update and stops training
 * only when data2vec.minTargetRank is set.
 *
 * Divergence guard: the opposite failure. Without target normalization, or with a teacher that is the student
 * (τ = 0), the targets can grow without bound while the student chases them (the text ablation: target_var
 * 0.04 → 1.7, loss 0.05 → 7.5, variances never low). The guard compares the loss and target_var with their own
 * means over the run's first updates, so it needs no absolute threshold: staying far above that level for a
 * number of updates in a row, or a loss that is not finite, stops the run.
 */
import { CollapseError, DivergenceError } from "../engine/errors.js";
import type { Data2VecSettings, DivergenceSettings } from "./config.js";

export function checkCollapse(cfg: Data2VecSettings, update: number, targetVar: number, predVar: number, positionShare = NaN, targetRank = NaN): void {
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
  if (problems.length === 0 && cfg.minTargetRank != null && targetRank < cfg.minTargetRank) {
    throw new CollapseError(
      `the targets collapsed onto a few directions at update ${update}: target_rank ${targetRank.toFixed(2)} < ${cfg.minTargetRank} ` +
        "(the effective number of dimensions the targets span at masked steps; target_var misses this, since each dimension still varies). " +
        "The student can match such targets while its representations lose what distinguishes inputs. Try a slower teacher (raise " +
        "data2vec.ema.tauStart / tauEnd), a lower learning rate (train.lr) or a larger batch. The threshold is data2vec.minTargetRank.",
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

/** The guard's state, saved in every checkpoint so that a resumed run decides exactly as an uninterrupted one. */
export type DivergenceState = { lossSum: number; targetVarSum: number; seen: number; over: number };

export const DEFAULT_DIVERGENCE: DivergenceSettings = { referenceSteps: 20, maxGrowth: 10, patience: 10 };

export class DivergenceGuard {
  #s: DivergenceState;
  constructor(
    private cfg: DivergenceSettings,
    saved?: DivergenceState,
  ) {
    this.#s = saved ? { ...saved } : { lossSum: 0, targetVarSum: 0, seen: 0, over: 0 };
  }

  /** Rebuilds the state of a run from its per-update records (checkpoints written before the guard existed). */
  static replay(cfg: DivergenceSettings, records: { loss: number; targetVar: number }[]): DivergenceGuard {
    const g = new DivergenceGuard(cfg);
    records.forEach((r, i) => {
      try {
        g.observe(i + 1, r.loss, r.targetVar);
      } catch (e) {
        if (!(e instanceof DivergenceError)) throw e; // the state is updated before the guard throws
      }
    });
    return g;
  }

  state(): DivergenceState {
    return { ...this.#s };
  }

  /** Records update `step` (1-based); throws a DivergenceError when the run has diverged. */
  observe(step: number, loss: number, targetVar: number): void {
    if (!Number.isFinite(loss)) {
      throw new DivergenceError(
        `training diverged at update ${step}: the loss became ${loss}. Lower the learning rate (train.lr), lengthen the warm-up (train.warmupSteps) or clip gradients (train.clipNorm)`,
      );
    }
    const s = this.#s;
    const { referenceSteps, maxGrowth, patience } = this.cfg;
    if (s.seen < referenceSteps) {
      s.lossSum += loss;
      s.targetVarSum += targetVar;
      s.seen++;
      return;
    }
    if (maxGrowth === null) return;
    const refLoss = s.lossSum / s.seen;
    const refTargetVar = s.targetVarSum / s.seen;
    const lossGrowth = loss / refLoss;
    const targetGrowth = targetVar / refTargetVar;
    s.over = lossGrowth > maxGrowth || targetGrowth > maxGrowth ? s.over + 1 : 0;
    if (s.over < patience) return;
    throw new DivergenceError(
      `training diverged at update ${step}: for ${patience} updates in a row the loss or the targets' scale stayed over ${maxGrowth}× their mean over ` +
        `updates 1–${referenceSteps} (now loss ${loss.toPrecision(4)}, ${lossGrowth.toFixed(1)}× ${refLoss.toPrecision(4)}; target_var ${targetVar.toPrecision(4)}, ` +
        `${targetGrowth.toFixed(1)}× ${refTargetVar.toPrecision(4)}). The targets are growing while the student chases them, which happens without target ` +
        "normalization or with a teacher too close to the student. Try per-layer target normalization (data2vec.targetNorm), a slower teacher " +
        "(raise data2vec.ema.tauStart), or a lower learning rate (train.lr). The guard's settings are data2vec.divergence " +
        "(referenceSteps, maxGrowth, patience; maxGrowth null turns it off).",
    );
  }
}
