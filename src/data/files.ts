/** Datasets on disk, as every modality lays them out: files found recursively, and one folder per class. */
import { readdirSync } from "node:fs";
import { extname, join } from "node:path";

/** Every file under `dir` (recursive, in name order at each level) whose extension is one of `extensions` (lower case, with the dot). */
export function filesUnder(dir: string, extensions: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (extensions.includes(extname(entry.name).toLowerCase())) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** The names of the folders directly in `dir`, sorted: a labeled dataset's classes. */
export function classFolders(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}
