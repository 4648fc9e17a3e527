// track + memory: start() over N active runs already in a MemoryRunStore, until every run's deadline timer
// is armed; then the retained heap per run after GC. Each worker process measures one variant.
import { Registry } from 'prom-client';
import { MemoryRunStore } from '../../src/stores/memory/memory-store.js';
import { createRunMonitor } from '../../src/monitor/monitor.js';
import { createNaiveMonitor } from '../naive.js';
import { createFarXStateFloor } from '../xstate-floor.js';
import { FakeLauncher } from '../../src/testing/index.js';
import { ACTIVE_STATUSES, type RunStatus } from '../../src/core/types.js';
import {
  deadlineOf,
  FAR_CONFIG,
  FAR_SECONDS,
  cpuSince,
  heapUsed,
  MIX,
  pages,
  populate,
  runTimerClock,
} from '../lib.js';

export type TrackVariant = 'runwarden' | 'naive' | 'floor' | 'xstate';

export interface TrackResult {
  /** ms from start() until the N-th run deadline timer was armed. */
  trackMs: number;
  /** ms until start() resolved. */
  startResolvedMs: number;
  /** CPU (user + system, all threads: GC included) from start() until the N-th timer was armed. */
  cpuMs: number;
  /** Retained heap per monitored run (bytes), after GC, the store's own records excluded. */
  bytesPerRun: number;
  /** ms for monitor.stop() (the floor: clearing its timers) with every run still armed. */
  stopMs: number;
  /** With `metrics`: ms for one scrape of the registry (Prometheus text) with every run watched. */
  scrapeMs?: number;
}

export interface TrackOptions {
  /** Overrides the monitor's shardSize (for sweeping it; the default is the monitor's own). */
  shardSize?: number;
  /** Time stop() with every run armed (default true); the worker exits without stopping otherwise. */
  measureStop?: boolean;
  /** Runwarden only: createRunMonitor({ metrics }) with a fresh prom-client Registry. */
  metrics?: boolean;
}

export async function track(
  variant: TrackVariant,
  n: number,
  options: TrackOptions = {},
): Promise<TrackResult> {
  const store = new MemoryRunStore();
  const base = Date.now();
  await populate(
    store,
    n,
    (i) => MIX[i % MIX.length] as RunStatus,
    () => base,
  );
  const before = await heapUsed();

  let armedAt = Number.NaN;
  let resolveArmed!: () => void;
  const armed = new Promise<void>((resolve) => {
    resolveArmed = resolve;
  });
  let cpuMs = Number.NaN;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const onTarget = () => {
    armedAt = performance.now();
    cpuMs = cpuSince(cpu0);
    resolveArmed();
  };

  let keep: unknown;
  let stop: () => Promise<void>;
  let startResolvedMs: number;
  let scrapeMs: number | undefined;
  if (variant === 'floor') {
    // The floor: a Map of setTimeout handles, each doing the store transition its deadline calls for.
    const timers = new Map<string, NodeJS.Timeout>();
    let count = 0;
    for await (const page of pages(store, [...ACTIVE_STATUSES])) {
      for (const run of page) {
        const { runId, status } = run;
        const handle = setTimeout(
          () => {
            timers.delete(runId);
            void store.transition(runId, {
              to: status === 'CANCELING' ? 'CANCELED' : 'FAILURE',
              from: [status],
              message: 'deadline',
            });
          },
          Math.max(0, deadlineOf(run, FAR_SECONDS) - Date.now()),
        );
        timers.set(runId, handle);
        if (++count === n) onTarget();
      }
    }
    startResolvedMs = performance.now() - t0;
    keep = timers;
    stop = async () => {
      for (const handle of timers.values()) clearTimeout(handle);
    };
  } else if (variant === 'xstate') {
    const floor = createFarXStateFloor(store, runTimerClock(n, onTarget));
    await floor.start();
    startResolvedMs = performance.now() - t0;
    keep = floor;
    stop = async () => floor.stop();
  } else if (variant === 'naive') {
    const monitor = createNaiveMonitor({
      store,
      launcher: new FakeLauncher(),
      clock: runTimerClock(n, onTarget),
      config: FAR_CONFIG,
    });
    await monitor.start();
    startResolvedMs = performance.now() - t0;
    keep = monitor;
    stop = async () => monitor.stop();
  } else {
    const clock = runTimerClock(n, onTarget);
    const registry = options.metrics ? new Registry() : undefined;
    const monitor = createRunMonitor({
      store,
      launcher: new FakeLauncher(),
      clock,
      metrics: registry,
      config: {
        ...FAR_CONFIG,
        ...(options.shardSize ? { shardSize: options.shardSize } : {}),
      },
    });
    await monitor.start();
    startResolvedMs = performance.now() - t0;
    keep = monitor;
    stop = () => monitor.stop();
    await armed;
    // The first health poll (at start) and its sweep finish before the heap is read.
    await monitor.settle();
    if (registry) {
      const s0 = performance.now();
      const text = await registry.metrics();
      scrapeMs = performance.now() - s0;
      // The gauge must have counted every run, or the scrape measured nothing.
      const watched = [...text.matchAll(/^runwarden_runs\{status="\w+"\} (\d+)$/gm)].reduce(
        (sum, m) => sum + Number(m[1]),
        0,
      );
      if (watched !== n) throw new Error(`runwarden_runs counts ${watched} runs, expected ${n}`);
    }
  }
  await armed;
  const after = await heapUsed();
  const bytesPerRun = (after - before) / n;
  if (keep === undefined) throw new Error('unreachable');
  // monitor.stop() with every run actor still armed: a host shutting down.
  const s0 = performance.now();
  if (options.measureStop === false)
    return { trackMs: armedAt - t0, cpuMs, startResolvedMs, bytesPerRun, stopMs: Number.NaN, scrapeMs };
  await stop();
  const stopMs = performance.now() - s0;
  return { trackMs: armedAt - t0, cpuMs, startResolvedMs, bytesPerRun, stopMs, scrapeMs };
}
