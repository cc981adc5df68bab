/**
 * Errors a user can cause. Each names what was wrong and what to do; the CLI prints `message` without a
 * stack trace and exits with status 2.
 */
export class D2vError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
/** A file, folder or dataset that is missing, empty or unreadable. */
export class DataError extends D2vError {}
/** A config field that is unknown or out of range. */
export class ConfigError extends D2vError {}
/** A checkpoint that is corrupt, truncated or does not match what it is loaded into. */
export class CheckpointError extends D2vError {}
/** A tokenizer vocabulary that is malformed or does not match a model. */
export class VocabError extends D2vError {}
/** Training stopped because the representations collapsed (see the collapse monitor). */
export class CollapseError extends D2vError {}

/** The `d2v` exit status when training stopped because the representations collapsed (2 is every other user error). */
export const COLLAPSE_EXIT_STATUS = 3;
/** An experiment file that is invalid, or an experiment job that failed. */
export class ExperimentError extends D2vError {}
/** The compute engine asked for (`D2V_ENGINE`) cannot run here. */
export class EngineError extends D2vError {}
