import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (tests run from dist/test/...). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** ../shared beside the repository (maintained fixtures; read-only). */
export const SHARED = resolve(ROOT, "..", "shared");
export const HF_FIXTURES = join(SHARED, "fixtures", "hf", "public");
