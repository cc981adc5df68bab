/**
 * Text masking, done on the host when batches are built (as fairseq's MaskTokensDataset):
 * - "bert": a `ratio` of the non-special tokens is chosen (the count is int(ratio·n + U)), then replaced by
 *   <mask> (80%), a random token (10%) or left as is (10%);
 * - "span": int(p·n/span + U) span starts drawn without replacement, each masking `span` tokens, all replaced
 *   by <mask>, where p = spanStartProbability(ratio, span) (the data2vec text config: p = 0.35 in spans of 4,
 *   31% of the tokens, no random or kept tokens).
 * As in fairseq's data2vec text model, the loss covers the steps that show <mask>.
 */
import type { HostRng } from "../engine/random.js";
import { spanStartProbability } from "../data2vec/masking.js";

export type TextMaskConfig = {
  kind: "bert" | "span";
  /** Expected fraction of the non-special tokens chosen. */
  ratio: number;
  spanLength: number;
  randomTokenProb: number;
  leaveUnmaskedProb: number;
};

export type MaskedSequence = { source: Int32Array; lossWeights: Float32Array };

export function maskTokens(
  ids: Int32Array,
  cfg: TextMaskConfig,
  rng: HostRng,
  special: { maskId: number; isSpecial: (id: number) => boolean; vocabSize: number; firstRegularId: number },
): MaskedSequence {
  const candidates: number[] = [];
  ids.forEach((id, i) => {
    if (!special.isSpecial(id)) candidates.push(i);
  });
  const n = candidates.length;
  const chosen = new Uint8Array(ids.length);
  if (cfg.kind === "span") {
    const starts = Math.min(n, Math.floor((spanStartProbability(cfg.ratio, cfg.spanLength) * n) / cfg.spanLength + rng.uniform()));
    for (const c of rng.sample(n, starts)) {
      for (let k = 0; k < cfg.spanLength && c + k < n; k++) chosen[candidates[c + k]] = 1;
    }
  } else {
    const count = Math.min(n, Math.floor(cfg.ratio * n + rng.uniform()));
    for (const c of rng.sample(n, count)) chosen[candidates[c]] = 1;
  }
  const source = Int32Array.from(ids);
  const lossWeights = new Float32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    if (!chosen[i]) continue;
    const u = rng.uniform();
    if (u < cfg.randomTokenProb) {
      source[i] = rng.int(special.firstRegularId, special.vocabSize - 2); // never a special token
    } else if (u < cfg.randomTokenProb + cfg.leaveUnmaskedProb) {
      // left as is
    } else {
      source[i] = special.maskId;
      lossWeights[i] = 1;
    }
  }
  return { source, lossWeights };
}
