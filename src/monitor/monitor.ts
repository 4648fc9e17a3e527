// createRunMonitor: the host runtime. It owns every side effect — store reads and writes, launcher calls,
// logging — and wires them into the machines with .provide(). Data flows one way:
// store feed + health poll → supervisor → run actor → effect → store → back into the feed.
// The parts: effects.ts (what a run actor does), health-poll.ts (the poll and sweep), commands.ts (launch,
// cancel), scheduler.ts (delayed events), store-feed.ts (other processes' writes).
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { pino } from 'pino';
import { type Actor, createActor, type InspectionEvent, type Observer } from 'xstate';
import { errorText, messages } from '../../machines/messages.js';
import { failedRun, shardMachine } from '../../machines/shard.machine.js';
import { supervisorMachine } from '../../machines/supervisor.machine.js';
import { realClock } from '../core/clock.js';
import { type MonitorConfig, type MonitorConfigOptions, parseMonitorConfig } from '../core/config.js';
import { ConfigError, RunwardenError } from '../core/errors.js';
import {
  ACTIVE_STATUSES,
  type Clock,
  isTerminal,
  type RunEvent,
  type RunLauncher,
  type RunRecord,
  type RunStore,
  statusOfEvent,
} from '../core/types.js';
import { cancelRun, launchRun } from './commands.js';
import { EffectTracker } from './effect-tracker.js';
import { providedRunMachine, runInputFor } from './effects.js';
import { EventStream } from './event-stream.js';
import { CrashBrake } from './crash-brake.js';
import { finishPendingTerminations, healthPollActor, ownedRuns, pagesOf } from './health-poll.js';
import { LeaseKeeper } from './lease-keeper.js';
import { partitionOf } from '../stores/contract.js';
import { type MonitorHost, mustGetRun } from './host.js';
import type { MonitorLogger } from './logger.js';
import { createMonitorMetrics, type MetricsRegistry, NO_METRICS } from './metrics.js';
import { installIndexedScheduler } from './scheduler.js';
import { StoreFeed } from './store-feed.js';

export interface RunMonitorOptions {
  store: RunStore;
  launcher: RunLauncher;
  /** camelCase options or Dagster's snake_case keys; validated with zod, bad input throws a ConfigError naming the field. */
  config?: MonitorConfigOptions;
  /** xstate's SimulatedClock fits; default: real time. */
  clock?: Clock;
  /** A pino logger, or any logger with pino's method shape (info, warn, error, debug, child). */
  logger?: MonitorLogger;
  /** Passed to the root actor, so the Stately inspector sees every machine. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** A prom-client Registry: the monitor registers its runwarden_* metrics in it (docs/operations.md). */
  metrics?: MetricsRegistry;
  /**
   * This monitor's id among several on one store (`runwarden monitors` shows it). Unique per running
   * monitor; default: `<host>-<pid>-<random>`.
   */
  monitorId?: string;
}

export interface RunMonitor {
  /** Loads active runs from the store, follows its change feed, starts health polling. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Resolves once every effect started so far (and the ones they caused) has finished. */
  settle(): Promise<void>;
  /** NOT_STARTED/QUEUED → STARTING, then launcher.launch. Refused after stop(). */
  launch(runId: string): Promise<RunRecord>;
  /** → CANCELING (or CANCELED before launch), then launcher.terminate. */
  cancel(runId: string): Promise<RunRecord>;
  /**
   * Every event of every run as the monitor learns it (its own writes at once, other processes' through the
   * feed), in seq order, from when the monitor started. Returns the unsubscribe function.
   */
  subscribe(listener: (event: RunEvent) => void): () => void;
  /** Resolves with the run's record once its status is terminal (at once if it already is). */
  waitForRun(runId: string, options?: { signal?: AbortSignal }): Promise<RunRecord>;
  readonly config: MonitorConfig;
  /** This monitor's id in the store's lease table (several monitors on one store). */
  readonly monitorId: string;
}

export function createRunMonitor(options: RunMonitorOptions): RunMonitor {
  const { store, launcher } = options;
  const config = parseMonitorConfig(options.config ?? {}, { supportsResume: launcher.supportsResume });
  const logger: MonitorLogger = options.logger ?? pino({ level: 'silent' });
  const clock = options.clock ?? realClock;
  const tracker = new EffectTracker();
  const leases = new LeaseKeeper({
    store,
    clock,
    tracker,
    logger,
    identity: {
      monitorId: monitorIdOf(options.monitorId),
      host: hostname(),
      pid: process.pid,
    },
    leaseMs: config.leaseSeconds * 1000,
    watchAll: config.dryRun,
    onGained: (partitions) => tracker.track(loadPartitions(partitions)),
    onLost: (partitions) => supervisor?.send({ type: 'runs.release', partitions }),
  });
  const host: MonitorHost = {
    store,
    launcher,
    config,
    clock,
    logger,
    tracker,
    pendingTerminations: true,
    decisionWrites: new Map(),
    terminations: new Map(),
    // The runs gauge reads the supervisor when scraped (it is declared below, set by start()).
    metrics: options.metrics ? createMonitorMetrics(options.metrics, () => supervisor) : NO_METRICS,
    leases,
  };

  const providedShard = shardMachine.provide({
    actors: { run: providedRunMachine(host) },
    actions: {
      reportRunActorError: ({ self, event }) => {
        const { runId, error } = failedRun(self, event as { actorId: string; error: unknown });
        const id = runId ?? 'unknown';
        logger.error({ runId: id, err: error }, messages.runActorFailed(id, errorText(error)));
      },
    },
  });
  const providedSupervisor = supervisorMachine.provide({
    actors: {
      shard: providedShard,
      pollHealth: healthPollActor(host, {
        initialLoad: () => loading,
        crashBrake: new CrashBrake(config.crashBrake, () => host.clock.now()),
      }),
    },
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
  let stopped = false;
  const events = new EventStream(store, host.tracker, logger);

  // Only runs this monitor owns reach the supervisor (all of them, with one monitor on the store).
  const deliver = (runs: RunRecord[]) => {
    const owned = ownedRuns(host, runs);
    if (owned.length > 0) supervisor?.send({ type: 'runs.updated', runs: owned });
  };

  async function start(): Promise<void> {
    if (supervisor) return;
    stopped = false;
    if (!config.enabled) {
      logger.info('Run monitoring is disabled (enabled: false); not watching runs.');
      return;
    }
    supervisor = createActor(providedSupervisor, {
      clock: host.clock,
      inspect: options.inspect,
      input: {
        shardSize: config.shardSize,
        pollIntervalSeconds: config.pollIntervalSeconds,
        now: () => host.clock.now(),
        runInput: runInputFor(config),
      },
    });
    const notIndexed = installIndexedScheduler(supervisor.system, host.clock);
    if (notIndexed) {
      logger.warn(
        { problem: notIndexed },
        'XState internals changed: using its own scheduler (slower stops, timers may fire a millisecond early).',
      );
    }
    supervisor.subscribe({ error: (err) => logger.error({ err }, 'Supervisor stopped with an error.') });
    let loaded!: () => void;
    loading = new Promise<void>((resolve) => {
      loaded = resolve;
    });
    host.pendingTerminations = true;
    supervisor.start();
    try {
      await load();
      // A monitor that died between failing a run and terminating its worker left the job journaled.
      await finishPendingTerminations(host);
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
      clock: host.clock,
      tracker: host.tracker,
      logger,
      deliver,
      isDecisionEcho: (event) => {
        const written = host.decisionWrites.get(event.runId);
        if (written === undefined || written !== statusOfEvent(event.type)) return false;
        host.decisionWrites.delete(event.runId);
        return true;
      },
      learned: (seq) => events.learned(seq),
      pollIntervalMs: config.feedPollIntervalSeconds * 1000,
    });
    events.start();
    await feed.start();
    // Which partitions are ours, before reading the runs: deliver() passes on only the runs we own.
    await leases.start();
    for await (const page of pagesOf(host, ACTIVE_STATUSES)) {
      deliver(page);
      // Spawning a page is synchronous (~70 ms per 1,000 runs) and an in-process store's reads never leave
      // the microtask queue: without a macrotask here, deadlines and I/O wait for the whole load.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Partitions this monitor took over (from a monitor that died, stopped or shed them): watch their active
   * runs at once, so every deadline is kept; the journaled terminations among them are finished by the next
   * poll. A failed read is not lost: the next poll's sweep delivers the same runs.
   */
  async function loadPartitions(partitions: number[]): Promise<void> {
    const gained = new Set(partitions);
    host.pendingTerminations = true;
    try {
      for await (const page of pagesOf(host, ACTIVE_STATUSES)) {
        if (!supervisor) return;
        deliver(page.filter((run) => gained.has(partitionOf(run.runId))));
      }
    } catch (err) {
      logger.error({ err }, 'Reading the runs of partitions taken over failed; the next poll sweeps them.');
    }
  }

  async function stop(): Promise<void> {
    stopped = true;
    events.stop();
    feed?.stop();
    feed = undefined;
    supervisor?.stop();
    supervisor = undefined;
    await host.tracker.drainStoreWork();
    // After the last write: the next owner of these partitions must not meet a decision of ours.
    await leases.stop();
    logger.info('Run monitor stopped.');
  }

  async function launch(runId: string): Promise<RunRecord> {
    if (stopped) {
      throw new RunwardenError(
        'MONITOR_STOPPED',
        `Cannot launch run ${runId}: this monitor was stopped, so nothing would watch its worker. Start the monitor again (or use one that is running).`,
      );
    }
    return launchRun(host, runId);
  }

  async function waitForRun(runId: string, waitOptions: { signal?: AbortSignal } = {}): Promise<RunRecord> {
    const { signal } = waitOptions;
    signal?.throwIfAborted();
    let unsubscribe = () => {};
    let onAbort = () => {};
    const ended = new Promise<RunRecord>((resolve, reject) => {
      // Listen first, then read: a run that ends in between is seen by one or the other.
      unsubscribe = events.subscribe((event) => {
        const status = statusOfEvent(event.type);
        if (event.runId === runId && status && isTerminal(status))
          mustGetRun(host, runId).then(resolve, reject);
      });
      onAbort = () => reject(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      mustGetRun(host, runId).then((run) => {
        if (isTerminal(run.status)) resolve(run);
      }, reject);
    });
    try {
      return await ended;
    } finally {
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  return {
    start,
    stop,
    settle: () => host.tracker.settle(),
    launch,
    cancel: (runId) => cancelRun(host, runId),
    subscribe: (listener) => events.subscribe(listener),
    waitForRun,
    config,
    monitorId: leases.monitorId,
  };
}

/** The given monitor id, checked, or a fresh one unique to this monitor: `<host>-<pid>-<random>`. */
function monitorIdOf(given: unknown): string {
  if (given === undefined) return `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  if (typeof given !== 'string' || given.trim() === '') {
    throw new ConfigError(
      `Invalid monitorId option: expected a non-empty string unique to this monitor, got ${JSON.stringify(given) ?? String(given)}.`,
      [{ path: 'monitorId', message: 'expected a non-empty string' }],
    );
  }
  return given;
}
