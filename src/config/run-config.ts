/**
 * A modality's run configuration as one object: its zod schema, its presets, how a preset, a config file and
 * command-line overrides combine, and how a checkpoint's saved config is read back (with the migrations of
 * settings renamed since it was written). The checks every modality shares are written once, here.
 */
import { z } from "zod";
import { data2vecSchema, trainFields } from "./schemas.js";
import { spanMaskRatio } from "../data2vec/masking.js";
import { CheckpointError, ConfigError } from "../engine/errors.js";
import { deepMerge, validate } from "./validate.js";

/** The fields every modality's run config has, as the shared checks read them. */
export type CommonRunFields = {
  modality: string;
  preset: string;
  model: { dim: number; heads: number; layers: number };
  data2vec: {
    topK: number;
    ema: { tauStart: number; tauEnd: number };
    loss: "l2" | "smooth_l1";
    lossBeta: number;
    objective: "data2vec" | "data2vec2";
    targetLayer: string;
    teacherContext: number | null;
    removePositionMean: boolean;
    emaShared: string[];
    v2?: { decoder: { dim: number; groups: number } };
  };
  train: { schedule: "cosine" | "tri_stage" | "constant"; warmupSteps: number; minLr: number };
};

type Issue = (path: (string | number)[], message: string) => void;

/**
 * The cross-field checks every modality shares, for a schema's superRefine: a width the heads divide, K within the
 * blocks, a rising τ, and no schedule setting that the chosen schedule would ignore.
 */
export function checkCommonRunFields(c: CommonRunFields, issue: Issue): void {
  if (c.model.dim % c.model.heads !== 0) issue(["model", "heads"], `width ${c.model.dim} must be divisible by heads (${c.model.heads})`);
  if (c.data2vec.topK > c.model.layers) issue(["data2vec", "topK"], `K = ${c.data2vec.topK} exceeds the ${c.model.layers} layers`);
  if (c.data2vec.ema.tauStart > c.data2vec.ema.tauEnd) issue(["data2vec", "ema", "tauStart"], "τ0 must not exceed τe (τ rises)");
  if (c.data2vec.loss === "l2" && c.data2vec.lossBeta !== 0) issue(["data2vec", "lossBeta"], "the L2 loss ignores lossBeta (Smooth L1's β): set it to 0, or choose loss smooth_l1");
  checkObjective(c, issue);
  const t = c.train;
  if (t.schedule === "tri_stage" && t.warmupSteps !== 0) {
    issue(["train", "warmupSteps"], "the tri-stage schedule warms up over its first 5% of train.steps and ignores train.warmupSteps: set it to 0, or choose schedule cosine");
  }
  if (t.schedule !== "cosine" && t.minLr !== 0) issue(["train", "minLr"], `only the cosine schedule decays to train.minLr; the ${t.schedule} schedule would ignore it: set it to 0`);
}

/** The data2vec 2.0 settings a run needs, and the v1 extensions it does not have. */
function checkObjective(c: CommonRunFields, issue: Issue): void {
  const d = c.data2vec;
  if (d.objective === "data2vec") {
    if (d.v2) issue(["data2vec", "v2"], "data2vec.v2 is for objective data2vec2 (data2vec 2.0); remove it, or set data2vec.objective to data2vec2");
    return;
  }
  if (!d.v2) {
    issue(["data2vec", "v2"], "objective data2vec2 needs data2vec.v2 (cloneBatch, decoder, clsLoss): start from a -v2 preset (--objective data2vec2)");
    return;
  }
  if (d.targetLayer !== "ffn") issue(["data2vec", "targetLayer"], "data2vec 2.0's targets are the blocks' FFN outputs: set it to ffn");
  if (d.teacherContext !== null) issue(["data2vec", "teacherContext"], "a restricted teacher context is not implemented for data2vec 2.0: set it to null");
  const bad = d.emaShared.filter((g) => g !== "local" && g !== "context");
  if (bad.length) issue(["data2vec", "emaShared"], `data2vec 2.0's teacher can average its own "local" (feature encoder) and "context" groups, not ${bad.map((g) => `"${g}"`).join(", ")}`);
  const { dim, groups } = d.v2.decoder;
  if (dim % groups !== 0 || c.model.dim % groups !== 0) issue(["data2vec", "v2", "decoder", "groups"], `${groups} groups must divide the decoder width ${dim} and the model width ${c.model.dim}`);
}

/**
 * A modality's run-config schema: its own sections (`model`, `masking`, …) beside the shared `data2vec` and `train`
 * sections (`train` extended by `trainExtra`). Every object is strict: an unknown field is an error, never ignored.
 */
export function runConfigSchema<const M extends string, S extends z.ZodRawShape, T extends z.ZodRawShape>(modality: M, sections: S, trainExtra: T) {
  return z
    .object({ modality: z.literal(modality), preset: z.string(), ...sections, data2vec: data2vecSchema, train: z.object({ ...trainFields, ...trainExtra }).strict() })
    .strict();
}

/**
 * A schema's superRefine: the shared checks, then the modality's own (`extra`), each reported with its field path.
 */
export function refineRunConfig<C extends CommonRunFields>(extra?: (c: C, issue: Issue) => void): (c: C, ctx: z.RefinementCtx) => void {
  return (c, ctx) => {
    const issue: Issue = (path, message) => ctx.addIssue({ code: "custom", path, message });
    checkCommonRunFields(c, issue);
    extra?.(c, issue);
  };
}

/** Rewrites a config saved by an earlier version into the current settings (renamed or retired fields). */
export type Migration = (raw: Record<string, unknown>) => Record<string, unknown>;

/**
 * Settings that configs saved before the schema refused them may hold though nothing read them (a tri-stage run's
 * warm-up steps, an L2 run's β): dropping them changes nothing.
 */
export const commonMigration: Migration = (raw) => {
  const train = raw.train as { schedule?: string; warmupSteps?: number } | undefined;
  const d2v = raw.data2vec as { loss?: string; lossBeta?: number } | undefined;
  let out = raw;
  if (train?.schedule === "tri_stage" && train.warmupSteps) out = { ...out, train: { ...train, warmupSteps: 0 } };
  if (d2v?.loss === "l2" && d2v.lossBeta) out = { ...out, data2vec: { ...d2v, lossBeta: 0 } };
  return out;
};

/**
 * Configs written before masking.prob became masking.ratio (the expected masked fraction): span masking's prob was
 * fairseq's span-start probability (`spanMaskRatio` gives the fraction it masks); other masking's was the fraction.
 */
export const maskingProbToRatio: Migration = (raw) => {
  const m = raw.masking as { kind?: string; prob?: number; spanLength?: number } | undefined;
  if (!m || m.prob === undefined) return raw;
  const { prob, ...rest } = m;
  // BERT masking never read spanLength: it is 1 now (the schema refuses another value).
  if (m.kind === "bert") return { ...raw, masking: { ...rest, ratio: prob, spanLength: 1 } };
  return { ...raw, masking: { ...rest, ratio: spanMaskRatio(prob, m.spanLength ?? 1) } };
};

export type RunConfigKit<C> = {
  modality: string;
  schema: z.ZodType<C>;
  presets: Record<string, C>;
  /** Preset, then a config file's partial config, then command-line overrides; validated once at the end. */
  resolve(preset: string, fileConfig?: unknown, overrides?: unknown, source?: string): C;
  /** As `resolve`, over a given config instead of a preset (a checkpoint's, for continued pretraining). */
  resolveOver(base: C, fileConfig?: unknown, overrides?: unknown, source?: string): C;
  /** The run config stored in a checkpoint's config.json (its `kind` field aside), migrated and validated. */
  parse(raw: unknown, path: string): C;
};

export function runConfigKit<C>(modality: string, schema: z.ZodType<C>, presets: Record<string, C>, migrate: Migration = (r) => r): RunConfigKit<C> {
  return {
    modality,
    schema,
    presets,
    resolve(preset, fileConfig, overrides, source = "the configuration") {
      const presetConfig = presets[preset];
      if (!presetConfig) throw new ConfigError(`unknown ${modality} preset "${preset}"; choose one of ${Object.keys(presets).join(", ")}`);
      return validate(schema, deepMerge(deepMerge(presetConfig, fileConfig), overrides), source);
    },
    resolveOver(base, fileConfig, overrides, source = "the configuration") {
      return validate(schema, deepMerge(deepMerge(base, fileConfig), overrides), source);
    },
    parse(raw, path) {
      const { kind: _kind, ...rest } = (raw ?? {}) as { kind?: string };
      const r = schema.safeParse(migrate(commonMigration(rest)));
      if (!r.success) {
        const issue = r.error.issues[0];
        throw new CheckpointError(`${path} is not a valid ${modality} run config (${issue?.path.join(".") || "top level"}: ${issue?.message}); the checkpoint is corrupt or from another version`);
      }
      return r.data;
    },
  };
}
