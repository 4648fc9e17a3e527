// The monitor is a real `runwarden monitor` process (the built CLI) on a real SQLite file. It is killed with
// SIGKILL while runs are in flight and started again: the new process must enforce the deadlines stored
// timestamps imply (not restart them) and must not resume a run a second time.
import type { ChildProcess } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { PID_TAG } from '../src/launchers/process/process-launcher.js';
import { isTerminal, type RunRecord, TAGS } from '../src/core/types.js';
import { cliMonitorSetup, isAlive, killWorkers, waitFor } from './processes.js';

// The start and cancel deadlines pass while the monitor is down; the max-runtime deadline falls after the
// restart. Either way a correct monitor acts at the stored deadline, a naive one a full timeout after its start.
const START_TIMEOUT = 4;
const CANCEL_TIMEOUT = 3;
const MAX_RUNTIME = 6;

// This process launches and cancels runs the way `runwarden launch` / `runwarden cancel` do.
const {
  dir,
  store,
  control,
  monitors,
  startMonitor: startCliMonitor,
  launch,
} = cliMonitorSetup(
  'runwarden-restart-',
  `  start_timeout_seconds: ${START_TIMEOUT}
  cancel_timeout_seconds: ${CANCEL_TIMEOUT}
  poll_interval_seconds: 0.2
  feed_poll_interval_seconds: 0.1
  max_resume_run_attempts: 3
`,
  START_TIMEOUT,
);

afterAll(async () => {
  for (const child of monitors) child.kill('SIGKILL');
  await killWorkers(store);
  await store.close();
  dir.remove();
});

/** Starts `runwarden monitor` and resolves once it is watching; `readyAt` is when it logged so. */
async function startMonitor(): Promise<{ child: ChildProcess; output: () => string; readyAt: number }> {
  const { child, output, running } = await startCliMonitor([], 10_000);
  return { child, output, readyAt: Date.parse(running.time) };
}

const getRun = async (runId: string) => (await store.getRun(runId))!;
const resumeLaunches = async (runId: string) =>
  (await store.getEvents(runId)).filter((e) => e.message === messages.launchingResumeWorker).length;

function ended(runId: string): Promise<RunRecord> {
  return waitFor(
    `run ${runId} to end`,
    async () => {
      const run = await getRun(runId);
      return isTerminal(run.status) && run;
    },
    15_000,
  );
}

it('a monitor killed with SIGKILL and restarted keeps every deadline and resumes nothing twice', async () => {
  const first = await startMonitor();

  const resumedBefore = await launch('hang-resumed');
  const crashesWhileDown = await launch('steps');
  const canceledWhileDown = await launch('stubborn');
  for (const runId of [resumedBefore, crashesWhileDown, canceledWhileDown]) {
    await waitFor(`run ${runId} to start`, async () => (await getRun(runId)).status === 'STARTED');
  }

  // A crash the first monitor handles: it resumes the run once.
  process.kill(Number((await getRun(resumedBefore)).tags[PID_TAG]), 'SIGKILL');
  await waitFor('the first monitor to resume the crashed run', async () =>
    (await store.getEvents(resumedBefore)).some((e) => e.message === 'Run worker resumed (attempt 1)'),
  );
  const resumedPid = Number((await getRun(resumedBefore)).tags[PID_TAG]);

  // Runs with a start deadline and a max-runtime deadline.
  const neverStarts = await launch('never-starts');
  const overRuntime = await launch('long', { [TAGS.maxRuntime]: String(MAX_RUNTIME) });
  await waitFor(`run ${overRuntime} to start`, async () => (await getRun(overRuntime)).status === 'STARTED');

  first.child.kill('SIGKILL');
  await new Promise((resolve) => first.child.once('exit', resolve));

  // While no monitor runs: a worker crashes, and a run is canceled (its worker ignores SIGTERM).
  process.kill(Number((await getRun(crashesWhileDown)).tags[PID_TAG]), 'SIGKILL');
  const canceling = await control.cancel(canceledWhileDown);
  expect(canceling.status).toBe('CANCELING');
  // Let the start and cancel deadlines pass while the monitor is down.
  const launchedAt = (await getRun(neverStarts)).launchedAt!;
  const cancelingAt = (await getRun(canceledWhileDown)).cancelingAt!;
  await waitFor(
    'the start and cancel deadlines to pass',
    () => Date.now() > Math.max(launchedAt + START_TIMEOUT * 1000, cancelingAt + CANCEL_TIMEOUT * 1000) + 200,
    10_000,
  );
  for (const runId of [neverStarts, overRuntime, canceledWhileDown]) {
    expect(isTerminal((await getRun(runId)).status)).toBe(false);
  }

  const second = await startMonitor();

  // Deadlines that passed while the monitor was down are enforced as soon as it is up again, not a full
  // timeout after its start (which a monitor that re-armed its timers from "now" would do). Measured from
  // when it reported ready, so a slow process start on a busy machine does not count.
  const timedOut = await ended(neverStarts);
  expect(timedOut.status).toBe('FAILURE');
  expect(timedOut.tags[TAGS.failureReason]).toBe('START_TIMEOUT');
  expect(timedOut.endedAt! - timedOut.launchedAt!).toBeGreaterThanOrEqual(START_TIMEOUT * 1000);
  expect(timedOut.endedAt! - second.readyAt).toBeLessThan(START_TIMEOUT * 1000 - 2000);

  // The cancel deadline counts from the stored cancelingAt, which no monitor saw being written.
  const canceled = await ended(canceledWhileDown);
  expect(canceled.status).toBe('CANCELED');
  expect((await store.getEvents(canceledWhileDown)).at(-1)?.message).toBe(
    messages.cancelTimeout(CANCEL_TIMEOUT),
  );
  expect(canceled.endedAt! - canceled.cancelingAt!).toBeGreaterThanOrEqual(CANCEL_TIMEOUT * 1000);
  expect(canceled.endedAt! - second.readyAt).toBeLessThan(CANCEL_TIMEOUT * 1000 - 1500);

  // A deadline still ahead at the restart fires when it is due: max runtime counts from the stored startedAt.
  const tooLong = await ended(overRuntime);
  expect(tooLong.status).toBe('FAILURE');
  expect(tooLong.tags[TAGS.failureReason]).toBe('MAX_RUNTIME_EXCEEDED');
  expect(tooLong.cancelingAt! - tooLong.startedAt!).toBeGreaterThanOrEqual(MAX_RUNTIME * 1000);
  expect(second.readyAt - tooLong.startedAt!).toBeGreaterThan(2500);
  // Before the earliest moment a monitor that re-armed from its own start could act: that is the property,
  // and it leaves room for a loaded machine (a fixed 1.5 s of slack once failed under a parallel benchmark).
  expect(tooLong.cancelingAt!).toBeLessThan(second.readyAt + MAX_RUNTIME * 1000);

  // The crash during the downtime is found by the restarted monitor and resumed exactly once.
  const recovered = await ended(crashesWhileDown);
  expect(recovered.status).toBe('SUCCESS');
  expect(recovered.resumeAttempts).toBe(1);
  expect(await resumeLaunches(crashesWhileDown)).toBe(1);

  // The run the first monitor resumed is not resumed again: its second worker is alive and still the one.
  await waitFor(
    'several health polls of the restarted monitor',
    () => Date.now() > second.readyAt + 1500,
    5000,
  );
  const stillRunning = await getRun(resumedBefore);
  expect(stillRunning.status).toBe('STARTED');
  expect(stillRunning.resumeAttempts).toBe(1);
  expect(await resumeLaunches(resumedBefore)).toBe(1);
  expect(Number(stillRunning.tags[PID_TAG])).toBe(resumedPid);
  expect(isAlive(resumedPid)).toBe(true);

  // SIGTERM stops the daemon cleanly.
  const exit = new Promise<number | null>((resolve) => second.child.once('exit', (code) => resolve(code)));
  second.child.kill('SIGTERM');
  expect(await exit).toBe(0);
  expect(second.output()).toContain('runwarden monitor stopped.');
});
