// health poll: one poll over N STARTED runs whose health checks each take `checkMs` (5 ms), with
// `concurrency` checks in flight; its wall time, and the lateness of run deadlines that fall due during it
// (probe runs moved to STARTING as the poll begins, deadlines spread over the poll) plus event-loop lag.
import { MemoryRunStore } from '../../src/stores/memory/memory-store.js';
import { createRunMonitor } from '../../src/monitor/monitor.js';
import { createNaiveMonitor } from '../naive.js';
import { FakeLauncher } from '../../src/testing/index.js';
import { type HealthResult, type RunRecord, TAGS } from '../../src/core/types.js';
import {
  countingClock,
  type Distribution,
  distribution,
  epochNow,
  loopLagProbe,
  pages,
  populate,
  runIdOf,
  SECOND,
  sleep,
  until,
} from '../lib.js';

export type HealthVariant = 'runwarden' | 'naive' | 'floor';

export interface HealthOptions {
  checkMs?: number;
  concurrency?: number;
  probes?: number;
}

export interface HealthScenarioResult {
  /** From the first to the last health check of the poll. */
  pollMs: number;
  /** N × checkMs / concurrency: the poll's length if nothing else cost anything. */
  idealMs: number;
  /** Lateness of the probe runs' start deadlines that fell due during the poll. */
  timerLateness: Distribution;
  /** How late a 10 ms interval ran during the poll. */
  loopLag: Distribution;
  probes: number;
}

const START_TIMEOUT_SECONDS = 60;
const HOUR = 3600 * SECOND;

export async function health(
  variant: HealthVariant,
  n: number,
  options: HealthOptions,
): Promise<HealthScenarioResult> {
  const checkMs = options.checkMs ?? 5;
  const concurrency = options.concurrency ?? 100;
  const probes = options.probes ?? Math.min(1000, Math.max(100, Math.round(n / 100)));
  const idealMs = (n * checkMs) / concurrency;
  const store = new MemoryRunStore();
  const now = Date.now();
  // N STARTED runs (no max runtime: no timers of their own), then the probes: NOT_STARTED, created "in the
  // future" so their never-launched deadline is far away until the poll moves them to STARTING.
  await populate(
    store,
    n,
    () => 'STARTED',
    () => now,
  );
  for (let j = 0; j < probes; j++) await store.createRun({ runId: probeId(j), at: now + 10 * HOUR });

  let slow = false;
  let started = 0;
  let finished = 0;
  let pollStart = Number.NaN;
  let pollEnd = Number.NaN;
  let lag: ReturnType<typeof loopLagProbe> | undefined;
  const deadlines = new Map<string, number>();
  let launching: ReturnType<typeof setInterval> | undefined;
  const onPollStart = () => {
    pollStart = epochNow();
    lag = loopLagProbe();
    // Deadlines spread over the poll, from 100 ms in to 90% of its ideal length. Each probe is launched
    // (moved to STARTING, its deadline stored) about 100 ms before its deadline, as runs launch in a steady
    // stream; a launch that runs late still stores the same deadline.
    const span = Math.max(200, idealMs * 0.9 - 100);
    for (let j = 0; j < probes; j++) {
      // Stored timestamps are whole milliseconds.
      deadlines.set(probeId(j), Math.round(pollStart + 100 + (j * span) / probes));
    }
    let next = 0;
    launching = setInterval(() => {
      const horizon = epochNow() + 100;
      for (; next < probes; next++) {
        const deadline = deadlines.get(probeId(next)) as number;
        if (deadline > horizon) break;
        void store.transition(probeId(next), {
          to: 'STARTING',
          from: ['NOT_STARTED'],
          at: deadline - START_TIMEOUT_SECONDS * SECOND,
        });
      }
      if (next >= probes) clearInterval(launching);
    }, 10);
  };
  const check = (_run: RunRecord): HealthResult | Promise<HealthResult> => {
    if (!slow) return { status: 'RUNNING' };
    if (started++ === 0) onPollStart();
    return sleep(checkMs).then(() => {
      if (++finished === n) pollEnd = epochNow();
      return { status: 'RUNNING' };
    });
  };
  const launcher = new FakeLauncher({ health: check });

  const lateness: number[] = [];
  const unsubscribe = store.subscribe((event) => {
    if (event.type !== 'RUN_FAILURE') return;
    const deadline = deadlines.get(event.runId);
    if (deadline !== undefined) lateness.push(epochNow() - deadline);
  });

  let stop: () => Promise<void> | void;
  if (variant === 'floor') {
    const runs = new Map<string, RunRecord>();
    for await (const page of pages(store, ['STARTED'])) for (const run of page) runs.set(run.runId, run);
    const timers = new Map<string, NodeJS.Timeout>();
    // The probes as the floor would see them: one setTimeout each, armed as they move to STARTING.
    const unsubscribeProbes = store.subscribe((event) => {
      if (event.type !== 'RUN_STARTING') return;
      const deadline = deadlines.get(event.runId);
      if (deadline === undefined) return;
      const { runId } = event;
      timers.set(
        runId,
        setTimeout(
          () => {
            timers.delete(runId);
            void store
              .transition(runId, {
                to: 'FAILURE',
                from: ['STARTING'],
                message: 'start timeout',
                tags: { [TAGS.failureReason]: 'START_TIMEOUT' },
              })
              .then((run) => run && launcher.terminate(run));
          },
          Math.max(0, deadline - epochNow()),
        ),
      );
    });
    slow = true;
    const queue = [...runs.values()];
    let next = 0;
    const worker = async () => {
      while (next < queue.length) await launcher.checkHealth(queue[next++] as RunRecord);
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
    stop = () => {
      unsubscribeProbes();
      for (const handle of timers.values()) clearTimeout(handle);
    };
  } else if (variant === 'naive') {
    const monitor = createNaiveMonitor({
      store,
      launcher,
      clock: countingClock(
        () => false,
        1,
        () => {},
      ),
      config: { startTimeoutSeconds: START_TIMEOUT_SECONDS, launcherTimeoutSeconds: 3600 },
    });
    await monitor.start();
    slow = true;
    await monitor.pollHealth(concurrency);
    stop = () => {};
  } else {
    const monitor = createRunMonitor({
      store,
      launcher,
      // Counting nothing: the real clock, through the same wrapper as the other scenarios.
      clock: countingClock(
        () => false,
        1,
        () => {},
      ),
      config: {
        startTimeoutSeconds: START_TIMEOUT_SECONDS,
        pollIntervalSeconds: 1,
        healthCheckConcurrency: concurrency,
        launcherTimeoutSeconds: 3600,
      },
    });
    await monitor.start();
    // The first poll (at start) answers at once; the measured poll is the next one, a second later.
    await until(() => launcher.calls.health.length >= n, 600 * SECOND, 'the first poll', 10);
    slow = true;
    // Not stopped: the worker exits after reporting (stop() with N runs armed is measured by track).
    stop = () => {};
  }
  await until(() => finished >= n, 600 * SECOND, 'the measured poll', 5);
  await until(() => lateness.length >= probes, 60 * SECOND, `${probes} probe failures`, 5);
  const lags = lag?.stop() ?? [];
  unsubscribe();
  await stop();
  return {
    pollMs: pollEnd - pollStart,
    idealMs,
    timerLateness: distribution(lateness),
    loopLag: distribution(lags),
    probes,
  };
}

const probeId = (j: number) => `probe-${runIdOf(j)}`;
