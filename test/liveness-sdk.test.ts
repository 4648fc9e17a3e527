// Heartbeat timeouts with real run-worker processes on the worker SDK: a worker whose event loop is blocked
// stops heartbeating and is treated as hung; a healthy one runs as long as it needs.
import { afterEach, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { TAGS } from '../src/core/types.js';
import { PID_TAG } from '../src/launchers/process/process-launcher.js';
import { setupWorkers, type WorkerSetup } from './any-language.js';
import { isAlive, waitFor, workerCommand } from './processes.js';

let s: WorkerSetup | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

it(
  'a worker that blocks its event loop after STARTED is terminated, resumed once, then failed HEARTBEAT_TIMEOUT',
  { timeout: 60_000 },
  async () => {
    s = await setupWorkers({ config: { heartbeatTimeoutSeconds: 1.5, maxResumeRunAttempts: 1 } });
    const runId = await s.launch(workerCommand('busy-forever'));
    expect((await s.store.getRun(runId))?.tags[TAGS.heartbeatSeconds]).toBe('0.5');
    const firstPid = Number(
      await waitFor('the first worker', async () => (await s!.store.getRun(runId))?.tags[PID_TAG]),
    );
    const run = await s.ended(runId, 40_000);
    expect(run.status).toBe('FAILURE');
    expect(run.tags[TAGS.failureReason]).toBe('HEARTBEAT_TIMEOUT');
    expect(run.resumeAttempts).toBe(1);
    const stalled = messages.stalled('HEARTBEAT_TIMEOUT', 1.5);
    const events = (await s.store.getEvents(runId)).map((e) => e.message);
    expect(events).toContain(messages.resumingStalled(stalled, runId));
    expect(events.at(-1)).toBe(messages.stalledNoAttemptsLeft(stalled, runId, 1));
    // Both workers were alive and busy; both were terminated.
    const lastPid = Number(run.tags[PID_TAG]);
    expect(lastPid).not.toBe(firstPid);
    await waitFor('both workers to be gone', () => !isAlive(firstPid) && !isAlive(lastPid), 10_000);
  },
);

it('a healthy worker running well past its heartbeat timeout ends SUCCESS', { timeout: 60_000 }, async () => {
  s = await setupWorkers({ config: { heartbeatTimeoutSeconds: 1.5, maxResumeRunAttempts: 0 } });
  const runId = await s.launch(workerCommand('healthy-for', '5000'));
  const run = await s.ended(runId, 30_000);
  expect(run.status).toBe('SUCCESS');
  expect((run.endedAt ?? 0) - (run.startedAt ?? 0)).toBeGreaterThan(4_500);
});
