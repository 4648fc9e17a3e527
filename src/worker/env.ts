// The environment a launcher gives the run workers it starts, read in one place for every kind of worker:
// the SDK (src/worker/worker.ts), `runwarden report` (src/cli/report.ts) and the --wrap wrapper
// (src/cli/wrap.ts). An empty variable counts as unset; a malformed one is refused with an error naming the
// variable and its value, so a worker never writes under a wrong run, store or attempt.
import { RunwardenError } from '../core/errors.js';
import { STORE_ENV } from '../stores/store-url.js';

/** Environment variables a launcher gives a run worker (ProcessRunLauncher sets them all). */
export const RUN_WORKER_ENV = {
  runId: 'RUNWARDEN_RUN_ID',
  /** 0 for the first worker of a run, n for the worker of its n-th resume: the attempt every write carries. */
  resumeAttempt: 'RUNWARDEN_RESUME_ATTEMPT',
  store: STORE_ENV,
  /** Seconds between heartbeats; set by the launcher for runs that have a heartbeat timeout. */
  heartbeatSeconds: 'RUNWARDEN_HEARTBEAT_SECONDS',
} as const;

/** A worker environment as read: what is unset stays undefined, except the attempt (0 when unset). */
export interface WorkerEnv {
  runId?: string;
  /** The store URL. */
  store?: string;
  attempt: number;
  heartbeatSeconds?: number;
}

/** Node's longest timer: a longer heartbeat interval would fire at once, and then every millisecond. */
const MAX_TIMER_MS = 2 ** 31 - 1;
export const MAX_HEARTBEAT_SECONDS = MAX_TIMER_MS / 1000;

/** Reads and checks every worker variable; throws WORKER_ENV_INVALID naming the first bad one. */
export function parseWorkerEnv(env: Record<string, string | undefined>): WorkerEnv {
  const parsed: WorkerEnv = { attempt: parseAttempt(nonEmpty(env[RUN_WORKER_ENV.resumeAttempt])) };
  const runId = nonEmpty(env[RUN_WORKER_ENV.runId]);
  if (runId !== undefined) parsed.runId = runId;
  const store = nonEmpty(env[RUN_WORKER_ENV.store]);
  if (store !== undefined) parsed.store = store;
  const heartbeatSeconds = parseHeartbeat(nonEmpty(env[RUN_WORKER_ENV.heartbeatSeconds]));
  if (heartbeatSeconds !== undefined) parsed.heartbeatSeconds = heartbeatSeconds;
  return parsed;
}

/** A heartbeat interval a timer can wait: a number of seconds > 0 and <= MAX_HEARTBEAT_SECONDS. */
export function isHeartbeatInterval(seconds: unknown): seconds is number {
  return (
    typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0 && seconds <= MAX_HEARTBEAT_SECONDS
  );
}

function parseAttempt(text: string | undefined): number {
  if (text === undefined) return 0;
  const attempt = Number(text);
  // Digits only: "1e3", " 2" or "0x1" are not what a launcher writes, so they are a sign of a wrong variable.
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(attempt)) {
    throw invalid(
      `${RUN_WORKER_ENV.resumeAttempt} must be a whole number >= 0; got ${JSON.stringify(text)}.`,
    );
  }
  return attempt;
}

function parseHeartbeat(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (!isHeartbeatInterval(seconds)) {
    throw invalid(
      `${RUN_WORKER_ENV.heartbeatSeconds} must be a number of seconds > 0 and <= ${MAX_HEARTBEAT_SECONDS}; got ${JSON.stringify(text)}.`,
    );
  }
  return seconds;
}

function invalid(message: string): RunwardenError {
  return new RunwardenError('WORKER_ENV_INVALID', message);
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text === '' ? undefined : text;
}
