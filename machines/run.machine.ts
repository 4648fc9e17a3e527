// One actor per run. Each top-level state mirrors a stored RunStatus and carries that status's timeout as
// a delayed transition; every side effect is an invoked actor named in setup() and provided by the host.
// While an effect is in flight the actor sits in a state named after it, so a timer or an event arriving
// meanwhile cannot start a second effect: updates are recorded and acted on once the effect has finished.
import { and, assign, fromPromise, setup } from 'xstate';
import type { MonitorConfig } from '../src/core/config.js';
import type { FailureReason, HealthResult, RunRecord, RunStatus } from '../src/core/types.js';
import { TAGS } from '../src/core/types.js';
import { errorText, messages } from './messages.js';

/** The MonitorConfig fields every run actor obeys (0 switches a *Seconds check off). */
const RUN_SETTING_KEYS = [
  'startTimeoutSeconds',
  'cancelTimeoutSeconds',
  'queuedTimeoutSeconds',
  'maxResumeRunAttempts',
  'unknownHealthTolerance',
  'terminateOnStartTimeout',
  'launcherTimeoutSeconds',
  'storeRetrySeconds',
  'dryRun',
] as const satisfies readonly (keyof MonitorConfig)[];

/** Monitoring settings a run actor obeys; shared by every run of a monitor except the per-run fields. */
export type RunSettings = Pick<MonitorConfig, (typeof RUN_SETTING_KEYS)[number]>;

/** The run settings of a configuration: one object, shared by every run actor of a monitor. */
export function runSettings(config: RunSettings): RunSettings {
  const settings = {} as Record<string, unknown>;
  for (const key of RUN_SETTING_KEYS) settings[key] = config[key];
  return settings as unknown as RunSettings;
}

export interface RunInput {
  run: RunRecord;
  settings: RunSettings;
  /** Resolved from the run's tags or the configured default; 0 = no limit. */
  maxRuntimeSeconds: number;
  /** Resolved like maxRuntimeSeconds from `runwarden/heartbeat_timeout`; 0 = off. */
  heartbeatTimeoutSeconds?: number;
  /** Resolved like maxRuntimeSeconds from `runwarden/progress_timeout`; 0 = off. */
  progressTimeoutSeconds?: number;
  /** A max-runtime tag that could not be used, reported once as an engine event. */
  invalidMaxRuntimeTag?: { tag: string; value: string } | undefined;
  /** Heartbeat or progress timeout tags that could not be used, reported once as engine events. */
  invalidLivenessTags?: { tag: string; value: string }[] | undefined;
}

export interface PendingFailure {
  reason: FailureReason;
  message: string;
  from: RunStatus[];
  /** A start timeout that would also terminate the worker (what a dry run reports). */
  terminateWorker: boolean;
  /** For the host's metrics: the deadline this failure enforces, or when the crash behind it was first seen. */
  deadline?: number | undefined;
  badSince?: number | undefined;
}

/** Why a live worker was judged hung: which of its liveness deadlines passed without a sign from it. */
export interface Stall {
  reason: 'HEARTBEAT_TIMEOUT' | 'PROGRESS_TIMEOUT';
  seconds: number;
}

export interface RunContext extends RunInput {
  unknownStreak: number;
  stall?: Stall;
  /** The liveness deadline the timer was armed for (a poll may refresh the record meanwhile). */
  livenessDueAt?: number;
  /** When the first bad or unsure health result of the current streak arrived (crash detection time). */
  badSince?: number | undefined;
  health?: HealthResult;
  failure?: PendingFailure;
  resumeAttempt?: number;
  lastError?: string;
  /** Dry run: the decision the monitor would have carried out, and the status it was made in. */
  wouldHave?: WouldHave;
}

export interface WouldHave {
  status: RunStatus;
  message: string;
  decision: DecisionInput;
}

/** A health result as the host delivers it: stamped with when it arrived, on the host's clock. */
export type CheckedHealth = HealthResult & { at?: number };

// A health result may carry the fresh record it was checked with: the supervisor sends it that way, one
// event per check, when the record's status is the one the actor has (so it cannot move the actor); a
// moved status still comes as a `run.updated` first.
export type RunMachineEvent =
  | { type: 'run.updated'; run: RunRecord }
  | { type: 'health.checked'; run?: RunRecord; result: CheckedHealth };

/** The stored record an event brings, if any. */
const recordOf = (event: RunMachineEvent): RunRecord | undefined =>
  event.type === 'run.updated' || event.type === 'health.checked' ? event.run : undefined;

/**
 * What an effect's write decides, for the host's metrics: the action and its reason (bounded label values),
 * and the moment it became due — a deadline, or the first bad health result — so the host can measure how
 * long it took until the decision was written.
 */
export interface DecisionInput {
  action: 'fail' | 'cancel' | 'resume' | 'terminate';
  reason: string;
  deadline?: number | undefined;
  badSince?: number | undefined;
}

export interface WriteStatusInput {
  runId: string;
  to: RunStatus;
  from: RunStatus[];
  message: string;
  tags?: Record<string, string>;
  decision?: DecisionInput;
}
/** `run` is the stored record after the write, or the current one when the compare-and-set did not apply. */
export interface WriteStatusOutput {
  applied: boolean;
  run: RunRecord | undefined;
}
export interface EngineEventInput {
  runId: string;
  message: string;
  data?: unknown;
}
/** A dry run's decision, written as an ENGINE_EVENT instead of being carried out. */
export interface WouldHaveInput {
  runId: string;
  message: string;
  decision: DecisionInput;
}
export interface LauncherCallInput {
  runId: string;
}
export interface ResumeAttemptInput extends LauncherCallInput {
  decision?: DecisionInput;
}
/** A start timeout's whole decision, carried out by one effect (see `timingOutStart`). */
export interface StartTimeoutInput {
  runId: string;
  startTimeoutSeconds: number;
  /** terminateOnStartTimeout: terminate the worker once FAILURE is stored. */
  terminate: boolean;
  /** For the host's metrics: the start deadline this failure enforces. */
  deadline: number;
}
/** The FAILURE write's outcome, and why the worker could not be terminated when it was to be. */
export interface StartTimeoutOutput extends WriteStatusOutput {
  terminateError?: string | undefined;
}

const SECOND = 1000;

// Absolute deadlines from stored timestamps: a restarted monitor arms exactly the same ones.
export const deadlines = {
  notStarted: (c: RunContext) => c.run.createdAt + c.settings.startTimeoutSeconds * SECOND,
  queued: (c: RunContext) => (c.run.queuedAt ?? c.run.createdAt) + c.settings.queuedTimeoutSeconds * SECOND,
  starting: (c: RunContext) =>
    (c.run.launchedAt ?? c.run.updatedAt) + c.settings.startTimeoutSeconds * SECOND,
  started: (c: RunContext) => (c.run.startedAt ?? c.run.updatedAt) + c.maxRuntimeSeconds * SECOND,
  canceling: (c: RunContext) =>
    (c.run.cancelingAt ?? c.run.updatedAt) + c.settings.cancelTimeoutSeconds * SECOND,
  // The earlier of the heartbeat and progress deadlines that are on; a resumed worker starts both afresh
  // (the host records a heartbeat with progress when it resumes one).
  liveness: (c: RunContext) =>
    Math.min(livenessDeadline(c, 'HEARTBEAT_TIMEOUT'), livenessDeadline(c, 'PROGRESS_TIMEOUT')),
};

/** One liveness deadline, Infinity when that check is off. */
function livenessDeadline(c: RunContext, reason: Stall['reason']): number {
  const seconds = reason === 'HEARTBEAT_TIMEOUT' ? c.heartbeatTimeoutSeconds : c.progressTimeoutSeconds;
  if (!seconds) return Number.POSITIVE_INFINITY;
  const started = c.run.startedAt ?? c.run.updatedAt;
  const last = reason === 'HEARTBEAT_TIMEOUT' ? c.run.heartbeatAt : c.run.progressAt;
  return Math.max(last ?? started, started) + seconds * SECOND;
}

/** The liveness deadline that passed first: what the worker was silent about. */
function stallOf(c: RunContext): Stall {
  const heartbeat = livenessDeadline(c, 'HEARTBEAT_TIMEOUT');
  const reason =
    heartbeat <= livenessDeadline(c, 'PROGRESS_TIMEOUT') ? 'HEARTBEAT_TIMEOUT' : 'PROGRESS_TIMEOUT';
  const seconds =
    (reason === 'HEARTBEAT_TIMEOUT' ? c.heartbeatTimeoutSeconds : c.progressTimeoutSeconds) ?? 0;
  return { reason, seconds };
}

export type DeadlineName = keyof typeof deadlines;

/** Whether each deadline is enforced at all (a timeout of 0 switches it off). */
const deadlineOn: Record<DeadlineName, (c: RunContext) => boolean> = {
  notStarted: (c) => c.settings.startTimeoutSeconds > 0,
  queued: (c) => c.settings.queuedTimeoutSeconds > 0,
  starting: (c) => c.settings.startTimeoutSeconds > 0,
  started: (c) => c.maxRuntimeSeconds > 0,
  canceling: (c) => c.settings.cancelTimeoutSeconds > 0,
  liveness: (c) => (c.heartbeatTimeoutSeconds ?? 0) > 0 || (c.progressTimeoutSeconds ?? 0) > 0,
};

type DelayArgs = { context: RunContext };

/**
 * The machine's view of time, measured against the host's clock (default: real time): the named delays,
 * and `overdue`, which lets a state act on a deadline that has already passed when it is armed (at start,
 * after a restart, on an update) instead of arming a zero-delay timer.
 */
export function runTiming(now: () => number) {
  return {
    delays: runDelays(now),
    guards: {
      overdue: ({ context }: DelayArgs, params: { deadline: DeadlineName }) =>
        deadlineOn[params.deadline](context) && now() >= deadlines[params.deadline](context),
    },
  };
}

/** Named delays measured against `now`. */
function runDelays(now: () => number) {
  const until = (deadline: number) => Math.max(0, deadline - now());
  return {
    notLaunchedTimeout: ({ context }: DelayArgs) => until(deadlines.notStarted(context)),
    queuedTimeout: ({ context }: DelayArgs) => until(deadlines.queued(context)),
    startTimeout: ({ context }: DelayArgs) => until(deadlines.starting(context)),
    maxRuntime: ({ context }: DelayArgs) => until(deadlines.started(context)),
    cancelTimeout: ({ context }: DelayArgs) => until(deadlines.canceling(context)),
    livenessTimeout: ({ context }: DelayArgs) => until(deadlines.liveness(context)),
    launcherTimeout: ({ context }: DelayArgs) => context.settings.launcherTimeoutSeconds * SECOND,
    storeRetry: ({ context }: DelayArgs) => context.settings.storeRetrySeconds * SECOND,
  };
}

// Statuses only move forward (the store's allowed moves), so a record with an earlier status is stale.
const STATUS_RANK: Record<RunStatus, number> = {
  NOT_STARTED: 0,
  QUEUED: 1,
  STARTING: 2,
  STARTED: 3,
  CANCELING: 4,
  SUCCESS: 5,
  FAILURE: 5,
  CANCELED: 5,
};

/** The newer of two records of the same run. */
export function newerRun(current: RunRecord, incoming: RunRecord | undefined): RunRecord {
  if (!incoming) return current;
  const rankDelta = STATUS_RANK[incoming.status] - STATUS_RANK[current.status];
  if (rankDelta !== 0) return rankDelta > 0 ? incoming : current;
  return incoming.updatedAt >= current.updatedAt ? incoming : current;
}

const isUnsure = (r: HealthResult) => r.transient === true || r.status === 'UNKNOWN';
const healthAt = (event: RunMachineEvent) => (event.type === 'health.checked' ? event.result.at : undefined);

function failure(
  reason: FailureReason,
  message: string,
  from: RunStatus,
  terminateWorker = false,
  due: { deadline?: number; badSince?: number | undefined } = {},
): { failure: PendingFailure } {
  return { failure: { reason, message, from: [from], terminateWorker, ...due } };
}

/** FAILURE for a run that never reported STARTED, then terminate its worker if so configured (dry run). */
function startTimeoutFailure(context: RunContext): { failure: PendingFailure } {
  const message = messages.startTimeout(context.settings.startTimeoutSeconds);
  return failure('START_TIMEOUT', message, 'STARTING', context.settings.terminateOnStartTimeout, {
    deadline: deadlines.starting(context),
  });
}

/** FAILURE after max runtime when the worker could not be confirmed gone. */
function forcedMaxRuntimeFailure(): { failure: PendingFailure } {
  return failure('MAX_RUNTIME_EXCEEDED', messages.forcedFailure, 'CANCELING');
}

/** FAILURE for a hung worker (already terminated) when no resume attempt is left. */
function stallFailure(context: RunContext, stall: Stall): { failure: PendingFailure } {
  const stalled = messages.stalled(stall.reason, stall.seconds);
  const max = context.settings.maxResumeRunAttempts;
  const message =
    max > 0
      ? messages.stalledNoAttemptsLeft(stalled, context.run.runId, max)
      : messages.stalledFailed(stalled, context.run.runId);
  // For the metrics, the missed liveness deadline is both the deadline and when the stall was first seen.
  const due = { deadline: context.livenessDueAt, badSince: context.livenessDueAt };
  return failure(stall.reason, message, 'STARTED', false, due);
}

function crashFailure(context: RunContext): { failure: PendingFailure } {
  if (context.stall) return stallFailure(context, context.stall);
  const health = context.health ?? { status: 'UNKNOWN' };
  const max = context.settings.maxResumeRunAttempts;
  const message =
    max > 0
      ? messages.crashedNoAttemptsLeft(health, context.run.runId, max)
      : messages.crashed(health, context.run.runId);
  return failure('RUN_WORKER_CRASHED', message, 'STARTED', false, { badSince: context.badSince });
}

/** Dry run: a stored FAILURE (and the termination of a worker that never started) not carried out. */
function wouldFail(context: RunContext): { wouldHave: WouldHave } {
  const pending = context.failure;
  return {
    wouldHave: {
      status: context.run.status,
      message: messages.wouldHaveFailed(pending?.message ?? '', pending?.terminateWorker === true),
      decision: {
        action: 'fail',
        reason: pending?.reason ?? 'UNKNOWN',
        deadline: pending?.deadline,
        badSince: pending?.badSince,
      },
    },
  };
}

/** Dry run: a crashed worker replaced by a new one. */
function wouldResumeCrashed(context: RunContext): { wouldHave: WouldHave } {
  return {
    wouldHave: {
      status: context.run.status,
      message: messages.wouldHaveResumed(
        messages.workerStatus(context.health ?? { status: 'UNKNOWN' }),
        context.run.resumeAttempts + 1,
      ),
      decision: { action: 'resume', reason: 'RUN_WORKER_CRASHED', badSince: context.badSince },
    },
  };
}

/** Dry run: a hung worker terminated, then replaced or the run failed. */
function wouldStopStalled(context: RunContext): { wouldHave: WouldHave } {
  const stall = stallOf(context);
  const resume =
    context.settings.maxResumeRunAttempts > 0 &&
    context.run.resumeAttempts < context.settings.maxResumeRunAttempts;
  const due = { deadline: context.livenessDueAt, badSince: context.livenessDueAt };
  return {
    wouldHave: {
      status: context.run.status,
      message: messages.wouldHaveStoppedStalled(messages.stalled(stall.reason, stall.seconds), resume),
      decision: { action: resume ? 'resume' : 'fail', reason: stall.reason, ...due },
    },
  };
}

// The host provides every effect with runMachine.provide({ actors }); these only say so when it did not.
function hostProvided<TOutput, TInput>(name: string) {
  return fromPromise<TOutput, TInput>(async () => {
    throw new Error(`runMachine: the host must provide the '${name}' actor`);
  });
}

// A start timeout, from the timer or from routing. A dry run asks the launcher nothing, not even for debug info.
const timeOutStart = [
  {
    guard: 'dryRun',
    target: '#run.dryRun',
    actions: ['noteStartTimeout', 'noteWouldFail'],
  },
  { target: '#run.timingOutStart' },
] as const;

export const runMachine = setup({
  types: {
    context: {} as RunContext,
    events: {} as RunMachineEvent,
    input: {} as RunInput,
  },
  actors: {
    writeStatus: hostProvided<WriteStatusOutput, WriteStatusInput>('writeStatus'),
    appendEngineEvent: hostProvided<void, EngineEventInput>('appendEngineEvent'),
    writeWouldHave: hostProvided<void, WouldHaveInput>('writeWouldHave'),
    readRun: hostProvided<RunRecord | undefined, LauncherCallInput>('readRun'),
    recordResumeAttempt: hostProvided<number, ResumeAttemptInput>('recordResumeAttempt'),
    terminateWorker: hostProvided<boolean, LauncherCallInput>('terminateWorker'),
    resumeWorker: hostProvided<void, LauncherCallInput & { attempt: number }>('resumeWorker'),
    failStartTimeout: hostProvided<StartTimeoutOutput, StartTimeoutInput>('failStartTimeout'),
  },
  delays: runTiming(Date.now).delays,
  actions: {
    recordRun: assign({ run: ({ context, event }) => newerRun(context.run, recordOf(event)) }),
    failNotLaunched: assign(({ context }) =>
      failure(
        'START_TIMEOUT',
        messages.notLaunchedTimeout(context.settings.startTimeoutSeconds),
        'NOT_STARTED',
        false,
        { deadline: deadlines.notStarted(context) },
      ),
    ),
    failQueued: assign(({ context }) =>
      failure(
        'QUEUED_TIMEOUT',
        messages.queuedTimeout(context.settings.queuedTimeoutSeconds),
        'QUEUED',
        false,
        { deadline: deadlines.queued(context) },
      ),
    ),
    resetUnknownStreak: assign({ unknownStreak: 0, badSince: undefined }),
    // The common case of a poll, in one context copy: the record, and a healthy worker ends any streak.
    recordHealthy: assign(({ context, event }) => ({
      run: newerRun(context.run, recordOf(event)),
      unknownStreak: 0,
      badSince: undefined,
    })),
    noteStartTimeout: assign(({ context }) => startTimeoutFailure(context)),
    noteWouldFail: assign(({ context }) => wouldFail(context)),
    noteWouldResumeCrashed: assign(({ context }) => wouldResumeCrashed(context)),
    noteWouldStopStalled: assign(({ context }) => wouldStopStalled(context)),
    noteWouldExceedMaxRuntime: assign(({ context }) => ({
      wouldHave: {
        status: context.run.status,
        message: messages.wouldHaveExceededMaxRuntime(context.maxRuntimeSeconds),
        decision: {
          action: 'terminate' as const,
          reason: 'MAX_RUNTIME_EXCEEDED',
          deadline: deadlines.started(context),
        },
      },
    })),
    noteWouldCancel: assign(({ context }) => ({
      wouldHave: {
        status: context.run.status,
        message: messages.wouldHaveCanceled(messages.cancelTimeout(context.settings.cancelTimeoutSeconds)),
        decision: {
          action: 'cancel' as const,
          reason: 'CANCEL_TIMEOUT',
          deadline: deadlines.canceling(context),
        },
      },
    })),
    noteLivenessDue: assign({ livenessDueAt: ({ context }) => deadlines.liveness(context) }),
    recordReadRun: assign({
      run: ({ context, event }) => newerRun(context.run, (event as { output?: RunRecord }).output),
    }),
    // The record a status write returns: the one it stored, or the current one when it did not apply.
    recordWrittenRun: assign({
      run: ({ context, event }) =>
        newerRun(context.run, (event as { output?: WriteStatusOutput }).output?.run),
    }),
    countUnknown: assign({
      unknownStreak: ({ context }) => context.unknownStreak + 1,
      badSince: ({ context, event }) => context.badSince ?? healthAt(event),
    }),
    recordHealth: assign({
      health: ({ event }) => (event.type === 'health.checked' ? event.result : undefined),
      unknownStreak: 0,
      stall: undefined,
      badSince: ({ context, event }) => context.badSince ?? healthAt(event),
    }),
    // Host-provided fire-and-forget: log the failed effect (the machine retries after storeRetry).
    reportEffectError: () => {},
    // Host-provided: append an engine event per unusable max-runtime, heartbeat or progress timeout tag; it
    // looks for them itself, so the entry needs no guards.
    reportInvalidTags: () => {},
  },
  guards: {
    // Host-provided with the host's clock (runTiming): the deadline is on and has passed.
    overdue: runTiming(Date.now).guards.overdue,
    // The run is in `status` and that status's deadline is on: routing's pick of a timed state.
    timedIn: ({ context }, params: { status: RunStatus; deadline: DeadlineName }) =>
      context.run.status === params.status && deadlineOn[params.deadline](context),
    hasStatus: ({ context }, params: { status: RunStatus | 'TERMINAL' }) =>
      params.status === 'TERMINAL'
        ? STATUS_RANK[context.run.status] === STATUS_RANK.SUCCESS
        : context.run.status === params.status,
    cancelingForMaxRuntime: ({ context }) =>
      context.run.status === 'CANCELING' && context.run.tags[TAGS.cancelReason] === 'MAX_RUNTIME_EXCEEDED',
    leftStarted: ({ context }, params: { run: RunRecord | undefined }) =>
      newerRun(context.run, params.run).status !== 'STARTED',
    statusMoved: ({ context, event }) =>
      event.type === 'run.updated' && newerRun(context.run, event.run).status !== context.run.status,
    maxRuntimeOn: ({ context }) => context.maxRuntimeSeconds > 0,
    livenessOn: ({ context }) => deadlineOn.liveness(context),
    // A heartbeat or progress the stored record shows that the actor's copy did not: the worker is alive.
    // Against the deadline the timer was armed for: a poll may have refreshed the actor's copy since.
    livenessMoved: ({ context }, params: { run: RunRecord | undefined }) =>
      params.run !== undefined &&
      deadlines.liveness({ ...context, run: params.run }) >
        (context.livenessDueAt ?? deadlines.liveness(context)),
    cancelTimeoutOn: ({ context }) => context.settings.cancelTimeoutSeconds > 0,
    // 0 means launcher calls may take as long as they take.
    launcherTimeoutOn: ({ context }) => context.settings.launcherTimeoutSeconds > 0,
    runIsGone: ({ event }) => (event as { error?: { code?: string } }).error?.code === 'RUN_NOT_FOUND',
    workerHealthy: ({ event }) =>
      event.type === 'health.checked' &&
      !isUnsure(event.result) &&
      (event.result.status === 'RUNNING' || event.result.status === 'SUCCESS'),
    workerGone: ({ event }) =>
      event.type === 'health.checked' &&
      !isUnsure(event.result) &&
      (event.result.status === 'FAILED' || event.result.status === 'NOT_FOUND'),
    unknownBeyondTolerance: ({ context, event }) =>
      event.type === 'health.checked' &&
      isUnsure(event.result) &&
      context.unknownStreak + 1 > context.settings.unknownHealthTolerance,
    writeApplied: (_, params: { output: WriteStatusOutput }) => params.output.applied,
    terminateFailed: (_, params: { output: StartTimeoutOutput }) =>
      params.output.terminateError !== undefined,
    runLeftStarted: ({ context }) => context.run.status !== 'STARTED',
    attemptsLeft: ({ context }) =>
      context.settings.maxResumeRunAttempts > 0 &&
      context.run.resumeAttempts < context.settings.maxResumeRunAttempts,
    isTrue: (_, params: { value: boolean }) => params.value,
    dryRun: ({ context }) => context.settings.dryRun === true,
    // A dry run's decision stands until the stored status moves (a worker's report, a user's cancel).
    leftDecidedStatus: ({ context }) => context.run.status !== context.wouldHave?.status,
  },
}).createMachine({
  id: 'run',
  context: ({ input }) => ({ ...input, unknownStreak: 0 }),
  entry: 'reportInvalidTags',
  initial: 'routing',
  // Effect states inherit this: record what the store says, act on it when the effect is over.
  on: { 'run.updated': { actions: 'recordRun' }, 'health.checked': { actions: 'recordRun' } },
  states: {
    // Routing picks the timed, untimed or overdue state of the run's status in one step: entering the
    // status state first and choosing there took a second eventless microstep for every run spawned
    // (docs/performance.md). STARTED chooses in its own two regions.
    routing: {
      always: [
        { guard: { type: 'hasStatus', params: { status: 'TERMINAL' } }, target: 'done' },
        {
          guard: and([
            { type: 'hasStatus', params: { status: 'NOT_STARTED' } } as const,
            { type: 'overdue', params: { deadline: 'notStarted' } } as const,
          ]),
          target: 'failing',
          actions: 'failNotLaunched',
        },
        {
          guard: { type: 'timedIn', params: { status: 'NOT_STARTED', deadline: 'notStarted' } },
          target: 'notStarted.timed',
        },
        { guard: { type: 'hasStatus', params: { status: 'NOT_STARTED' } }, target: 'notStarted.untimed' },
        {
          guard: and([
            { type: 'hasStatus', params: { status: 'QUEUED' } } as const,
            { type: 'overdue', params: { deadline: 'queued' } } as const,
          ]),
          target: 'failing',
          actions: 'failQueued',
        },
        {
          guard: { type: 'timedIn', params: { status: 'QUEUED', deadline: 'queued' } },
          target: 'queued.timed',
        },
        { guard: { type: 'hasStatus', params: { status: 'QUEUED' } }, target: 'queued.untimed' },
        {
          guard: and([
            { type: 'hasStatus', params: { status: 'STARTING' } } as const,
            { type: 'overdue', params: { deadline: 'starting' } } as const,
          ]),
          target: 'starting.timedOut',
        },
        {
          guard: { type: 'timedIn', params: { status: 'STARTING', deadline: 'starting' } },
          target: 'starting.timed',
        },
        { guard: { type: 'hasStatus', params: { status: 'STARTING' } }, target: 'starting.untimed' },
        { guard: { type: 'hasStatus', params: { status: 'STARTED' } }, target: 'started' },
        // CANCELING because the monitor itself was ending the run for max runtime (a store error, or a
        // monitor that died, interrupted it): finish that job — terminate, then FAILURE — rather than
        // letting the cancel timeout end it CANCELED.
        { guard: 'cancelingForMaxRuntime', target: 'exceedingMaxRuntime' },
        { guard: { type: 'overdue', params: { deadline: 'canceling' } }, target: 'canceling.timedOut' },
        { guard: 'cancelTimeoutOn', target: 'canceling.timed' },
        { target: 'canceling.untimed' },
      ],
    },

    // NOT_STARTED: created but never launched; fails once createdAt + startTimeout has passed.
    notStarted: {
      // Entered through routing, which names the sub-state; `initial` is only XState's requirement.
      initial: 'untimed',
      on: { 'run.updated': { guard: 'statusMoved', target: 'routing', actions: 'recordRun' } },
      states: {
        untimed: {},
        timed: { after: { notLaunchedTimeout: { target: '#run.failing', actions: 'failNotLaunched' } } },
      },
    },

    // QUEUED: off by default; fails once queuedAt + queuedTimeout has passed.
    queued: {
      // Entered through routing, which names the sub-state; `initial` is only XState's requirement.
      initial: 'untimed',
      on: { 'run.updated': { guard: 'statusMoved', target: 'routing', actions: 'recordRun' } },
      states: {
        untimed: {},
        timed: { after: { queuedTimeout: { target: '#run.failing', actions: 'failQueued' } } },
      },
    },

    // STARTING: launched, the worker has not reported STARTED. At launchedAt + startTimeout the run is
    // timed out (timingOutStart).
    starting: {
      // Entered through routing, which names the sub-state; `initial` is only XState's requirement.
      initial: 'untimed',
      on: { 'run.updated': { guard: 'statusMoved', target: 'routing', actions: 'recordRun' } },
      states: {
        untimed: {},
        // The timer goes straight to the effect: by way of `timedOut` it took one more microstep per fired
        // deadline (docs/performance.md). Routing enters `timedOut` with a deadline already past.
        timed: { after: { startTimeout: timeOutStart } },
        timedOut: { always: timeOutStart },
      },
    },

    // A start timeout is one effect, as its steps always go together: collect the launcher's debug info,
    // store FAILURE (compare-and-set from STARTING, journaling the termination), then terminate the worker
    // if so configured — FAILURE first, so a worker that reports STARTED in the meantime wins and is not
    // killed. The host bounds each launcher call by launcherTimeout: debug info that does not come is left
    // out, a termination that fails or does not answer is reported. (Three effect states cost three
    // actors per deadline: docs/performance.md.)
    timingOutStart: {
      initial: 'failing',
      states: {
        failing: {
          invoke: {
            src: 'failStartTimeout',
            input: ({ context }) => ({
              runId: context.run.runId,
              startTimeoutSeconds: context.settings.startTimeoutSeconds,
              terminate: context.settings.terminateOnStartTimeout,
              deadline: deadlines.starting(context),
            }),
            onDone: [
              {
                guard: { type: 'terminateFailed', params: ({ event }) => ({ output: event.output }) },
                target: 'reportingTerminateFailure',
                actions: assign({ lastError: ({ event }) => event.output.terminateError }),
              },
              {
                guard: { type: 'writeApplied', params: ({ event }) => ({ output: event.output }) },
                target: '#run.done',
              },
              // The worker reported (or the run was canceled) first: follow the stored status.
              {
                target: '#run.routing',
                actions: 'recordWrittenRun',
              },
            ],
            onError: { target: '#run.recovering', actions: 'reportEffectError' },
          },
        },
        reportingTerminateFailure: {
          invoke: {
            src: 'appendEngineEvent',
            input: ({ context }) => ({
              runId: context.run.runId,
              message: messages.terminateAfterStartTimeoutFailed(context.lastError ?? 'unknown error'),
            }),
            onDone: '#run.done',
            onError: { target: '#run.done', actions: 'reportEffectError' },
          },
        },
      },
    },

    // STARTED: the worker runs. Max runtime counts from the first startedAt; health results from the
    // supervisor's poll detect crashed workers, which are resumed while attempts are left.
    started: {
      initial: 'watching',
      states: {
        // Two clocks run while the worker works: its maximum runtime, and its liveness (heartbeat and progress).
        watching: {
          type: 'parallel',
          on: {
            'run.updated': { guard: 'statusMoved', target: '#run.routing', actions: 'recordRun' },
            'health.checked': [
              { guard: 'workerHealthy', actions: 'recordHealthy' },
              { guard: 'workerGone', target: 'confirmingCrash', actions: ['recordRun', 'recordHealth'] },
              {
                guard: 'unknownBeyondTolerance',
                target: 'confirmingCrash',
                actions: ['recordRun', 'recordHealth'],
              },
              { actions: ['recordRun', 'countUnknown'] },
            ],
          },
          states: {
            runtime: {
              initial: 'choosing',
              states: {
                choosing: {
                  always: [
                    {
                      guard: { type: 'overdue', params: { deadline: 'started' } },
                      target: '#run.exceedingMaxRuntime',
                    },
                    { guard: 'maxRuntimeOn', target: 'limited' },
                    { target: 'unlimited' },
                  ],
                },
                unlimited: {},
                limited: { after: { maxRuntime: '#run.exceedingMaxRuntime' } },
              },
            },
            // One timer for the earlier of the heartbeat and progress deadlines. Heartbeats append no event,
            // so the actor's record is old by design: when the timer fires, re-read the run; a worker that
            // has heartbeated meanwhile re-arms the timer, a silent one is hung.
            liveness: {
              initial: 'choosing',
              states: {
                choosing: {
                  always: [
                    {
                      guard: { type: 'overdue', params: { deadline: 'liveness' } },
                      target: 'confirming',
                      actions: 'noteLivenessDue',
                    },
                    { guard: 'livenessOn', target: 'armed', actions: 'noteLivenessDue' },
                    { target: 'off' },
                  ],
                },
                off: {},
                armed: { after: { livenessTimeout: 'confirming' } },
                confirming: {
                  // An effect state: record what the store says, act on it once the read is back.
                  on: { 'run.updated': { actions: 'recordRun' } },
                  invoke: {
                    src: 'readRun',
                    input: ({ context }) => ({ runId: context.run.runId }),
                    onDone: [
                      {
                        guard: { type: 'leftStarted', params: ({ event }) => ({ run: event.output }) },
                        target: '#run.routing',
                        actions: 'recordReadRun',
                      },
                      {
                        guard: { type: 'livenessMoved', params: ({ event }) => ({ run: event.output }) },
                        target: 'choosing',
                        actions: 'recordReadRun',
                      },
                      {
                        guard: 'dryRun',
                        target: '#run.dryRun',
                        actions: ['recordReadRun', 'noteWouldStopStalled'],
                      },
                      {
                        target: '#run.started.stoppingStalledWorker',
                        actions: ['recordReadRun', assign({ stall: ({ context }) => stallOf(context) })],
                      },
                    ],
                    onError: { target: '#run.recovering', actions: 'reportEffectError' },
                  },
                },
              },
            },
          },
        },

        // A hung worker may still be alive: terminate it first, then resume the run or fail it.
        stoppingStalledWorker: {
          invoke: {
            src: 'terminateWorker',
            input: ({ context }) => ({ runId: context.run.runId }),
            onDone: 'decidingStall',
            onError: { target: 'decidingStall', actions: 'reportEffectError' },
          },
          after: { launcherTimeout: { guard: 'launcherTimeoutOn', target: 'decidingStall' } },
        },
        decidingStall: {
          always: [
            { guard: 'attemptsLeft', target: 'resuming' },
            { target: '#run.failing', actions: assign(({ context }) => crashFailure(context)) },
          ],
        },

        // Race guard (as Dagster): re-read the run; if its status changed since the check, do nothing.
        confirmingCrash: {
          invoke: {
            src: 'readRun',
            input: ({ context }) => ({ runId: context.run.runId }),
            onDone: {
              target: 'decidingCrash',
              actions: 'recordReadRun',
            },
            onError: { target: '#run.recovering', actions: 'reportEffectError' },
          },
        },
        decidingCrash: {
          always: [
            { guard: 'runLeftStarted', target: '#run.routing' },
            {
              guard: and(['dryRun', 'attemptsLeft']),
              target: '#run.dryRun',
              actions: 'noteWouldResumeCrashed',
            },
            { guard: 'attemptsLeft', target: 'resuming' },
            { target: '#run.failing', actions: assign(({ context }) => crashFailure(context)) },
          ],
        },

        // Resume: announce, count the attempt durably (before the launch, so a monitor that dies here
        // never launches two workers for one attempt), announce the launch, then launch.
        resuming: {
          initial: 'announcing',
          states: {
            announcing: {
              invoke: {
                src: 'appendEngineEvent',
                input: ({ context }) => ({
                  runId: context.run.runId,
                  message: context.stall
                    ? messages.resumingStalled(
                        messages.stalled(context.stall.reason, context.stall.seconds),
                        context.run.runId,
                      )
                    : messages.resuming(context.health ?? { status: 'UNKNOWN' }, context.run.runId),
                }),
                onDone: 'countingAttempt',
                onError: { target: '#run.recovering', actions: 'reportEffectError' },
              },
            },
            countingAttempt: {
              invoke: {
                src: 'recordResumeAttempt',
                input: ({ context }) => ({
                  runId: context.run.runId,
                  decision: {
                    action: 'resume' as const,
                    reason: context.stall?.reason ?? 'RUN_WORKER_CRASHED',
                    badSince: context.stall ? context.livenessDueAt : context.badSince,
                  },
                }),
                onDone: {
                  target: 'announcingLaunch',
                  actions: assign({
                    resumeAttempt: ({ event }) => event.output,
                    run: ({ context, event }) => ({ ...context.run, resumeAttempts: event.output }),
                  }),
                },
                onError: { target: '#run.recovering', actions: 'reportEffectError' },
              },
            },
            announcingLaunch: {
              invoke: {
                src: 'appendEngineEvent',
                input: ({ context }) => ({
                  runId: context.run.runId,
                  message: messages.launchingResumeWorker,
                  data: { attempt: context.resumeAttempt },
                }),
                onDone: 'launchingWorker',
                onError: { target: '#run.recovering', actions: 'reportEffectError' },
              },
            },
            launchingWorker: {
              invoke: {
                src: 'resumeWorker',
                input: ({ context }) => ({ runId: context.run.runId, attempt: context.resumeAttempt ?? 1 }),
                onDone: [
                  // Canceled or finished while the new worker was starting: make sure it does not linger.
                  { guard: 'runLeftStarted', target: 'stoppingResumedWorker' },
                  { target: '#run.started', actions: ['resetUnknownStreak', assign({ stall: undefined })] },
                ],
                onError: {
                  target: 'reportingResumeFailure',
                  actions: assign({ lastError: ({ event }) => errorText(event.error) }),
                },
              },
              after: {
                launcherTimeout: {
                  guard: 'launcherTimeoutOn',
                  target: 'reportingResumeFailure',
                  actions: assign({
                    lastError: ({ context }) =>
                      messages.launcherCallTimedOut('resume', context.settings.launcherTimeoutSeconds),
                  }),
                },
              },
            },
            // A resume that throws or hangs counts as a used attempt; the crash is handled again.
            reportingResumeFailure: {
              invoke: {
                src: 'appendEngineEvent',
                input: ({ context }) => ({
                  runId: context.run.runId,
                  message: messages.resumeFailed(
                    context.resumeAttempt ?? 0,
                    context.lastError ?? 'unknown error',
                  ),
                  data: { attempt: context.resumeAttempt },
                }),
                onDone: '#run.started.confirmingCrash',
                onError: { target: '#run.recovering', actions: 'reportEffectError' },
              },
            },
            stoppingResumedWorker: {
              invoke: {
                src: 'terminateWorker',
                input: ({ context }) => ({ runId: context.run.runId }),
                onDone: '#run.routing',
                onError: { target: '#run.routing', actions: 'reportEffectError' },
              },
              after: { launcherTimeout: { guard: 'launcherTimeoutOn', target: '#run.routing' } },
            },
          },
        },
      },
    },

    // Max runtime: CANCELING, terminate, then FAILURE. A terminate that fails or throws still ends the
    // run failed, with a message saying the resources may not have been cleaned up.
    exceedingMaxRuntime: {
      initial: 'choosing',
      states: {
        choosing: {
          always: [
            { guard: 'dryRun', target: '#run.dryRun', actions: 'noteWouldExceedMaxRuntime' },
            // Already CANCELING for max runtime (the monitor was interrupted): finish the job.
            { guard: { type: 'hasStatus', params: { status: 'CANCELING' } }, target: 'terminating' },
            { target: 'canceling' },
          ],
        },
        canceling: {
          invoke: {
            src: 'writeStatus',
            input: ({ context }) => ({
              runId: context.run.runId,
              to: 'CANCELING' as const,
              from: ['STARTED' as const],
              message: messages.maxRuntimeCanceling(context.maxRuntimeSeconds),
              tags: { [TAGS.cancelReason]: 'MAX_RUNTIME_EXCEEDED' },
              decision: {
                action: 'terminate' as const,
                reason: 'MAX_RUNTIME_EXCEEDED',
                deadline: deadlines.started(context),
              },
            }),
            onDone: [
              {
                guard: { type: 'writeApplied', params: ({ event }) => ({ output: event.output }) },
                target: 'terminating',
                actions: 'recordWrittenRun',
              },
              {
                target: '#run.routing',
                actions: 'recordWrittenRun',
              },
            ],
            onError: { target: '#run.recovering', actions: 'reportEffectError' },
          },
        },
        terminating: {
          invoke: {
            src: 'terminateWorker',
            input: ({ context }) => ({ runId: context.run.runId }),
            onDone: [
              {
                guard: { type: 'isTrue', params: ({ event }) => ({ value: event.output }) },
                target: '#run.failing',
                actions: assign(({ context }) =>
                  failure(
                    'MAX_RUNTIME_EXCEEDED',
                    messages.maxRuntimeExceeded(context.maxRuntimeSeconds),
                    'CANCELING',
                  ),
                ),
              },
              {
                target: '#run.failing',
                actions: assign(forcedMaxRuntimeFailure),
              },
            ],
            onError: {
              target: 'reportingTerminateException',
              actions: assign({ lastError: ({ event }) => errorText(event.error) }),
            },
          },
          after: {
            launcherTimeout: {
              guard: 'launcherTimeoutOn',
              target: 'reportingTerminateException',
              actions: assign({
                lastError: ({ context }) =>
                  messages.launcherCallTimedOut('terminate', context.settings.launcherTimeoutSeconds),
              }),
            },
          },
        },
        reportingTerminateException: {
          invoke: {
            src: 'appendEngineEvent',
            input: ({ context }) => ({
              runId: context.run.runId,
              message: messages.terminateException,
              data: { error: context.lastError },
            }),
            onDone: {
              target: '#run.failing',
              actions: assign(forcedMaxRuntimeFailure),
            },
            onError: {
              target: '#run.failing',
              actions: ['reportEffectError', assign(forcedMaxRuntimeFailure)],
            },
          },
        },
      },
    },

    // CANCELING: the worker was asked to stop. At cancelingAt + cancelTimeout the run is marked CANCELED.
    canceling: {
      // Entered through routing, which names the sub-state; `initial` is only XState's requirement.
      initial: 'untimed',
      on: { 'run.updated': { guard: 'statusMoved', target: 'routing', actions: 'recordRun' } },
      states: {
        untimed: {},
        timed: { after: { cancelTimeout: 'timedOut' } },
        timedOut: {
          always: [
            { guard: 'dryRun', target: '#run.dryRun', actions: 'noteWouldCancel' },
            { target: 'markingCanceled' },
          ],
        },
        markingCanceled: {
          on: { 'run.updated': { actions: 'recordRun' } },
          invoke: {
            src: 'writeStatus',
            input: ({ context }) => ({
              runId: context.run.runId,
              to: 'CANCELED' as const,
              from: ['CANCELING' as const],
              message: messages.cancelTimeout(context.settings.cancelTimeoutSeconds),
              decision: {
                action: 'cancel' as const,
                reason: 'CANCEL_TIMEOUT',
                deadline: deadlines.canceling(context),
              },
            }),
            onDone: [
              {
                guard: { type: 'writeApplied', params: ({ event }) => ({ output: event.output }) },
                target: '#run.done',
              },
              {
                target: '#run.routing',
                actions: 'recordWrittenRun',
              },
            ],
            onError: { target: '#run.recovering', actions: 'reportEffectError' },
          },
        },
      },
    },

    // Stores FAILURE with the reason tag, compare-and-set against the status the decision was made in:
    // a worker's own terminal report that landed first wins, and the actor follows the stored status.
    failing: {
      initial: 'choosing',
      states: {
        choosing: {
          always: [
            { guard: 'dryRun', target: '#run.dryRun', actions: 'noteWouldFail' },
            { target: 'writing' },
          ],
        },
        writing: {
          invoke: {
            src: 'writeStatus',
            input: ({ context }) => ({
              runId: context.run.runId,
              to: 'FAILURE' as const,
              from: context.failure?.from ?? [],
              message: context.failure?.message ?? '',
              tags: { [TAGS.failureReason]: context.failure?.reason ?? 'UNKNOWN' },
              decision: {
                action: 'fail' as const,
                reason: context.failure?.reason ?? 'UNKNOWN',
                deadline: context.failure?.deadline,
                badSince: context.failure?.badSince,
              },
            }),
            onDone: [
              {
                guard: { type: 'writeApplied', params: ({ event }) => ({ output: event.output }) },
                target: '#run.done',
              },
              {
                target: '#run.routing',
                actions: 'recordWrittenRun',
              },
            ],
            onError: { target: '#run.recovering', actions: 'reportEffectError' },
          },
        },
      },
    },

    // Dry run: the decision is written down as a `Would have …` engine event, and nothing else happens to
    // the run until its stored status moves; then it is decided afresh.
    dryRun: {
      initial: 'reporting',
      states: {
        reporting: {
          invoke: {
            src: 'writeWouldHave',
            input: ({ context }) => ({
              runId: context.run.runId,
              message: context.wouldHave?.message ?? '',
              decision: context.wouldHave?.decision ?? { action: 'fail' as const, reason: 'UNKNOWN' },
            }),
            onDone: 'holding',
            onError: { target: '#run.recovering', actions: 'reportEffectError' },
          },
        },
        holding: {
          always: { guard: 'leftDecidedStatus', target: '#run.routing' },
        },
      },
    },

    // A store call failed (busy database, lost connection): wait, re-read the run, decide again.
    // Deadlines are absolute, so nothing is lost by starting over.
    recovering: {
      initial: 'waiting',
      states: {
        waiting: { after: { storeRetry: 'refreshing' } },
        refreshing: {
          invoke: {
            src: 'readRun',
            input: ({ context }) => ({ runId: context.run.runId }),
            onDone: {
              target: '#run.routing',
              actions: 'recordReadRun',
            },
            onError: [
              // Deleted from the store behind the monitor's back: nothing left to watch.
              { guard: 'runIsGone', target: '#run.done', actions: 'reportEffectError' },
              { target: 'waiting', actions: 'reportEffectError' },
            ],
          },
        },
      },
    },

    done: { type: 'final' },
  },
});
