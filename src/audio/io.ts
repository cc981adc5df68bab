/**
 * Audio input: WAV decoding (PCM 8/16/24/32-bit and float, any channel count, via `wavefile`), downmix to
 * mono, band-limited resampling to the model's rate, and the per-clip normalization of the Hugging Face
 * feature extractor.
 */
import { readFileSync } from "node:fs";
import wavefile from "wavefile";
import { DataError } from "../engine/errors.js";

export type Audio = { samples: Float32Array; sampleRate: number };

type WavFormat = { audioFormat: number; bitsPerSample: number; numChannels: number; sampleRate: number };

/**
 * Decodes a WAV file to mono float32 in [−1, 1): integers are scaled by 2^(bits−1) (16-bit: x/32768, what
 * soundfile and the HF pipelines give), 8-bit PCM is unsigned around 128, and channels are averaged.
 */
export function decodeWav(bytes: Uint8Array, name = "the WAV data"): Audio {
  let wav: InstanceType<typeof wavefile.WaveFile>;
  try {
    wav = new wavefile.WaveFile(bytes);
  } catch (e) {
    throw new DataError(`${name} is not a readable WAV file (${(e as Error).message}); convert it to 16-bit PCM WAV`);
  }
  const fmt = wav.fmt as WavFormat;
  const isFloat = fmt.audioFormat === 3 || (fmt.audioFormat === 65534 && (fmt.bitsPerSample === 32 || fmt.bitsPerSample === 64) && wav.bitDepth.endsWith("f"));
  if (![1, 3, 65534].includes(fmt.audioFormat)) {
    throw new DataError(`${name} uses WAV encoding ${fmt.audioFormat} (compressed); only PCM and IEEE float WAV are supported`);
  }
  if (!(fmt.sampleRate > 0) || !(fmt.numChannels > 0)) throw new DataError(`${name} has an invalid header (rate ${fmt.sampleRate}, ${fmt.numChannels} channels)`);
  const data = (wav as unknown as { data: { samples: Uint8Array } }).data.samples;
  const frameBytes = (fmt.bitsPerSample / 8) * fmt.numChannels;
  if (data.length % frameBytes !== 0) {
    throw new DataError(`${name} has ${data.length} data bytes, not a whole number of ${frameBytes}-byte frames: the file is truncated or its chunk sizes are inconsistent`);
  }
  let channels: Float64Array[];
  try {
    const s = wav.getSamples(false, Float64Array) as unknown as Float64Array | Float64Array[];
    channels = fmt.numChannels === 1 ? [s as Float64Array] : (s as Float64Array[]);
  } catch (e) {
    throw new DataError(`${name}: cannot decode its samples (${(e as Error).message})`);
  }
  const n = channels[0].length;
  if (n === 0) throw new DataError(`${name} holds no samples (zero length)`);
  const scale = isFloat ? 1 : 2 ** (fmt.bitsPerSample - 1);
  const offset = !isFloat && fmt.bitsPerSample === 8 ? 128 : 0;
  const samples = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (const ch of channels) sum += Math.fround((ch[i] - offset) / scale);
    samples[i] = channels.length === 1 ? sum : sum / channels.length;
    if (!Number.isFinite(samples[i])) throw new DataError(`${name} has a non-finite sample (NaN or infinity) at ${i}; the file is corrupt`);
  }
  return { samples, sampleRate: fmt.sampleRate };
}

export function readWav(path: string): Audio {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new DataError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return decodeWav(bytes, path);
}

/** 16-bit PCM WAV bytes for mono float samples (clipped to [−1, 1)). */
export function encodeWav16(samples: Float32Array, sampleRate: number): Uint8Array {
  const wav = new wavefile.WaveFile();
  const ints = Int16Array.from(samples, (v) => Math.max(-32768, Math.min(32767, Math.round(v * 32768))));
  wav.fromScratch(1, sampleRate, "16", ints);
  return wav.toBuffer();
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * Band-limited resampling by windowed sinc interpolation (Hann window, 6 zero crossings, cutoff at 99% of
 * the lower Nyquist rate), the method and defaults of torchaudio's `resample`. Output length is
 * ceil(n · to / from).
 */
export function resample(samples: Float32Array, from: number, to: number, opts: { zeroCrossings?: number; rolloff?: number } = {}): Float32Array {
  if (from === to) return samples.slice();
  if (!(from > 0 && to > 0 && Number.isInteger(from) && Number.isInteger(to))) throw new DataError(`cannot resample from ${from} Hz to ${to} Hz`);
  const zeroCrossings = opts.zeroCrossings ?? 6;
  const rolloff = opts.rolloff ?? 0.99;
  const g = gcd(from, to);
  const [up, down] = [to / g, from / g];
  // Cutoff in cycles per input sample, and the kernel's half-width in input samples.
  const base = (Math.min(from, to) * rolloff) / from;
  const halfWidth = zeroCrossings / base;
  const n = samples.length;
  const outLength = Math.ceil((n * to) / from);
  const out = new Float32Array(outLength);
  // Each output phase (index mod up) shares its filter taps.
  const phases = new Map<number, { first: number; taps: Float64Array }>();
  for (let i = 0; i < outLength; i++) {
    const phase = i % up;
    const blockStart = ((i - phase) / up) * down; // input index where this phase block starts
    let taps = phases.get(phase);
    if (!taps) {
      const t = (phase * down) / up; // input time relative to blockStart
      const first = Math.ceil(t - halfWidth);
      const last = Math.floor(t + halfWidth);
      const w = new Float64Array(last - first + 1);
      for (let k = first; k <= last; k++) {
        const u = (t - k) * base; // in units of the cutoff period
        const sinc = u === 0 ? 1 : Math.sin(Math.PI * u) / (Math.PI * u);
        const window = Math.cos((Math.PI * u) / (2 * zeroCrossings)) ** 2;
        w[k - first] = base * sinc * window;
      }
      taps = { first, taps: w };
      phases.set(phase, taps);
    }
    let acc = 0;
    for (let k = 0; k < taps.taps.length; k++) {
      const j = blockStart + taps.first + k;
      if (j >= 0 && j < n) acc += samples[j] * taps.taps[k];
    }
    out[i] = acc;
  }
  return out;
}

/**
 * Zero-mean, unit-variance normalization over a clip's own samples, `(x − mean) / sqrt(var + 1e-7)` with the
 * biased variance, as Wav2Vec2FeatureExtractor(do_normalize=True) computes it before padding.
 */
export function normalizeClip(samples: Float32Array): Float32Array {
  let mean = 0;
  for (const v of samples) mean += v;
  mean /= samples.length;
  let variance = 0;
  for (const v of samples) variance += (v - mean) ** 2;
  variance /= samples.length;
  const inv = 1 / Math.sqrt(variance + 1e-7);
  return Float32Array.from(samples, (v) => (v - mean) * inv);
}
