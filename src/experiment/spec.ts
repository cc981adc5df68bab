/**
 * The experiment file of `d2v experiment`: a grid of settings × seeds, each job pretrain → fine-tune → evaluate
 * with the ordinary `d2v` commands. Validated in full (every setting's pretraining config included) before any
 * job runs, so a typo fails in a second instead of after an hour of compute.
 */
import { join, resolve } from "node:path";
import { z } from "zod";
import { deepMerge, readJsonFile, validate } from "../config/validate.js";
import { resolveAudioConfig } from "../audio/config.js";
import { resolveTextConfig } from "../text/config.js";
import { resolveVisionConfig } from "../vision/config.js";

const jsonObject = z.record(z.string(), z.unknown());
const args = z.array(z.string()).default([]);

const settingSchema = z
  .object({
    /** Shown in the report; also names the setting's run folder. */
    name: z.string().min(1),
    /** What the setting tests, for the report. */
    note: z.string().default(""),
    /** Fine-tune random weights (the architecture and tokenizer of the first pretrained setting, same seed). */
    scratch: z.boolean().default(false),
    /** Merged over `pretrain.config` for this setting (for example `{"data2vec": {"topK": 1}}`). */
    config: jsonObject.default({}),
    /** Extra `d2v finetune` arguments for this setting. */
    finetuneArgs: args,
    /** The setting is expected to collapse: the report checks that the monitor stopped it. */
    expectCollapse: z.boolean().default(false),
  })
  .strict()
  .refine((s) => !(s.scratch && Object.keys(s.config).length > 0), { message: "a scratch setting is not pretrained, so it takes no pretraining config" });

export const experimentSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]+$/, "use letters, digits, '.', '_' and '-' (it names the output folder)"),
    description: z.string().default(""),
    modality: z.enum(["text", "vision", "audio"]),
    preset: z.string(),
    seeds: z.array(z.number().int()).min(1),
    /** `d2v` commands that build the data, each run only when `creates` does not exist yet. */
    prepare: z.array(z.object({ args: z.array(z.string()).min(1), creates: z.string() }).strict()).default([]),
    pretrain: z
      .object({
        steps: z.number().int().min(1),
        data: z.string().optional(),
        /** Merged over the preset for every setting. */
        config: jsonObject.default({}),
        args,
      })
      .strict(),
    finetune: z.object({ data: z.string().optional(), args }).strict(),
    eval: z
      .object({
        data: z.string().optional(),
        args,
        /** The field of `d2v eval`'s JSON line to compare (accuracy, cer, wer, …). */
        metric: z.string(),
        higherIsBetter: z.boolean(),
      })
      .strict(),
    settings: z.array(settingSchema).min(1),
    /** The paper's claims as pairs: `better` should beat `than`. The report says whether the runs agree. */
    claims: z.array(z.object({ better: z.string(), than: z.string(), claim: z.string() }).strict()).default([]),
  })
  .strict()
  .superRefine((e, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    const names = e.settings.map((s) => s.name);
    const slugs = new Map<string, string>();
    e.settings.forEach((s, i) => {
      if (names.indexOf(s.name) !== i) issue(["settings", i, "name"], `"${s.name}" is used twice`);
      const slug = settingSlug(s.name);
      if (slugs.has(slug) && slugs.get(slug) !== s.name) issue(["settings", i, "name"], `"${s.name}" and "${slugs.get(slug)}" share the folder name ${slug}`);
      slugs.set(slug, s.name);
    });
    if (e.settings.every((s) => s.scratch)) issue(["settings"], "needs at least one pretrained (non-scratch) setting");
    if (new Set(e.seeds).size !== e.seeds.length) issue(["seeds"], "a seed is listed twice");
    e.claims.forEach((c, i) => {
      for (const k of ["better", "than"] as const) if (!names.includes(c[k])) issue(["claims", i, k], `no setting is named "${c[k]}"`);
    });
  });

export type ExperimentSpec = z.infer<typeof experimentSchema>;
export type SettingSpec = ExperimentSpec["settings"][number];

/** A setting's folder name: its name in lower case, runs of other characters turned into '-'. */
export function settingSlug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9.]+/g, "-").replace(/^-+|-+$/g, "") || "setting";
}

/** The full pretraining config of a setting: preset ← pretrain.config ← setting.config, validated like `d2v pretrain` does. */
export function settingPretrainConfig(e: ExperimentSpec, s: SettingSpec): unknown {
  const overrides = deepMerge(e.pretrain.config, s.config);
  const source = `experiment "${e.name}", setting "${s.name}"`;
  const resolveConfig = { text: resolveTextConfig, vision: resolveVisionConfig, audio: resolveAudioConfig }[e.modality];
  return resolveConfig(e.preset, overrides, { train: { steps: e.pretrain.steps } }, source);
}

/**
 * Reads and validates an experiment file. Relative data paths in it are relative to the current directory
 * (experiments run from the project root).
 */
export function loadExperiment(path: string): ExperimentSpec {
  const spec = validate(experimentSchema, readJsonFile(path, "experiment file"), path);
  for (const s of spec.settings) if (!s.scratch) settingPretrainConfig(spec, s);
  return spec;
}

/** Where an experiment writes: `--out`, or runs/experiments/<name> next to the current directory. */
export function experimentDir(spec: ExperimentSpec, out?: string): string {
  return resolve(out ?? join("runs", "experiments", spec.name));
}
