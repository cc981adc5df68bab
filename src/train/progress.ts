/** Progress on long work (a bar with loss, throughput and ETA on a TTY; periodic lines otherwise) and JSONL metrics. */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import cliProgress from "cli-progress";
import { describeEngine } from "../engine/runtime.js";

export type ProgressFields = Record<string, string>;

export class Progress {
  #bar: cliProgress.SingleBar | null = null;
  #start = performance.now();
  #lastLine = 0;
  readonly #total: number;
  readonly #label: string;
  readonly #quiet: boolean;

  constructor(label: string, total: number, start: number, opts: { quiet?: boolean } = {}) {
    this.#total = total;
    this.#label = label;
    this.#quiet = opts.quiet ?? false;
    // The first line says which engine computes (native OpenBLAS or wasm), so every log records it.
    if (!this.#quiet) process.stderr.write(`${label}: engine ${describeEngine()}\n`);
    if (!this.#quiet && process.stderr.isTTY) {
      this.#bar = new cliProgress.SingleBar(
        { format: `${label} [{bar}] {value}/{total} | {fields} | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true, etaBuffer: 20 },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(total, start, { fields: "" });
    }
  }

  /**
   * Shows progress, then lets the event loop run once. Training loops await it after every update: with the
   * native engine every kernel runs on the main thread, and without this turn a loop would never see Ctrl-C,
   * SIGTERM or a timer until it finished.
   */
  async update(done: number, fields: ProgressFields): Promise<void> {
    this.#show(done, fields);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  #show(done: number, fields: ProgressFields): void {
    const text = Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(" ");
    if (this.#bar) {
      this.#bar.update(done, { fields: text });
      return;
    }
    if (this.#quiet) return;
    // Not a terminal (CI, logs): a plain line at most every 10 s, and at the end.
    const now = performance.now();
    if (now - this.#lastLine > 10_000 || done === this.#total) {
      this.#lastLine = now;
      const elapsed = (now - this.#start) / 1000;
      process.stderr.write(`${this.#label} ${done}/${this.#total} ${text} (${elapsed.toFixed(0)} s)\n`);
    }
  }

  stop(): void {
    this.#bar?.stop();
  }
}

/** Metrics as one JSON object per line. On resume, lines past the resumed step are dropped. */
export class MetricsLog {
  constructor(readonly path: string) {}

  truncateAfter(step: number): void {
    if (!existsSync(this.path)) return;
    const kept = readJsonLines<{ step?: number }>(this.path).filter((r) => (r.step ?? Infinity) <= step);
    writeFileSync(this.path, kept.map((r) => JSON.stringify(r) + "\n").join(""));
  }

  reset(): void {
    writeFileSync(this.path, "");
  }

  write(record: Record<string, unknown>): void {
    appendFileSync(this.path, JSON.stringify(record) + "\n");
  }
}

/**
 * The records of a JSON-lines log. A line that does not parse (a write cut short when the process was killed) is
 * dropped: the log is a record of what was done, and the checkpoint, not the log, is what a resume continues.
 */
export function readJsonLines<T>(path: string): T[] {
  const out: T[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      /* a torn line */
    }
  }
  return out;
}
