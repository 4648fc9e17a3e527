// Every message the monitor writes, in one place so docs/semantics.md, the machines and the tests agree.
// The wording follows Dagster's run_monitoring.py where Dagster has the same case.
import type { HealthResult } from '../src/core/types.js';

export const messages = {
  startTimeout: (seconds: number, debugInfo?: string) =>
    `Run timed out due to taking longer than ${seconds} seconds to start.${debugInfo ? `\n${debugInfo}` : ''}`,
  notLaunchedTimeout: (seconds: number) =>
    `Run timed out due to taking longer than ${seconds} seconds to start: it was never launched.`,
  queuedTimeout: (seconds: number) =>
    `Run timed out due to spending longer than ${seconds} seconds in the queue.`,
  cancelTimeout: (seconds: number) => `Run timed out due to taking longer than ${seconds} seconds to cancel.`,
  maxRuntimeCanceling: (seconds: number) =>
    `Canceling due to exceeding maximum runtime of ${seconds} seconds.`,
  maxRuntimeExceeded: (seconds: number) => `Exceeded maximum runtime of ${seconds} seconds.`,
  terminateException: 'Exception while attempting to terminate run. Run will still be marked as failed.',
  forcedFailure:
    'This run is being forcibly marked as failed. The computational resources created by the run may not have been fully cleaned up.',
  workerStatus: (result: HealthResult) =>
    `Detected run worker status ${result.status}: '${result.message ?? ''}'.`,
  resuming: (result: HealthResult, runId: string) =>
    `${messages.workerStatus(result)} Resuming run ${runId} with a new worker.`,
  launchingResumeWorker: 'Launching a new run worker to resume run',
  resumeFailed: (attempt: number, error: string) =>
    `Failed to launch a new run worker for resume attempt ${attempt}: ${clause(error)}.`,
  crashedNoAttemptsLeft: (result: HealthResult, runId: string, maxAttempts: number) =>
    `${messages.workerStatus(result)} Marking run ${runId} as failed, because it has surpassed the configured maximum attempts to resume the run: ${maxAttempts}.`,
  crashed: (result: HealthResult, runId: string) =>
    `${messages.workerStatus(result)} Marking run ${runId} as failed.`,
  terminateAfterStartTimeoutFailed: (error: string) =>
    `Could not terminate the run worker after the start timeout: ${clause(error)}. The computational resources created by the run may not have been fully cleaned up.`,
  stalled: (reason: 'HEARTBEAT_TIMEOUT' | 'PROGRESS_TIMEOUT', seconds: number) =>
    reason === 'HEARTBEAT_TIMEOUT'
      ? `No heartbeat from the run worker for ${seconds} seconds.`
      : `No progress from the run worker for ${seconds} seconds.`,
  resumingStalled: (stalled: string, runId: string) =>
    `${stalled} Terminated it; resuming run ${runId} with a new worker.`,
  stalledNoAttemptsLeft: (stalled: string, runId: string, maxAttempts: number) =>
    `${stalled} Terminated it; marking run ${runId} as failed, because it has surpassed the configured maximum attempts to resume the run: ${maxAttempts}.`,
  stalledFailed: (stalled: string, runId: string) =>
    `${stalled} Terminated it; marking run ${runId} as failed.`,
  invalidLivenessTag: (tag: string, value: string, fallbackSeconds: number) =>
    `Ignoring tag ${tag}=${JSON.stringify(value)}: expected a finite number of seconds >= 0. Using the configured timeout (${fallbackSeconds === 0 ? 'none' : `${fallbackSeconds} seconds`}).`,
  invalidMaxRuntimeTag: (tag: string, value: string, fallbackSeconds: number) =>
    `Ignoring tag ${tag}=${JSON.stringify(value)}: expected a finite number of seconds >= 0. Using the configured maximum runtime (${fallbackSeconds === 0 ? 'none' : `${fallbackSeconds} seconds`}).`,
  launcherCallTimedOut: (call: string, seconds: number) =>
    `Launcher ${call} did not answer within ${seconds} seconds.`,
  cancelTerminateFailed: (problem: string) =>
    `Could not terminate the run worker: ${clause(problem)}. The cancel timeout will mark the run canceled.`,
  // Dry run: every message starts with `Would have `, and quotes what the monitor would have written.
  wouldHaveFailed: (message: string, terminateWorker: boolean) =>
    `Would have marked the run failed${terminateWorker ? ' and terminated its worker' : ''}: ${message}`,
  wouldHaveResumed: (detected: string, attempt: number) =>
    `Would have resumed the run with a new worker (resume attempt ${attempt}): ${detected}`,
  wouldHaveStoppedStalled: (stalled: string, resume: boolean) =>
    `Would have terminated the run worker and ${resume ? 'resumed the run with a new worker' : 'marked the run failed'}: ${stalled}`,
  wouldHaveExceededMaxRuntime: (seconds: number) =>
    `Would have canceled the run and terminated its worker: ${messages.maxRuntimeCanceling(seconds)}`,
  wouldHaveCanceled: (message: string) => `Would have marked the run canceled: ${message}`,
  crashBrakeHeld: (detected: string, why: string, actingInSeconds: number, dryRun: boolean) =>
    `${dryRun ? 'Would have held' : 'Held'} the crash action for this run (crash brake): ${detected} But ${why}. Deciding again at the next poll; acting anyway in ${actingInSeconds} seconds if it persists.`,
  runActorFailed: (runId: string, error: string) =>
    `The monitor's actor for run ${runId} failed (${clause(error)}); the next poll will watch the run again.`,
};

/** Text embedded mid-sentence: without its own closing period. */
function clause(text: string): string {
  return text.replace(/\.+$/, '');
}

/** A thrown value as one line of text, for engine events. */
export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
