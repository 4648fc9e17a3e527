// Shared pieces of the benchmark workers: timing, heap, statistics, fixtures and the counting clock.
import { realClock } from '../src/core/clock.js';
import type { Clock, RunRecord, RunStatus, RunStore } from '../src/core/types.js';

/** Epoch milliseconds with sub-millisecond resolution (comparable with stored `at` values). */
export const epochNow = (): number => performance.timeOrigin + performance.now();

export const SECOND = 1000;

/** CPU ms (user + system, every thread of the process) since `start` (a process.cpuUsage()). */
export function cpuSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}
/** Timeouts used by the track / restore fixtures: long enough that nothing fires during a measurement. */
export const FAR_SECONDS = 3600;
/** Run deadlines are at least this far away in track/restore; anything shorter is some other timer. */
const RUN_TIMER_MIN_MS = 1800 * SECOND;
/** The monitor configuration of track and restore: every deadline FAR_SECONDS away, none fires. */
export const FAR_CONFIG = {
  startTimeoutSeconds: FAR_SECONDS,
  cancelTimeoutSeconds: FAR_SECONDS,
  maxRuntimeSeconds: FAR_SECONDS,
} as const;

export const runIdOf = (i: number): string => `run-${String(i).padStart(7, '0')}`;

/** The mix of active statuses track and restore load: each arms exactly one deadline timer. */
export const MIX: readonly RunStatus[] = ['NOT_STARTED', 'STARTING', 'STARTED', 'CANCELING'];

/** The status moves that take a fresh run to `status` (the store refuses shortcuts). */
const PATH_TO: Readonly<Record<string, readonly RunStatus[]>> = {
  NOT_STARTED: [],
  QUEUED: ['QUEUED'],
  STARTING: ['STARTING'],
  STARTED: ['STARTING', 'STARTED'],
  CANCELING: ['STARTING', 'CANCELING'],
};

export async function populate(
  store: RunStore,
  n: number,
  statusOf: (i: number) => RunStatus,
  atOf: (i: number) => number,
): Promise<void> {
  for (let i = 0; i < n; i++) {
    const runId = runIdOf(i);
    const at = atOf(i);
    await store.createRun({ runId, at });
    for (const to of PATH_TO[statusOf(i)] ?? []) await store.transition(runId, { to, at });
  }
}

/** The deadline a run's status arms, given every timeout is `seconds` (what the floor arms). */
export function deadlineOf(run: RunRecord, seconds: number): number {
  const base =
    run.status === 'NOT_STARTED'
      ? run.createdAt
      : run.status === 'STARTING'
        ? (run.launchedAt ?? run.updatedAt)
        : run.status === 'STARTED'
          ? (run.startedAt ?? run.updatedAt)
          : (run.cancelingAt ?? run.updatedAt);
  return base + seconds * SECOND;
}

/** Every run in `statuses`, a page at a time (what a host does at start). */
export async function* pages(store: RunStore, statuses: RunStatus[], limit = 1000) {
  let afterRunId: string | undefined;
  for (;;) {
    const page = await store.listRuns({ statuses, limit, afterRunId });
    if (page.length > 0) yield page;
    const last = page.at(-1);
    if (page.length < limit || !last) return;
    afterRunId = last.runId;
  }
}

/**
 * The real clock, counting the timers armed with a delay `isRunTimer` accepts (each scenario picks timeouts
 * so that run deadlines and the monitor's other timers — poll, feed, launcher timeouts — cannot be confused)
 * and calling `onTarget` the moment the count reaches `target`.
 */
export function countingClock(
  isRunTimer: (ms: number) => boolean,
  target: number,
  onTarget: () => void,
): Clock & { armed(): number } {
  let armed = 0;
  return {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      if (isRunTimer(ms) && ++armed === target) onTarget();
      return realClock.setTimeout(fn, ms);
    },
    clearTimeout: (id) => realClock.clearTimeout(id),
    armed: () => armed,
  };
}

/** A real clock that calls `onArmed` once `n` run deadline timers (track, restore) have been armed. */
export function runTimerClock(n: number, onArmed: () => void): Clock {
  return countingClock((ms) => ms >= RUN_TIMER_MIN_MS, n, onArmed);
}

async function fullGc(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run the benchmark workers with node --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

export async function heapUsed(): Promise<number> {
  await fullGc();
  return process.memoryUsage().heapUsed;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index] as number;
}

export interface Distribution {
  count: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export function distribution(values: number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    max: sorted.at(-1) ?? Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
  };
}

export function median(values: number[]): number {
  return quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

/** Resolves when `condition` holds, checking every `everyMs`; rejects after `timeoutMs`. */
export async function until(condition: () => boolean, timeoutMs: number, what: string, everyMs = 5) {
  const give = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > give) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Event-loop lag probe: a 10 ms interval that records how late each tick ran. Stops on `stop()`.
 */
export function loopLagProbe(everyMs = 10) {
  const lags: number[] = [];
  let expected = performance.now() + everyMs;
  const handle = setInterval(() => {
    const t = performance.now();
    lags.push(Math.max(0, t - expected));
    expected = t + everyMs;
  }, everyMs);
  return {
    stop(): number[] {
      clearInterval(handle);
      return lags;
    },
  };
}
