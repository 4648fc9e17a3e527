// Workers that would outlive their run: a monitor that dies between failing a run (start timeout) and
// terminating its worker, and a launch that finishes after the run was already ended. Simulated time.
import { afterEach, describe, expect, it } from 'vitest';
import type { SimulatedClock } from 'xstate';
import { sleepOn } from '../src/core/clock.js';
import { type RunRecord, TAGS, type TransitionChange } from '../src/core/types.js';
import { createRunMonitor, type RunMonitor } from '../src/monitor/monitor.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { FakeLauncher } from '../src/testing/index.js';
import { newClock, SECOND } from './harness.js';

const monitors: RunMonitor[] = [];
afterEach(async () => {
  for (const m of monitors.splice(0)) await m.stop();
});

/** A store that runs `after` once the first write of FAILURE has been stored, before anyone sees it. */
class FailureHookStore extends MemoryRunStore {
  after: (() => void) | undefined;
  override async transition(runId: string, change: TransitionChange): Promise<RunRecord | undefined> {
    const written = await super.transition(runId, change);
    if (written && change.to === 'FAILURE' && this.after) {
      const after = this.after;
      this.after = undefined;
      after();
    }
    return written;
  }
}

/** A monitor with a 60 s start timeout, and a run it launched, left until the timeout has fired. */
async function timedOutRun(store: MemoryRunStore, launcher: FakeLauncher, clock: SimulatedClock) {
  const monitor = createRunMonitor({ store, launcher, clock, config: { startTimeoutSeconds: 60 } });
  monitors.push(monitor);
  await monitor.start();
  const { runId } = await store.createRun({});
  await monitor.launch(runId);
  clock.increment(60 * SECOND);
  await monitor.settle();
  return { monitor, runId };
}

describe('the start-timeout crash window', () => {
  it('a monitor stopped right after writing FAILURE leaves the termination journaled; the next one finishes it', async () => {
    const clock = newClock();
    const store = new FailureHookStore({ clock });
    const launcher = new FakeLauncher();
    const first = createRunMonitor({ store, launcher, clock, config: { startTimeoutSeconds: 60 } });
    monitors.push(first);
    await first.start();
    const { runId } = await store.createRun({});
    await first.launch(runId);
    // The monitor "dies" exactly between the FAILURE write and the terminate call.
    store.after = () => void first.stop();
    clock.increment(60 * SECOND);
    await first.settle();

    const failed = (await store.getRun(runId)) as RunRecord;
    expect(failed.status).toBe('FAILURE');
    expect(failed.tags[TAGS.failureReason]).toBe('START_TIMEOUT');
    expect(failed.tags[TAGS.terminatePending]).toBe('true');
    expect(launcher.calls.terminate).toEqual([]);

    const second = createRunMonitor({ store, launcher, clock, config: { startTimeoutSeconds: 60 } });
    monitors.push(second);
    await second.start();
    await second.settle();
    expect(launcher.calls.terminate).toEqual([runId]);
    expect((await store.getRun(runId))?.tags[TAGS.terminatePending]).toBe('false');
  });

  it('a monitor stopped while the debug info is out writes nothing and terminates nothing when it comes', async () => {
    const clock = newClock();
    // Without leases (a store of the host's own that has none), nothing in the store refuses a late write.
    const store = new MemoryRunStore({ clock });
    Object.assign(store, { renewLeases: undefined, releaseLeases: undefined, listMonitors: undefined });
    let answer!: (info: string) => void;
    const launcher = new FakeLauncher();
    launcher.debugInfo = (run) => {
      launcher.calls.debugInfo.push(run.runId);
      return new Promise((resolve) => {
        answer = resolve;
      });
    };
    const { monitor, runId } = await timedOutRun(store, launcher, clock);
    expect(launcher.calls.debugInfo).toEqual([runId]);

    await monitor.stop();
    answer('pod pending');
    // Everything the answer could set off happens in microtasks and store calls: two loop turns suffice.
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect((await store.getRun(runId))?.status).toBe('STARTING');
    expect(launcher.calls.terminate).toEqual([]);
  });

  it('a termination the launcher could not finish is retried by every poll until it is done', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const launcher = new FakeLauncher({ terminate: false });
    const monitor = createRunMonitor({
      store,
      launcher,
      clock,
      config: { startTimeoutSeconds: 60, pollIntervalSeconds: 45 },
    });
    monitors.push(monitor);
    await monitor.start();
    const { runId } = await store.createRun({});
    await monitor.launch(runId);
    for (const ms of [45, 15]) {
      // The poll at 45 s, then the start timeout at 60 s: FAILURE, and a terminate that reports the worker
      // still there. (Stepped, so the poll at 45 s runs before the run has failed.)
      clock.increment(ms * SECOND);
      await monitor.settle();
    }
    expect(launcher.calls.terminate).toEqual([runId]);
    expect((await store.getRun(runId))?.tags[TAGS.terminatePending]).toBe('true');

    clock.increment(30 * SECOND); // the poll at 90 s tries again (polls at 0, 45, 90, … s)
    await monitor.settle();
    expect(launcher.calls.terminate).toEqual([runId, runId]);
    launcher.setTerminate(true);
    clock.increment(45 * SECOND);
    await monitor.settle();
    expect(launcher.calls.terminate).toEqual([runId, runId, runId]);
    expect((await store.getRun(runId))?.tags[TAGS.terminatePending]).toBe('false');
    clock.increment(45 * SECOND); // done: no more attempts
    await monitor.settle();
    expect(launcher.calls.terminate).toHaveLength(3);
  });

  it('a normal start timeout clears the journal once the worker is terminated; without terminate none is written', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const launcher = new FakeLauncher();
    const { monitor, runId } = await timedOutRun(store, launcher, clock);
    expect((await store.getRun(runId))?.tags[TAGS.terminatePending]).toBe('false');
    await monitor.stop();

    const quiet = createRunMonitor({
      store,
      launcher,
      clock,
      config: { startTimeoutSeconds: 60, terminateOnStartTimeout: false },
    });
    monitors.push(quiet);
    const other = await store.createRun({});
    await quiet.launch(other.runId);
    await quiet.start();
    clock.increment(60 * SECOND);
    await quiet.settle();
    expect((await store.getRun(other.runId))?.status).toBe('FAILURE');
    expect((await store.getRun(other.runId))?.tags[TAGS.terminatePending]).toBeUndefined();
  });
});

describe('one termination per worker', () => {
  it('a start timeout that falls on a poll signals the worker once: the poll joins the termination in flight', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const launcher = new SlowTerminateLauncher();
    const config = { startTimeoutSeconds: 60, pollIntervalSeconds: 60 };
    const monitor = createRunMonitor({ store, launcher, clock, config });
    monitors.push(monitor);
    await monitor.start();
    const { runId } = await store.createRun({});
    await monitor.launch(runId);
    await monitor.settle();
    for (let poll = 0; poll < 2; poll++) {
      clock.increment(60 * SECOND); // the deadline and the poll, due at the same instant
      await launcher.finishTerminations();
      await monitor.settle();
    }
    expect(launcher.calls.terminate).toEqual([runId]);
    expect((await store.getRun(runId))?.tags[TAGS.terminatePending]).toBe('false');
  });
});

/** terminate() stays in flight across several turns of the event loop, as a real process launcher's does. */
class SlowTerminateLauncher extends FakeLauncher {
  private waiting: (() => void)[] = [];
  override async terminate(run: RunRecord): Promise<boolean> {
    this.calls.terminate.push(run.runId);
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    return true;
  }
  /** Lets both the actor and the poll reach their terminate call, then finishes every one in flight. */
  async finishTerminations(): Promise<void> {
    for (let turn = 0; turn < 20; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
      for (const finish of this.waiting.splice(0)) finish();
    }
  }
}

describe('looking for journaled terminations costs nothing when there are none', () => {
  it('a poll lists failed runs only at start and after a terminate that did not confirm the worker gone', async () => {
    const clock = newClock();
    class CountingStore extends MemoryRunStore {
      journalReads = 0;
      override async listRuns(filter: Parameters<MemoryRunStore['listRuns']>[0] = {}) {
        if (filter.tags?.[TAGS.terminatePending]) this.journalReads += 1;
        return super.listRuns(filter);
      }
    }
    const store = new CountingStore({ clock });
    const launcher = new FakeLauncher();
    const monitor = createRunMonitor({ store, launcher, clock, config: { pollIntervalSeconds: 10 } });
    monitors.push(monitor);
    await monitor.start();
    await monitor.settle();
    const afterStart = store.journalReads;
    expect(afterStart).toBeGreaterThan(0);
    for (let i = 0; i < 3; i++) {
      clock.increment(10 * SECOND);
      await monitor.settle();
    }
    expect(store.journalReads).toBe(afterStart);

    // A start timeout whose terminate fails: the next poll looks again, and finds it.
    launcher.setTerminate(false);
    const { runId } = await store.createRun({});
    await monitor.launch(runId);
    clock.increment(180 * SECOND);
    await monitor.settle();
    launcher.setTerminate(true);
    clock.increment(10 * SECOND);
    await monitor.settle();
    expect(store.journalReads).toBeGreaterThan(afterStart);
    expect((await store.getRun(runId))?.tags[TAGS.terminatePending]).toBe('false');
  });
});

describe('a worker launched for a run that already ended', () => {
  it('a launch slower than the start timeout: the worker it started is terminated once launch returns', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    class SlowLauncher extends FakeLauncher {
      override async launch(run: RunRecord): Promise<void> {
        await super.launch(run);
        await sleepOn(clock, 90 * SECOND).promise;
      }
    }
    const launcher = new SlowLauncher();
    const monitor = createRunMonitor({
      store,
      launcher,
      clock,
      config: { startTimeoutSeconds: 60, launcherTimeoutSeconds: 0 },
    });
    monitors.push(monitor);
    await monitor.start();
    const { runId } = await store.createRun({});
    const launching = monitor.launch(runId);
    await monitor.settle();
    clock.increment(60 * SECOND); // the start timeout fails the run; its terminate finds no worker yet
    await monitor.settle();
    expect((await store.getRun(runId))?.status).toBe('FAILURE');
    expect(launcher.calls.terminate).toEqual([runId]);
    clock.increment(30 * SECOND); // the launch returns: its worker exists now, and must not outlive the run
    const launched = await launching;
    expect(launched.status).toBe('FAILURE');
    expect(launcher.calls.terminate).toEqual([runId, runId]);
  });

  it('a worker that already reported SUCCESS is left alone', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    class FastWorkerLauncher extends FakeLauncher {
      override async launch(run: RunRecord): Promise<void> {
        await super.launch(run);
        await store.transition(run.runId, { to: 'STARTED' });
        await store.transition(run.runId, { to: 'SUCCESS' });
      }
    }
    const launcher = new FastWorkerLauncher();
    const monitor = createRunMonitor({ store, launcher, clock });
    monitors.push(monitor);
    const { runId } = await store.createRun({});
    expect((await monitor.launch(runId)).status).toBe('SUCCESS');
    expect(launcher.calls.terminate).toEqual([]);
  });
});
