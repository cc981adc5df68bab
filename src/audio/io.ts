/**
 * Audio input: WAV decoding (PCM 8/16/24/32-bit and float, any channel count, via `wavefile`), FLAC decoding
 * (libFLAC compiled to wasm, via `@wasm-audio-decoders/flac`), downmix to mono, band-limited resampling to
 * the model's rate, and the per-clip normalization of the Hugging Face feature extractor.
 */
import { readFileSync } from "node:fs";
import { FLACDecoder } from "@wasm-audio-decoders/flac";
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
  // wavefile's typings declare `data` as a bare object; its samples are the data chunk's bytes.
  const data = (wav.data as { samples?: unknown }).samples;
  if (!(data instanceof Uint8Array)) throw new DataError(`${name} has no readable data chunk`);
  const frameBytes = (fmt.bitsPerSample / 8) * fmt.numChannels;
  if (data.length % frameBytes !== 0) {
    throw new DataError(`${name} has ${data.length} data bytes, not a whole number of ${frameBytes}-byte frames: the file is truncated or its chunk sizes are inconsistent`);
  }
  let channels: Float64Array[];
  try {
    // One array per channel, or a single array for mono (wavefile's typings name only the latter).
    const s: Float64Array | Float64Array[] = wav.getSamples(false, Float64Array);
    channels = Array.isArray(s) ? s : [s];
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

function readBytes(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new DataError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function readWav(path: string): Audio {
  return decodeWav(readBytes(path), path);
}

/** STREAMINFO of a FLAC stream (the first metadata block, required by the format). */
function flacStreamInfo(bytes: Uint8Array, name: string): { sampleRate: number; channels: number; totalSamples: number } {
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== "fLaC") throw new DataError(`${name} is not a FLAC file (no fLaC marker)`);
  if (bytes.length < 42 || (bytes[4] & 0x7f) !== 0) throw new DataError(`${name} has no STREAMINFO block: the FLAC header is truncated or corrupt`);
  const i = 8 + 10; // block header (4 bytes after the marker), then min/max block and frame sizes
  const sampleRate = (bytes[i] << 12) | (bytes[i + 1] << 4) | (bytes[i + 2] >> 4);
  const channels = ((bytes[i + 2] >> 1) & 0x7) + 1;
  const totalSamples = (bytes[i + 3] & 0xf) * 2 ** 32 + ((bytes[i + 4] << 24) >>> 0) + (bytes[i + 5] << 16) + (bytes[i + 6] << 8) + bytes[i + 7];
  return { sampleRate, channels, totalSamples };
}

/** Byte offset of the first audio frame: after the metadata blocks (each: last-flag, type, 24-bit length). */
function flacFirstFrame(bytes: Uint8Array, name: string): number {
  let p = 4;
  for (;;) {
    if (p + 4 > bytes.length) throw new DataError(`${name} ends inside its metadata: the FLAC file is truncated`);
    const last = bytes[p] & 0x80;
    p += 4 + ((bytes[p + 1] << 16) | (bytes[p + 2] << 8) | bytes[p + 3]);
    if (last) break;
  }
  if (p + 16 > bytes.length) throw new DataError(`${name} has no audio frames: the FLAC file is truncated`);
  return p;
}

let flacDecoder: FLACDecoder | null = null;

/**
 * Decodes a FLAC file to mono float32 (channels averaged). A stream that decodes to fewer samples than its
 * header announces is reported as truncated rather than returned short.
 */
export async function decodeFlac(bytes: Uint8Array, name = "the FLAC data"): Promise<Audio> {
  const info = flacStreamInfo(bytes, name);
  if (!(info.sampleRate > 0)) throw new DataError(`${name} has an invalid sample rate in its header`);
  if (!flacDecoder) {
    flacDecoder = new FLACDecoder();
    await flacDecoder.ready;
  } else await flacDecoder.reset();
  // The stream parser emits a frame only once it sees the next frame's sync code, so the last frame would
  // be dropped: a copy of the first frame's header appended as a sentinel lets it through (the sentinel
  // itself is an incomplete frame and yields nothing).
  const first = flacFirstFrame(bytes, name);
  const withSentinel = new Uint8Array(bytes.length + 16);
  withSentinel.set(bytes);
  withSentinel.set(bytes.subarray(first, first + 16), bytes.length);
  const r = await flacDecoder.decodeFile(withSentinel);
  if (r.errors.length > 0) throw new DataError(`${name} is a corrupt FLAC file (${r.errors[0].message} at frame ${r.errors[0].frameNumber})`);
  const n = info.totalSamples > 0 ? Math.min(r.samplesDecoded, info.totalSamples) : r.samplesDecoded;
  if (n === 0) throw new DataError(`${name} holds no samples (zero length or corrupt)`);
  if (info.totalSamples > 0 && n < info.totalSamples) {
    throw new DataError(`${name} is truncated: its header announces ${info.totalSamples} samples, ${n} could be decoded`);
  }
  const ch = info.totalSamples > 0 ? r.channelData.map((c) => c.subarray(0, info.totalSamples)) : r.channelData;
  const samples = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (const c of ch) sum += c[i];
    samples[i] = sum / ch.length;
    if (!Number.isFinite(samples[i])) throw new DataError(`${name} has a non-finite sample at ${i}; the file is corrupt`);
  }
  return { samples, sampleRate: r.sampleRate };
}

/** WAV or FLAC, told apart by their magic bytes, decoded to mono float32. */
export async function decodeAudio(bytes: Uint8Array, name = "the audio data"): Promise<Audio> {
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic === "fLaC") return decodeFlac(bytes, name);
  if (magic === "RIFF" || magic === "RIFX" || magic === "RF64") return decodeWav(bytes, name);
  if (bytes.length === 0) throw new DataError(`${name} is empty (zero bytes)`);
  throw new DataError(`${name} is neither WAV nor FLAC; convert it to 16-bit PCM WAV or FLAC (e.g. \`ffmpeg -i IN -ar 16000 OUT.wav\`)`);
}

/** Reads a WAV or FLAC file as mono float32 at `rate` Hz (resampled when its rate differs). */
export async function readAudio(path: string, rate: number): Promise<Float32Array> {
  const a = await decodeAudio(readBytes(path), path);
  return a.sampleRate === rate ? a.samples : resample(a.samples, a.sampleRate, rate);
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
