// `runwarden report <started|success|failure|canceled|heartbeat|progress>`: how a run worker that is not a
// Node program (a shell script, Python) reports on its run, and the same reports for the --wrap wrapper
// (src/cli/wrap.ts). The rules are the worker SDK's: STARTED from STARTING (a resumed worker finds the run
// STARTED and logs that it resumed), SUCCESS and FAILURE compare-and-set from STARTING/STARTED and from a
// user's CANCELING, CANCELED only after a cancel request, and never over a maximum-runtime stop. `heartbeat`
// and `progress` set `heartbeatAt` (and `progressAt`) without an event. A report the run's status does not
// allow is refused with one line saying why (exit 1), never overwritten.
//
// Every write carries the worker's attempt (RUNWARDEN_RESUME_ATTEMPT): once the monitor has resumed the run
// with a newer worker, the store refuses it (WorkerSupersededError) and `runwarden report` exits with
// WORKER_SUPERSEDED_EXIT_CODE (3) and one line, so the script knows to stop.
//
// This module imports no XState, no monitor and no commander: the wrapper loads it on every run.
import { existsSync } from 'node:fs';
import { ConfigError, RunNotFoundError, RunwardenError } from '../core/errors.js';
import { isMaxRuntimeStop } from '../stores/contract.js';
import { openStoreAt, parseStoreUrl, STORE_ENV } from '../stores/store-url.js';
import { isTerminal, type RunRecord, type RunStatus, type RunStore, TAGS } from '../core/types.js';
import { parseWorkerEnv, RUN_WORKER_ENV, type WorkerEnv } from '../worker/env.js';

export type ReportKind = 'started' | 'success' | 'failure' | 'canceled' | 'heartbeat' | 'progress';

/** A report the run's status does not allow: exit code 1, one line, no stack trace. */
export class ReportRefusedError extends RunwardenError {
  constructor(
    message: string,
    readonly run: RunRecord,
  ) {
    super('REPORT_REFUSED', message);
  }
}

/** A missing or malformed worker environment (no run id, no store): a configuration error, exit 2. */
class WorkerEnvError extends ConfigError {}

export interface ReportOptions {
  message?: string;
  runId?: string;
  store?: string;
}

/** The `runwarden report` command. Prints nothing when the report was written. */
export async function reportCommand(
  kind: ReportKind,
  options: ReportOptions,
  env: Record<string, string | undefined> = process.env,
): Promise<void> {
  const { runId, storeUrl, attempt } = reportTarget(options, env);
  const store = openExistingStore(storeUrl, options.store === undefined ? STORE_ENV : '--store');
  try {
    await report(store, runId, kind, { message: options.message, attempt });
  } finally {
    await store.close();
  }
}

/** What a worker reports as: its run, its store, and the attempt its writes carry. */
export interface ReportTarget {
  runId: string;
  storeUrl: string;
  /**
   * RUNWARDEN_RESUME_ATTEMPT (0 when unset); undefined when `--run-id` names another run than
   * RUNWARDEN_RUN_ID, whose attempt this environment does not know (such a report is not fenced).
   */
  attempt: number | undefined;
  /** RUNWARDEN_HEARTBEAT_SECONDS; undefined when unset (no heartbeats). */
  heartbeatSeconds: number | undefined;
}

/**
 * The run id and store URL from the flags, else the environment, with the attempt and heartbeat interval; a
 * WorkerEnvError names what is missing or malformed.
 */
export function reportTarget(
  options: { runId?: string; store?: string },
  env: Record<string, string | undefined>,
): ReportTarget {
  const parsed = workerEnv(env);
  const runId = options.runId ?? parsed.runId;
  const storeUrl = options.store ?? parsed.store;
  const missing = [
    runId ? undefined : `the run id (--run-id, or ${RUN_WORKER_ENV.runId})`,
    storeUrl
      ? undefined
      : `the store (--store, or ${RUN_WORKER_ENV.store}, e.g. sqlite:/var/lib/runwarden/runs.db)`,
  ].filter(Boolean);
  if (missing.length > 0) {
    throw new WorkerEnvError(
      `Missing ${missing.join(' and ')}: a launcher sets ${RUN_WORKER_ENV.runId} and ${RUN_WORKER_ENV.store} for the run workers it starts.`,
    );
  }
  const ownRun = options.runId === undefined || options.runId === parsed.runId;
  return {
    runId: runId!,
    storeUrl: storeUrl!,
    attempt: ownRun ? parsed.attempt : undefined,
    heartbeatSeconds: parsed.heartbeatSeconds,
  };
}

/** parseWorkerEnv, with a malformed variable as a configuration error (exit 2), like a missing one. */
function workerEnv(env: Record<string, string | undefined>): WorkerEnv {
  try {
    return parseWorkerEnv(env);
  } catch (error) {
    throw new WorkerEnvError((error as Error).message);
  }
}

/**
 * Opens the store a worker was pointed at. A missing database file is an error (a mistyped path would
 * otherwise create an empty store and report "unknown run").
 */
export function openExistingStore(url: string, from: string): RunStore & { close(): Promise<void> } {
  const location = parseStoreUrl(url);
  if (location.kind === 'sqlite' && !existsSync(location.path)) {
    throw new RunwardenError(
      'STORE_NOT_FOUND',
      `No run store at ${location.path} (from ${from}=${url}): check the path; a launcher passes the store its monitor uses.`,
    );
  }
  return openStoreAt(location);
}

/** Writes one report; throws ReportRefusedError when the run's status does not allow it. */
async function report(
  store: RunStore,
  runId: string,
  kind: ReportKind,
  options: { message?: string; attempt?: number } = {},
): Promise<RunRecord> {
  const { attempt } = options;
  switch (kind) {
    case 'started':
      return reportStarted(store, runId, options);
    case 'success':
      return reportFinal(store, runId, 'SUCCESS', options.message ?? 'Run succeeded.', attempt);
    case 'failure':
      return reportFinal(
        store,
        runId,
        'FAILURE',
        options.message ?? 'Run failed: its worker reported failure.',
        attempt,
      );
    case 'canceled':
      return reportCanceled(
        store,
        runId,
        options.message ?? 'Run canceled: its worker stopped after the cancel request.',
        attempt,
      );
    case 'heartbeat':
    case 'progress':
      return reportHeartbeat(store, runId, {
        progress: kind === 'progress',
        message: options.message,
        attempt,
      });
  }
}

/**
 * A sign of life (`heartbeatAt`), and with `progress` a sign of progress too (`progressAt`), without an
 * event; `message` is logged as an ENGINE_EVENT. A run that has ended is refused: its worker should stop.
 */
async function reportHeartbeat(
  store: RunStore,
  runId: string,
  options: { progress?: boolean; message?: string; attempt?: number } = {},
): Promise<RunRecord> {
  const { attempt } = options;
  const run = await store.heartbeat(runId, { progress: options.progress === true, attempt });
  if (isTerminal(run.status)) {
    throw new ReportRefusedError(
      `Run ${runId} has already ended (${run.status}); not recording the ${options.progress ? 'progress' : 'heartbeat'}.`,
      run,
    );
  }
  if (options.message !== undefined) {
    await store.appendEvent(runId, { type: 'ENGINE_EVENT', message: options.message, attempt });
  }
  return run;
}

/**
 * STARTED from STARTING. A run already STARTED is a resumed one (or a second report): the first report of a
 * resume attempt appends `Run worker resumed (attempt N)`, as the worker SDK does.
 */
export async function reportStarted(
  store: RunStore,
  runId: string,
  options: { message?: string; attempt?: number; data?: Record<string, unknown> } = {},
): Promise<RunRecord> {
  const { attempt } = options;
  const message =
    options.message ??
    `Run worker started${attempt !== undefined && attempt > 0 ? ` (attempt ${attempt})` : ''}.`;
  const run =
    (await store.transition(runId, { to: 'STARTED', from: ['STARTING'], message, attempt })) ??
    (await mustGet(store, runId));
  if (run.status !== 'STARTED') {
    throw new ReportRefusedError(refusal(run, 'STARTED'), run);
  }
  if (attempt !== undefined && attempt > 0 && !(await resumeLogged(store, runId, attempt))) {
    await store.appendEvent(runId, {
      type: 'ENGINE_EVENT',
      message: resumedMessage(attempt),
      data: { attempt, ...options.data },
      attempt,
    });
  }
  return run;
}

/**
 * SUCCESS or FAILURE, compare-and-set from STARTING/STARTED, then from CANCELING after a user's cancel (the
 * work finished before the worker stopped). A maximum-runtime stop is never overtaken: the run ends FAILURE
 * with the monitor's reason.
 */
export async function reportFinal(
  store: RunStore,
  runId: string,
  to: 'SUCCESS' | 'FAILURE',
  message: string,
  attempt: number | undefined,
): Promise<RunRecord> {
  let run = await store.transition(runId, { to, from: ['STARTING', 'STARTED'], message, attempt });
  if (run) return run;
  run = await mustGet(store, runId);
  if (run.status === 'CANCELING' && !isMaxRuntimeStop(run)) {
    const written = await store.transition(runId, { to, from: ['CANCELING'], message, attempt });
    if (written) return written;
    run = await mustGet(store, runId);
  }
  throw new ReportRefusedError(refusal(run, to), run);
}

/** CANCELED, only from a user's CANCELING (a worker reports canceled after it stopped for a cancel request). */
export async function reportCanceled(
  store: RunStore,
  runId: string,
  message: string,
  attempt: number | undefined,
): Promise<RunRecord> {
  const written = await store.transition(runId, { to: 'CANCELED', from: ['CANCELING'], message, attempt });
  if (written) return written;
  const run = await mustGet(store, runId);
  throw new ReportRefusedError(refusal(run, 'CANCELED'), run);
}

/** Why a report of `wanted` does not apply to `run`, in one line. */
function refusal(run: RunRecord, wanted: RunStatus): string {
  const not = `not reporting ${wanted}`;
  if (isTerminal(run.status)) return `Run ${run.runId} has already ended (${run.status}); ${not}.`;
  if (isMaxRuntimeStop(run)) {
    return `Run ${run.runId} is being stopped by the monitor for exceeding its maximum runtime (${TAGS.cancelReason}=${run.tags[TAGS.cancelReason]}) and will end FAILURE; ${not}.`;
  }
  if (run.status === 'CANCELING' && wanted === 'STARTED') {
    return `Run ${run.runId} is CANCELING (a cancel was requested before it started); ${not}: stop, then report canceled.`;
  }
  if (wanted === 'CANCELED') {
    return `Run ${run.runId} is ${run.status}: a worker reports canceled only after a cancel request (status CANCELING); ${not}.`;
  }
  return `Run ${run.runId} is ${run.status}: a worker reports on a run that was launched (STARTING) or is running (STARTED); ${not}.`;
}

function resumedMessage(attempt: number): string {
  return `Run worker resumed (attempt ${attempt})`;
}

/** Whether this resume attempt already logged its resume (a wrapped command reporting `started` too). */
async function resumeLogged(store: RunStore, runId: string, attempt: number): Promise<boolean> {
  const events = await store.getEvents(runId, { types: ['ENGINE_EVENT'] });
  return events.some((event) => event.message === resumedMessage(attempt));
}

async function mustGet(store: RunStore, runId: string): Promise<RunRecord> {
  const run = await store.getRun(runId);
  if (!run) throw new RunNotFoundError(runId);
  return run;
}
