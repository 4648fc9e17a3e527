// Acceptance: the cases of Dagster's own monitoring-daemon suite and our "beyond Dagster" rows, driven
// only through the published entry points ('runwarden', 'runwarden/testing' — the built package, resolved
// through package.json "exports") with xstate's SimulatedClock, as a user's test would.
import { createRunMonitor, MemoryRunStore, type RunMonitor, TAGS } from 'runwarden';
import { FakeLauncher, type FakeLauncherOptions } from 'runwarden/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';

const S = 1000;
const monitors: RunMonitor[] = [];
afterEach(async () => {
  for (const m of monitors.splice(0)) await m.stop();
});

async function setup(config: Record<string, unknown> = {}, launcher: FakeLauncherOptions = {}) {
  const clock = new SimulatedClock();
  clock.set(Date.UTC(2026, 5, 1));
  const store = new MemoryRunStore({ clock });
  const fake = new FakeLauncher(launcher);
  const monitor = createRunMonitor({ store, launcher: fake, clock, config });
  monitors.push(monitor);
  await monitor.start();
  const tick = async (ms: number) => {
    clock.increment(ms);
    await monitor.settle();
    clock.increment(0); // timers due now (deadlines passed while an effect ran)
    await monitor.settle();
  };
  const started = async (tags: Record<string, string> = {}) => {
    const { runId } = await store.createRun({ tags });
    await monitor.launch(runId);
    await store.transition(runId, { to: 'STARTED' });
    await monitor.settle();
    return runId;
  };
  const run = async (runId: string) => (await store.getRun(runId))!;
  const messages = async (
    runId: string,
    type: 'RUN_FAILURE' | 'RUN_CANCELED' | 'ENGINE_EVENT' | 'RUN_CANCELING',
  ) => (await store.getEvents(runId, { types: [type] })).map((e) => e.message);
  return { clock, store, fake, monitor, tick, started, run, messages };
}

describe("Dagster's monitoring daemon cases", () => {
  it('start timeout', async () => {
    const t = await setup({ run_monitoring: { start_timeout_seconds: 60 } });
    const { runId } = await t.store.createRun({});
    await t.monitor.launch(runId);
    await t.tick(60 * S);
    expect((await t.run(runId)).status).toBe('FAILURE');
    expect((await t.run(runId)).tags[TAGS.failureReason]).toBe('START_TIMEOUT');
    expect(await t.messages(runId, 'RUN_FAILURE')).toEqual([
      'Run timed out due to taking longer than 60 seconds to start.',
    ]);
    expect(t.fake.calls.terminate).toEqual([runId]);
  });

  it('cancel timeout', async () => {
    const t = await setup({ cancel_timeout_seconds: 30 });
    const runId = await t.started();
    await t.monitor.cancel(runId);
    await t.tick(30 * S);
    expect((await t.run(runId)).status).toBe('CANCELED');
    expect(await t.messages(runId, 'RUN_CANCELED')).toEqual([
      'Run timed out due to taking longer than 30 seconds to cancel.',
    ]);
  });

  it('resume three times, then fail', async () => {
    const t = await setup({ pollIntervalSeconds: 5 }, { health: { status: 'FAILED', message: 'exit 137' } });
    const runId = await t.started();
    for (let i = 0; i < 4; i++) await t.tick(5 * S);
    expect(t.fake.calls.resume).toEqual([
      { runId, attempt: 1 },
      { runId, attempt: 2 },
      { runId, attempt: 3 },
    ]);
    expect((await t.run(runId)).resumeAttempts).toBe(3);
    expect((await t.run(runId)).tags[TAGS.failureReason]).toBe('RUN_WORKER_CRASHED');
    expect(await t.messages(runId, 'RUN_FAILURE')).toEqual([
      `Detected run worker status FAILED: 'exit 137'. Marking run ${runId} as failed, because it has surpassed the configured maximum attempts to resume the run: 3.`,
    ]);
  });

  it.each([
    ['tag', { [TAGS.maxRuntime]: '10' }, {}],
    ['alias tag', { [TAGS.maxRuntimeAlias]: '10' }, {}],
    ['configured default', {}, { maxRuntimeSeconds: 10 }],
  ])('max runtime by %s', async (_, tags, config) => {
    const t = await setup(config);
    const runId = await t.started(tags);
    await t.tick(10 * S);
    expect(await t.messages(runId, 'RUN_CANCELING')).toEqual([
      'Canceling due to exceeding maximum runtime of 10 seconds.',
    ]);
    expect(await t.messages(runId, 'RUN_FAILURE')).toEqual(['Exceeded maximum runtime of 10 seconds.']);
    expect((await t.run(runId)).tags[TAGS.failureReason]).toBe('MAX_RUNTIME_EXCEEDED');
  });

  it.each([false, 'throw'] as const)('max runtime when terminate returns %s', async (terminate) => {
    const t = await setup({}, { terminate });
    const runId = await t.started({ [TAGS.maxRuntime]: '10' });
    await t.tick(10 * S);
    expect(await t.messages(runId, 'RUN_FAILURE')).toEqual([
      'This run is being forcibly marked as failed. The computational resources created by the run may not have been fully cleaned up.',
    ]);
    const engine = await t.messages(runId, 'ENGINE_EVENT');
    expect(engine).toEqual(
      terminate === 'throw'
        ? ['Exception while attempting to terminate run. Run will still be marked as failed.']
        : [],
    );
  });
});

describe('beyond Dagster', () => {
  it('0 disables a check', async () => {
    const t = await setup({ startTimeoutSeconds: 0, cancelTimeoutSeconds: 0 });
    const { runId } = await t.store.createRun({});
    await t.monitor.launch(runId);
    await t.tick(10 ** 9);
    expect((await t.run(runId)).status).toBe('STARTING');
  });

  it('UNKNOWN health is tolerated unknownHealthTolerance times', async () => {
    const t = await setup({ pollIntervalSeconds: 5, unknownHealthTolerance: 2, maxResumeRunAttempts: 0 }, {});
    const runId = await t.started();
    t.fake.setHealth('UNKNOWN');
    await t.tick(5 * S);
    await t.tick(5 * S);
    expect((await t.run(runId)).status).toBe('STARTED');
    await t.tick(5 * S);
    expect((await t.run(runId)).status).toBe('FAILURE');
  });

  it('terminateOnStartTimeout: false leaves the worker alone', async () => {
    const t = await setup({ startTimeoutSeconds: 5, terminateOnStartTimeout: false });
    const { runId } = await t.store.createRun({});
    await t.monitor.launch(runId);
    await t.tick(5 * S);
    expect((await t.run(runId)).status).toBe('FAILURE');
    expect(t.fake.calls.terminate).toEqual([]);
  });

  it('a restarted monitor keeps the original deadlines', async () => {
    const t = await setup({ startTimeoutSeconds: 100 });
    const { runId } = await t.store.createRun({});
    await t.monitor.launch(runId);
    await t.tick(60 * S);
    await t.monitor.stop();
    const second = createRunMonitor({
      store: t.store,
      launcher: t.fake,
      clock: t.clock,
      config: { startTimeoutSeconds: 100 },
    });
    monitors.push(second);
    await second.start();
    t.clock.increment(40 * S - 1);
    await second.settle();
    expect((await t.run(runId)).status).toBe('STARTING');
    t.clock.increment(1);
    await second.settle();
    expect((await t.run(runId)).status).toBe('FAILURE');
  });

  it('an invalid max-runtime tag falls back to the default with an engine event', async () => {
    const t = await setup({ maxRuntimeSeconds: 20 });
    const runId = await t.started({ [TAGS.maxRuntime]: '-5' });
    const [note] = await t.messages(runId, 'ENGINE_EVENT');
    expect(note).toContain(TAGS.maxRuntime);
    expect(note).toContain('"-5"');
    await t.tick(20 * S);
    expect((await t.run(runId)).status).toBe('FAILURE');
  });

  it('bad config is refused with the field named', () => {
    expect(() =>
      createRunMonitor({
        store: new MemoryRunStore(),
        launcher: new FakeLauncher(),
        // @ts-expect-error a plain-JS caller's mistake: the types refuse it, and so does the runtime
        config: { poll_interval_seconds: 'soon' },
      }),
    ).toThrow(/poll_interval_seconds/);
  });
});
