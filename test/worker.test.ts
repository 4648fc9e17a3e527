// The run-worker SDK in-process, on a MemoryRunStore: reporting, step records and skipping, SIGTERM handling
// (through an EventEmitter standing in for `process`). test/worker-processes.test.ts runs it in real processes.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { type RunStatus, TAGS } from '../src/core/types.js';
import {
  noHeartbeat,
  RunCanceledError,
  runWorker,
  type StartRunWorkerOptions,
  type StepEventData,
  startRunWorker,
  type WorkerHeartbeat,
} from '../src/worker/worker.js';

async function runIn(status: RunStatus, tags: Record<string, string> = {}) {
  const store = new MemoryRunStore();
  const { runId } = await store.createRun({ tags });
  const path: Record<RunStatus, RunStatus[]> = {
    NOT_STARTED: [],
    QUEUED: ['QUEUED'],
    STARTING: ['STARTING'],
    STARTED: ['STARTING', 'STARTED'],
    CANCELING: ['STARTING', 'STARTED', 'CANCELING'],
    SUCCESS: ['STARTING', 'STARTED', 'SUCCESS'],
    FAILURE: ['STARTING', 'FAILURE'],
    CANCELED: ['CANCELED'],
  };
  for (const to of path[status]) await store.transition(runId, { to });
  return { store, runId };
}

function harness(store: MemoryRunStore, runId: string, extra: StartRunWorkerOptions = {}) {
  const signals = new EventEmitter();
  const exits: number[] = [];
  const notices: string[] = [];
  const options: StartRunWorkerOptions = {
    store,
    env: { RUNWARDEN_RUN_ID: runId },
    signals,
    exit: (code) => exits.push(code),
    notice: (message) => notices.push(message),
    ...extra,
  };
  return { signals, exits, notices, start: () => startRunWorker(options) };
}

const stepEvents = async (store: MemoryRunStore, runId: string) =>
  (await store.getEvents(runId, { types: ['ENGINE_EVENT'] }))
    .map((e) => e.data as StepEventData | undefined)
    .filter((d): d is StepEventData => typeof d?.step === 'string')
    .map((d) => `${d.step}:${d.status}`);

describe('startRunWorker', () => {
  it('reports STARTED for a launched run', async () => {
    const { store, runId } = await runIn('STARTING');
    const run = await harness(store, runId).start();
    expect(run.attempt).toBe(0);
    expect(run.resumed).toBe(false);
    const record = await store.getRun(runId);
    expect(record?.status).toBe('STARTED');
    const [event] = await store.getEvents(runId, { types: ['RUN_START'] });
    expect(event?.message).toBe(`Run worker started (pid ${process.pid}).`);
  });

  it('continues a run that is already STARTED (a resume) and says so', async () => {
    const { store, runId } = await runIn('STARTED');
    const run = await harness(store, runId, {
      env: { RUNWARDEN_RUN_ID: runId, RUNWARDEN_RESUME_ATTEMPT: '2' },
    }).start();
    expect(run.attempt).toBe(2);
    expect(run.resumed).toBe(true);
    const events = await store.getEvents(runId, { types: ['ENGINE_EVENT', 'RUN_START'] });
    expect(events.filter((e) => e.type === 'RUN_START')).toHaveLength(1);
    expect(events.at(-1)?.message).toBe('Run worker resumed (attempt 2)');
  });

  it('reads the run id, attempt and store from the environment, naming what is missing', async () => {
    await expect(startRunWorker({ env: {} })).rejects.toThrow(/RUNWARDEN_RUN_ID is not set/);
    await expect(startRunWorker({ env: { RUNWARDEN_RUN_ID: 'r' } })).rejects.toThrow(
      /RUNWARDEN_STORE is not set/,
    );
    await expect(
      startRunWorker({
        env: { RUNWARDEN_RUN_ID: 'r', RUNWARDEN_STORE: 'sqlite:/x', RUNWARDEN_RESUME_ATTEMPT: 'two' },
      }),
    ).rejects.toThrow(/RUNWARDEN_RESUME_ATTEMPT must be a whole number >= 0; got "two"/);
    await expect(
      startRunWorker({ env: { RUNWARDEN_RUN_ID: 'r', RUNWARDEN_STORE: 'mysql://db' } }),
    ).rejects.toThrow(/Unsupported store URL/);
  });

  it('refuses runs that are unknown, not launched or already over', async () => {
    const store = new MemoryRunStore();
    await expect(harness(store, 'nope').start()).rejects.toThrow(/Unknown run id "nope"/);
    for (const [status, text] of [
      ['NOT_STARTED', /is NOT_STARTED: a worker can only start a run that was launched/],
      ['FAILURE', /has already ended \(FAILURE\)/],
    ] as const) {
      const { store, runId } = await runIn(status);
      await expect(harness(store, runId).start()).rejects.toThrow(text);
    }
  });

  it('reports CANCELED at once for a run canceled before its worker started, and exits', async () => {
    const { store, runId } = await runIn('CANCELING', { [TAGS.cancelReason]: 'USER_REQUEST' });
    const h = harness(store, runId);
    await expect(h.start()).rejects.toBeInstanceOf(RunCanceledError);
    expect((await store.getRun(runId))?.status).toBe('CANCELED');
    expect(h.exits).toEqual([0]);
  });
});

describe('steps', () => {
  it('records started and completed steps with their results', async () => {
    const { store, runId } = await runIn('STARTING');
    const run = await harness(store, runId).start();
    expect(await run.step('a', () => 1)).toBe(1);
    expect(
      await run.step('b', async ({ attempt, signal }) => ({ attempt, aborted: signal.aborted })),
    ).toEqual({
      attempt: 0,
      aborted: false,
    });
    expect(await stepEvents(store, runId)).toEqual(['a:started', 'a:completed', 'b:started', 'b:completed']);
    const completed = (await store.getEvents(runId)).find(
      (e) => (e.data as StepEventData | undefined)?.status === 'completed',
    );
    expect(completed?.message).toBe('Step a completed.');
    expect(completed?.data).toMatchObject({ step: 'a', status: 'completed', attempt: 0, result: 1 });
  });

  it('a resumed worker skips completed steps and gets their recorded results', async () => {
    const { store, runId } = await runIn('STARTING');
    const first = await harness(store, runId).start();
    await first.step('json', () => ({ rows: [1, 2] }));
    await first.step('not-json', () => 10n);
    await first.step('nothing', () => undefined);
    await expect(first.step('broken', () => Promise.reject(new Error('disk full')))).rejects.toThrow(
      'disk full',
    );

    const resumed = await harness(store, runId, {
      env: { RUNWARDEN_RUN_ID: runId, RUNWARDEN_RESUME_ATTEMPT: '1' },
    }).start();
    const ran: string[] = [];
    const step = (name: string) =>
      resumed.step(name, () => {
        ran.push(name);
        return `fresh ${name}`;
      });
    expect(resumed.isCompleted('json')).toBe(true);
    expect(await step('json')).toEqual({ rows: [1, 2] });
    expect(await step('not-json')).toBeUndefined();
    expect(await step('nothing')).toBeUndefined();
    expect(await step('broken')).toBe('fresh broken');
    expect(ran).toEqual(['broken']);
    const events = await stepEvents(store, runId);
    expect(events.slice(-5)).toEqual([
      'json:skipped',
      'not-json:skipped',
      'nothing:skipped',
      'broken:started',
      'broken:completed',
    ]);
    expect(events).toContain('broken:failed');
  });

  it('refuses a step name used twice by one worker, and steps after the final report', async () => {
    const { store, runId } = await runIn('STARTING');
    const run = await harness(store, runId).start();
    await run.step('a', () => 1);
    await expect(run.step('a', () => 2)).rejects.toThrow(/step names must be unique/);
    await run.succeed();
    await expect(run.step('b', () => 3)).rejects.toThrow(/already reported its final status/);
  });
});

describe('final reports', () => {
  it('succeed() reports SUCCESS; fail() reports FAILURE with the error', async () => {
    const ok = await runIn('STARTING');
    const run = await harness(ok.store, ok.runId).start();
    expect((await run.succeed())?.status).toBe('SUCCESS');

    const bad = await runIn('STARTING');
    const failing = await harness(bad.store, bad.runId).start();
    const record = await failing.fail(new Error('bad input'));
    expect(record?.status).toBe('FAILURE');
    const events = await bad.store.getEvents(bad.runId);
    expect(events.at(-1)?.message).toBe('Run failed: bad input');
    expect(events.at(-2)).toMatchObject({ type: 'ENGINE_EVENT', message: 'Run worker failed: bad input' });
  });

  it('runWorker reports SUCCESS when main returns and FAILURE when it throws', async () => {
    const ok = await runIn('STARTING');
    await runWorker(async (run) => run.step('x', () => 1), harnessOptions(ok.store, ok.runId));
    expect((await ok.store.getRun(ok.runId))?.status).toBe('SUCCESS');

    const bad = await runIn('STARTING');
    const previous = process.exitCode;
    await runWorker(
      () => {
        throw new Error('boom');
      },
      harnessOptions(bad.store, bad.runId),
    );
    expect(process.exitCode).toBe(1);
    process.exitCode = previous;
    expect((await bad.store.getRun(bad.runId))?.status).toBe('FAILURE');
  });

  it('starts and stops the heartbeat hook', async () => {
    const calls: string[] = [];
    const heartbeat: WorkerHeartbeat = {
      start: (context) => {
        calls.push(`start ${context.attempt}`);
      },
      stop: () => {
        calls.push('stop');
      },
    };
    const { store, runId } = await runIn('STARTING');
    const run = await harness(store, runId, { heartbeat }).start();
    expect(calls).toEqual(['start 0']);
    await run.succeed();
    expect(calls).toEqual(['start 0', 'stop']);
    expect(noHeartbeat.start({} as never)).toBeUndefined();
  });
});

function harnessOptions(store: MemoryRunStore, runId: string): StartRunWorkerOptions {
  return {
    store,
    env: { RUNWARDEN_RUN_ID: runId },
    signals: new EventEmitter(),
    exit: () => {},
    notice: () => {},
  };
}

describe('SIGTERM', () => {
  it('after a user cancel: aborts the running step, waits for its cleanup, reports CANCELED, exits 0', async () => {
    const { store, runId } = await runIn('STARTING');
    const h = harness(store, runId);
    const run = await h.start();
    const cleanup: string[] = [];
    const step = run.step('long', ({ signal }) => {
      return new Promise((_, reject) => {
        signal.addEventListener('abort', () => {
          setTimeout(() => {
            cleanup.push('cleaned');
            reject(signal.reason);
          }, 20);
        });
      });
    });
    await store.transition(runId, { to: 'CANCELING', tags: { [TAGS.cancelReason]: 'USER_REQUEST' } });
    h.signals.emit('SIGTERM');
    await expect(step).rejects.toBeInstanceOf(RunCanceledError);
    // fail() during the cancel waits for it instead of reporting FAILURE.
    await run.fail(new Error('canceled'));
    expect(cleanup).toEqual(['cleaned']);
    expect(h.exits).toEqual([0]);
    const record = await store.getRun(runId);
    expect(record?.status).toBe('CANCELED');
    expect(await stepEvents(store, runId)).toEqual(['long:started', 'long:canceled']);
    await expect(run.step('next', () => 1)).rejects.toBeInstanceOf(RunCanceledError);
  });

  it('leaves a max-runtime cancel to the monitor: exits 143 without reporting', async () => {
    const { store, runId } = await runIn('STARTING');
    const h = harness(store, runId);
    const run = await h.start();
    await store.transition(runId, { to: 'CANCELING', tags: { [TAGS.cancelReason]: 'MAX_RUNTIME_EXCEEDED' } });
    h.signals.emit('SIGTERM');
    await run.succeed();
    expect(h.exits).toEqual([143]);
    expect((await store.getRun(runId))?.status).toBe('CANCELING');
  });

  it('exits 143 without reporting when the run is not CANCELING (start timeout, host shutdown)', async () => {
    const { store, runId } = await runIn('STARTING');
    const h = harness(store, runId);
    await h.start();
    h.signals.emit('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(h.exits).toEqual([143]);
    expect((await store.getRun(runId))?.status).toBe('STARTED');
  });

  it('stops listening once the final status is reported', async () => {
    const { store, runId } = await runIn('STARTING');
    const h = harness(store, runId);
    const run = await h.start();
    expect(h.signals.listenerCount('SIGTERM')).toBe(1);
    await run.succeed();
    expect(h.signals.listenerCount('SIGTERM')).toBe(0);
  });
});

describe('a maximum-runtime stop is final once the monitor wrote it', () => {
  const maxRuntime = { [TAGS.cancelReason]: 'MAX_RUNTIME_EXCEEDED' };

  /** A started worker whose run the monitor then moves to CANCELING for max runtime, as the run actor does. */
  async function outrun() {
    const { store, runId } = await runIn('STARTING');
    const h = harness(store, runId);
    const run = await h.start();
    const canceling = await store.transition(runId, { to: 'CANCELING', from: ['STARTED'], tags: maxRuntime });
    expect(canceling).toBeDefined();
    const eventsBefore = await store.getEvents(runId);
    return { store, runId, h, run, eventsBefore };
  }

  it('succeed() reports nothing, resolves the CANCELING record, says why and exits 143 like on SIGTERM', async () => {
    const { store, runId, h, run, eventsBefore } = await outrun();
    const record = await run.succeed();
    expect(record).toMatchObject({ status: 'CANCELING', tags: maxRuntime });
    expect(await store.getEvents(runId)).toEqual(eventsBefore);
    expect(h.exits).toEqual([143]);
    expect(h.notices).toEqual([
      `Run ${runId}: not reporting SUCCESS: the monitor is stopping this run for exceeding its maximum runtime (runwarden/cancel_reason=MAX_RUNTIME_EXCEEDED), and the run will end FAILURE. Exiting.`,
    ]);
    // Released: the monitor's SIGTERM that follows finds no handler, and exit is not called twice.
    expect(h.signals.listenerCount('SIGTERM')).toBe(0);
    h.signals.emit('SIGTERM');
    expect(h.exits).toEqual([143]);
    // The monitor's FAILURE still applies.
    const failed = await store.transition(runId, {
      to: 'FAILURE',
      from: ['CANCELING'],
      tags: { [TAGS.failureReason]: 'MAX_RUNTIME_EXCEEDED' },
    });
    expect(failed?.status).toBe('FAILURE');
  });

  it('fail() records the error but leaves the FAILURE, and its reason, to the monitor', async () => {
    const { store, runId, h, run } = await outrun();
    const record = await run.fail(new Error('late and broken'));
    expect(record).toMatchObject({ status: 'CANCELING', tags: maxRuntime });
    const events = await store.getEvents(runId);
    expect(events.at(-1)).toMatchObject({
      type: 'ENGINE_EVENT',
      message: 'Run worker failed: late and broken',
    });
    expect(events.filter((e) => e.type === 'RUN_FAILURE')).toEqual([]);
    expect(h.exits).toEqual([143]);
    expect(h.notices).toHaveLength(1);
    expect(h.notices[0]).toContain('not reporting FAILURE');
  });

  it('runWorker whose main returns after the stop: no throw, nothing reported, exit 143', async () => {
    const { store, runId } = await runIn('STARTING');
    const exits: number[] = [];
    await runWorker(
      async (run) => {
        await store.transition(runId, { to: 'CANCELING', from: ['STARTED'], tags: maxRuntime });
        return run.runId;
      },
      { ...harnessOptions(store, runId), exit: (code) => exits.push(code) },
    );
    expect(exits).toEqual([143]);
    expect(await store.getRun(runId)).toMatchObject({ status: 'CANCELING' });
    expect(await store.getEvents(runId, { types: ['RUN_SUCCESS', 'RUN_FAILURE'] })).toEqual([]);
  });

  it('a SUCCESS that lands before the CANCELING write wins', async () => {
    const { store, runId } = await runIn('STARTING');
    const h = harness(store, runId);
    const run = await h.start();
    expect(await run.succeed()).toMatchObject({ status: 'SUCCESS' });
    expect(
      await store.transition(runId, { to: 'CANCELING', from: ['STARTED'], tags: maxRuntime }),
    ).toBeUndefined();
    expect(await store.getRun(runId)).toMatchObject({ status: 'SUCCESS' });
    expect(h.exits).toEqual([]);
    expect(h.notices).toEqual([]);
  });

  it.each([
    ['USER_REQUEST', { [TAGS.cancelReason]: 'USER_REQUEST' }],
    ['no reason', {}],
  ])('after a user cancel (%s), succeed() and fail() still report', async (_label, tags) => {
    for (const finish of ['succeed', 'fail'] as const) {
      const { store, runId } = await runIn('STARTING');
      const h = harness(store, runId);
      const run = await h.start();
      await store.transition(runId, { to: 'CANCELING', from: ['STARTED'], tags });
      const record = finish === 'succeed' ? await run.succeed() : await run.fail(new Error('x'));
      expect(record?.status).toBe(finish === 'succeed' ? 'SUCCESS' : 'FAILURE');
      expect(h.exits).toEqual([]);
      expect(h.notices).toEqual([]);
    }
  });

  it('a worker that starts after the stop refuses to run', async () => {
    const { store, runId } = await runIn('CANCELING', maxRuntime);
    const h = harness(store, runId);
    await expect(h.start()).rejects.toThrow(/being stopped by the monitor \(MAX_RUNTIME_EXCEEDED\)/);
    expect(h.exits).toEqual([]);
    expect((await store.getRun(runId))?.status).toBe('CANCELING');
  });
});
