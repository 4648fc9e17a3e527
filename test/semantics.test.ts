// One test per row of the monitoring semantics (docs/semantics.md), with the exact messages and failure
// reasons, then the races, restarts and misbehaving launchers around them. Time is simulated.
import { describe, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { ConfigError, RunNotFoundError, RunwardenError } from '../src/core/errors.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { createRunMonitor } from '../src/monitor/monitor.js';
import { FakeLauncher } from '../src/testing/index.js';
import { type HealthResult, type RunRecord, TAGS } from '../src/core/types.js';
import { harness as makeHarness, newClock, SECOND, stoppedAfterEach, T0 } from './harness.js';

const harness = stoppedAfterEach();

describe('NOT_STARTED', () => {
  it('fails a run never launched once createdAt + startTimeout is reached', async () => {
    const h = await harness();
    const { runId } = await h.store.createRun({});
    await h.monitor.settle();
    await h.advance(180 * SECOND - 1);
    expect(await h.status(runId)).toBe('NOT_STARTED');
    await h.advance(1);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('START_TIMEOUT');
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([messages.notLaunchedTimeout(180)]);
  });
});

describe('QUEUED', () => {
  it('has no timeout by default', async () => {
    const h = await harness();
    const { runId } = await h.store.createRun({});
    await h.store.transition(runId, { to: 'QUEUED' });
    await h.advance(30 * 24 * 3600 * SECOND);
    expect(await h.status(runId)).toBe('QUEUED');
  });

  it('fails at queuedAt + queuedTimeoutSeconds when switched on', async () => {
    const h = await harness({ config: { queuedTimeoutSeconds: 60 } });
    const { runId } = await h.store.createRun({});
    await h.advance(10 * SECOND);
    await h.store.transition(runId, { to: 'QUEUED' });
    await h.advance(60 * SECOND - 1);
    expect(await h.status(runId)).toBe('QUEUED');
    await h.advance(1);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('QUEUED_TIMEOUT');
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([messages.queuedTimeout(60)]);
  });
});

describe('STARTING', () => {
  it('fails at launchedAt + startTimeout (>=) with the Dagster message and terminates the worker', async () => {
    const h = await harness();
    const runId = await h.launchedRun();
    await h.advance(180 * SECOND - 1);
    expect(await h.status(runId)).toBe('STARTING');
    expect(h.launcher.calls.terminate).toEqual([]);
    await h.advance(1);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('START_TIMEOUT');
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([
      'Run timed out due to taking longer than 180 seconds to start.',
    ]);
    expect(h.launcher.calls.terminate).toEqual([runId]);
    expect(await h.eventTypes(runId)).toEqual(['RUN_STARTING', 'RUN_FAILURE']);
  });

  it('appends the launcher debug info to the message on a new line', async () => {
    const h = await harness({ launcher: { debugInfo: 'pod pending: ImagePullBackOff' } });
    const runId = await h.launchedRun();
    await h.advance(180 * SECOND);
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([
      'Run timed out due to taking longer than 180 seconds to start.\npod pending: ImagePullBackOff',
    ]);
  });

  it('still fails (without debug info) when debugInfo throws or hangs', async () => {
    for (const debugInfo of ['throw', 'hang'] as const) {
      const h = await harness({ launcher: { debugInfo }, config: { launcherTimeoutSeconds: 5 } });
      const runId = await h.launchedRun();
      await h.advance(180 * SECOND);
      if (debugInfo === 'hang') await h.advance(5 * SECOND);
      expect(await h.status(runId)).toBe('FAILURE');
      expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([messages.startTimeout(180)]);
    }
  });

  it('leaves the worker alone when terminateOnStartTimeout is false', async () => {
    const h = await harness({ config: { terminateOnStartTimeout: false } });
    const runId = await h.launchedRun();
    await h.advance(180 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(h.launcher.calls.terminate).toEqual([]);
  });

  it('records an engine event when terminating after the start timeout fails', async () => {
    const h = await harness({ launcher: { terminate: false } });
    const runId = await h.launchedRun();
    await h.advance(180 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    const [note] = await h.messagesOf(runId, 'ENGINE_EVENT');
    expect(note).toContain('Could not terminate the run worker after the start timeout');
  });

  it('a termination that throws or hangs is reported with why, and stays journaled for the next poll', async () => {
    for (const terminate of ['throw', 'hang'] as const) {
      const h = await harness({
        launcher: { terminate },
        config: { launcherTimeoutSeconds: 7, pollIntervalSeconds: 3600 },
      });
      const runId = await h.launchedRun();
      await h.advance(180 * SECOND);
      expect(await h.status(runId)).toBe('FAILURE');
      if (terminate === 'hang') {
        await h.advance(7 * SECOND - 1);
        expect(await h.messagesOf(runId, 'ENGINE_EVENT')).toEqual([]);
        await h.advance(1);
      }
      const why =
        terminate === 'throw'
          ? 'FakeLauncher: terminate failed'
          : messages.launcherCallTimedOut('terminate', 7);
      expect(await h.messagesOf(runId, 'ENGINE_EVENT')).toEqual([
        messages.terminateAfterStartTimeoutFailed(why),
      ]);
      expect((await h.store.getRun(runId))?.tags[TAGS.terminatePending]).toBe('true');
    }
  });

  it('does nothing once the worker reports STARTED in time', async () => {
    const h = await harness();
    const runId = await h.launchedRun();
    await h.advance(100 * SECOND);
    await h.store.transition(runId, { to: 'STARTED' });
    await h.advance(1000 * SECOND);
    expect(await h.status(runId)).toBe('STARTED');
  });

  it('startTimeoutSeconds 0 switches the check off', async () => {
    const h = await harness({ config: { startTimeoutSeconds: 0 } });
    const runId = await h.launchedRun();
    const notLaunched = (await h.store.createRun({})).runId;
    await h.advance(365 * 24 * 3600 * SECOND);
    expect(await h.status(runId)).toBe('STARTING');
    expect(await h.status(notLaunched)).toBe('NOT_STARTED');
  });
});

describe('STARTED: maximum runtime', () => {
  it('cancels, terminates and fails with the Dagster messages (tag)', async () => {
    const h = await harness();
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '10' });
    await h.advance(10 * SECOND - 1);
    expect(await h.status(runId)).toBe('STARTED');
    await h.advance(1);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.eventTypes(runId)).toEqual(['RUN_STARTING', 'RUN_START', 'RUN_CANCELING', 'RUN_FAILURE']);
    expect(await h.messagesOf(runId, 'RUN_CANCELING')).toEqual([
      'Canceling due to exceeding maximum runtime of 10 seconds.',
    ]);
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual(['Exceeded maximum runtime of 10 seconds.']);
    expect(await h.failureReason(runId)).toBe('MAX_RUNTIME_EXCEEDED');
    expect(h.launcher.calls.terminate).toEqual([runId]);
  });

  it('honours the alias tag and the configured default', async () => {
    const h = await harness({ config: { maxRuntimeSeconds: 30 } });
    const alias = await h.startedRun({ [TAGS.maxRuntimeAlias]: '20' });
    const byDefault = await h.startedRun();
    await h.advance(20 * SECOND);
    expect(await h.status(alias)).toBe('FAILURE');
    expect(await h.status(byDefault)).toBe('STARTED');
    await h.advance(10 * SECOND);
    expect(await h.status(byDefault)).toBe('FAILURE');
    expect(await h.messagesOf(byDefault, 'RUN_FAILURE')).toEqual(['Exceeded maximum runtime of 30 seconds.']);
  });

  it('a tag of 0 turns the configured limit off for that run', async () => {
    const h = await harness({ config: { maxRuntimeSeconds: 30 } });
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '0' });
    await h.advance(3600 * SECOND);
    expect(await h.status(runId)).toBe('STARTED');
  });

  it('an invalid tag is reported by an engine event naming tag and value, and the default applies', async () => {
    const h = await harness({ config: { maxRuntimeSeconds: 30 } });
    const runId = await h.startedRun({ [TAGS.maxRuntime]: 'ten' });
    expect(await h.messagesOf(runId, 'ENGINE_EVENT')).toEqual([
      messages.invalidMaxRuntimeTag(TAGS.maxRuntime, 'ten', 30),
    ]);
    expect((await h.messagesOf(runId, 'ENGINE_EVENT'))[0]).toContain('runwarden/max_runtime="ten"');
    await h.advance(30 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
  });

  it('terminate returning false: forcibly marked failed', async () => {
    const h = await harness({ launcher: { terminate: false } });
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '10' });
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([messages.forcedFailure]);
    expect(await h.failureReason(runId)).toBe('MAX_RUNTIME_EXCEEDED');
  });

  it('terminate throwing: engine event, then forcibly marked failed', async () => {
    const h = await harness({ launcher: { terminate: 'throw' } });
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '10' });
    await h.advance(10 * SECOND);
    expect(await h.messagesOf(runId, 'ENGINE_EVENT')).toEqual([
      'Exception while attempting to terminate run. Run will still be marked as failed.',
    ]);
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([
      'This run is being forcibly marked as failed. The computational resources created by the run may not have been fully cleaned up.',
    ]);
  });

  it('terminate hanging: treated as an exception after launcherTimeoutSeconds', async () => {
    const h = await harness({ launcher: { terminate: 'hang' }, config: { launcherTimeoutSeconds: 7 } });
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '10' });
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('CANCELING');
    await h.advance(7 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    const [event] = await h.store.getEvents(runId, { types: ['ENGINE_EVENT'] });
    expect(event?.message).toBe(messages.terminateException);
    expect(event?.data).toEqual({ error: messages.launcherCallTimedOut('terminate', 7) });
  });

  it('keeps counting from the first startedAt across resumes', async () => {
    const h = await harness({ config: { pollIntervalSeconds: 5 } });
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '60' });
    h.launcher.setHealth('FAILED');
    await h.advance(5 * SECOND);
    expect(h.launcher.calls.resume).toEqual([{ runId, attempt: 1 }]);
    h.launcher.setHealth('RUNNING');
    await h.advance(55 * SECOND - 1);
    expect(await h.status(runId)).toBe('STARTED');
    await h.advance(1);
    expect(await h.status(runId)).toBe('FAILURE');
  });
});

describe('STARTED: health checks and resume', () => {
  const poll = { pollIntervalSeconds: 10 };

  it('RUNNING and SUCCESS results change nothing', async () => {
    const h = await harness({ config: poll });
    const runId = await h.startedRun();
    await h.advance(10 * SECOND);
    h.launcher.setHealth('SUCCESS');
    await h.advance(10 * SECOND);
    expect(h.launcher.calls.health.length).toBeGreaterThanOrEqual(2);
    expect(await h.eventTypes(runId)).toEqual(['RUN_STARTING', 'RUN_START']);
  });

  it('resumes a crashed worker up to maxResumeRunAttempts, then fails with the Dagster message', async () => {
    const h = await harness({
      config: poll,
      launcher: { health: { status: 'FAILED', message: 'OOMKilled' } },
    });
    const runId = await h.startedRun();
    for (let attempt = 1; attempt <= 3; attempt++) {
      await h.advance(10 * SECOND);
      expect(h.launcher.calls.resume.at(-1)).toEqual({ runId, attempt });
      expect((await h.store.getRun(runId))?.resumeAttempts).toBe(attempt);
      expect(await h.status(runId)).toBe('STARTED');
    }
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(h.launcher.calls.resume).toHaveLength(3);
    expect(await h.failureReason(runId)).toBe('RUN_WORKER_CRASHED');
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([
      `Detected run worker status FAILED: 'OOMKilled'. Marking run ${runId} as failed, because it has surpassed the configured maximum attempts to resume the run: 3.`,
    ]);
    const engine = await h.store.getEvents(runId, { types: ['ENGINE_EVENT'] });
    expect(engine.map((e) => e.message)).toEqual([
      `Detected run worker status FAILED: 'OOMKilled'. Resuming run ${runId} with a new worker.`,
      'Launching a new run worker to resume run',
      `Detected run worker status FAILED: 'OOMKilled'. Resuming run ${runId} with a new worker.`,
      'Launching a new run worker to resume run',
      `Detected run worker status FAILED: 'OOMKilled'. Resuming run ${runId} with a new worker.`,
      'Launching a new run worker to resume run',
    ]);
    expect(engine.filter((e) => e.data !== undefined).map((e) => e.data)).toEqual([
      { attempt: 1 },
      { attempt: 2 },
      { attempt: 3 },
    ]);
  });

  it('NOT_FOUND with resume off fails at once with the short message', async () => {
    const h = await harness({
      config: { ...poll, maxResumeRunAttempts: 0 },
      launcher: { health: 'NOT_FOUND' },
    });
    const runId = await h.startedRun();
    await h.advance(10 * SECOND);
    expect(h.launcher.calls.resume).toEqual([]);
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([
      `Detected run worker status NOT_FOUND: ''. Marking run ${runId} as failed.`,
    ]);
  });

  it('a launcher that cannot resume defaults to 0 attempts', async () => {
    const h = await harness({ config: poll, launcher: { health: 'FAILED', supportsResume: false } });
    expect(h.monitor.config.maxResumeRunAttempts).toBe(0);
    const runId = await h.startedRun();
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(h.launcher.calls.resume).toEqual([]);
  });

  it('UNKNOWN results are tolerated unknownHealthTolerance times in a row; the next one acts', async () => {
    const h = await harness({
      config: { ...poll, unknownHealthTolerance: 3, maxResumeRunAttempts: 0 },
      launcher: { health: 'UNKNOWN' },
    });
    const runId = await h.startedRun();
    const checks = () => h.launcher.calls.health.filter((id) => id === runId).length;
    await h.step(3, 10 * SECOND);
    expect(checks()).toBe(3); // three UNKNOWNs in a row are tolerated
    expect(await h.status(runId)).toBe('STARTED');
    h.launcher.setHealth('RUNNING'); // a healthy result resets the count
    await h.step(1, 10 * SECOND);
    h.launcher.setHealth({ status: 'FAILED', transient: true, message: 'API timeout' });
    await h.step(3, 10 * SECOND);
    expect(await h.status(runId)).toBe('STARTED');
    await h.step(1, 10 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([
      `Detected run worker status FAILED: 'API timeout'. Marking run ${runId} as failed.`,
    ]);
  });

  it('unknownHealthTolerance 0 acts on the first UNKNOWN, as Dagster does', async () => {
    const h = await harness({
      config: { ...poll, unknownHealthTolerance: 0 },
      launcher: { health: 'UNKNOWN' },
    });
    const runId = await h.startedRun();
    await h.advance(10 * SECOND);
    expect(h.launcher.calls.resume).toEqual([{ runId, attempt: 1 }]);
  });

  it('race guard: a run whose status changed during the check is left alone', async () => {
    const h = await harness({ config: poll });
    const runId = await h.startedRun();
    h.launcher.setHealth(async (run: RunRecord): Promise<HealthResult> => {
      // The worker reports SUCCESS while the check is in flight, then the check says the worker is gone.
      await h.store.transition(run.runId, { to: 'SUCCESS' });
      return { status: 'NOT_FOUND' };
    });
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('SUCCESS');
    expect(h.launcher.calls.resume).toEqual([]);
    expect(await h.eventTypes(runId)).toEqual(['RUN_STARTING', 'RUN_START', 'RUN_SUCCESS']);
  });

  it('a resume that throws uses up an attempt and the crash is handled again', async () => {
    const h = await harness({ config: poll, launcher: { health: 'FAILED', resume: 'throw' } });
    const runId = await h.startedRun();
    await h.advance(10 * SECOND);
    expect(h.launcher.calls.resume.map((r) => r.attempt)).toEqual([1, 2, 3]);
    expect(await h.status(runId)).toBe('FAILURE');
    const notes = await h.messagesOf(runId, 'ENGINE_EVENT');
    expect(notes.filter((m) => m.startsWith('Failed to launch a new run worker'))).toHaveLength(3);
  });

  it('a resume that hangs is abandoned after launcherTimeoutSeconds', async () => {
    const h = await harness({
      config: { ...poll, launcherTimeoutSeconds: 5, maxResumeRunAttempts: 1 },
      launcher: { health: 'FAILED', resume: 'hang' },
    });
    const runId = await h.startedRun();
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('STARTED');
    await h.advance(5 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.messagesOf(runId, 'ENGINE_EVENT')).toContain(
      messages.resumeFailed(1, messages.launcherCallTimedOut('resume', 5)),
    );
  });

  it('cancel while resuming: the new worker is terminated once its launch returns', async () => {
    let release: () => void = () => {};
    class SlowResume extends FakeLauncher {
      override async resume(run: RunRecord, attempt: number): Promise<void> {
        await super.resume(run, attempt);
        await new Promise<void>((resolve) => {
          release = resolve;
        });
      }
    }
    const launcher = new SlowResume({ health: 'FAILED' });
    const h = await harness({ config: poll, customLauncher: launcher });
    const runId = await h.startedRun();
    await h.advance(10 * SECOND);
    expect(launcher.calls.resume).toHaveLength(1);
    await h.monitor.cancel(runId);
    expect(launcher.calls.terminate).toEqual([runId]);
    release();
    await h.monitor.settle();
    expect(launcher.calls.terminate).toEqual([runId, runId]);
    await h.advance(180 * SECOND);
    expect(await h.status(runId)).toBe('CANCELED');
  });

  it('a health check that throws or hangs counts as UNKNOWN and never stalls the poll', async () => {
    const hanging = new Set<string>();
    const h = await harness({
      config: { ...poll, launcherTimeoutSeconds: 2, unknownHealthTolerance: 1, maxResumeRunAttempts: 0 },
    });
    const a = await h.startedRun();
    const b = await h.startedRun();
    h.launcher.setHealth(async (run) => {
      if (run.runId === a) throw new Error('kube API 503');
      hanging.add(run.runId);
      return new Promise<HealthResult>(() => {});
    });
    await h.step(1, 10 * SECOND);
    await h.step(1, 2 * SECOND);
    expect(hanging.has(b)).toBe(true);
    expect(await h.status(a)).toBe('STARTED');
    expect(await h.status(b)).toBe('STARTED');
    await h.step(1, 10 * SECOND);
    await h.step(1, 2 * SECOND);
    expect(await h.status(a)).toBe('FAILURE');
    expect(await h.status(b)).toBe('FAILURE');
    expect((await h.messagesOf(a, 'RUN_FAILURE'))[0]).toContain('kube API 503');
    expect((await h.messagesOf(b, 'RUN_FAILURE'))[0]).toContain('did not answer within 2 seconds');
  });
});

describe('CANCELING', () => {
  it('cancel terminates the worker; the cancel timeout marks the run CANCELED with the Dagster message', async () => {
    const h = await harness();
    const runId = await h.startedRun();
    const canceling = await h.monitor.cancel(runId);
    expect(canceling.status).toBe('CANCELING');
    expect(h.launcher.calls.terminate).toEqual([runId]);
    await h.advance(180 * SECOND - 1);
    expect(await h.status(runId)).toBe('CANCELING');
    await h.advance(1);
    expect(await h.status(runId)).toBe('CANCELED');
    expect(await h.messagesOf(runId, 'RUN_CANCELED')).toEqual([
      'Run timed out due to taking longer than 180 seconds to cancel.',
    ]);
  });

  it('counts from the latest RUN_CANCELING', async () => {
    const h = await harness({ config: { cancelTimeoutSeconds: 60 } });
    const { runId } = await h.store.createRun({});
    await h.store.transition(runId, { to: 'STARTING' });
    await h.advance(30 * SECOND);
    await h.store.transition(runId, { to: 'CANCELING' });
    await h.monitor.settle();
    await h.advance(60 * SECOND - 1);
    expect(await h.status(runId)).toBe('CANCELING');
    await h.advance(1);
    expect(await h.status(runId)).toBe('CANCELED');
  });

  it('a worker that cancels cleanly ends the watch without a timeout message', async () => {
    const h = await harness();
    const runId = await h.startedRun();
    await h.monitor.cancel(runId);
    await h.store.transition(runId, { to: 'CANCELED', message: 'Worker stopped.' });
    await h.advance(1000 * SECOND);
    expect(await h.messagesOf(runId, 'RUN_CANCELED')).toEqual(['Worker stopped.']);
  });

  it('cancelTimeoutSeconds 0 switches the check off', async () => {
    const h = await harness({ config: { cancelTimeoutSeconds: 0 } });
    const runId = await h.startedRun();
    await h.monitor.cancel(runId);
    await h.advance(365 * 24 * 3600 * SECOND);
    expect(await h.status(runId)).toBe('CANCELING');
  });

  it('cancel before launch cancels at once; cancel of a finished run changes nothing', async () => {
    const h = await harness();
    const { runId } = await h.store.createRun({});
    expect((await h.monitor.cancel(runId)).status).toBe('CANCELED');
    expect((await h.monitor.cancel(runId)).status).toBe('CANCELED');
    expect(h.launcher.calls.terminate).toEqual([]);
  });

  it('a terminate that fails on cancel is recorded; the cancel timeout still ends the run', async () => {
    const h = await harness({ launcher: { terminate: 'throw' } });
    const runId = await h.startedRun();
    await h.monitor.cancel(runId);
    expect((await h.messagesOf(runId, 'ENGINE_EVENT'))[0]).toContain('Could not terminate the run worker');
    await h.advance(180 * SECOND);
    expect(await h.status(runId)).toBe('CANCELED');
  });
});

describe('races: a worker’s own terminal report always wins', () => {
  it('worker reports SUCCESS in the same tick the max-runtime timer fires', async () => {
    const h = await harness();
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '10' });
    h.clock.increment(10 * SECOND - 1);
    await h.monitor.settle();
    // Written synchronously before the timer fires; the feed has not delivered it yet.
    const write = h.store.transition(runId, { to: 'SUCCESS' });
    h.clock.increment(1);
    await write;
    await h.monitor.settle();
    expect(await h.status(runId)).toBe('SUCCESS');
    expect(await h.eventTypes(runId)).toEqual(['RUN_STARTING', 'RUN_START', 'RUN_SUCCESS']);
    expect(h.launcher.calls.terminate).toEqual([]);
  });

  it('worker reports STARTED in the same tick the start timer fires: not failed, not terminated', async () => {
    const h = await harness();
    const runId = await h.launchedRun();
    h.clock.increment(180 * SECOND - 1);
    await h.monitor.settle();
    const write = h.store.transition(runId, { to: 'STARTED' });
    h.clock.increment(1);
    await write;
    await h.monitor.settle();
    expect(await h.status(runId)).toBe('STARTED');
    expect(h.launcher.calls.terminate).toEqual([]);
  });

  it('a health result arriving after the run finished does nothing', async () => {
    const h = await harness({ config: { pollIntervalSeconds: 10 } });
    const runId = await h.startedRun();
    await h.store.transition(runId, { to: 'SUCCESS' });
    await h.monitor.settle();
    h.launcher.setHealth('FAILED');
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('SUCCESS');
    expect(h.launcher.calls.resume).toEqual([]);
  });
});

describe('restart', () => {
  it('a second monitor on the same store keeps every original deadline', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const first = await makeHarness({ clock, store });
    const starting = await first.launchedRun();
    const started = await first.startedRun({ [TAGS.maxRuntime]: '300' });
    const canceling = await first.startedRun();
    await first.monitor.cancel(canceling);
    await first.advance(100 * SECOND);
    await first.monitor.stop();

    clock.increment(50 * SECOND); // nobody watching
    const second = await harness({ clock, store });
    await second.advance(30 * SECOND - 1);
    expect(await second.status(starting)).toBe('STARTING');
    expect(await second.status(canceling)).toBe('CANCELING');
    await second.advance(1); // 180 s after launch and after cancel
    expect(await second.status(starting)).toBe('FAILURE');
    expect(await second.status(canceling)).toBe('CANCELED');
    await second.advance(120 * SECOND - 1);
    expect(await second.status(started)).toBe('STARTED');
    await second.advance(1); // 300 s after start
    expect(await second.status(started)).toBe('FAILURE');
  });

  it('deadlines that passed while nobody watched fire at once on start', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const { runId } = await store.createRun({});
    await store.transition(runId, { to: 'STARTING' });
    clock.increment(3600 * SECOND);
    const h = await harness({ clock, store });
    await h.advance(0);
    expect(await h.status(runId)).toBe('FAILURE');
  });
});

describe('configuration and bad input', () => {
  it('invalid config throws a ConfigError naming the field', () => {
    const store = new MemoryRunStore();
    const launcher = new FakeLauncher();
    expect(() => createRunMonitor({ store, launcher, config: { startTimeoutSeconds: -1 } })).toThrow(
      ConfigError,
    );
    expect(() => createRunMonitor({ store, launcher, config: { startTimeoutSeconds: -1 } })).toThrow(
      /startTimeoutSeconds/,
    );
    // @ts-expect-error a misspelt key: the types refuse it, and so does the runtime
    expect(() => createRunMonitor({ store, launcher, config: { startTimeoutSecs: 5 } })).toThrow(
      /startTimeoutSecs/,
    );
  });

  it('resume attempts with a launcher that cannot resume is a config error', () => {
    const launcher = new FakeLauncher({ supportsResume: false });
    expect(() =>
      createRunMonitor({ store: new MemoryRunStore(), launcher, config: { maxResumeRunAttempts: 2 } }),
    ).toThrow(/cannot resume/);
  });

  it('accepts Dagster’s run_monitoring block unchanged', async () => {
    const h = await harness({
      config: {
        run_monitoring: { enabled: true, start_timeout_seconds: 30, poll_interval_seconds: 5 },
      } as never,
    });
    expect(h.monitor.config.startTimeoutSeconds).toBe(30);
    const runId = await h.launchedRun();
    await h.advance(30 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
  });

  it('enabled: false watches nothing', async () => {
    const h = await harness({ config: { enabled: false } });
    const runId = await h.launchedRun();
    await h.advance(3600 * SECOND);
    expect(await h.status(runId)).toBe('STARTING');
  });

  it('unknown run ids are refused clearly', async () => {
    const h = await harness();
    await expect(h.monitor.launch('nope')).rejects.toThrow(RunNotFoundError);
    await expect(h.monitor.cancel('nope')).rejects.toThrow(/Unknown run id "nope"/);
  });

  it('launching a run that is not NOT_STARTED/QUEUED is refused', async () => {
    const h = await harness();
    const runId = await h.startedRun();
    await expect(h.monitor.launch(runId)).rejects.toThrow(/is STARTED; only NOT_STARTED or QUEUED/);
  });

  it('a launch that throws fails the run with LAUNCH_FAILED and rejects', async () => {
    const h = await harness({ launcher: { launch: 'throw' } });
    const { runId } = await h.store.createRun({});
    await expect(h.monitor.launch(runId)).rejects.toMatchObject({ code: 'LAUNCH_FAILED' });
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('LAUNCH_FAILED');
  });

  it('a launch that hangs rejects after launcherTimeoutSeconds; the start timeout then decides the run', async () => {
    const h = await harness({ launcher: { launch: 'hang' }, config: { launcherTimeoutSeconds: 5 } });
    const { runId } = await h.store.createRun({});
    const launching = h.monitor.launch(runId);
    const outcome = expect(launching).rejects.toThrow(/did not answer within 5 seconds/);
    await h.monitor.settle();
    h.clock.increment(5 * SECOND);
    await outcome;
    expect(await h.status(runId)).toBe('STARTING');
    await h.advance(175 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('START_TIMEOUT');
  });

  it('a busy store delays an effect, never loses it', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    let failures = 2;
    const transition = store.transition.bind(store);
    store.transition = async (runId, change) => {
      if (change.to === 'FAILURE' && failures > 0) {
        failures -= 1;
        throw new RunwardenError('STORE_BUSY', 'database is locked');
      }
      return transition(runId, change);
    };
    const h = await harness({ clock, store, config: { storeRetrySeconds: 5 } });
    const runId = await h.launchedRun();
    await h.advance(180 * SECOND);
    expect(await h.status(runId)).toBe('STARTING');
    await h.advance(5 * SECOND);
    expect(await h.status(runId)).toBe('STARTING');
    await h.advance(5 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toHaveLength(1);
  });

  it('the supervisor survives a health result for a run it has never heard of', async () => {
    const h = await harness({ config: { pollIntervalSeconds: 10 } });
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '100' });
    h.launcher.setHealth(async () => ({ status: 'RUNNING' }));
    await h.advance(10 * SECOND);
    await h.advance(90 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
  });
});

describe('fixes found in review', () => {
  it('launcherTimeoutSeconds 0 means launcher calls may take as long as they take', async () => {
    const h = await harness({
      launcher: { launch: 'hang', terminate: 'hang' },
      config: { launcherTimeoutSeconds: 0 },
    });
    const { runId } = await h.store.createRun({});
    let settled = false;
    h.monitor.launch(runId).finally(() => {
      settled = true;
    });
    await h.advance(100 * SECOND);
    expect(settled).toBe(false);
    await h.store.transition(runId, { to: 'STARTED' });
    h.launcher.setLaunch('ok');
    const limited = await h.startedRun({ [TAGS.maxRuntime]: '10' });
    await h.advance(24 * 3600 * SECOND);
    // Terminating for max runtime is still waiting on the launcher: no timeout cut it short.
    expect(await h.status(limited)).toBe('CANCELING');
    expect(await h.messagesOf(limited, 'ENGINE_EVENT')).toEqual([]);
  });

  it('start() can be called again after it failed half-way', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const { runId } = await store.createRun({});
    await store.transition(runId, { to: 'STARTING' });
    const listRuns = store.listRuns.bind(store);
    let failures = 1;
    store.listRuns = async (filter) => {
      // The load at start lists every active status (the poll's sweep lists fewer).
      if (filter?.statuses?.length === 5 && failures-- > 0) {
        throw new RunwardenError('STORE_BUSY', 'database is locked');
      }
      return listRuns(filter);
    };
    const h = await harness({ clock, store, start: false });
    await expect(h.monitor.start()).rejects.toThrow(/database is locked/);
    await h.monitor.start();
    await h.advance(180 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
  });
});

describe('max runtime, interrupted', () => {
  it('a monitor restarted after CANCELING for max runtime terminates and fails the run (not the cancel timeout)', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const { runId } = await store.createRun({ tags: { [TAGS.maxRuntime]: '10' } });
    await store.transition(runId, { to: 'STARTING' });
    await store.transition(runId, { to: 'STARTED' });
    // What the previous monitor wrote before it died.
    await store.transition(runId, {
      to: 'CANCELING',
      message: messages.maxRuntimeCanceling(10),
      tags: { [TAGS.cancelReason]: 'MAX_RUNTIME_EXCEEDED' },
    });
    const h = await harness({ clock, store });
    expect(h.launcher.calls.terminate).toEqual([runId]);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('MAX_RUNTIME_EXCEEDED');
    expect(await h.messagesOf(runId, 'RUN_FAILURE')).toEqual([messages.maxRuntimeExceeded(10)]);
  });

  it('a busy store during the final FAILURE write still ends the run MAX_RUNTIME_EXCEEDED', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const transition = store.transition.bind(store);
    let failures = 1;
    store.transition = async (id, change) => {
      if (change.to === 'FAILURE' && failures-- > 0)
        throw new RunwardenError('STORE_BUSY', 'database is locked');
      return transition(id, change);
    };
    const h = await harness({ clock, store, config: { storeRetrySeconds: 5 } });
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '10' });
    await h.advance(10 * SECOND);
    expect(await h.status(runId)).toBe('CANCELING');
    await h.advance(5 * SECOND);
    expect(await h.status(runId)).toBe('FAILURE');
    expect(await h.failureReason(runId)).toBe('MAX_RUNTIME_EXCEEDED');
  });
});

describe('time base', () => {
  it('uses the injected clock for every stored timestamp', async () => {
    const h = await harness();
    const runId = await h.launchedRun();
    await h.advance(180 * SECOND);
    const run = await h.store.getRun(runId);
    expect(run?.launchedAt).toBe(T0);
    expect(run?.endedAt).toBe(T0 + 180 * SECOND);
  });
});
