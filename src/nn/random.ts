/** Random keys inside traced code: a stream that hands out fresh sub-keys from one jax PRNG key. */
import { numpy as np, random } from "../engine/jax.js";

export class KeyStream {
  #key: np.Array;
  constructor(key: np.Array) {
    this.#key = key;
  }
  /** A fresh key; the stream advances. */
  next(): np.Array {
    const pair = random.split(this.#key, 2);
    this.#key = pair.ref.slice(0);
    return pair.slice(1);
  }
  bernoulli(p: number, shape: number[]): np.Array {
    return random.bernoulli(this.next(), p, shape);
  }
  normal(shape: number[]): np.Array {
    return random.normal(this.next(), shape);
  }
  /** Releases the remaining key (streams must be closed to avoid leaking one buffer). */
  close(): void {
    this.#key.dispose();
  }
}
