// What a host embedding the monitor learns: monitor.subscribe (every event of every run, in seq order, its
// own writes at once and other processes' through the feed) and monitor.waitForRun.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RunNotFoundError } from '../src/core/errors.js';
import { type RunEvent, TAGS } from '../src/core/types.js';
import { ProcessRunLauncher, COMMAND_TAG } from '../src/launchers/process/process-launcher.js';
import { createRunMonitor, type RunMonitor } from '../src/monitor/monitor.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { FakeLauncher } from '../src/testing/index.js';
import { newClock, SECOND } from './harness.js';
import { killWorkers, tempDir, workerCommand } from './processes.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function watched(monitor: RunMonitor): RunMonitor {
  cleanups.push(() => monitor.stop());
  return monitor;
}

describe('monitor.subscribe', () => {
  it('delivers the monitor’s own writes at once and a worker’s in the same order as the store, once each', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const monitor = watched(createRunMonitor({ store, launcher: new FakeLauncher(), clock }));
    const seen: RunEvent[] = [];
    monitor.subscribe((event) => seen.push(event));
    await monitor.start();
    const { runId } = await store.createRun({ tags: { [TAGS.maxRuntime]: '60' } });
    await monitor.launch(runId);
    await monitor.settle();
    expect(seen.map((e) => e.type)).toEqual(['RUN_STARTING']);
    await store.transition(runId, { to: 'STARTED' });
    await monitor.settle();
    clock.increment(60 * SECOND); // max runtime: CANCELING, terminate, FAILURE
    await monitor.settle();
    expect(seen.map((e) => e.type)).toEqual(['RUN_STARTING', 'RUN_START', 'RUN_CANCELING', 'RUN_FAILURE']);
    const seqs = seen.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(seen.every((e) => e.runId === runId)).toBe(true);
  });

  it('delivers other processes’ writes through the feed, in seq order with its own', async () => {
    const dir = tempDir('runwarden-host-events-');
    cleanups.push(() => dir.remove());
    const path = join(dir.path, 'runs.db');
    const mine = new SqliteRunStore({ path });
    const theirs = new SqliteRunStore({ path }); // another process's connection: its writes reach only the tail
    cleanups.push(() => theirs.close());
    cleanups.push(() => mine.close());
    const clock = newClock();
    const monitor = watched(
      createRunMonitor({
        store: mine,
        launcher: new FakeLauncher(),
        clock,
        config: { feedPollIntervalSeconds: 1 },
      }),
    );
    const seen: RunEvent[] = [];
    await monitor.start();
    const unsubscribe = monitor.subscribe((event) => seen.push(event));
    const a = await theirs.createRun({});
    await theirs.transition(a.runId, { to: 'STARTING' });
    const b = await mine.createRun({});
    await monitor.launch(b.runId); // own write, seq after theirs: delivered at once, theirs first
    await monitor.settle();
    expect(seen.map((e) => [e.runId, e.type])).toEqual([
      [a.runId, 'RUN_STARTING'],
      [b.runId, 'RUN_STARTING'],
    ]);
    await theirs.transition(a.runId, { to: 'STARTED' });
    clock.increment(SECOND); // the feed's next read of the tail
    await monitor.settle();
    expect(seen.map((e) => e.type)).toEqual(['RUN_STARTING', 'RUN_STARTING', 'RUN_START']);
    unsubscribe();
    await theirs.transition(a.runId, { to: 'SUCCESS' });
    clock.increment(SECOND);
    await monitor.settle();
    expect(seen).toHaveLength(3);
  });

  it('a listener that throws does not stop the others or the monitor', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const monitor = watched(createRunMonitor({ store, launcher: new FakeLauncher(), clock }));
    const seen: string[] = [];
    monitor.subscribe(() => {
      throw new Error('listener bug');
    });
    monitor.subscribe((event) => seen.push(event.type));
    await monitor.start();
    const { runId } = await store.createRun({});
    await monitor.launch(runId);
    await monitor.cancel(runId);
    await monitor.settle();
    expect(seen).toEqual(['RUN_STARTING', 'RUN_CANCELING']);
  });
});

describe('monitor.waitForRun', () => {
  it('resolves at once for a run that has ended, and with the terminal record when it ends', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const monitor = watched(createRunMonitor({ store, launcher: new FakeLauncher(), clock }));
    await monitor.start();
    const done = await store.createRun({});
    await store.transition(done.runId, { to: 'CANCELED' });
    expect((await monitor.waitForRun(done.runId)).status).toBe('CANCELED');

    const { runId } = await store.createRun({});
    await monitor.launch(runId);
    let settled = false;
    const waiting = monitor.waitForRun(runId).finally(() => {
      settled = true;
    });
    await store.transition(runId, { to: 'STARTED' });
    await monitor.settle();
    expect(settled).toBe(false);
    await store.transition(runId, { to: 'SUCCESS' });
    const run = await waiting;
    expect(run.status).toBe('SUCCESS');
    expect(run.endedAt).toBeDefined();
  });

  it('rejects on abort and for an unknown run', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const monitor = watched(createRunMonitor({ store, launcher: new FakeLauncher(), clock }));
    await monitor.start();
    await expect(monitor.waitForRun('no-such-run')).rejects.toBeInstanceOf(RunNotFoundError);
    const { runId } = await store.createRun({});
    const controller = new AbortController();
    const waiting = monitor.waitForRun(runId, { signal: controller.signal });
    controller.abort(new Error('host shutting down'));
    await expect(waiting).rejects.toThrow('host shutting down');
    await expect(monitor.waitForRun(runId, { signal: controller.signal })).rejects.toThrow(
      'host shutting down',
    );
  });

  it('a real worker process’s SUCCESS reaches subscribe and waitForRun', async () => {
    const dir = tempDir('runwarden-host-worker-');
    cleanups.push(() => dir.remove());
    const path = join(dir.path, 'runs.db');
    const store = new SqliteRunStore({ path });
    cleanups.push(() => store.close());
    cleanups.push(() => killWorkers(store));
    const launcher = new ProcessRunLauncher({
      store,
      command: ['false'],
      logDir: join(dir.path, 'logs'),
      storeEnv: { RUNWARDEN_STORE: `sqlite:${path}` },
    });
    const monitor = watched(
      createRunMonitor({
        store,
        launcher,
        config: { feedPollIntervalSeconds: 0.05, startTimeoutSeconds: 30 },
      }),
    );
    const seen: RunEvent[] = [];
    monitor.subscribe((event) => seen.push(event));
    await monitor.start();
    const run = await store.createRun({ tags: { [COMMAND_TAG]: JSON.stringify(workerCommand('succeed')) } });
    await monitor.launch(run.runId);
    const ended = await monitor.waitForRun(run.runId, { signal: AbortSignal.timeout(15_000) });
    expect(ended.status).toBe('SUCCESS');
    // The worker wrote from its own process: its events reached the listener through the feed, in order.
    const types = seen.filter((e) => e.runId === run.runId && e.type !== 'ENGINE_EVENT').map((e) => e.type);
    expect(types).toEqual(['RUN_STARTING', 'RUN_START', 'RUN_SUCCESS']);
  });
});
