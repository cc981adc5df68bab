/** The end of every `d2v pretrain`: how the run stopped (stderr), its exit status, and its last update as JSON (stdout). */
import { SIGNAL_EXIT_STATUS, type StopSignal } from "../engine/errors.js";
import type { PretrainRecord } from "../train/pretrain.js";

export function reportPretrainRun(r: { records: PretrainRecord[]; checkpoint: string; interrupted: StopSignal | null }, log: (msg: string) => void): void {
  if (r.interrupted) {
    log(`interrupted; checkpoint saved in ${r.checkpoint} (continue with --resume)`);
    process.exitCode = SIGNAL_EXIT_STATUS[r.interrupted];
  } else log(`done: checkpoint in ${r.checkpoint}`);
  const last = r.records[r.records.length - 1];
  if (last) console.log(JSON.stringify({ step: last.step, loss: last.loss, targetVar: last.targetVar, predVar: last.predVar, checkpoint: r.checkpoint }));
}
