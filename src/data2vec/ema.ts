/**
 * The EMA teacher. Only the transformer layers are averaged; the modality's feature encoder, positional
 * encoder and embeddings are shared with the student (the teacher reads them under stop-gradient).
 * τ rises linearly from τ0 to τe over the first τn updates, then stays at τe (fairseq `get_annealed_rate`).
 */
import { numpy as np } from "../engine/jax.js";
import { rebuildTree, structureOf, treeLeaves } from "../engine/typed.js";

export type EmaSchedule = { tauStart: number; tauEnd: number; annealSteps: number };

/** τ used by the EMA update performed before optimizer update `numUpdates` (0-based). */
export function emaDecay(s: EmaSchedule, numUpdates: number): number {
  if (s.tauStart === s.tauEnd || numUpdates >= s.annealSteps) return s.tauEnd;
  return s.tauEnd - (s.tauEnd - s.tauStart) * (1 - numUpdates / s.annealSteps);
}

/**
 * Whether update `numUpdates` starts with an EMA step. The teacher is created as a copy of the student
 * before update 0; afterwards it is updated once per optimizer update (never per micro-batch), with the
 * weights the previous update left, and not at all once τ reaches 1.
 */
export function emaStepDue(s: EmaSchedule, numUpdates: number): boolean {
  return numUpdates > 0 && emaDecay(s, numUpdates) < 1;
}

/** teacher ← τ·teacher + (1−τ)·student, leaf by leaf. Consumes all three arguments. */
export function emaUpdate<T>(teacher: T, student: T, tau: np.Array): T {
  const structure = structureOf(teacher);
  const t = treeLeaves(teacher);
  const s = treeLeaves(student);
  const out = t.map((ti, i) => ti.mul(tau.ref).add(s[i].mul(np.negative(tau.ref).add(1))));
  tau.dispose();
  return rebuildTree(structure, out);
}
