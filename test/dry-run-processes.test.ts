// Dry run with real processes: run workers on the worker SDK, started by a ProcessRunLauncher and watched by
// a dry-run monitor in this process on real time. Every decision is written as a `Would have ` event; the
// runs stay STARTED, live workers stay alive, and the launcher is never asked to terminate or resume.
import { Registry } from 'prom-client';
import { afterEach, expect, it, vi } from 'vitest';
import { messages } from '../machines/messages.js';
import type { MonitorConfig } from '../src/core/config.js';
import { TAGS } from '../src/core/types.js';
import { PID_TAG } from '../src/launchers/process/process-launcher.js';
import { setupWorkers, type WorkerSetup } from './any-language.js';
import { isAlive, waitFor, workerCommand } from './processes.js';
import { parsePrometheusText, sampleValue } from './prometheus.js';

let s: WorkerSetup | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

/** A dry-run monitor with spies on the launcher calls it must never make, and its metrics. */
async function dryRun(config: Partial<MonitorConfig>) {
  const registry = new Registry();
  s = await setupWorkers({
    metrics: registry,
    config: { dryRun: true, pollIntervalSeconds: 0.5, ...config },
  });
  const terminate = vi.spyOn(s.launcher, 'terminate');
  const resume = vi.spyOn(s.launcher, 'resume');
  const metrics = async () => parsePrometheusText(await registry.metrics());
  const polls = async () => sampleValue(await metrics(), 'runwarden_health_poll_duration_seconds_count') ?? 0;
  return { s, terminate, resume, metrics, polls };
}

async function startedWorker(setup: WorkerSetup, argv: string[], tags: Record<string, string> = {}) {
  const runId = await setup.launch(argv, tags);
  const run = await waitFor(`run ${runId} to report STARTED`, async () => {
    const run = (await setup.store.getRun(runId))!;
    return run.status === 'STARTED' && run.tags[PID_TAG] !== undefined && run;
  });
  return { runId, pid: Number(run.tags[PID_TAG]) };
}

async function wouldHave(setup: WorkerSetup, runId: string): Promise<string[]> {
  const events = await setup.store.getEvents(runId, { types: ['ENGINE_EVENT'] });
  return events.map((e) => e.message).filter((m) => m.startsWith('Would have '));
}

/** Waits until `n` more health polls have finished: time for a monitor that acts to have acted. */
async function morePolls(polls: () => Promise<number>, n: number): Promise<void> {
  const target = (await polls()) + n;
  await waitFor(`${n} more health polls`, async () => (await polls()) >= target);
}

it('an overdue run stays STARTED with its worker alive and a "Would have " event; no terminate', async () => {
  const d = await dryRun({ maxResumeRunAttempts: 0 });
  const { runId, pid } = await startedWorker(d.s, workerCommand('hang-resumed'), {
    [TAGS.maxRuntime]: '1',
  });
  const events = await waitFor(`run ${runId}'s "Would have " event`, async () => {
    const found = await wouldHave(d.s, runId);
    return found.length > 0 && found;
  });
  expect(events).toEqual([messages.wouldHaveExceededMaxRuntime(1)]);
  await morePolls(d.polls, 3);
  const run = (await d.s.store.getRun(runId))!;
  expect(run.status).toBe('STARTED');
  expect(run.tags[TAGS.cancelReason]).toBeUndefined();
  expect(isAlive(pid)).toBe(true);
  // One decision, not one per poll.
  expect(await wouldHave(d.s, runId)).toHaveLength(1);
  expect(d.terminate).not.toHaveBeenCalled();
  expect(d.resume).not.toHaveBeenCalled();
  expect(
    sampleValue(await d.metrics(), 'runwarden_decisions_total', {
      action: 'terminate',
      reason: 'MAX_RUNTIME_EXCEEDED',
      dry_run: 'true',
    }),
  ).toBe(1);
});

it('a hung worker past its heartbeat timeout is left alive: "Would have terminated the run worker and …"', async () => {
  const d = await dryRun({ heartbeatTimeoutSeconds: 1.5, maxResumeRunAttempts: 1 });
  const { runId, pid } = await startedWorker(d.s, workerCommand('busy-forever'));
  const events = await waitFor(
    `run ${runId}'s "Would have " event`,
    async () => {
      const found = await wouldHave(d.s, runId);
      return found.length > 0 && found;
    },
    15_000,
  );
  expect(events).toEqual([
    messages.wouldHaveStoppedStalled(messages.stalled('HEARTBEAT_TIMEOUT', 1.5), true),
  ]);
  await morePolls(d.polls, 2);
  expect((await d.s.store.getRun(runId))?.status).toBe('STARTED');
  expect(isAlive(pid)).toBe(true);
  expect(d.terminate).not.toHaveBeenCalled();
  expect(d.resume).not.toHaveBeenCalled();
});

it('a SIGKILLed worker: "Would have resumed the run", no resume, the run stays STARTED', async () => {
  const d = await dryRun({ maxResumeRunAttempts: 1 });
  const { runId, pid } = await startedWorker(d.s, workerCommand('hang-resumed'));
  process.kill(-pid, 'SIGKILL');
  const events = await waitFor(`run ${runId}'s "Would have " event`, async () => {
    const found = await wouldHave(d.s, runId);
    return found.length > 0 && found;
  });
  // FAILED with the signal, or NOT_FOUND should the exit not have been reaped yet on a loaded machine.
  expect(events).toHaveLength(1);
  expect(events[0]).toMatch(
    /^Would have resumed the run with a new worker \(resume attempt 1\): Detected run worker status (FAILED|NOT_FOUND)/,
  );
  await morePolls(d.polls, 2);
  const run = (await d.s.store.getRun(runId))!;
  expect(run.status).toBe('STARTED');
  expect(run.resumeAttempts).toBe(0);
  expect(d.terminate).not.toHaveBeenCalled();
  expect(d.resume).not.toHaveBeenCalled();
});
