// Liveness beyond "the process exists": a worker that is alive but silent — no heartbeat, or no progress —
// past its timeout is terminated, then resumed while attempts are left, else failed. Simulated time.
import { describe, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { TAGS } from '../src/core/types.js';
import { SECOND, stoppedAfterEach } from './harness.js';

const harness = stoppedAfterEach();

const stalled = (reason: 'HEARTBEAT_TIMEOUT' | 'PROGRESS_TIMEOUT', s: number) => messages.stalled(reason, s);

describe('heartbeat timeout', () => {
  it('a silent worker is terminated and resumed, then failed HEARTBEAT_TIMEOUT when no attempt is left', async () => {
    const h = await harness({ config: { heartbeatTimeoutSeconds: 30, maxResumeRunAttempts: 1 } });
    const runId = await h.startedRun();
    await h.advance(30 * SECOND - 1);
    expect(h.launcher.calls.terminate).toEqual([]);
    await h.advance(1);
    expect(h.launcher.calls.terminate).toEqual([runId]);
    expect(h.launcher.calls.resume).toEqual([{ runId, attempt: 1 }]);
    expect(await h.messagesOf(runId, 'ENGINE_EVENT')).toContain(
      messages.resumingStalled(stalled('HEARTBEAT_TIMEOUT', 30), runId),
    );
    // The resumed worker's silence counts from its resume, not from the first worker's.
    await h.advance(30 * SECOND - 1);
    expect(await h.status(runId)).toBe('STARTED');
    await h.advance(1);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('HEARTBEAT_TIMEOUT');
    expect(h.launcher.calls.terminate).toEqual([runId, runId]);
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([
      messages.stalledNoAttemptsLeft(stalled('HEARTBEAT_TIMEOUT', 30), runId, 1),
    ]);
  });

  it('a worker that heartbeats is never stopped: the timer re-arms from the stored heartbeat', async () => {
    const h = await harness({ config: { heartbeatTimeoutSeconds: 30, maxResumeRunAttempts: 0 } });
    const runId = await h.startedRun();
    for (let i = 0; i < 12; i++) {
      await h.advance(10 * SECOND);
      await h.store.heartbeat(runId);
    }
    expect(await h.status(runId)).toBe('STARTED');
    expect(h.launcher.calls.terminate).toEqual([]);
    await h.advance(30 * SECOND); // silence now
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([
      messages.stalledFailed(stalled('HEARTBEAT_TIMEOUT', 30), runId),
    ]);
  });

  it('the tag overrides the configuration, 0 turns the check off for that run, a bad value is reported', async () => {
    const h = await harness({ config: { heartbeatTimeoutSeconds: 30, maxResumeRunAttempts: 0 } });
    const short = await h.startedRun({ [TAGS.heartbeatTimeout]: '5' });
    const off = await h.startedRun({ [TAGS.heartbeatTimeout]: '0' });
    const bad = await h.startedRun({ [TAGS.heartbeatTimeout]: 'soon' });
    await h.advance(5 * SECOND);
    expect(await h.status(short)).toBe('FAILURE');
    expect(await h.status(bad)).toBe('STARTED');
    expect(await h.messagesOf(bad, 'ENGINE_EVENT')).toEqual([
      messages.invalidLivenessTag(TAGS.heartbeatTimeout, 'soon', 30),
    ]);
    await h.advance(25 * SECOND);
    expect(await h.status(bad)).toBe('FAILURE');
    await h.advance(3600 * SECOND);
    expect(await h.status(off)).toBe('STARTED');
  });

  it('launch asks the worker to heartbeat at a third of its timeout', async () => {
    const h = await harness({ config: { heartbeatTimeoutSeconds: 30 } });
    const runId = await h.launchedRun({ [TAGS.heartbeatTimeout]: '12' });
    expect((await h.store.getRun(runId))?.tags[TAGS.heartbeatSeconds]).toBe('4');
    // A timeout of a year still asks for a heartbeat a worker's timer can wait for (at most 2^31 - 1 ms).
    const long = await h.launchedRun({ [TAGS.heartbeatTimeout]: String(365 * 24 * 3600) });
    expect((await h.store.getRun(long))?.tags[TAGS.heartbeatSeconds]).toBe('2147483');
    const none = await (await harness()).launchedRun();
    expect((await h.store.getRun(none))?.tags[TAGS.heartbeatSeconds]).toBeUndefined();
  });

  it('a run whose worker finished while the timer was out is left alone', async () => {
    const h = await harness({ config: { heartbeatTimeoutSeconds: 30 } });
    const runId = await h.startedRun();
    await h.advance(20 * SECOND);
    await h.store.transition(runId, { to: 'SUCCESS' });
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('SUCCESS');
    expect(h.launcher.calls.terminate).toEqual([]);
  });

  it('a restarted monitor finds a worker that went silent while nobody watched at once', async () => {
    const h = await harness({ config: { heartbeatTimeoutSeconds: 30, maxResumeRunAttempts: 0 } });
    const runId = await h.startedRun();
    await h.monitor.stop();
    h.clock.increment(60 * SECOND);
    const again = await harness({
      clock: h.clock,
      store: h.store,
      config: { heartbeatTimeoutSeconds: 30, maxResumeRunAttempts: 0 },
    });
    expect(await again.status(runId)).toBe('FAILURE');
    expect(await again.failureReason(runId)).toBe('HEARTBEAT_TIMEOUT');
  });
});

describe('liveness with health polls', () => {
  it('a poll that refreshes the actor’s record while the timer is out never makes it act early', async () => {
    // Progress at 1 s moves the deadline from 20 s to 21 s. The poll at 5 s hands the actor that record
    // before the timer (armed for 20 s) fires: the re-read must be compared with the deadline the timer was
    // armed for, or the worker is judged hung at 20 s, a second early.
    const h = await harness({
      config: { progressTimeoutSeconds: 20, pollIntervalSeconds: 5, maxResumeRunAttempts: 0 },
    });
    const runId = await h.startedRun();
    await h.advance(1 * SECOND);
    await h.store.heartbeat(runId, { progress: true });
    await h.step(19, SECOND); // second by second, so each poll lands before the next timer
    expect(await h.status(runId)).toBe('STARTED');
    await h.advance(1 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('PROGRESS_TIMEOUT');
  });
});

describe('progress timeout', () => {
  it('heartbeats alone do not count as progress: PROGRESS_TIMEOUT', async () => {
    const h = await harness({ config: { progressTimeoutSeconds: 60, maxResumeRunAttempts: 0 } });
    const runId = await h.startedRun();
    for (let i = 0; i < 5; i++) {
      await h.advance(10 * SECOND);
      await h.store.heartbeat(runId);
    }
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('PROGRESS_TIMEOUT');
    expect(h.launcher.calls.terminate).toEqual([runId]);
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([
      messages.stalledFailed(stalled('PROGRESS_TIMEOUT', 60), runId),
    ]);
  });

  it('progress keeps the run going; the tag sets the timeout per run', async () => {
    const h = await harness({ config: { maxResumeRunAttempts: 0 } });
    const runId = await h.startedRun({ [TAGS.progressTimeout]: '20' });
    for (let i = 0; i < 6; i++) {
      await h.advance(15 * SECOND);
      await h.store.heartbeat(runId, { progress: true });
    }
    expect(await h.status(runId)).toBe('STARTED');
    await h.advance(20 * SECOND);
    expect(await h.failureReason(runId)).toBe('PROGRESS_TIMEOUT');
  });
});
