// Time in the engine: deadlines that have already passed act at once (no zero-delay timer), health polls
// keep a fixed rate, and no delayed event is delivered before its due time. Simulated time throughout.
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { messages } from '../machines/messages.js';
import { sleepOn } from '../src/core/clock.js';
import type { Clock, HealthResult, RunRecord } from '../src/core/types.js';
import { TAGS } from '../src/core/types.js';
import { createRunMonitor, type RunMonitor } from '../src/monitor/monitor.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { FakeLauncher } from '../src/testing/index.js';
import { newClock, SECOND } from './harness.js';

const monitors: RunMonitor[] = [];
afterEach(async () => {
  for (const m of monitors.splice(0)) await m.stop();
});

function monitorOn(
  store: MemoryRunStore,
  launcher: FakeLauncher,
  clock: Clock,
  config: Record<string, unknown> = {},
) {
  const monitor = createRunMonitor({ store, launcher, clock, config });
  monitors.push(monitor);
  return monitor;
}

/** A SimulatedClock that remembers every delay it was asked to wait. */
function countingClock(): SimulatedClock & { delays: number[] } {
  const clock = Object.assign(newClock(), { delays: [] as number[] });
  const setTimeout = clock.setTimeout.bind(clock);
  clock.setTimeout = (fn: () => void, ms: number) => {
    clock.delays.push(ms);
    return setTimeout(fn, ms);
  };
  return clock;
}

describe('deadlines already past act at once', () => {
  async function overdueRuns(clock: SimulatedClock, store: MemoryRunStore) {
    const past = clock.now() - 1000 * SECOND;
    const notStarted = (await store.createRun({ at: past })).runId;
    const starting = (await store.createRun({ at: past })).runId;
    await store.transition(starting, { to: 'STARTING', at: past });
    const canceling = (await store.createRun({ at: past })).runId;
    await store.transition(canceling, { to: 'STARTING', at: past });
    await store.transition(canceling, { to: 'STARTED', at: past });
    await store.transition(canceling, {
      to: 'CANCELING',
      at: past,
      tags: { [TAGS.cancelReason]: 'USER_REQUEST' },
    });
    const started = (await store.createRun({ at: past, tags: { [TAGS.maxRuntime]: '600' } })).runId;
    await store.transition(started, { to: 'STARTING', at: past });
    await store.transition(started, { to: 'STARTED', at: past });
    return { notStarted, starting, canceling, started };
  }

  it('on a clock that has not moved, start() + settle() already shows every overdue run decided', async () => {
    const clock = countingClock();
    const store = new MemoryRunStore({ clock });
    const runs = await overdueRuns(clock, store);
    const launcher = new FakeLauncher();
    const monitor = monitorOn(store, launcher, clock);
    await monitor.start();
    await monitor.settle();

    const status = async (runId: string) => (await store.getRun(runId)) as RunRecord;
    expect((await status(runs.notStarted)).status).toBe('FAILURE');
    expect((await status(runs.notStarted)).tags[TAGS.failureReason]).toBe('START_TIMEOUT');
    expect((await status(runs.starting)).status).toBe('FAILURE');
    expect((await status(runs.starting)).tags[TAGS.failureReason]).toBe('START_TIMEOUT');
    expect((await status(runs.canceling)).status).toBe('CANCELED');
    expect(
      (await store.getEvents(runs.canceling, { types: ['RUN_CANCELED'] })).map((e) => e.message),
    ).toEqual([messages.cancelTimeout(180)]);
    expect((await status(runs.started)).status).toBe('FAILURE');
    expect((await status(runs.started)).tags[TAGS.failureReason]).toBe('MAX_RUNTIME_EXCEEDED');
    expect(launcher.calls.terminate.sort()).toEqual([runs.starting, runs.started].sort());
    // Nothing waited on a zero-delay timer: overdue runs arm no timer at all.
    expect(clock.delays.filter((ms) => ms === 0)).toEqual([]);
  });

  it('an update that moves a run into a state whose deadline has passed acts on it at once', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const launcher = new FakeLauncher();
    const monitor = monitorOn(store, launcher, clock, { startTimeoutSeconds: 60 });
    await monitor.start();
    const { runId } = await store.createRun({ at: clock.now() - 30 * SECOND });
    await store.transition(runId, { to: 'STARTING', at: clock.now() - 90 * SECOND });
    await monitor.settle();
    expect((await store.getRun(runId))?.status).toBe('FAILURE');
    expect(launcher.calls.terminate).toEqual([runId]);
  });

  it('a deadline exactly now is overdue (>=); one a millisecond ahead still waits for its timer', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const due = (await store.createRun({ at: clock.now() - 180 * SECOND })).runId;
    const ahead = (await store.createRun({ at: clock.now() - 180 * SECOND + 1 })).runId;
    const monitor = monitorOn(store, new FakeLauncher(), clock);
    await monitor.start();
    await monitor.settle();
    expect((await store.getRun(due))?.status).toBe('FAILURE');
    expect((await store.getRun(ahead))?.status).toBe('NOT_STARTED');
    clock.increment(1);
    await monitor.settle();
    expect((await store.getRun(ahead))?.status).toBe('FAILURE');
  });
});

describe('health polls at a fixed rate', () => {
  /** Starts of each poll's check of one STARTED run, each check taking `checkMs` of simulated time. */
  async function pollStarts(checkMs: number, polls: number): Promise<number[]> {
    const clock = newClock();
    const t0 = clock.now();
    const store = new MemoryRunStore({ clock });
    const { runId } = await store.createRun({});
    await store.transition(runId, { to: 'STARTING' });
    await store.transition(runId, { to: 'STARTED' });
    const starts: number[] = [];
    const launcher = new FakeLauncher({
      health: async (): Promise<HealthResult> => {
        starts.push(clock.now() - t0);
        await sleepOn(clock, checkMs).promise;
        return { status: 'RUNNING' };
      },
    });
    const monitor = monitorOn(store, launcher, clock, { pollIntervalSeconds: 10, launcherTimeoutSeconds: 0 });
    await monitor.start();
    await monitor.settle();
    while (starts.length < polls) {
      clock.increment(SECOND);
      await monitor.settle();
    }
    return starts;
  }

  it('the k-th poll starts at start + k × interval, however long each poll takes', async () => {
    expect(await pollStarts(3 * SECOND, 5)).toEqual([0, 10, 20, 30, 40].map((s) => s * SECOND));
  });

  it('a poll that overruns its interval is followed at once by the next; missed slots are skipped', async () => {
    // Each poll takes 25 s of a 10 s interval: it ends past its slot, and the next starts right then.
    expect(await pollStarts(25 * SECOND, 4)).toEqual([0, 25, 50, 75].map((s) => s * SECOND));
  });

  it('UNKNOWN tolerance acts after exactly tolerance + 1 intervals when checks take time', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const { runId } = await store.createRun({});
    await store.transition(runId, { to: 'STARTING' });
    await store.transition(runId, { to: 'STARTED' });
    const launcher = new FakeLauncher({
      supportsResume: false,
      health: async (): Promise<HealthResult> => {
        await sleepOn(clock, 2 * SECOND).promise;
        return { status: 'UNKNOWN', message: 'no answer' };
      },
    });
    const monitor = monitorOn(store, launcher, clock, { pollIntervalSeconds: 10, unknownHealthTolerance: 2 });
    await monitor.start();
    // Polls at 0, 10, 20 s; each result lands 2 s later. The third UNKNOWN (at 22 s) acts.
    for (let s = 0; s < 21; s++) {
      clock.increment(SECOND);
      await monitor.settle();
    }
    expect((await store.getRun(runId))?.status).toBe('STARTED');
    clock.increment(SECOND);
    await monitor.settle();
    expect((await store.getRun(runId))?.status).toBe('FAILURE');
  });
});

describe('a deadline is never enforced early', () => {
  it('a timer that fires before its due time on the clock is re-armed for the rest', async () => {
    // A clock whose timers fire 1 ms early, as Node's do when the event loop's cached time lags.
    const clock = newClock();
    const early: Clock = {
      now: () => clock.now(),
      setTimeout: (fn, ms) => clock.setTimeout(fn, ms > 1 ? ms - 1 : ms),
      clearTimeout: (id) => clock.clearTimeout(id as number),
    };
    const store = new MemoryRunStore({ clock });
    const { runId } = await store.createRun({});
    const monitor = monitorOn(store, new FakeLauncher(), early, { startTimeoutSeconds: 60 });
    await monitor.start();
    await monitor.settle();
    clock.increment(60 * SECOND - 1); // the early timer fires here, 1 ms before the deadline
    await monitor.settle();
    expect((await store.getRun(runId))?.status).toBe('NOT_STARTED');
    clock.increment(1);
    await monitor.settle();
    expect((await store.getRun(runId))?.status).toBe('FAILURE');
  });
});

describe("a run actor's own decision write is not routed back to it", () => {
  it('the FAILURE a start timeout writes reaches no actor through the feed; a worker’s status does', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const launcher = new FakeLauncher();
    // Every run.updated a run actor receives, by run id.
    const updates: string[] = [];
    const monitor = createRunMonitor({
      store,
      launcher,
      clock,
      config: { startTimeoutSeconds: 10, pollIntervalSeconds: 3600 },
      inspect: (event) => {
        if (event.type !== '@xstate.event' || event.event.type !== 'run.updated') return;
        const run = (event.event as { run?: RunRecord }).run;
        if ((event.actorRef as { logic?: { id?: string } }).logic?.id === 'run' && run)
          updates.push(`${run.runId}:${run.status}`);
      },
    });
    monitors.push(monitor);
    const timedOut = (await store.createRun({})).runId;
    await store.transition(timedOut, { to: 'STARTING' });
    const reported = (await store.createRun({})).runId;
    await store.transition(reported, { to: 'STARTING' });
    await monitor.start();
    await monitor.settle();

    await store.transition(reported, { to: 'STARTED' });
    await monitor.settle();
    clock.increment(10 * SECOND);
    await monitor.settle();

    expect((await store.getRun(timedOut))?.status).toBe('FAILURE');
    expect((await store.getRun(reported))?.status).toBe('STARTED');
    expect(updates).toEqual([`${reported}:STARTED`]);
  });
});
