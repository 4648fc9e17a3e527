import type { RunStatus } from './types.js';

/** Base of every error Runwarden throws on purpose; `code` is stable for programs to match on. */
export class RunwardenError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class RunNotFoundError extends RunwardenError {
  constructor(readonly runId: string) {
    super('RUN_NOT_FOUND', `Unknown run id ${JSON.stringify(runId)}: no such run in the store.`);
  }
}

export class InvalidTransitionError extends RunwardenError {
  constructor(
    readonly runId: string,
    readonly from: RunStatus | readonly RunStatus[],
    readonly to: RunStatus,
  ) {
    const fromText = typeof from === 'string' ? from : from.join(' | ');
    super('INVALID_TRANSITION', `Run ${runId}: moving from ${fromText} to ${to} is not allowed.`);
  }
}

export class DuplicateRunError extends RunwardenError {
  constructor(readonly runId: string) {
    super('DUPLICATE_RUN', `A run with id ${JSON.stringify(runId)} already exists.`);
  }
}

export class ConfigError extends RunwardenError {
  constructor(
    message: string,
    readonly issues: { path: string; message: string }[] = [],
  ) {
    super('INVALID_CONFIG', message);
  }
}

export class InvalidTagsError extends RunwardenError {
  constructor(message: string) {
    super('INVALID_TAGS', message);
  }
}

export class LaunchError extends RunwardenError {
  constructor(
    readonly runId: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('LAUNCH_FAILED', message, options);
  }
}

/**
 * The exit code of a run worker that stopped because it was superseded (the worker SDK, `runwarden report`
 * and the --wrap wrapper), so a launcher or a log reader can tell it from a crash or a failure.
 */
export const WORKER_SUPERSEDED_EXIT_CODE = 3;

/**
 * A worker write (status, event, heartbeat) from an attempt older than the run's current one: the worker
 * was presumed dead and the run resumed with a new worker, so this one must stop without writing.
 */
export class WorkerSupersededError extends RunwardenError {
  constructor(
    readonly runId: string,
    readonly attempt: number,
    readonly currentAttempt: number,
  ) {
    super(
      'WORKER_SUPERSEDED',
      `Run ${runId}: this worker (attempt ${attempt}) was superseded by attempt ${currentAttempt}; its write was refused. The run was resumed with a new worker, so this one must stop.`,
    );
  }
}
