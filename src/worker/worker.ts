// The run-worker SDK (`runwarden/worker`): what a program started by a launcher calls to report on its run.
//
//   const run = await startRunWorker();            // reads RUNWARDEN_RUN_ID, RUNWARDEN_STORE, reports STARTED
//   const rows = await run.step('extract', () => extract());
//   await run.step('load', ({ signal }) => load(rows, { signal }));
//   await run.succeed();
//
// Steps are recorded in the run's event log, so a worker the monitor started again after a crash (a resume)
// skips the steps that already finished. A cancel reaches the worker as SIGTERM: the current step sees
// `run.signal` abort, finishes its cleanup, and the worker reports CANCELED — unless the monitor owns the
// outcome (max runtime exceeded, start timeout), in which case the worker just exits. A maximum-runtime stop
// is final once the monitor has written it: a succeed() or fail() that comes later reports nothing and exits
// the same way.
//
// Liveness: with `heartbeatSeconds` (or RUNWARDEN_HEARTBEAT_SECONDS, which the launcher sets for a run with a
// heartbeat timeout) the worker heartbeats from a timer on its own event loop, so a blocked loop stops the
// heartbeats and a hung worker looks hung. Steps starting and finishing, and `run.progress()`, are signs of
// progress, written at most once a second (src/worker/liveness.ts).
//
// Fencing: every write carries the worker's attempt (RUNWARDEN_RESUME_ATTEMPT). Once the monitor has resumed
// the run with a newer worker, the store refuses this one's writes (WorkerSupersededError); the worker then
// stops: `run.signal` aborts with that error, heartbeats stop, every later call throws it, and the process
// exits with WORKER_SUPERSEDED_EXIT_CODE (3) after one line on stderr (`onSuperseded` replaces that).
//
// This module imports no XState and no monitor code: a worker loads only the store it writes to.
import { errorText } from '../../machines/messages.js';
import {
  RunNotFoundError,
  RunwardenError,
  WORKER_SUPERSEDED_EXIT_CODE,
  WorkerSupersededError,
} from '../core/errors.js';
import { isMaxRuntimeStop } from '../stores/contract.js';
import { openStore } from '../stores/store-url.js';
import {
  type EngineEventInput,
  isTerminal,
  type RunRecord,
  type RunStatus,
  type RunStore,
  TAGS,
} from '../core/types.js';
import { parseWorkerEnv, RUN_WORKER_ENV } from './env.js';
import { heartbeatSecondsOf, ProgressWriter, TimerHeartbeat, WriteFailures } from './liveness.js';

export { RUN_WORKER_ENV } from './env.js';

/** `data.status` of the step events a worker appends. Only `completed` matters to a resumed worker. */
export type StepEventStatus = 'started' | 'completed' | 'skipped' | 'failed' | 'canceled';

/** `data` of a step's ENGINE_EVENTs. */
export interface StepEventData {
  step: string;
  status: StepEventStatus;
  attempt: number;
  durationMs?: number;
  /** The step's return value, when it was JSON-serialisable (completed events only). */
  result?: unknown;
  /** False when the step returned something JSON can't hold: a resumed worker then gets `undefined`. */
  resultRecorded?: boolean;
  error?: string;
}

/**
 * How a worker heartbeats. The SDK calls `start` once the run is STARTED and `stop` when the worker reports a
 * final status or exits. The default is the SDK's own: `store.heartbeat(runId)` at once and then every
 * `heartbeatSeconds` (option, else RUNWARDEN_HEARTBEAT_SECONDS) from an unref'd timer on the worker's event
 * loop, or none when neither is set. A `heartbeat` option replaces it (`noHeartbeat`: none at all), and then
 * the heartbeats are its job: a run with a heartbeat timeout fails without them.
 */
export interface WorkerHeartbeat {
  start(context: HeartbeatContext): void | Promise<void>;
  stop(): void | Promise<void>;
}

export interface HeartbeatContext {
  runId: string;
  /** Pass it with every beat (`store.heartbeat(runId, { attempt })`) so that a superseded worker is refused. */
  attempt: number;
  store: RunStore;
  /** Aborts when the worker is canceled or finishes. */
  signal: AbortSignal;
  /** Seconds between heartbeats asked for (`heartbeatSeconds` or RUNWARDEN_HEARTBEAT_SECONDS), if any. */
  intervalSeconds?: number;
}

/** No heartbeats, even when RUNWARDEN_HEARTBEAT_SECONDS is set. */
export const noHeartbeat: WorkerHeartbeat = Object.freeze({
  start() {},
  stop() {},
});

export interface StartRunWorkerOptions {
  /** Default: `RUNWARDEN_RUN_ID`. */
  runId?: string;
  /** Default: `RUNWARDEN_RESUME_ATTEMPT`, else 0. */
  resumeAttempt?: number;
  /**
   * A store instance (the worker does not close it) or a store URL such as `sqlite:/var/lib/runwarden/runs.db`
   * (opened and closed by the worker). Default: `RUNWARDEN_STORE`.
   */
  store?: RunStore | string;
  /** Where the defaults above are read. Default: process.env. */
  env?: Record<string, string | undefined>;
  /** Install the SIGTERM handler. Default true. Turn it off only if your program handles SIGTERM itself. */
  handleSignals?: boolean;
  /** How the worker ends the process after a SIGTERM or once superseded. Default: process.exit. */
  exit?: (code: number) => void;
  /**
   * Called once when the store refuses a write because the run was resumed with a newer worker, after the
   * worker has stopped its heartbeats and released the store. Default: a line on stderr (`notice`), then
   * `exit(WORKER_SUPERSEDED_EXIT_CODE)`, i.e. 3. A replacement that returns leaves the process running;
   * every later call on the run handle still throws the WorkerSupersededError.
   */
  onSuperseded?: (error: WorkerSupersededError) => void;
  /** Where SIGTERM is listened for. Default: process (tests pass an EventEmitter and emit 'SIGTERM'). */
  signals?: SignalSource;
  /**
   * Seconds between heartbeats (`store.heartbeat`), a number > 0. Default: RUNWARDEN_HEARTBEAT_SECONDS, which
   * the launcher sets for runs that have a heartbeat timeout; with neither, the worker sends none.
   */
  heartbeatSeconds?: number;
  /** Replaces the SDK's heartbeat timer (see WorkerHeartbeat); `noHeartbeat` turns heartbeats off. */
  heartbeat?: WorkerHeartbeat;
  /**
   * Told, in one line, when the worker decides something on its own that the caller did not ask for (a final
   * report left to the monitor's maximum-runtime stop), and when heartbeat or progress writes start failing
   * and work again. Default: a line on stderr, i.e. the worker's log.
   */
  notice?: (message: string) => void;
}

/** The part of `process` the worker listens on for SIGTERM. */
export interface SignalSource {
  on(signal: 'SIGTERM', listener: () => void): unknown;
  off(signal: 'SIGTERM', listener: () => void): unknown;
}

export interface StepContext {
  /** Aborts when the run is canceled: stop work, clean up, then return or throw. */
  signal: AbortSignal;
  /** 0 for the first worker, then the resume attempt. */
  attempt: number;
  runId: string;
}

/** Thrown by `step()` once the run is being canceled, and by startRunWorker for a run canceled before it started. */
export class RunCanceledError extends RunwardenError {
  constructor(readonly runId: string) {
    super('RUN_CANCELED', `Run ${runId} was canceled.`);
  }
}

/** Exit code after a SIGTERM the monitor answers for (128 + SIGTERM), as a shell reports it. */
const EXIT_TERMINATED = 143;

interface CompletedStep {
  result: unknown;
}

export class RunWorker {
  readonly runId: string;
  /** 0 for the first worker, then the resume attempt that started this one. */
  readonly attempt: number;
  /** Aborts when the run is being canceled (SIGTERM after a cancel). Pass it to whatever can be interrupted. */
  readonly signal: AbortSignal;

  private readonly controller = new AbortController();
  private readonly completed = new Map<string, CompletedStep>();
  private readonly used = new Set<string>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly heartbeat: WorkerHeartbeat;
  private readonly heartbeatSeconds: number | undefined;
  private readonly progressWriter: ProgressWriter;
  private readonly exit: (code: number) => void;
  private readonly signals: SignalSource;
  private readonly notice: (message: string) => void;
  private readonly onSuperseded: ((error: WorkerSupersededError) => void) | undefined;
  private handlingSignals = false;
  private finished = false;
  private canceled = false;
  private releasing: Promise<void> | undefined;
  private exited = false;
  /** Set once the store refused a write of this worker's attempt: every later call throws it. */
  private supersededBy: WorkerSupersededError | undefined;
  private termination: Promise<void> | undefined;

  /** @internal Use startRunWorker(). */
  constructor(
    readonly store: RunStore,
    private readonly ownsStore: boolean,
    options: {
      runId: string;
      attempt: number;
      /** Undefined: the SDK's timer heartbeat when heartbeatSeconds is set, else none. */
      heartbeat: WorkerHeartbeat | undefined;
      heartbeatSeconds: number | undefined;
      exit: (code: number) => void;
      signals: SignalSource;
      notice: (message: string) => void;
      onSuperseded: ((error: WorkerSupersededError) => void) | undefined;
    },
  ) {
    this.runId = options.runId;
    this.attempt = options.attempt;
    this.signal = this.controller.signal;
    this.heartbeatSeconds = options.heartbeatSeconds;
    this.exit = options.exit;
    this.signals = options.signals;
    this.notice = options.notice;
    this.onSuperseded = options.onSuperseded;
    const failures = new WriteFailures(this.runId, this.notice, (error) => this.supersede(error));
    this.heartbeat =
      options.heartbeat ??
      (this.heartbeatSeconds === undefined
        ? noHeartbeat
        : new TimerHeartbeat(this.heartbeatSeconds * 1000, failures));
    this.progressWriter = new ProgressWriter(store, this.runId, this.attempt, failures);
  }

  /** The refusal that stopped this worker, once the run was resumed with a newer one; else undefined. */
  get superseded(): WorkerSupersededError | undefined {
    return this.supersededBy;
  }

  /** True once this worker was resumed by the monitor after an earlier worker of the run died. */
  get resumed(): boolean {
    return this.attempt > 0;
  }

  /** Whether a step of this name finished in an earlier attempt (and will be skipped). */
  isCompleted(name: string): boolean {
    return this.completed.has(name);
  }

  /**
   * Runs `fn` as the step `name` and records it in the event log. A step that an earlier worker of this run
   * completed is skipped: its recorded result is returned instead (undefined if it was not JSON-serialisable).
   * Step names must be unique within a run. Throws RunCanceledError once the run is being canceled.
   */
  async step<T>(name: string, fn: (context: StepContext) => T | Promise<T>): Promise<T> {
    if (typeof name !== 'string' || name === '') {
      throw new RunwardenError('INVALID_STEP', 'A step name must be a non-empty string.');
    }
    if (this.used.has(name)) {
      throw new RunwardenError(
        'DUPLICATE_STEP',
        `Step ${JSON.stringify(name)} was already run by this worker: step names must be unique within a run, or a resumed worker could not tell them apart.`,
      );
    }
    this.assertRunning();
    this.used.add(name);
    const done = this.completed.get(name);
    if (done) {
      await this.record(`Step ${name} skipped: completed by an earlier attempt.`, {
        step: name,
        status: 'skipped',
        attempt: this.attempt,
      });
      this.progressWriter.mark();
      return done.result as T;
    }
    const work = this.runStep(name, fn);
    this.inFlight.add(work);
    try {
      return await work;
    } finally {
      this.inFlight.delete(work);
    }
  }

  /**
   * A sign of progress (`progressAt`, for the run's progress timeout), as a step starting or finishing is.
   * Returns at once: writes are coalesced to at most one a second, the latest landing within that second, and
   * a failed one is logged and tried again, never thrown. `message` is logged as an ENGINE_EVENT with the
   * write (of a burst, only the latest message; use log() for every one). Does nothing after the final report.
   */
  progress(message?: string): void {
    if (this.supersededBy) throw this.supersededBy;
    if (message !== undefined && typeof message !== 'string') {
      throw new RunwardenError(
        'INVALID_PROGRESS',
        `run.progress() takes an optional message string; got ${typeof message}.`,
      );
    }
    this.progressWriter.mark(message);
  }

  /** Appends an ENGINE_EVENT to the run's event log. */
  async log(message: string, data?: unknown): Promise<void> {
    await this.appendEvent({ type: 'ENGINE_EVENT', message, data });
  }

  /**
   * Reports SUCCESS, then releases the store. If the run is being canceled, waits for that instead. If the
   * monitor is stopping the run for exceeding its maximum runtime, reports nothing: that stop is final, the
   * run will end FAILURE. It then resolves the stored (CANCELING) record and exits as on the monitor's SIGTERM.
   */
  async succeed(message = 'Run succeeded.'): Promise<RunRecord | undefined> {
    if (this.termination) return this.waitForTermination();
    this.assertRunning();
    this.finished = true;
    await this.progressWriter.flush();
    return this.report('SUCCESS', message);
  }

  /**
   * Reports FAILURE with the error's message, then releases the store. If the run is being canceled, waits for
   * that instead; if the monitor is stopping it for maximum runtime, leaves the FAILURE to the monitor (see
   * succeed()), after recording the error as an ENGINE_EVENT.
   */
  async fail(error: unknown): Promise<RunRecord | undefined> {
    if (this.termination) return this.waitForTermination();
    this.assertRunning();
    this.finished = true;
    await this.progressWriter.flush();
    const text = errorText(error);
    try {
      await this.appendEvent({
        type: 'ENGINE_EVENT',
        message: `Run worker failed: ${text}`,
        data: { error: text, stack: error instanceof Error ? error.stack : undefined, attempt: this.attempt },
      });
    } catch (appendError) {
      await this.release();
      throw appendError;
    }
    return this.report('FAILURE', `Run failed: ${text}`);
  }

  /**
   * Stops the heartbeats and releases the store and the signal handler without reporting anything (the
   * monitor will see the worker gone).
   */
  async close(): Promise<void> {
    this.finished = true;
    await this.release();
  }

  // --- internals -------------------------------------------------------------------------------------------

  /** @internal */
  async begin(handleSignals: boolean): Promise<void> {
    if (handleSignals) {
      this.signals.on('SIGTERM', this.onSigterm);
      this.handlingSignals = true;
    }
    let run = await this.mustGetRun();
    if (run.status === 'STARTING') {
      const started = await this.transition({
        to: 'STARTED',
        from: ['STARTING'],
        message: `Run worker started (pid ${process.pid}${this.attempt > 0 ? `, attempt ${this.attempt}` : ''}).`,
      });
      run = started ?? (await this.mustGetRun());
    } else if (run.status === 'STARTED') {
      // The monitor resumed this run after its worker died: the run stays STARTED and max runtime keeps
      // counting from the first start.
      await this.appendEvent({
        type: 'ENGINE_EVENT',
        message: `Run worker resumed (attempt ${this.attempt})`,
        data: { attempt: this.attempt, pid: process.pid },
      });
    }
    if (run.status === 'CANCELING') {
      if (isMaxRuntimeStop(run)) {
        throw new RunwardenError(
          'RUN_NOT_RUNNABLE',
          `Run ${this.runId} is being stopped by the monitor (${run.tags[TAGS.cancelReason] ?? 'CANCELING'}); this worker has nothing to do.`,
        );
      }
      await this.cancelRun();
      throw new RunCanceledError(this.runId);
    }
    if (run.status !== 'STARTED') {
      throw new RunwardenError(
        'RUN_NOT_RUNNABLE',
        isTerminal(run.status)
          ? `Run ${this.runId} has already ended (${run.status}); this worker has nothing to do.`
          : `Run ${this.runId} is ${run.status}: a worker can only start a run that was launched (STARTING) or resume a STARTED one.`,
      );
    }
    for (const event of await this.store.getEvents(this.runId, { types: ['ENGINE_EVENT'] })) {
      const data = event.data as Partial<StepEventData> | undefined;
      if (data && typeof data.step === 'string' && data.status === 'completed') {
        this.completed.set(data.step, { result: data.result });
      }
    }
    const context: HeartbeatContext = {
      runId: this.runId,
      attempt: this.attempt,
      store: this.store,
      signal: this.signal,
    };
    if (this.heartbeatSeconds !== undefined) context.intervalSeconds = this.heartbeatSeconds;
    await this.heartbeat.start(context);
  }

  private async runStep<T>(name: string, fn: (context: StepContext) => T | Promise<T>): Promise<T> {
    const startedAt = Date.now();
    await this.record(`Step ${name} started.`, { step: name, status: 'started', attempt: this.attempt });
    this.progressWriter.mark();
    let result: T;
    try {
      result = await fn({ signal: this.signal, attempt: this.attempt, runId: this.runId });
    } catch (error) {
      const canceled = this.canceled;
      await this.record(
        canceled
          ? `Step ${name} stopped: the run is being canceled.`
          : `Step ${name} failed: ${errorText(error)}`,
        {
          step: name,
          status: canceled ? 'canceled' : 'failed',
          attempt: this.attempt,
          durationMs: Date.now() - startedAt,
          error: errorText(error),
        },
      ).catch(() => {});
      this.progressWriter.mark();
      throw error;
    }
    const data: StepEventData = {
      step: name,
      status: 'completed',
      attempt: this.attempt,
      durationMs: Date.now() - startedAt,
    };
    const recorded = toJson(result);
    if (recorded.ok) data.result = recorded.value;
    else data.resultRecorded = false;
    await this.record(`Step ${name} completed.`, data);
    this.progressWriter.mark();
    return result;
  }

  private async record(message: string, data: StepEventData): Promise<void> {
    await this.appendEvent({ type: 'ENGINE_EVENT', message, data });
  }

  // --- fenced writes: every write carries this worker's attempt ----------------------------------------

  private transition(change: {
    to: RunStatus;
    from: RunStatus[];
    message: string;
  }): Promise<RunRecord | undefined> {
    return this.fenced(() => this.store.transition(this.runId, { ...change, attempt: this.attempt }));
  }

  private appendEvent(event: EngineEventInput): Promise<unknown> {
    return this.fenced(() => this.store.appendEvent(this.runId, { ...event, attempt: this.attempt }));
  }

  /**
   * Runs a write; a refusal for a superseded attempt stops the worker, and still rejects to the caller. The
   * write's own promise is returned (no extra await), so fencing adds no turn of the event loop to a step.
   */
  private fenced<T>(write: () => Promise<T>): Promise<T> {
    if (this.supersededBy) return Promise.reject(this.supersededBy);
    const written = write();
    // Registered before the caller's handler, so the worker is stopping by the time the caller hears of it.
    written.catch((error: unknown) => {
      if (error instanceof WorkerSupersededError) this.supersede(error);
    });
    return written;
  }

  /**
   * Superseded: stop everything this worker does and release the store, then say so and exit at once (or call
   * onSuperseded), before the refused write's rejection can reach the caller's code as a crash.
   */
  private supersede(error: WorkerSupersededError): void {
    if (this.supersededBy) return;
    this.supersededBy = error;
    this.finished = true;
    // Steps see why they should stop: not a cancel, a newer worker owns the run.
    if (!this.signal.aborted) this.controller.abort(error);
    void this.release().catch(() => {});
    if (!this.onSuperseded) {
      this.notice(`${error.message} Exiting with code ${WORKER_SUPERSEDED_EXIT_CODE}.`);
      this.exitOnce(WORKER_SUPERSEDED_EXIT_CODE);
      return;
    }
    try {
      this.onSuperseded(error);
    } catch (hookError) {
      this.notice(`Run ${this.runId}: onSuperseded threw: ${errorText(hookError)}`);
    }
  }

  private readonly onSigterm = () => {
    if (this.termination) return;
    // A failed final write (store busy, superseded) must not become an unhandled rejection that kills the
    // process before it exits the way it means to.
    this.termination = this.terminate().catch((error: unknown) => {
      if (!(error instanceof WorkerSupersededError)) this.notice(`Run ${this.runId}: ${errorText(error)}`);
    });
  };

  /** SIGTERM: leave the outcome to the monitor, or finish the current step's cleanup and report CANCELED. */
  private async terminate(): Promise<void> {
    let run: RunRecord | undefined;
    try {
      run = await this.store.getRun(this.runId);
    } catch {
      run = undefined;
    }
    if (this.finished || !run || run.status !== 'CANCELING' || isMaxRuntimeStop(run)) {
      // Max runtime, start timeout, a host shutting down: the monitor decides what the run becomes.
      this.finished = true;
      await this.release().catch(() => {});
      this.exitOnce(EXIT_TERMINATED);
      return;
    }
    await this.cancelRun();
  }

  private async cancelRun(): Promise<void> {
    this.canceled = true;
    this.controller.abort(new RunCanceledError(this.runId));
    // Let every running step see the signal and clean up.
    await Promise.allSettled([...this.inFlight]);
    this.finished = true;
    let run: RunRecord | undefined;
    // Pending progress is dropped, not flushed: nothing may delay the CANCELED write, which races a main that
    // lets the step's cancel error escape and crash the process (writes in flight finish in release()).
    void this.progressWriter.close();
    try {
      const message = `Run canceled: its worker (pid ${process.pid}) stopped after the cancel request.`;
      run = await this.writeFinal('CANCELED', ['CANCELING'], message);
    } finally {
      await this.release().catch(() => {});
      if (run && isMaxRuntimeStop(run)) this.leftToMonitor(run, 'CANCELED');
      else this.exitOnce(0);
    }
  }

  /**
   * The final report of succeed() and fail(): compare-and-set from STARTED, and from CANCELING only after a
   * user cancel, so that a maximum-runtime stop the monitor wrote first is never overtaken (not even by a
   * FAILURE, which would lose its reason). Releases the store whatever happens.
   */
  private async report(to: 'SUCCESS' | 'FAILURE', message: string): Promise<RunRecord | undefined> {
    let run: RunRecord | undefined;
    try {
      run = await this.writeFinal(to, ['STARTING', 'STARTED'], message);
      if (run?.status === 'CANCELING' && !isMaxRuntimeStop(run)) {
        run = await this.writeFinal(to, ['CANCELING'], message);
      }
    } finally {
      await this.release();
    }
    if (run && isMaxRuntimeStop(run)) this.leftToMonitor(run, to);
    return run;
  }

  /** Writes `to` if the run is in `from`; resolves the record as it now stands either way. */
  private async writeFinal(
    to: RunStatus,
    from: RunStatus[],
    message: string,
  ): Promise<RunRecord | undefined> {
    const written = await this.transition({ to, from, message });
    return written ?? (await this.store.getRun(this.runId));
  }

  /** A report refused by a maximum-runtime stop: say so once, then exit as on the monitor's SIGTERM. */
  private leftToMonitor(run: RunRecord, wanted: RunStatus): void {
    this.notice(
      `Run ${this.runId}: not reporting ${wanted}: the monitor is stopping this run for exceeding its maximum runtime (${TAGS.cancelReason}=${run.tags[TAGS.cancelReason]}), and the run will end FAILURE. Exiting.`,
    );
    this.exitOnce(EXIT_TERMINATED);
  }

  private exitOnce(code: number): void {
    if (this.exited) return;
    this.exited = true;
    // Superseded wins over whatever path was exiting (a SIGTERM's cancel whose CANCELED was refused).
    this.exit(this.supersededBy && !this.onSuperseded ? WORKER_SUPERSEDED_EXIT_CODE : code);
  }

  private async waitForTermination(): Promise<RunRecord | undefined> {
    await this.termination;
    return undefined;
  }

  private assertRunning(): void {
    if (this.supersededBy) throw this.supersededBy;
    if (this.canceled) throw new RunCanceledError(this.runId);
    if (this.finished) {
      throw new RunwardenError(
        'RUN_WORKER_FINISHED',
        `Run ${this.runId}: this worker already reported its final status.`,
      );
    }
  }

  private async mustGetRun(): Promise<RunRecord> {
    const run = await this.store.getRun(this.runId);
    if (!run) throw new RunNotFoundError(this.runId);
    return run;
  }

  /** Idempotent: every caller waits for the same release. */
  private release(): Promise<void> {
    this.releasing ??= this.releaseOnce();
    return this.releasing;
  }

  private async releaseOnce(): Promise<void> {
    if (this.handlingSignals) this.signals.off('SIGTERM', this.onSigterm);
    this.handlingSignals = false;
    // Anything still listening (a step started without awaiting it) learns the worker is done.
    if (!this.signal.aborted) {
      this.controller.abort(
        new RunwardenError('RUN_WORKER_FINISHED', `Run ${this.runId}: the worker has finished.`),
      );
    }
    try {
      await this.progressWriter.close();
      await this.heartbeat.stop();
    } finally {
      if (this.ownsStore) await this.store.close?.();
    }
  }
}

/**
 * Starts reporting for the run this process was launched for: reads the environment, opens the store,
 * reports STARTED (a resumed worker finds the run STARTED already and logs `Run worker resumed (attempt N)`),
 * and installs the SIGTERM handler. Throws when the run does not exist, has ended, or is being stopped.
 */
export async function startRunWorker(options: StartRunWorkerOptions = {}): Promise<RunWorker> {
  const env = parseWorkerEnv(options.env ?? process.env);
  const runId = options.runId ?? env.runId;
  if (!runId) {
    throw new RunwardenError(
      'WORKER_ENV_MISSING',
      `${RUN_WORKER_ENV.runId} is not set: a run worker is started by a Runwarden launcher (or pass { runId }).`,
    );
  }
  const attempt = options.resumeAttempt ?? env.attempt;
  const storeOption = options.store ?? env.store;
  if (storeOption === undefined || storeOption === '') {
    throw new RunwardenError(
      'WORKER_ENV_MISSING',
      `${RUN_WORKER_ENV.store} is not set: a run worker needs the store location (e.g. sqlite:/var/lib/runwarden/runs.db), or pass { store }.`,
    );
  }
  const heartbeatSeconds = heartbeatSecondsOf(options.heartbeatSeconds, env.heartbeatSeconds);
  const notice = options.notice ?? ((message: string) => process.stderr.write(`${message}\n`));
  const owns = typeof storeOption === 'string';
  const store = owns ? openStore(storeOption) : storeOption;
  const worker = new RunWorker(store, owns, {
    runId,
    attempt,
    heartbeat: options.heartbeat,
    heartbeatSeconds,
    exit: options.exit ?? ((code) => process.exit(code)),
    signals: options.signals ?? process,
    notice,
    onSuperseded: options.onSuperseded,
  });
  try {
    await worker.begin(options.handleSignals !== false);
  } catch (error) {
    await worker.close().catch(() => {});
    throw error;
  }
  return worker;
}

/**
 * startRunWorker, then `main(run)`; reports SUCCESS when it returns and FAILURE when it throws (a cancel
 * ends the run CANCELED instead). Sets process.exitCode to 1 on failure.
 */
export async function runWorker(
  main: (run: RunWorker) => unknown | Promise<unknown>,
  options: StartRunWorkerOptions = {},
): Promise<void> {
  const run = await startRunWorker(options);
  try {
    await main(run);
  } catch (error) {
    // Superseded: the worker is already stopping (and exiting); it reports nothing more.
    if (run.superseded) return;
    await run.fail(error);
    process.exitCode = 1;
    return;
  }
  await run.succeed();
}

function toJson(value: unknown): { ok: true; value: unknown } | { ok: false } {
  if (value === undefined) return { ok: true, value: undefined };
  try {
    const text = JSON.stringify(value);
    if (text === undefined) return { ok: false };
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}
