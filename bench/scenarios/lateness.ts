// deadline lateness: N STARTING runs whose start deadlines fall evenly over a window (10 s); for each run,
// the time from its deadline to its RUN_FAILURE event. Variants: the monitor, naive XState (one parent),
// the floor (a setTimeout per run) and a Dagster-style poll loop (scan every run every interval).
import { Registry } from 'prom-client';
import { realClock } from '../../src/core/clock.js';
import { MemoryRunStore } from '../../src/stores/memory/memory-store.js';
import { createRunMonitor } from '../../src/monitor/monitor.js';
import { createNaiveMonitor } from '../naive.js';
import { createXStateFloor } from '../xstate-floor.js';
import { FakeLauncher } from '../../src/testing/index.js';
import { type RunRecord, TAGS } from '../../src/core/types.js';
import {
  type Distribution,
  distribution,
  epochNow,
  pages,
  populate,
  countingClock,
  SECOND,
  sleep,
  until,
} from '../lib.js';

export type LatenessVariant = 'runwarden' | 'naive' | 'floor' | 'xstate' | 'dagster';

export interface LatenessOptions {
  windowMs?: number;
  /** Time between the end of setup and the first deadline, so every run is armed before it. */
  marginMs?: number;
  /** The Dagster-style loop's interval (Dagster's default poll_interval_seconds is 120). */
  dagsterIntervalMs?: number;
  /** Runwarden only: createRunMonitor({ metrics }) with a fresh prom-client Registry. */
  metrics?: boolean;
}

export interface LatenessResult {
  lateness: Distribution;
  /** ms by which arming finished after the first deadline (0: armed in time). */
  armedLateMs: number;
  /**
   * CPU ms (user + system) the process used from the first deadline until the last failure; NaN when
   * arming was not finished by the first deadline.
   */
  cpuMs: number;
  windowMs: number;
  /** With `metrics`: the observations in runwarden_deadline_lateness_seconds (must be N). */
  latenessObserved?: number;
}

const START_TIMEOUT_SECONDS = 60;

export async function lateness(
  variant: LatenessVariant,
  n: number,
  options: LatenessOptions,
): Promise<LatenessResult> {
  const windowMs = options.windowMs ?? 10 * SECOND;
  // The monitor needs time to arm N actors (about 0.1 ms each here); the floor and the loop do not.
  const armsActors = variant === 'runwarden' || variant === 'naive' || variant === 'xstate';
  const marginMs = options.marginMs ?? 2 * SECOND + (armsActors ? n * 0.12 : 0);
  const store = new MemoryRunStore();
  const launcher = new FakeLauncher();
  // Populating takes a while at 100k; the window starts after it and after the margin for arming.
  const firstDeadline = Date.now() + n * 0.03 + marginMs;
  const deadlineOf = (i: number) => firstDeadline + (i * windowMs) / n;
  await populate(
    store,
    n,
    () => 'STARTING',
    (i) => deadlineOf(i) - START_TIMEOUT_SECONDS * SECOND,
  );

  const lateness: number[] = [];
  const unsubscribe = store.subscribe((event) => {
    if (event.type !== 'RUN_FAILURE') return;
    const i = Number(event.runId.slice(4));
    lateness.push(epochNow() - deadlineOf(i));
  });

  let armedAt = Number.NaN;
  const markArmed = () => {
    armedAt = Date.now();
  };
  let stop: () => Promise<void> | void;
  let registry: Registry | undefined;
  if (variant === 'floor') {
    const timers = new Map<string, NodeJS.Timeout>();
    for await (const page of pages(store, ['STARTING'])) {
      for (const run of page) {
        const deadline = (run.launchedAt ?? run.updatedAt) + START_TIMEOUT_SECONDS * SECOND;
        timers.set(
          run.runId,
          setTimeout(
            () => void failStarting(store, launcher, run, timers),
            Math.max(0, deadline - Date.now()),
          ),
        );
      }
    }
    markArmed();
    stop = () => {
      for (const handle of timers.values()) clearTimeout(handle);
    };
  } else if (variant === 'xstate') {
    // One effect per deadline where the monitor runs three (debug info, FAILURE, terminate): failStarting
    // does FAILURE and terminate in one promise.
    const floor = createXStateFloor({
      store,
      clock: realClock,
      statuses: ['STARTING'],
      deadlineOf: (run) => (run.launchedAt ?? run.updatedAt) + START_TIMEOUT_SECONDS * SECOND,
      act: (run) => failStarting(store, launcher, run),
    });
    await floor.start();
    markArmed();
    stop = () => floor.stop();
  } else if (variant === 'dagster') {
    const loop = dagsterLoop(store, launcher, options.dagsterIntervalMs ?? SECOND);
    markArmed();
    stop = loop.stop;
  } else {
    let resolveArmed!: () => void;
    const armed = new Promise<void>((resolve) => {
      resolveArmed = resolve;
    });
    // Every other timer of the monitor (poll, feed, launcher timeouts) is set to an hour.
    const clock = countingClock(
      (ms) => ms < 1_800_000,
      n,
      () => {
        markArmed();
        resolveArmed();
      },
    );
    const config = {
      startTimeoutSeconds: START_TIMEOUT_SECONDS,
      pollIntervalSeconds: 3600,
      feedPollIntervalSeconds: 3600,
      launcherTimeoutSeconds: 3600,
    };
    registry = options.metrics && variant === 'runwarden' ? new Registry() : undefined;
    const monitor =
      variant === 'naive'
        ? createNaiveMonitor({ store, launcher, clock, config })
        : createRunMonitor({ store, launcher, clock, config, metrics: registry });
    await monitor.start();
    await Promise.race([armed, sleep(firstDeadline + windowMs - Date.now())]);
    stop = async () => {
      await monitor.stop();
    };
  }

  const waitFrom = Math.max(Date.now(), firstDeadline);
  await sleep(firstDeadline - Date.now());
  const cpu0 = process.cpuUsage();
  await until(
    () => lateness.length >= n,
    firstDeadline + windowMs - waitFrom + 120 * SECOND,
    `${n} RUN_FAILURE events (${variant})`,
    2,
  );
  const cpu = process.cpuUsage(cpu0);
  unsubscribe();
  await stop();
  const observed =
    registry && /^runwarden_deadline_lateness_seconds_count (\d+)$/m.exec(await registry.metrics());
  return {
    lateness: distribution(lateness),
    armedLateMs: Math.max(0, armedAt - firstDeadline),
    // Arming that ended after the first deadline (or never, within the window: a loaded machine) leaves
    // the CPU window short of the work it should hold: no figure rather than a wrong one.
    cpuMs: armedAt <= firstDeadline ? (cpu.user + cpu.system) / 1000 : Number.NaN,
    windowMs,
    ...(registry && { latenessObserved: Number(observed?.[1]) }),
  };
}

/** What the monitor does at a start deadline, minus the debug info: FAILURE, then terminate the worker. */
async function failStarting(
  store: MemoryRunStore,
  launcher: FakeLauncher,
  run: RunRecord,
  timers?: Map<string, NodeJS.Timeout>,
): Promise<void> {
  timers?.delete(run.runId);
  const failed = await store.transition(run.runId, {
    to: 'FAILURE',
    from: ['STARTING'],
    message: `Run timed out due to taking longer than ${START_TIMEOUT_SECONDS} seconds to start.`,
    tags: { [TAGS.failureReason]: 'START_TIMEOUT' },
  });
  if (failed) await launcher.terminate(failed);
}

/**
 * Dagster's run monitoring daemon, reduced to the start timeout: every interval, list every STARTING run
 * and handle the ones past their deadline, one after another (monitor_starting_run).
 */
function dagsterLoop(store: MemoryRunStore, launcher: FakeLauncher, intervalMs: number) {
  let stopped = false;
  const tick = async () => {
    while (!stopped) {
      const began = Date.now();
      for await (const page of pages(store, ['STARTING'])) {
        for (const run of page) {
          if (Date.now() >= (run.launchedAt ?? run.updatedAt) + START_TIMEOUT_SECONDS * SECOND) {
            await failStarting(store, launcher, run);
          }
        }
      }
      await sleep(Math.max(0, began + intervalMs - Date.now()));
    }
  };
  void tick();
  return {
    stop: () => {
      stopped = true;
    },
  };
}
