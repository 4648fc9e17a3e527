// Real run-worker processes (test/fixtures/run-worker.mjs on the built worker SDK) and a real SQLite file,
// watched by a monitor in this process with short real timeouts. Outcomes are polled for with bounded waits.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import type { MonitorConfig } from '../src/core/config.js';
import { createRunMonitor, type RunMonitor } from '../src/monitor/monitor.js';
import { COMMAND_TAG, PID_TAG, ProcessRunLauncher } from '../src/launchers/process/process-launcher.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { isTerminal, type RunEvent, type RunRecord, TAGS } from '../src/core/types.js';
import type { StepEventData } from '../src/worker/worker.js';
import { isAlive, killWorkers, sqliteProcessLauncher, tempDir, waitFor, workerCommand } from './processes.js';

const BASE_CONFIG: Partial<MonitorConfig> = {
  startTimeoutSeconds: 10,
  cancelTimeoutSeconds: 10,
  pollIntervalSeconds: 0.2,
  feedPollIntervalSeconds: 0.1,
  maxResumeRunAttempts: 2,
  launcherTimeoutSeconds: 10,
};

interface Setup {
  dir: ReturnType<typeof tempDir>;
  dbPath: string;
  store: SqliteRunStore;
  launcher: ProcessRunLauncher;
  monitor: RunMonitor;
}

let current: Setup | undefined;

afterEach(async () => {
  if (!current) return;
  const { monitor, store, dir } = current;
  current = undefined;
  await monitor.stop();
  await killWorkers(store);
  await store.close();
  dir.remove();
});

async function setup(config: Partial<MonitorConfig> = {}): Promise<Setup> {
  const dir = tempDir('runwarden-workers-');
  const dbPath = join(dir.path, 'runs.db');
  const store = new SqliteRunStore({ path: dbPath });
  const launcher = sqliteProcessLauncher(store, dir.path, dbPath);
  const monitor = createRunMonitor({ store, launcher, config: { ...BASE_CONFIG, ...config } });
  await monitor.start();
  current = { dir, dbPath, store, launcher, monitor };
  return current;
}

async function launch(s: Setup, mode: string, tags: Record<string, string> = {}, ...args: string[]) {
  const run = await s.store.createRun({
    tags: { ...tags, [COMMAND_TAG]: JSON.stringify(workerCommand(mode, ...args)) },
  });
  await s.monitor.launch(run.runId);
  return run.runId;
}

const getRun = async (s: Setup, runId: string) => (await s.store.getRun(runId))!;

function ended(s: Setup, runId: string, timeoutMs = 10_000): Promise<RunRecord> {
  return waitFor(
    `run ${runId} to end`,
    async () => {
      const run = await getRun(s, runId);
      return isTerminal(run.status) && run;
    },
    timeoutMs,
  );
}

const stepsWith = (events: RunEvent[], status: StepEventData['status']) =>
  events
    .map((e) => e.data as Partial<StepEventData> | undefined)
    .filter((d) => d?.status === status)
    .map((d) => d?.step);

describe('run workers in real processes', () => {
  it('a worker killed with SIGKILL is detected and resumed; the new worker skips finished steps and succeeds', async () => {
    const s = await setup();
    const runId = await launch(s, 'steps');
    await waitFor('step c to start', async () =>
      stepsWith(await s.store.getEvents(runId), 'started').includes('c'),
    );
    const killedPid = Number((await getRun(s, runId)).tags[PID_TAG]);
    process.kill(killedPid, 'SIGKILL');

    const run = await ended(s, runId);
    expect(run.status).toBe('SUCCESS');
    expect(run.resumeAttempts).toBe(1);
    expect(Number(run.tags[PID_TAG])).not.toBe(killedPid);

    const events = await s.store.getEvents(runId);
    const messagesOf = events.map((e) => e.message);
    expect(messagesOf).toContain(
      `${messages.workerStatus({ status: 'FAILED', message: 'Run worker was killed by signal SIGKILL' })} Resuming run ${runId} with a new worker.`,
    );
    expect(messagesOf).toContain('Run worker resumed (attempt 1)');
    expect(events.filter((e) => e.type === 'RUN_START')).toHaveLength(1);
    // a and b ran once, in the first worker; the resumed worker skipped them and ran c.
    expect(stepsWith(events, 'completed')).toEqual(['a', 'b', 'c']);
    expect(stepsWith(events, 'skipped')).toEqual(['a', 'b']);
    // c used a's recorded result (41 + 1), which the resumed worker got from the event log.
    expect(events.find((e) => e.message === 'result')?.data).toEqual({ c: 42 });
  });

  it('a worker that ignores SIGTERM ends CANCELED by the cancel timeout', async () => {
    // Longer than terminate's grace + SIGKILL wait even under load, so cancel() returns while CANCELING.
    const s = await setup({ cancelTimeoutSeconds: 3 });
    const runId = await launch(s, 'stubborn');
    await waitFor(
      'the work step',
      async () => stepsWith(await s.store.getEvents(runId), 'started').length > 0,
    );
    const pid = Number((await getRun(s, runId)).tags[PID_TAG]);

    const canceling = await s.monitor.cancel(runId);
    // terminate: SIGTERM (ignored), SIGKILL after the 300 ms grace.
    expect(canceling.status).toBe('CANCELING');
    expect(isAlive(pid)).toBe(false);

    const run = await ended(s, runId);
    expect(run.status).toBe('CANCELED');
    expect(run.endedAt! - run.cancelingAt!).toBeGreaterThanOrEqual(3000);
    const events = await s.store.getEvents(runId);
    expect(events.at(-1)).toMatchObject({ type: 'RUN_CANCELED', message: messages.cancelTimeout(3) });
    expect(readFileSync(s.launcher.logPath(runId), 'utf8')).toContain('ignoring SIGTERM');
  });

  it('a worker canceled by the user lets its step clean up and reports CANCELED itself', async () => {
    const s = await setup();
    const runId = await launch(s, 'cancelable');
    await waitFor(
      'the work step',
      async () => stepsWith(await s.store.getEvents(runId), 'started').length > 0,
    );

    const run = await s.monitor.cancel(runId);
    expect(run.status).toBe('CANCELED');
    expect(run.tags[TAGS.cancelReason]).toBe('USER_REQUEST');
    const events = await s.store.getEvents(runId);
    expect(events.find((e) => e.message === 'cleaned up')?.data).toEqual({ aborted: true });
    expect(stepsWith(events, 'canceled')).toEqual(['work']);
    expect(events.at(-1)?.message).toMatch(
      /^Run canceled: its worker \(pid \d+\) stopped after the cancel request\.$/,
    );
  });

  it('a worker over its max runtime leaves the outcome to the monitor: FAILURE, MAX_RUNTIME_EXCEEDED', async () => {
    const s = await setup();
    const runId = await launch(s, 'long', { [TAGS.maxRuntime]: '1' });
    const run = await ended(s, runId);
    expect(run.status).toBe('FAILURE');
    expect(run.tags[TAGS.failureReason]).toBe('MAX_RUNTIME_EXCEEDED');
    expect(run.cancelingAt! - run.startedAt!).toBeGreaterThanOrEqual(1000);
    const events = await s.store.getEvents(runId);
    expect(events.map((e) => e.type)).not.toContain('RUN_CANCELED');
    expect(events.at(-1)?.message).toBe(messages.maxRuntimeExceeded(1));
    expect(isAlive(Number(run.tags[PID_TAG]))).toBe(false);
  });

  it('a worker writing to the same SQLite file concurrently with the monitor loses no event', async () => {
    const s = await setup();
    const n = 300;
    // A second connection following the tail, as a monitor in another process would.
    const follower = new SqliteRunStore({ path: s.dbPath });
    const seen: number[] = [];
    let following = true;
    const follow = (async () => {
      let last = 0;
      while (following) {
        for (const event of await follower.readEventsAfter(last, 1000)) {
          seen.push(event.seq);
          last = event.seq;
        }
        await sleep(5);
      }
      for (const event of await follower.readEventsAfter(last, 100_000)) seen.push(event.seq);
    })();

    const runId = await launch(s, 'writer', {}, String(n), 'handshake');
    await waitFor(
      'the worker to write',
      async () => (await s.store.getEvents(runId, { types: ['ENGINE_EVENT'] })).length > 0,
      10_000,
      2,
    );
    // This process writes too, through the monitor's own store connection, while the worker writes (its
    // second half waits for our first event).
    for (let i = 0; i < n; i++) {
      await s.store.appendEvent(runId, {
        type: 'ENGINE_EVENT',
        message: `monitor ${i}`,
        data: { from: 'monitor', i },
      });
      if (i % 5 === 4) await sleep(1);
    }
    const run = await ended(s, runId);
    following = false;
    await follow;
    await follower.close();

    expect(run.status).toBe('SUCCESS');
    const events = await s.store.getEvents(runId);
    const from = (who: string) =>
      events
        .map((e) => e.data as { from?: string; i?: number } | undefined)
        .filter((d) => d?.from === who)
        .map((d) => d?.i);
    const all = Array.from({ length: n }, (_, i) => i);
    expect(from('worker')).toEqual(all);
    expect(from('monitor')).toEqual(all);
    // Both writers really interleaved.
    const firstMonitor = events.findIndex((e) => (e.data as { from?: string })?.from === 'monitor');
    const lastWorker = events.findLastIndex((e) => (e.data as { from?: string })?.from === 'worker');
    expect(firstMonitor).toBeLessThan(lastWorker);
    // Seqs strictly increase, and the follower saw every event of the file, in order.
    const seqs = (await s.store.readEventsAfter(0, 100_000)).map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(seen).toEqual(seqs);
  });
});
