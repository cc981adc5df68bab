/** Config validation at the boundary: zod schemas, deep merge of partial configs, readable errors. */
import { readFileSync } from "node:fs";
import type { z } from "zod";
import { ConfigError } from "../engine/errors.js";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Deep merge: objects merge key by key, anything else in `over` replaces `base`. */
export function deepMerge<T>(base: T, over: unknown): T {
  if (over === undefined) return base;
  if (typeof base !== "object" || base === null || Array.isArray(base) || typeof over !== "object" || over === null || Array.isArray(over)) {
    return over as T;
  }
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over as Record<string, unknown>)) out[k] = deepMerge(out[k], v);
  return out as T;
}

/** Validates `value` against `schema`; every problem is listed with its field path and what is allowed. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, source: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const lines = r.error.issues.map((issue) => {
    const path = issue.path.join(".") || "(top level)";
    if (issue.code === "unrecognized_keys") {
      return `- ${path}: unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")} (check the spelling; \`d2v config --preset tiny\` prints every valid field)`;
    }
    return `- ${path}: ${issue.message}`;
  });
  throw new ConfigError(`invalid config in ${source}:\n${lines.join("\n")}`);
}

export function readJsonFile(path: string, what: string): Json {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new ConfigError(`${what} ${path} is not valid JSON: ${(e as Error).message}`);
  }
}
