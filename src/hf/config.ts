/**
 * Hugging Face `config.json` handling shared by the three data2vec architectures: which architecture a
 * directory holds, and zod pieces for the fields they share. Size fields are required (a missing one would
 * otherwise silently become a class default that disagrees with the weights); the rest default as in HF.
 */
import { z } from "zod";
import { CheckpointError } from "../engine/errors.js";

export const ARCHITECTURES = {
  "data2vec-audio": ["Data2VecAudioModel", "Data2VecAudioForCTC", "Data2VecAudioForSequenceClassification"],
  "data2vec-text": ["Data2VecTextModel", "Data2VecTextForMaskedLM", "Data2VecTextForSequenceClassification"],
  "data2vec-vision": ["Data2VecVisionModel", "Data2VecVisionForImageClassification"],
} as const;

export type ModelType = keyof typeof ARCHITECTURES;
export type Architecture = (typeof ARCHITECTURES)[ModelType][number];

/** The model type and architecture named by a config (`architectures[0]`, else the bare model of `model_type`). */
export function architectureOf(config: Record<string, unknown>, source: string): { modelType: ModelType; architecture: Architecture } {
  const supported = Object.values(ARCHITECTURES).flat().join(", ");
  const named = Array.isArray(config.architectures) ? (config.architectures[0] as string | undefined) : undefined;
  const modelType = config.model_type as string | undefined;
  for (const [type, archs] of Object.entries(ARCHITECTURES) as [ModelType, readonly Architecture[]][]) {
    if (named !== undefined && (archs as readonly string[]).includes(named)) return { modelType: type, architecture: named as Architecture };
    if (named === undefined && modelType === type) return { modelType: type, architecture: archs[0] };
  }
  throw new CheckpointError(
    `${source} describes ${named ?? modelType ?? "an unnamed model"} (model_type ${JSON.stringify(modelType)}), which this project cannot run. ` +
      `Supported architectures: ${supported}.`,
  );
}

const positiveInt = z.number().int().positive();
export const sizeFields = {
  hidden_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  intermediate_size: positiveInt,
};
/** What every loaded Hugging Face model has besides its modality's parts. */
export type HfModelBase<M extends string, C> = {
  modality: M;
  architecture: Architecture;
  /** The checkpoint's config.json, validated. */
  hf: C;
  /** Class names of a classification head (`id2label`), or null. */
  labels: string[] | null;
  /** State-dict keys no part of the model reads (reported, not silently dropped). */
  unusedKeys: string[];
};

/** Our transformer fields from HF's size fields; dropout off (the loaded model runs inference, or fine-tunes with its own settings). */
export function encoderFieldsFromHf(c: { hidden_size: number; num_hidden_layers: number; num_attention_heads: number; intermediate_size: number; layer_norm_eps: number }) {
  return { dim: c.hidden_size, layers: c.num_hidden_layers, heads: c.num_attention_heads, ffnDim: c.intermediate_size, dropout: 0, attentionDropout: 0, layerNormEps: c.layer_norm_eps };
}

export const geluOnly = z.literal("gelu", { message: 'only "gelu" (exact erf GELU, what every data2vec checkpoint uses) is supported' }).default("gelu");
export const labelMap = z.record(z.string(), z.string()).optional();

/** Class names in id order from `id2label`, or null. */
export function labelNames(id2label: Record<string, string> | undefined): string[] | null {
  if (!id2label) return null;
  const out: string[] = [];
  for (const [id, name] of Object.entries(id2label)) out[Number(id)] = name;
  return out;
}

/** Classes of a classification head: `id2label`'s size, else `num_labels`, else HF's default of 2. */
export function classCount(config: Record<string, unknown>, labels: string[] | null): number {
  return labels?.length ?? ((config.num_labels as number | undefined) || 2);
}

/** Width checks every architecture needs, as zod refinements. */
export function checkHeads(c: { hidden_size: number; num_attention_heads: number }, ctx: z.RefinementCtx): void {
  if (c.hidden_size % c.num_attention_heads !== 0) {
    ctx.addIssue({ code: "custom", path: ["num_attention_heads"], message: `hidden_size ${c.hidden_size} is not divisible by ${c.num_attention_heads} heads` });
  }
}

export { positiveInt };
