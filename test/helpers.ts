import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (tests run from dist/test/...). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** ../shared beside the repository (maintained fixtures; read-only). */
export const SHARED = resolve(ROOT, "..", "shared");
export const HF_FIXTURES = join(SHARED, "fixtures", "hf", "public");

/**
 * Runs `fn` with jitted programs eager or deferred (src/engine/shims.ts sets the mode from the engine's threads; the
 * memory plan's coefficients are fitted to deferred peaks), then restores the mode, also after a returned promise.
 */
export function withJitMode<T>(eager: boolean, fn: () => T): T {
  const g = globalThis as { __jaxjsEagerJit?: boolean };
  const before = g.__jaxjsEagerJit;
  g.__jaxjsEagerJit = eager;
  let result: T;
  try {
    result = fn();
  } catch (e) {
    g.__jaxjsEagerJit = before;
    throw e;
  }
  if (result instanceof Promise) return result.finally(() => (g.__jaxjsEagerJit = before)) as T;
  g.__jaxjsEagerJit = before;
  return result;
}
