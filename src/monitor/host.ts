// What every part of the monitor shares: the store, the launcher, the clock, the logger, the effect tracker,
// and the two calls each part needs (read a run that must exist, call the launcher within its time limit).
import { messages } from '../../machines/messages.js';
import type { MonitorConfig } from '../core/config.js';
import { RunNotFoundError, RunwardenError } from '../core/errors.js';
import type { Clock, RunEvent, RunLauncher, RunRecord, RunStatus, RunStore } from '../core/types.js';
import type { EffectTracker } from './effect-tracker.js';
import type { LeaseKeeper } from './lease-keeper.js';
import type { MonitorLogger } from './logger.js';
import type { MonitorMetrics } from './metrics.js';

export interface MonitorHost {
  store: RunStore;
  launcher: RunLauncher;
  config: MonitorConfig;
  clock: Clock;
  logger: MonitorLogger;
  tracker: EffectTracker;
  /**
   * Whether the store may hold journaled terminations (TAGS.terminatePending) this monitor has not finished:
   * true at start and after a terminate that did not confirm the worker gone, so a poll looks only then.
   */
  pendingTerminations: boolean;
  /** Prometheus metrics, or NO_METRICS (createRunMonitor's `metrics` option). */
  metrics: MonitorMetrics;
  /**
   * Status writes in flight that a run actor makes itself, by run id: the write's result reaches the actor as
   * the effect's output, so the feed does not route the same status back to it (see StoreFeed).
   */
  decisionWrites: Map<string, RunStatus>;
  /** Terminations in flight, by run id (see terminateOnce). */
  terminations: Map<string, Promise<boolean>>;
  /** Which runs this monitor owns and the lease its decision writes carry (several monitors on one store). */
  leases: LeaseKeeper;
}

/** A store refused a decision write, or the lease no longer allows a launcher call: another monitor owns the run. */
export function isLeaseLost(error: unknown): boolean {
  return error instanceof RunwardenError && error.code === 'LEASE_LOST';
}

export function runLogger(host: MonitorHost, runId: string): MonitorLogger {
  return host.logger.child({ runId });
}

export async function mustGetRun(host: MonitorHost, runId: string): Promise<RunRecord> {
  const run = await host.store.getRun(runId);
  if (!run) throw new RunNotFoundError(runId);
  return run;
}

/** An engine event the monitor writes about a run, fenced by its lease like every decision it writes. */
export function appendMonitorEvent(
  host: MonitorHost,
  runId: string,
  message: string,
  data?: unknown,
): Promise<RunEvent> {
  const event = { type: 'ENGINE_EVENT' as const, message, data, at: host.clock.now() };
  return host.store.appendEvent(runId, { ...event, ...host.leases.fence(runId) });
}

/**
 * launcher.terminate, joined with a termination of the same run already in flight: a run actor's
 * start-timeout termination and the poll's pass over journaled terminations can reach the same run at the
 * same moment, and the worker must be signalled once.
 */
export function terminateOnce(host: MonitorHost, run: RunRecord): Promise<boolean> {
  const inFlight = host.terminations.get(run.runId);
  if (inFlight) return inFlight;
  const call = Promise.resolve()
    .then(() => host.launcher.terminate(run))
    .finally(() => host.terminations.delete(run.runId));
  host.terminations.set(run.runId, call);
  return call;
}

/** A launcher call that gives up after launcherTimeoutSeconds (on the monitor's clock; 0 = no limit). */
// One promise and one timer per call, not a race of two promises: a start timeout makes two of these calls.
export function callLauncher<T>(host: MonitorHost, call: string, work: () => Promise<T>): Promise<T> {
  const tracked = host.tracker.trackLauncher(Promise.resolve().then(work));
  const seconds = host.config.launcherTimeoutSeconds;
  if (seconds === 0) return tracked;
  const { clock } = host;
  return new Promise<T>((resolve, reject) => {
    const timer = clock.setTimeout(
      () => reject(new RunwardenError('LAUNCHER_TIMEOUT', messages.launcherCallTimedOut(call, seconds))),
      seconds * 1000,
    );
    tracked.then(
      (value) => {
        clock.clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clock.clearTimeout(timer);
        reject(error);
      },
    );
  });
}
