/** `d2v check-fairseq DIR...`: one JSON line per fixture folder; exit status 1 when any fails. */
import { initEngine } from "../engine/runtime.js";
import { checkFairseq } from "../fairseq/check.js";

export async function runCheckFairseq(dirs: string[]): Promise<void> {
  await initEngine();
  let failed = false;
  for (const dir of dirs) {
    const r = await checkFairseq(dir);
    console.log(JSON.stringify(r));
    failed ||= !r.ok;
  }
  if (failed) process.exitCode = 1;
}
