// createRunMonitor: the host runtime. It owns every side effect — store reads and writes, launcher calls,
// logging — and wires them into the machines with .provide(). Data flows one way:
// store feed + health poll → supervisor → run actor → effect → store → back into the feed.
import { pino } from 'pino';
import {
  type Actor,
  type AnyActorRef,
  createActor,
  type EventObject,
  fromCallback,
  fromPromise,
  type InspectionEvent,
  type Observer,
} from 'xstate';
import { errorText, messages } from '../../machines/messages.js';
import {
  type EngineEventInput,
  type LauncherCallInput,
  type RunInput,
  type RunSettings,
  runDelays,
  runMachine,
  type WriteStatusInput,
  type WriteStatusOutput,
} from '../../machines/run.machine.js';
import { failedRun, shardMachine } from '../../machines/shard.machine.js';
import {
  type PollHealthInput,
  type SupervisorEvent,
  supervisorMachine,
} from '../../machines/supervisor.machine.js';
import { realClock, sleepOn } from '../core/clock.js';
import { type MonitorConfig, parseMonitorConfig, resolveMaxRuntimeSeconds } from '../core/config.js';
import { EffectTracker } from './effect-tracker.js';
import { LaunchError, RunNotFoundError, RunwardenError } from '../core/errors.js';
import { StoreFeed } from './store-feed.js';
import type { Clock, HealthResult, RunLauncher, RunRecord, RunStatus, RunStore } from '../core/types.js';
import { ACTIVE_STATUSES, TAGS } from '../core/types.js';

export interface RunMonitorOptions {
  store: RunStore;
  launcher: RunLauncher;
  /** Validated with zod; bad input throws a ConfigError naming the field. */
  config?: Partial<MonitorConfig> | Record<string, unknown>;
  /** xstate's SimulatedClock fits; default: real time. */
  clock?: Clock;
  logger?: pino.Logger;
  /** Passed to the root actor, so the Stately inspector sees every machine. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
}

export interface RunMonitor {
  /** Loads active runs from the store, follows its change feed, starts health polling. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Resolves once every effect started so far (and the ones they caused) has finished. */
  settle(): Promise<void>;
  /** NOT_STARTED/QUEUED → STARTING, then launcher.launch. */
  launch(runId: string): Promise<RunRecord>;
  /** → CANCELING (or CANCELED before launch), then launcher.terminate. */
  cancel(runId: string): Promise<RunRecord>;
  readonly config: MonitorConfig;
}

const LIST_PAGE = 1000;

export function createRunMonitor(options: RunMonitorOptions): RunMonitor {
  const { store, launcher } = options;
  const config = parseMonitorConfig(options.config ?? {}, { supportsResume: launcher.supportsResume });
  const clock = options.clock ?? realClock;
  const logger = options.logger ?? pino({ level: 'silent' });
  const tracker = new EffectTracker();
  const settings = runSettings(config);
  const launcherTimeoutMs = config.launcherTimeoutSeconds * 1000;
  const healthChecks = launcher.supportsHealthCheck && typeof launcher.checkHealth === 'function';
  const runLogger = (runId: string) => logger.child({ runId });

  async function mustGetRun(runId: string): Promise<RunRecord> {
    const run = await store.getRun(runId);
    if (!run) throw new RunNotFoundError(runId);
    return run;
  }

  /** A launcher call that gives up after launcherTimeoutSeconds (on the monitor's clock). */
  async function callLauncher<T>(call: string, work: () => Promise<T>): Promise<T> {
    const tracked = tracker.trackLauncher(Promise.resolve().then(work));
    if (launcherTimeoutMs === 0) return tracked; // 0: no limit
    const timer = sleepOn(clock, launcherTimeoutMs);
    const timedOut = timer.promise.then(() => {
      throw new RunwardenError(
        'LAUNCHER_TIMEOUT',
        messages.launcherCallTimedOut(call, config.launcherTimeoutSeconds),
      );
    });
    try {
      return await Promise.race([tracked, timedOut]);
    } finally {
      timer.cancel();
    }
  }

  // --- run actor effects -------------------------------------------------------------------------------
  // Each is one store or launcher call. Launcher calls are not wrapped in a timeout here: the run machine
  // bounds them with its own launcherTimeout transition, which the diagrams show.
  const effect = <TIn, TOut>(kind: 'store' | 'launcher', run: (input: TIn) => Promise<TOut>) =>
    fromPromise<TOut, TIn>(({ input }) => {
      const work = run(input);
      return kind === 'store' ? tracker.track(work) : tracker.trackLauncher(work);
    });

  const providedRun = runMachine.provide({
    delays: runDelays(() => clock.now()),
    actors: {
      writeStatus: effect<WriteStatusInput, WriteStatusOutput>(
        'store',
        async ({ runId, to, from, message, tags }) => {
          const run = await store.transition(runId, { to, from, message, tags, at: clock.now() });
          if (run) {
            runLogger(runId).info({ status: to }, message);
            return { applied: true, run };
          }
          const current = await store.getRun(runId);
          runLogger(runId).info(
            { status: current?.status, wanted: to },
            'Run status changed before the monitor wrote it; following the stored status.',
          );
          return { applied: false, run: current };
        },
      ),
      appendEngineEvent: effect<EngineEventInput, void>('store', async ({ runId, message, data }) => {
        await store.appendEvent(runId, { type: 'ENGINE_EVENT', message, data, at: clock.now() });
        runLogger(runId).info({ data }, message);
      }),
      readRun: effect<LauncherCallInput, RunRecord | undefined>('store', ({ runId }) => mustGetRun(runId)),
      recordResumeAttempt: effect<LauncherCallInput, number>('store', ({ runId }) =>
        store.incrementResumeAttempts(runId),
      ),
      terminateWorker: effect<LauncherCallInput, boolean>('launcher', async ({ runId }) =>
        launcher.terminate(await mustGetRun(runId)),
      ),
      resumeWorker: effect<LauncherCallInput & { attempt: number }, void>(
        'launcher',
        async ({ runId, attempt }) => {
          if (!launcher.resume)
            throw new RunwardenError('RESUME_UNSUPPORTED', 'The launcher cannot resume runs.');
          await launcher.resume(await mustGetRun(runId), attempt);
        },
      ),
      fetchDebugInfo: effect<LauncherCallInput, string | undefined>('launcher', async ({ runId }) =>
        launcher.debugInfo?.(await mustGetRun(runId)),
      ),
    },
    actions: {
      reportEffectError: ({ context, event }) => {
        const error = (event as { error?: unknown }).error;
        runLogger(context.run.runId).error(
          { err: error },
          `Monitor effect failed; retrying in ${config.storeRetrySeconds} seconds.`,
        );
      },
      reportInvalidMaxRuntimeTag: ({ context }) => {
        const invalid = context.invalidMaxRuntimeTag;
        if (!invalid) return;
        const message = messages.invalidMaxRuntimeTag(invalid.tag, invalid.value, config.maxRuntimeSeconds);
        // Promise.resolve().then: a store that throws instead of rejecting must not fail the actor.
        tracker
          .track(
            Promise.resolve().then(() =>
              store.appendEvent(context.run.runId, { type: 'ENGINE_EVENT', message, at: clock.now() }),
            ),
          )
          .catch((err) => runLogger(context.run.runId).error({ err }, 'Could not report an invalid tag.'));
        runLogger(context.run.runId).warn(message);
      },
    },
  });

  function runInput(run: RunRecord): RunInput {
    const maxRuntime = resolveMaxRuntimeSeconds(run.tags, config);
    return { run, settings, maxRuntimeSeconds: maxRuntime.seconds, invalidMaxRuntimeTag: maxRuntime.invalid };
  }

  // --- health poll -------------------------------------------------------------------------------------
  async function checkHealth(run: RunRecord): Promise<HealthResult> {
    try {
      const check = launcher.checkHealth;
      if (!check) return { status: 'UNKNOWN', transient: true, message: 'The launcher cannot check health.' };
      return await callLauncher('checkHealth', () => check.call(launcher, run));
    } catch (error) {
      return { status: 'UNKNOWN', transient: true, message: `Health check failed: ${errorText(error)}` };
    }
  }

  // The poll is also a sweep: every active run is delivered to the supervisor, so a run the feed never
  // mentioned (created after start: creation appends no event) or an update it dropped is found anyway.
  const pollHealth = fromCallback<{ type: 'stop' }, PollHealthInput>(({ sendBack }) => {
    let stopped = false;
    const send = (event: SupervisorEvent) => {
      if (!stopped) sendBack(event);
    };
    const checkPage = (page: RunRecord[]) =>
      forEachConcurrently(page, config.healthCheckConcurrency, async (run) => {
        if (stopped) return;
        const result = await checkHealth(run);
        send({ type: 'health.checked', run, result });
      });
    const poll = async () => {
      const initialLoad = loading;
      if (initialLoad) {
        // The first poll begins while start() reads every active run: that read is this poll's sweep.
        // Sweeping as well delivered every run twice at start (29% of start()'s CPU at 100k runs).
        await initialLoad;
        if (stopped) return;
      } else {
        // Health results carry a fresh record of each STARTED run; without them, sweep STARTED runs too.
        const swept = healthChecks ? SWEPT_STATUSES : ACTIVE_STATUSES;
        for await (const page of pagesOf(tracker, store, swept)) {
          if (stopped) return;
          send({ type: 'runs.updated', runs: page });
        }
      }
      if (!healthChecks) return;
      for await (const page of pagesOf(tracker, store, ['STARTED'])) {
        if (stopped) return;
        await checkPage(page);
      }
    };
    // Launcher calls inside may wait on the clock (their timeout), so the poll as a whole is launcher work.
    tracker.trackLauncher(
      poll()
        .catch((err) => logger.error({ err }, 'Health poll failed; retrying at the next interval.'))
        .finally(() => send({ type: 'poll.done' })),
    );
    return () => {
      stopped = true;
    };
  });

  const providedShard = shardMachine.provide({
    actors: { run: providedRun },
    actions: {
      reportRunActorError: ({ self, event }) => {
        const { runId, error } = failedRun(self, event as { actorId: string; error: unknown });
        const id = runId ?? 'unknown';
        logger.error({ runId: id, err: error }, messages.runActorFailed(id, errorText(error)));
      },
    },
  });
  const providedSupervisor = supervisorMachine.provide({
    actors: { shard: providedShard, pollHealth },
    actions: {
      reportBadRecord: (_, params: { problem: string }) =>
        logger.error(
          { problem: params.problem },
          `Ignoring a run record the monitor cannot use: ${params.problem}`,
        ),
    },
  });

  // --- lifecycle ---------------------------------------------------------------------------------------
  let supervisor: Actor<typeof providedSupervisor> | undefined;
  /** Pending while start() reads every active run into the supervisor (the first poll waits for it). */
  let loading: Promise<void> | undefined;
  let feed: StoreFeed | undefined;

  const deliver = (runs: RunRecord[]) => {
    if (runs.length > 0) supervisor?.send({ type: 'runs.updated', runs });
  };

  async function start(): Promise<void> {
    if (supervisor) return;
    if (!config.enabled) {
      logger.info('Run monitoring is disabled (enabled: false); not watching runs.');
      return;
    }
    supervisor = createActor(providedSupervisor, {
      clock,
      inspect: options.inspect,
      input: {
        shardSize: config.shardSize,
        pollIntervalSeconds: config.pollIntervalSeconds,
        runInput,
      },
    });
    indexDelayedEvents(supervisor.system);
    supervisor.subscribe({ error: (err) => logger.error({ err }, 'Supervisor stopped with an error.') });
    let loaded!: () => void;
    loading = new Promise<void>((resolve) => {
      loaded = resolve;
    });
    supervisor.start();
    try {
      await load();
    } catch (error) {
      // Leave nothing half-started, so start() can simply be called again.
      await stop();
      throw error;
    } finally {
      loading = undefined;
      loaded();
    }
    logger.info({ config }, 'Run monitor started.');
  }

  async function load(): Promise<void> {
    // Tail position first, then the runs: an update landing in between is read twice, never lost.
    feed = new StoreFeed({
      store,
      clock,
      tracker,
      logger,
      deliver,
      pollIntervalMs: config.feedPollIntervalSeconds * 1000,
    });
    await feed.start();
    for await (const page of pagesOf(tracker, store, ACTIVE_STATUSES)) deliver(page);
  }

  async function stop(): Promise<void> {
    feed?.stop();
    feed = undefined;
    supervisor?.stop();
    supervisor = undefined;
    await tracker.drainStoreWork();
    logger.info('Run monitor stopped.');
  }

  async function launch(runId: string): Promise<RunRecord> {
    const run = await mustGetRun(runId);
    if (run.status !== 'NOT_STARTED' && run.status !== 'QUEUED') {
      throw new RunwardenError(
        'NOT_LAUNCHABLE',
        `Run ${runId} is ${run.status}; only NOT_STARTED or QUEUED runs can be launched.`,
      );
    }
    const starting = await tracker.track(
      store.transition(runId, {
        to: 'STARTING',
        from: ['NOT_STARTED', 'QUEUED'],
        at: clock.now(),
        message: 'Launching run.',
      }),
    );
    if (!starting) {
      const now = await mustGetRun(runId);
      throw new RunwardenError(
        'NOT_LAUNCHABLE',
        `Run ${runId} moved to ${now.status} while it was being launched.`,
      );
    }
    try {
      await callLauncher('launch', () => launcher.launch(starting));
    } catch (error) {
      if (error instanceof RunwardenError && error.code === 'LAUNCHER_TIMEOUT') {
        // The run stays STARTING: its start timeout decides it, as for any worker that never reports.
        throw new LaunchError(
          runId,
          `Launching run ${runId}: ${error.message} The start timeout will decide the run.`,
          {
            cause: error,
          },
        );
      }
      const message = `Run failed to launch: ${errorText(error)}`;
      await tracker.track(
        store.transition(runId, {
          to: 'FAILURE',
          from: ['STARTING'],
          at: clock.now(),
          message,
          tags: { [TAGS.failureReason]: 'LAUNCH_FAILED' },
        }),
      );
      throw new LaunchError(runId, `Launching run ${runId} failed: ${errorText(error)}`, { cause: error });
    }
    runLogger(runId).info('Run launched.');
    return mustGetRun(runId);
  }

  async function cancel(runId: string): Promise<RunRecord> {
    const run = await mustGetRun(runId);
    if (run.status === 'NOT_STARTED' || run.status === 'QUEUED') {
      await tracker.track(
        store.transition(runId, {
          to: 'CANCELED',
          from: [run.status],
          at: clock.now(),
          message: 'Run canceled before it was launched.',
        }),
      );
      return mustGetRun(runId);
    }
    if (run.status !== 'STARTING' && run.status !== 'STARTED') return run;
    const canceling = await tracker.track(
      store.transition(runId, {
        to: 'CANCELING',
        from: ['STARTING', 'STARTED'],
        at: clock.now(),
        message: 'Canceling run: termination requested.',
        tags: { [TAGS.cancelReason]: 'USER_REQUEST' },
      }),
    );
    if (!canceling) return mustGetRun(runId);
    let problem: string | undefined;
    try {
      if (!(await callLauncher('terminate', () => launcher.terminate(canceling)))) {
        problem = 'the launcher reported the worker is still there';
      }
    } catch (error) {
      problem = errorText(error);
    }
    if (problem) {
      const message = messages.cancelTerminateFailed(problem);
      await tracker.track(store.appendEvent(runId, { type: 'ENGINE_EVENT', message, at: clock.now() }));
      runLogger(runId).warn(message);
    }
    return mustGetRun(runId);
  }

  return {
    start,
    stop,
    settle: () => tracker.settle(),
    launch,
    cancel,
    config,
  };
}

/** The part of a MonitorConfig every run actor obeys (one object, shared by all of them). */
export function runSettings(config: RunSettings): RunSettings {
  return {
    startTimeoutSeconds: config.startTimeoutSeconds,
    cancelTimeoutSeconds: config.cancelTimeoutSeconds,
    queuedTimeoutSeconds: config.queuedTimeoutSeconds,
    maxResumeRunAttempts: config.maxResumeRunAttempts,
    unknownHealthTolerance: config.unknownHealthTolerance,
    terminateOnStartTimeout: config.terminateOnStartTimeout,
    launcherTimeoutSeconds: config.launcherTimeoutSeconds,
    storeRetrySeconds: config.storeRetrySeconds,
  };
}

/** Active runs not covered by the health checks, which carry their own fresh record. */
const SWEPT_STATUSES: readonly RunStatus[] = ['NOT_STARTED', 'QUEUED', 'STARTING', 'CANCELING'];

/** Every run in `statuses`, a page at a time, in runId order. */
async function* pagesOf(tracker: EffectTracker, store: RunStore, statuses: readonly RunStatus[]) {
  let afterRunId: string | undefined;
  for (;;) {
    const page = await tracker.track(
      store.listRuns({ statuses: [...statuses], limit: LIST_PAGE, afterRunId }),
    );
    if (page.length > 0) yield page;
    const last = page.at(-1);
    if (page.length < LIST_PAGE || !last) return;
    afterRunId = last.runId;
  }
}

/** Runs `work` over items with at most `limit` in flight, yielding to timers between items. */
async function forEachConcurrently<T>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
      // A launcher answering from memory resolves in a microtask; without a macrotask turn now and then
      // a large poll would starve the timers it shares the event loop with.
      if (next % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** A delayed event (an `after` timer) in the books of the actor that scheduled it. */
interface Delayed {
  id: string;
  handle: unknown;
  next: Delayed | undefined;
}

/**
 * XState's scheduler cancels a stopping actor's delayed events by scanning the delayed events of the whole
 * system (scheduler.cancelAll), and every actor that stops calls it: a run actor that finishes, the promise
 * actor of every effect, each run at monitor.stop(). With 100,000 runs armed that is 100,000 steps per stop,
 * quadratic overall (profile of a 20k-run start + stop: cancelAll 64% of CPU; stop of 10k runs 10.6 s).
 * This replaces the system's scheduler, before anything is scheduled, with one that keeps the same contract
 * but books each delayed event under the actor that scheduled it, so a stop costs what that actor had
 * scheduled. Timers still go through the system's clock and events through the system's relay (inspection
 * sees them as before). Not kept: the copy of pending events in system.getSnapshot(), which the monitor
 * never persists (deadlines come from stored timestamps). Left alone if XState's internals differ.
 */
function indexDelayedEvents(system: AnyActorRef['system']): void {
  const relay = (
    system as unknown as { _relay?: (source: AnyActorRef, target: AnyActorRef, event: EventObject) => void }
  )._relay;
  const clock = system._clock;
  if (typeof relay !== 'function' || !clock || typeof system.scheduler?.cancelAll !== 'function') return;
  const books = new Map<AnyActorRef, Delayed>();
  const unbook = (source: AnyActorRef, delayed: Delayed): boolean => {
    let previous: Delayed | undefined;
    for (let cur = books.get(source); cur; previous = cur, cur = cur.next) {
      if (cur !== delayed) continue;
      if (previous) previous.next = cur.next;
      else if (cur.next) books.set(source, cur.next);
      else books.delete(source);
      return true;
    }
    return false;
  };
  system.scheduler = {
    schedule(source, target, event, delay, id = Math.random().toString(36).slice(2)) {
      const delayed: Delayed = { id, handle: undefined, next: books.get(source) };
      books.set(source, delayed);
      delayed.handle = clock.setTimeout(() => {
        unbook(source, delayed);
        relay.call(system, source, target, event);
      }, delay);
    },
    cancel(source, id) {
      for (let cur = books.get(source); cur; cur = cur.next) {
        if (cur.id !== id) continue;
        unbook(source, cur);
        clock.clearTimeout(cur.handle);
        return;
      }
    },
    cancelAll(source) {
      let cur = books.get(source);
      books.delete(source);
      for (; cur; cur = cur.next) clock.clearTimeout(cur.handle);
    },
  };
}
