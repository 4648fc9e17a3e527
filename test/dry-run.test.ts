// Dry run: the monitor makes every decision and only writes it down, as an ENGINE_EVENT starting
// `Would have `: no status change, no launcher call. The run stays as it is until its stored status moves;
// then it is decided afresh. Simulated time, FakeLauncher.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { TAGS } from '../src/core/types.js';
import { createRunMonitor } from '../src/monitor/monitor.js';
import { PARTITION_COUNT } from '../src/stores/contract.js';
import { type Harness, type HarnessOptions, SECOND, stoppedAfterEach } from './harness.js';
import { parsePrometheusText, sampleValue } from './prometheus.js';

const dryRunHarness = stoppedAfterEach();
const harness = (options: HarnessOptions = {}): Promise<Harness> =>
  dryRunHarness({ ...options, config: { ...options.config, dryRun: true } });

const wouldHave = async (h: Harness, runId: string) =>
  (await h.messagesOf(runId, 'ENGINE_EVENT')).filter((m) => m.startsWith('Would have '));

/** Nothing but launch (which the test itself asked for) reached the launcher. */
function expectNoLauncherAction(h: Harness) {
  expect(h.launcher.calls.terminate).toEqual([]);
  expect(h.launcher.calls.resume).toEqual([]);
  expect(h.launcher.calls.debugInfo).toEqual([]);
}

describe('dry run', () => {
  it('start timeout: "Would have marked the run failed and terminated its worker", the run stays STARTING', async () => {
    const h = await harness({ config: { startTimeoutSeconds: 60 } });
    const runId = await h.launchedRun();
    await h.advance(60 * SECOND);
    expect(await h.status(runId)).toBe('STARTING');
    expect(await wouldHave(h, runId)).toEqual([messages.wouldHaveFailed(messages.startTimeout(60), true)]);
    // One decision, not one per poll or per timer.
    await h.step(10, 60 * SECOND);
    expect(await wouldHave(h, runId)).toHaveLength(1);
    expectNoLauncherAction(h);
    // The worker reports after all: the run is watched again as STARTED.
    await h.store.transition(runId, { to: 'STARTED' });
    await h.advance(0);
    await h.store.transition(runId, { to: 'SUCCESS' });
    await h.advance(0);
    expect(await h.status(runId)).toBe('SUCCESS');
  });

  it('an overdue run at start(): the decision is written before start() settles, nothing changes', async () => {
    const h = await harness({ config: { startTimeoutSeconds: 60 }, start: false });
    const run = await h.store.createRun({ at: h.clock.now() - 3600 * SECOND });
    await h.monitor.start();
    await h.monitor.settle();
    expect(await h.status(run.runId)).toBe('NOT_STARTED');
    expect(await wouldHave(h, run.runId)).toEqual([
      messages.wouldHaveFailed(messages.notLaunchedTimeout(60), false),
    ]);
  });

  it('a crashed worker: "Would have resumed the run", no resume; with no attempts left "Would have marked the run failed"', async () => {
    const h = await harness({ config: { pollIntervalSeconds: 10, maxResumeRunAttempts: 1 } });
    const runId = await h.startedRun();
    h.launcher.setHealth({ status: 'FAILED', message: 'exit 137' });
    await h.step(5, 10 * SECOND);
    expect(await h.status(runId)).toBe('STARTED');
    expect(await wouldHave(h, runId)).toEqual([
      messages.wouldHaveResumed(messages.workerStatus({ status: 'FAILED', message: 'exit 137' }), 1),
    ]);
    expectNoLauncherAction(h);

    const none = await harness({ config: { pollIntervalSeconds: 10, maxResumeRunAttempts: 0 } });
    const other = await none.startedRun();
    none.launcher.setHealth('NOT_FOUND');
    await none.step(3, 10 * SECOND);
    expect(await none.status(other)).toBe('STARTED');
    const [event] = await wouldHave(none, other);
    expect(event).toMatch(/^Would have marked the run failed: Detected run worker status NOT_FOUND/);
    expectNoLauncherAction(none);
  });

  it('max runtime: "Would have canceled the run and terminated its worker", the run stays STARTED', async () => {
    const h = await harness({ config: { maxRuntimeSeconds: 100 } });
    const runId = await h.startedRun();
    await h.advance(100 * SECOND);
    expect(await h.status(runId)).toBe('STARTED');
    expect(await h.store.getRun(runId)).not.toHaveProperty(['tags', TAGS.cancelReason]);
    expect(await wouldHave(h, runId)).toEqual([messages.wouldHaveExceededMaxRuntime(100)]);
    expectNoLauncherAction(h);
  });

  it('cancel timeout: "Would have marked the run canceled", the run stays CANCELING', async () => {
    const h = await harness({ config: { cancelTimeoutSeconds: 30 } });
    const runId = await h.startedRun();
    await h.monitor.cancel(runId);
    await h.advance(30 * SECOND);
    expect(await h.status(runId)).toBe('CANCELING');
    expect(await wouldHave(h, runId)).toEqual([messages.wouldHaveCanceled(messages.cancelTimeout(30))]);
  });

  it('a hung worker: "Would have terminated the run worker and …", its worker left alone', async () => {
    const h = await harness({ config: { heartbeatTimeoutSeconds: 30, maxResumeRunAttempts: 0 } });
    const runId = await h.startedRun();
    await h.advance(30 * SECOND);
    expect(await h.status(runId)).toBe('STARTED');
    expect(await wouldHave(h, runId)).toEqual([
      messages.wouldHaveStoppedStalled(messages.stalled('HEARTBEAT_TIMEOUT', 30), false),
    ]);
    expectNoLauncherAction(h);
  });

  it('journaled terminations another monitor left are not finished', async () => {
    const h = await harness({ start: false });
    const run = await h.store.createRun({});
    await h.store.transition(run.runId, { to: 'FAILURE', tags: { [TAGS.terminatePending]: 'true' } });
    await h.monitor.start();
    await h.step(3, 120 * SECOND);
    expectNoLauncherAction(h);
    expect((await h.store.getRun(run.runId))?.tags[TAGS.terminatePending]).toBe('true');
  });

  it('metrics count the decisions with dry_run="true"', async () => {
    const registry = new Registry();
    const h = await harness({ config: { startTimeoutSeconds: 60 }, metrics: registry });
    await h.launchedRun();
    await h.advance(60 * SECOND);
    const families = parsePrometheusText(await registry.metrics());
    expect(
      sampleValue(families, 'runwarden_decisions_total', {
        action: 'fail',
        reason: 'START_TIMEOUT',
        dry_run: 'true',
      }),
    ).toBe(1);
    const samples = families.get('runwarden_decisions_total')?.samples ?? [];
    expect(samples.every((s) => s.labels.dry_run === 'true')).toBe(true);
  });

  it('beside a monitor that acts, on one store: takes no partition from it, and both decide every run', async () => {
    const h = await harness({ config: { startTimeoutSeconds: 60 } });
    const acting = createRunMonitor({
      store: h.store,
      launcher: h.launcher,
      clock: h.clock,
      monitorId: 'acting',
      config: { startTimeoutSeconds: 60, leaseSeconds: 15 },
    });
    await acting.start();
    const runIds = [];
    for (let i = 0; i < 10; i++) runIds.push(await h.launchedRun());
    await h.step(5, 5 * SECOND); // past two lease renewals
    const monitors = await h.store.listMonitors!();
    expect(monitors.map((m) => [m.monitorId, m.partitions.length])).toEqual([['acting', PARTITION_COUNT]]);
    await h.advance(60 * SECOND);
    await acting.settle();
    for (const runId of runIds) {
      expect(await h.status(runId)).toBe('FAILURE');
      expect(await wouldHave(h, runId)).toHaveLength(1);
    }
    await acting.stop();
  });
});
