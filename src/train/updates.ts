/**
 * The optimizer side of a fine-tuning loop, shared by the classifier and CTC loops. A loop either runs its own fused
 * step (gradients and AdamW in one compiled call: one batch per update, the moments on the device, the fastest), or
 * hands each batch's gradients here; every `accumulate` batches (and at an epoch's end) AdamW applies their mean, in a
 * compiled update on the device or with its moments in ordinary memory (`HostAdamW`, for models whose moments do not
 * fit the engine's heap).
 */
import { compile, disposeTree, mapTree } from "../engine/typed.js";
import { numpy as np } from "../engine/jax.js";
import { adamwInit, adamwUpdate, HostAdamW, type AdamWConfig, type AdamWState } from "../engine/optim.js";
import type { OptimizerPlace } from "./finetune.js";

export class AdamWUpdates<P> {
  /** AdamW's state on the device (null with the moments on the host); a fused step reads and replaces it. */
  state: AdamWState | null;
  #pending: P | null = null; // the device sum of the batches since the last update
  #batches = 0;
  readonly #addGrads = compile((a: P, g: P): P => mapTree((x, y) => x.add(y), a, g));
  readonly #applyMean = compile((p: P, s: AdamWState, sum: P, scale: np.Array, lr: np.Array): [P, AdamWState] => mean(sum, scale, (g) => adamwStep(g, s, p, lr, this.opt)));
  readonly #applyMeanScaled = compile((p: P, s: AdamWState, sum: P, scale: np.Array, lr: np.Array, lrScales: P): [P, AdamWState] => mean(sum, scale, (g) => adamwStep(g, s, p, lr, this.opt, lrScales)));

  private constructor(
    private readonly opt: AdamWConfig,
    readonly accumulate: number,
    private readonly host: HostAdamW<P> | null,
    params: P,
  ) {
    this.state = host ? null : adamwInit(params);
  }

  static async create<P>(params: P, opt: AdamWConfig, o: { optimizer?: OptimizerPlace; accumulate?: number }): Promise<AdamWUpdates<P>> {
    return new AdamWUpdates(opt, o.accumulate ?? 1, o.optimizer === "host" ? await HostAdamW.create(params, opt) : null, params);
  }

  /** One batch per update with the moments on the device: the loop's fused step does the update with `state`. */
  get fused(): boolean {
    return this.accumulate === 1 && !this.host;
  }

  /** Adds a batch's gradients (consumed); true when an update is due (`accumulate` batches, or the epoch's last one). */
  async add(grads: P, lastOfEpoch: boolean): Promise<boolean> {
    if (this.host) await this.host.accumulate(grads);
    else this.#pending = this.#pending ? this.#addGrads(this.#pending, grads) : grads;
    this.#batches++;
    return this.#batches === this.accumulate || lastOfEpoch;
  }

  /** AdamW on the mean of the added gradients; consumes `params` and `lrScales` (as in `adamwUpdate`), returns the new parameters. */
  async apply(params: P, lr: number, lrScales?: P): Promise<P> {
    const batches = this.#batches;
    this.#batches = 0;
    if (this.host) return (await this.host.apply(params, lr, lrScales))[0];
    const sum = this.#pending!;
    this.#pending = null;
    const args = [params, this.state!, sum, np.array(1 / batches), np.array(lr)] as const;
    const [p, s] = lrScales ? this.#applyMeanScaled(...args, lrScales) : this.#applyMean(...args);
    this.state = s;
    return p;
  }

  dispose(): void {
    if (this.state) disposeTree(this.state);
    if (this.#pending) disposeTree(this.#pending);
    for (const f of [this.#addGrads, this.#applyMean, this.#applyMeanScaled]) f.dispose();
  }
}

/** `update` on the mean of summed gradients (`sum` × `scale`, scale = 1 / batches). Consumes sum and scale. */
function mean<P, R>(sum: P, scale: np.Array, update: (grads: P) => R): R {
  const out = update(mapTree((x) => x.mul(scale.ref), sum));
  scale.dispose();
  return out;
}

/** `adamwUpdate` without its gradient norm. */
function adamwStep<P>(grads: P, state: AdamWState, params: P, lr: np.Array, opt: AdamWConfig, lrScales?: P): [P, AdamWState] {
  const [p, s] = adamwUpdate(grads, state, params, lr, opt, lrScales);
  return [p, s];
}
