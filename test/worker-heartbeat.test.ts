// The worker SDK's heartbeats and progress in-process, on a MemoryRunStore under vitest's fake timers (Date
// included, so the store stamps simulated time). test/worker-heartbeat-processes.test.ts runs a real worker.
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { type HeartbeatInput, TAGS } from '../src/core/types.js';
import { PROGRESS_INTERVAL_MS } from '../src/worker/liveness.js';
import {
  type HeartbeatContext,
  noHeartbeat,
  runWorker,
  type StartRunWorkerOptions,
  startRunWorker,
} from '../src/worker/worker.js';

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
});

afterEach(() => {
  vi.useRealTimers();
});

/**
 * A STARTING run, a worker harness for it, and every heartbeat write the worker tried, with the simulated
 * time it tried it. `failNext(n)` makes the next n writes fail as a busy store does; `holdNext()` keeps the
 * next one in flight until the returned function is called.
 */
async function setup(extra: StartRunWorkerOptions = {}, env: Record<string, string> = {}) {
  const store = new MemoryRunStore();
  const { runId } = await store.createRun({});
  await store.transition(runId, { to: 'STARTING' });
  const writes: { at: number; progress: boolean }[] = [];
  let failing = 0;
  let held: Promise<void> | undefined;
  const original = store.heartbeat.bind(store);
  const heartbeat = vi
    .spyOn(store, 'heartbeat')
    .mockImplementation(async (id: string, beat?: HeartbeatInput) => {
      writes.push({ at: Date.now(), progress: beat?.progress === true });
      if (held) {
        const wait = held;
        held = undefined;
        await wait;
      }
      if (failing > 0) {
        failing--;
        throw new Error('database is locked');
      }
      return original(id, beat);
    });
  const failNext = (n: number) => {
    failing = n;
  };
  const holdNext = () => {
    let release!: () => void;
    held = new Promise((resolve) => (release = resolve));
    return release;
  };
  const signals = new EventEmitter();
  const exits: number[] = [];
  const notices: string[] = [];
  const options: StartRunWorkerOptions = {
    store,
    // An explicit env: the test process's own RUNWARDEN_* variables never leak in.
    env: { RUNWARDEN_RUN_ID: runId, ...env },
    signals,
    exit: (code) => exits.push(code),
    notice: (message) => notices.push(message),
    ...extra,
  };
  const beats = () => writes.filter((w) => !w.progress);
  const progress = () => writes.filter((w) => w.progress);
  /** The messages of the run's ENGINE_EVENTs (status events left out). */
  const events = async () =>
    (await store.getEvents(runId, { types: ['ENGINE_EVENT'] })).map((e) => e.message);
  return {
    store,
    runId,
    writes,
    heartbeat,
    failNext,
    holdNext,
    beats,
    progress,
    events,
    signals,
    exits,
    notices,
    options,
    start: () => startRunWorker(options),
  };
}

describe('heartbeats', () => {
  it('beats once the run is STARTED, then every heartbeatSeconds, without progress', async () => {
    const t = await setup({ heartbeatSeconds: 2 });
    const t0 = Date.now();
    await t.start();
    expect(t.beats().map((w) => w.at)).toEqual([t0]);
    expect(await t.store.getRun(t.runId)).toMatchObject({ status: 'STARTED', heartbeatAt: t0 });
    await vi.advanceTimersByTimeAsync(1999);
    expect(t.beats()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await vi.advanceTimersByTimeAsync(6000);
    expect(t.beats().map((w) => w.at - t0)).toEqual([0, 2000, 4000, 6000, 8000]);
    const run = await t.store.getRun(t.runId);
    expect(run?.heartbeatAt).toBe(t0 + 8000);
    expect(run?.progressAt).toBeUndefined();
    // No events: a heartbeat costs the store one small write and the event log nothing.
    expect(await t.events()).toEqual([]);
  });

  it('takes RUNWARDEN_HEARTBEAT_SECONDS by default; the option overrides it; with neither, none', async () => {
    const fromEnv = await setup({}, { RUNWARDEN_HEARTBEAT_SECONDS: '0.5' });
    await fromEnv.start();
    await vi.advanceTimersByTimeAsync(1000);
    expect(fromEnv.beats()).toHaveLength(3);

    const overridden = await setup({ heartbeatSeconds: 3 }, { RUNWARDEN_HEARTBEAT_SECONDS: '0.5' });
    await overridden.start();
    await vi.advanceTimersByTimeAsync(3000);
    expect(overridden.beats()).toHaveLength(2);

    vi.clearAllTimers();
    const none = await setup();
    await none.start();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(none.heartbeat).not.toHaveBeenCalled();
  });

  it('runWorker takes heartbeatSeconds too', async () => {
    const t = await setup();
    await runWorker(() => vi.advanceTimersByTimeAsync(3000), { ...t.options, heartbeatSeconds: 1 });
    expect(t.beats()).toHaveLength(4);
    expect((await t.store.getRun(t.runId))?.status).toBe('SUCCESS');
    expect(vi.getTimerCount()).toBe(0);
  });

  it.each([
    ['succeed', (run: Awaited<ReturnType<typeof startRunWorker>>) => run.succeed()],
    ['fail', (run: Awaited<ReturnType<typeof startRunWorker>>) => run.fail(new Error('x'))],
    ['close', (run: Awaited<ReturnType<typeof startRunWorker>>) => run.close()],
  ])('stops on %s: no timer left, no write after', async (_name, finish) => {
    const t = await setup({ heartbeatSeconds: 1 });
    const run = await t.start();
    await vi.advanceTimersByTimeAsync(2000);
    await finish(run);
    const count = t.writes.length;
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.writes).toHaveLength(count);
  });

  it.each([
    ['a cancel (reports CANCELED, exits 0)', { [TAGS.cancelReason]: 'USER_REQUEST' }, 'CANCELED', 0],
    ['a maximum-runtime stop (exits 143)', { [TAGS.cancelReason]: 'MAX_RUNTIME_EXCEEDED' }, 'CANCELING', 143],
  ] as const)('stops on the SIGTERM of %s', async (_name, tags, status, code) => {
    const t = await setup({ heartbeatSeconds: 1 });
    const run = await t.start();
    const step = run.step(
      'work',
      ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', reject)),
    );
    step.catch(() => {});
    await t.store.transition(t.runId, { to: 'CANCELING', tags });
    t.signals.emit('SIGTERM');
    await run.succeed(); // waits for the SIGTERM's outcome
    expect(t.exits).toEqual([code]);
    expect((await t.store.getRun(t.runId))?.status).toBe(status);
    const count = t.beats().length;
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.beats()).toHaveLength(count);
  });

  it('a failed write is logged once, tried again at the next tick, and never thrown', async () => {
    const t = await setup({ heartbeatSeconds: 1 });
    t.failNext(1); // the first heartbeat, at start: startRunWorker still succeeds
    const run = await t.start();
    expect(t.notices).toEqual([
      `Run ${t.runId}: could not record a heartbeat, trying again at the next one (further failures are not logged until one succeeds): database is locked`,
    ]);
    t.failNext(2);
    await vi.advanceTimersByTimeAsync(3000);
    expect(t.beats()).toHaveLength(4);
    expect(t.notices).toHaveLength(2);
    expect(t.notices[1]).toBe(`Run ${t.runId}: heartbeats recorded again after 3 failed writes.`);
    expect((await t.store.getRun(t.runId))?.heartbeatAt).toBe(Date.now());
    expect((await run.succeed())?.status).toBe('SUCCESS');
  });

  it('skips ticks while a write is still in flight instead of piling them up', async () => {
    const t = await setup({ heartbeatSeconds: 1 });
    const run = await t.start();
    const release = t.holdNext();
    await vi.advanceTimersByTimeAsync(5000);
    expect(t.heartbeat).toHaveBeenCalledTimes(2);
    release();
    await vi.advanceTimersByTimeAsync(1000);
    expect(t.heartbeat).toHaveBeenCalledTimes(3);
    await run.succeed();
  });

  it('refuses a bad RUNWARDEN_HEARTBEAT_SECONDS, naming it and the value, before reporting STARTED', async () => {
    for (const value of ['abc', '0', '-2', 'Infinity', 'NaN', ' ', '3000000']) {
      const t = await setup({}, { RUNWARDEN_HEARTBEAT_SECONDS: value });
      await expect(t.start()).rejects.toMatchObject({
        code: 'WORKER_ENV_INVALID',
        message: `RUNWARDEN_HEARTBEAT_SECONDS must be a number of seconds > 0 and <= 2147483.647; got ${JSON.stringify(value)}.`,
      });
      expect((await t.store.getRun(t.runId))?.status).toBe('STARTING');
    }
    // Empty is unset, as for RUNWARDEN_RESUME_ATTEMPT.
    const empty = await setup({}, { RUNWARDEN_HEARTBEAT_SECONDS: '' });
    await empty.start();
    expect(empty.heartbeat).not.toHaveBeenCalled();
  });

  it('refuses a bad heartbeatSeconds option, naming it and the value', async () => {
    for (const [value, shown] of [
      [0, '0'],
      [-1, '-1'],
      [Number.NaN, 'NaN'],
      [Number.POSITIVE_INFINITY, 'Infinity'],
      ['5', '"5"'],
      [3e6, '3000000'],
    ] as const) {
      const t = await setup({ heartbeatSeconds: value as number });
      await expect(t.start()).rejects.toMatchObject({
        code: 'INVALID_OPTION',
        message: `heartbeatSeconds must be a number of seconds > 0 and <= 2147483.647; got ${shown}.`,
      });
      expect((await t.store.getRun(t.runId))?.status).toBe('STARTING');
    }
  });
});

describe('the heartbeat option (WorkerHeartbeat)', () => {
  it('replaces the timer and is told the interval asked for', async () => {
    const contexts: HeartbeatContext[] = [];
    const calls: string[] = [];
    const t = await setup(
      {
        heartbeat: {
          start: (context) => {
            contexts.push(context);
            calls.push('start');
          },
          stop: () => {
            calls.push('stop');
          },
        },
      },
      { RUNWARDEN_HEARTBEAT_SECONDS: '0.5' },
    );
    const run = await t.start();
    await vi.advanceTimersByTimeAsync(5000);
    expect(t.heartbeat).not.toHaveBeenCalled();
    expect(contexts[0]).toMatchObject({ runId: t.runId, attempt: 0, store: t.store, intervalSeconds: 0.5 });
    await run.succeed();
    expect(calls).toEqual(['start', 'stop']);
  });

  it('noHeartbeat turns heartbeats off even when RUNWARDEN_HEARTBEAT_SECONDS is set', async () => {
    const t = await setup({ heartbeat: noHeartbeat }, { RUNWARDEN_HEARTBEAT_SECONDS: '0.5' });
    await t.start();
    await vi.advanceTimersByTimeAsync(5000);
    expect(t.heartbeat).not.toHaveBeenCalled();
  });
});

describe('progress', () => {
  it('writes the first sign at once and coalesces a burst into one more write a second later', async () => {
    const t = await setup();
    const run = await t.start();
    const t0 = Date.now();
    for (let i = 0; i < 10; i++) run.progress();
    await vi.advanceTimersByTimeAsync(0);
    expect(t.progress().map((w) => w.at - t0)).toEqual([0]);
    expect(await t.store.getRun(t.runId)).toMatchObject({ progressAt: t0, heartbeatAt: t0 });
    await vi.advanceTimersByTimeAsync(PROGRESS_INTERVAL_MS - 1);
    expect(t.progress()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(t.progress().map((w) => w.at - t0)).toEqual([0, 1000]);
    // Nothing pending any more: quiet stays quiet.
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.progress()).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('writes at most once a second under steady calls, and the last one lands within a second', async () => {
    const t = await setup();
    const run = await t.start();
    const t0 = Date.now();
    let last = 0;
    for (let ms = 0; ms <= 3500; ms += 100) {
      run.progress();
      last = Date.now();
      await vi.advanceTimersByTimeAsync(100);
    }
    await vi.advanceTimersByTimeAsync(2000);
    const times = t.progress().map((w) => w.at - t0);
    expect(times).toEqual([0, 1000, 2000, 3000, 4000]);
    expect(t0 + times.at(-1)!).toBeGreaterThanOrEqual(last);
    expect(t0 + times.at(-1)! - last).toBeLessThanOrEqual(PROGRESS_INTERVAL_MS);
  });

  it('logs the latest message of a burst as an ENGINE_EVENT with its write', async () => {
    const t = await setup();
    const run = await t.start();
    run.progress('row 1');
    run.progress('row 2');
    run.progress('row 3');
    run.progress(); // no message: the latest message stays
    await vi.advanceTimersByTimeAsync(0);
    expect(await t.events()).toEqual(['row 1']);
    await vi.advanceTimersByTimeAsync(PROGRESS_INTERVAL_MS);
    expect(await t.events()).toEqual(['row 1', 'row 3']);
    const event = (await t.store.getEvents(t.runId)).at(-1);
    expect(event).toMatchObject({ type: 'ENGINE_EVENT', data: { progress: true, attempt: 0 } });
    expect(t.progress()).toHaveLength(2);
  });

  it('counts a step starting and finishing (completed, failed or skipped) as progress', async () => {
    const t = await setup();
    const run = await t.start();
    const t0 = Date.now();
    await run.step('a', () => 1);
    expect(t.progress().map((w) => w.at - t0)).toEqual([0]); // started; completed is coalesced
    await vi.advanceTimersByTimeAsync(PROGRESS_INTERVAL_MS);
    expect(t.progress().map((w) => w.at - t0)).toEqual([0, 1000]);
    await vi.advanceTimersByTimeAsync(5000);
    await expect(run.step('b', () => Promise.reject(new Error('no')))).rejects.toThrow('no');
    await vi.advanceTimersByTimeAsync(PROGRESS_INTERVAL_MS);
    expect(t.progress().map((w) => w.at - t0)).toEqual([0, 1000, 6000, 7000]);
    expect((await t.store.getRun(t.runId))?.progressAt).toBe(t0 + 7000);

    const resumed = await setup();
    await resumed.store.appendEvent(resumed.runId, {
      type: 'ENGINE_EVENT',
      message: 'Step a completed.',
      data: { step: 'a', status: 'completed', attempt: 0, result: 1 },
    });
    const again = await resumed.start();
    expect(await again.step('a', () => 2)).toBe(1);
    expect(resumed.progress()).toHaveLength(1);
  });

  it('a failed write is logged once and tried again a second later', async () => {
    const t = await setup();
    const run = await t.start();
    t.failNext(1);
    const t0 = Date.now();
    run.progress('halfway');
    await vi.advanceTimersByTimeAsync(0);
    expect(t.notices).toEqual([
      `Run ${t.runId}: could not record progress, trying again at the next one (further failures are not logged until one succeeds): database is locked`,
    ]);
    expect(await t.events()).not.toContain('halfway');
    await vi.advanceTimersByTimeAsync(PROGRESS_INTERVAL_MS);
    expect(t.progress().map((w) => w.at - t0)).toEqual([0, 1000]);
    expect(await t.events()).toContain('halfway');
    expect(t.notices[1]).toBe(`Run ${t.runId}: progress recorded again after 1 failed write.`);
    expect((await t.store.getRun(t.runId))?.progressAt).toBe(t0 + 1000);
  });

  it('writes what is pending before the final report, and nothing after it', async () => {
    const t = await setup();
    const run = await t.start();
    run.progress('loading');
    run.progress('done loading');
    await run.succeed();
    const messages = (await t.store.getEvents(t.runId)).map((e) => e.message);
    expect(messages.slice(-3)).toEqual(['loading', 'done loading', 'Run succeeded.']);
    expect(vi.getTimerCount()).toBe(0);
    const count = t.writes.length;
    run.progress('late');
    await vi.advanceTimersByTimeAsync(5000);
    expect(t.writes).toHaveLength(count);
  });

  it('refuses a message that is not a string', async () => {
    const t = await setup();
    const run = await t.start();
    expect(() => run.progress(42 as unknown as string)).toThrow(
      /run.progress\(\) takes an optional message string; got number/,
    );
    expect(t.heartbeat).not.toHaveBeenCalled();
  });
});
