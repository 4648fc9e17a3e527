// A monitor on simulated time over a real MemoryRunStore and a FakeLauncher, as a user would wire it.
import type { Registry } from 'prom-client';
import { afterEach } from 'vitest';
import { SimulatedClock } from 'xstate';
import type { MonitorConfigInput } from '../src/core/config.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { createRunMonitor } from '../src/monitor/monitor.js';
import { FakeLauncher, type FakeLauncherOptions } from '../src/testing/index.js';
import {
  type RunEventType,
  type RunLauncher,
  type RunStatus,
  type RunStore,
  TAGS,
} from '../src/core/types.js';

export const T0 = Date.UTC(2026, 0, 1);
export const SECOND = 1000;

export interface HarnessOptions {
  config?: MonitorConfigInput;
  launcher?: FakeLauncherOptions;
  /** Use this launcher instead of a FakeLauncher built from `launcher`. */
  customLauncher?: RunLauncher;
  store?: RunStore;
  clock?: SimulatedClock;
  start?: boolean;
  metrics?: Registry;
}

export async function harness(options: HarnessOptions = {}) {
  const clock = options.clock ?? newClock();
  const store = options.store ?? new MemoryRunStore({ clock });
  const fake = new FakeLauncher(options.launcher);
  const launcher = options.customLauncher ?? fake;
  const monitor = createRunMonitor({
    store,
    launcher,
    clock,
    config: options.config,
    metrics: options.metrics,
  });
  if (options.start !== false) {
    await monitor.start();
    await monitor.settle();
  }
  return {
    clock,
    store,
    launcher: fake,
    monitor,
    /**
     * Advances simulated time, then waits until every effect that caused has finished. SimulatedClock
     * fires a timer due now (a deadline that passed while an effect ran) only when time is moved, so
     * nudge it by 0 ms until the store stops changing.
     */
    async advance(ms: number) {
      clock.increment(ms);
      await monitor.settle();
      for (let round = 0; round < 50; round++) {
        const before = await store.latestSeq();
        clock.increment(0);
        await monitor.settle();
        if ((await store.latestSeq()) === before) return;
      }
      throw new Error('advance: the monitor kept writing with the clock standing still');
    },
    /** `times` steps of `ms` each: periodic work (polls) re-arms after each step. */
    async step(times: number, ms: number) {
      for (let i = 0; i < times; i++) await this.advance(ms);
    },
    async status(runId: string): Promise<RunStatus | undefined> {
      return (await store.getRun(runId))?.status;
    },
    async eventTypes(runId: string): Promise<RunEventType[]> {
      return (await store.getEvents(runId)).map((e) => e.type);
    },
    async messagesOf(runId: string, type: RunEventType): Promise<string[]> {
      return (await store.getEvents(runId, { types: [type] })).map((e) => e.message);
    },
    async failureReason(runId: string): Promise<string | undefined> {
      return (await store.getRun(runId))?.tags[TAGS.failureReason];
    },
    /** Creates a run, launches it and has its worker report STARTED, as a real worker would. */
    async startedRun(tags: Record<string, string> = {}): Promise<string> {
      const run = await store.createRun({ tags });
      await monitor.launch(run.runId);
      await store.transition(run.runId, { to: 'STARTED' });
      await monitor.settle();
      return run.runId;
    },
    async launchedRun(tags: Record<string, string> = {}): Promise<string> {
      const run = await store.createRun({ tags });
      await monitor.launch(run.runId);
      await monitor.settle();
      return run.runId;
    },
  };
}

export function newClock(): SimulatedClock {
  const clock = new SimulatedClock();
  clock.set(T0);
  return clock;
}

export type Harness = Awaited<ReturnType<typeof harness>>;

/**
 * `harness`, with every monitor it makes stopped after each test. Call it once at the top of a test file
 * (it registers the afterEach hook there).
 */
export function stoppedAfterEach(): (options?: HarnessOptions) => Promise<Harness> {
  const open: Harness[] = [];
  afterEach(async () => {
    for (const h of open.splice(0)) await h.monitor.stop();
  });
  return async (options) => {
    const h = await harness(options);
    open.push(h);
    return h;
  };
}
