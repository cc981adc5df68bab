/** A fairseq fixture folder (weights, inputs, expected outputs, config) and what a variant makes of it. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { z } from "zod";
import type { numpy as np } from "../engine/jax.js";
import { CheckpointError, D2vError } from "../engine/errors.js";
import { decodeSafetensors, type HostTensor } from "../engine/safetensors.js";
import type { ParamTree } from "../engine/tree.js";
import type { Data2VecParams, Modality, Teacher } from "../data2vec/model.js";
import type { Data2VecSettings } from "../data2vec/config.js";
import type { KeyEntry } from "./keys.js";

/** What a variant supplies: our modality and settings, the student as our tree, the batch, and the key maps. */
export type FairseqVariant<Shared extends ParamTree, Batch extends { [k: string]: np.Array }> = {
  modality: Modality<Shared, Batch>;
  d2v: Data2VecSettings;
  params: Data2VecParams<Shared>;
  /** The teacher as fairseq saved it: its blocks, and its own copy of the shared groups `d2v.emaShared` names. */
  teacher: Teacher<Shared>;
  batch: () => Batch;
  /** Student key map (fairseq key → our path in `params`). */
  student: KeyEntry[];
  /** Teacher key (without `teacher.`) → our path: in the teacher (`teacher`: its blocks and own groups) or shared with the student (`student`). */
  teacherKeys: { key: string; where: "teacher" | "student"; entry: KeyEntry }[];
  /** The settings that reproduce fairseq where our default differs (shown in the JSON line). */
  settings: Record<string, unknown>;
};

export type Fixture = { dir: string; config: { model?: unknown; fixture?: Record<string, unknown> }; weights: Map<string, HostTensor>; inputs: Map<string, HostTensor>; expected: Map<string, HostTensor> };

export function readFixture(dir: string): Fixture {
  const read = (f: string) => {
    const p = join(dir, f);
    if (!existsSync(p)) throw new D2vError(`${dir} is not a fairseq fixture folder: ${f} is missing`);
    return p;
  };
  const config = JSON.parse(readFileSync(read("config.json"), "utf8"));
  const tensors = (f: string) => decodeSafetensors(new Uint8Array(readFileSync(read(`${f}.safetensors`))), join(dir, `${f}.safetensors`)).tensors;
  return { dir, config, weights: tensors("weights"), inputs: tensors("inputs"), expected: tensors("expected") };
}


/** The fixture's fairseq model config, checked against what a variant reads. */
export function parseFairseqModel<S extends z.ZodType>(schema: S, f: Fixture): z.infer<S> {
  const r = schema.safeParse(f.config.model);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CheckpointError(`${f.dir}/config.json: model.${issue?.path.join(".")}: ${issue?.message} (not a fairseq config this variant reads)`);
  }
  return r.data;
}

/** A field of the fixture's `fixture` section, checked. */
export function parseFixtureField<S extends z.ZodType>(schema: S, f: Fixture, field: string): z.infer<S> {
  const r = schema.safeParse(f.config.fixture?.[field]);
  if (!r.success) throw new CheckpointError(`${f.dir}/config.json: fixture.${field} is missing or malformed (${r.error.issues[0]?.message})`);
  return r.data;
}
