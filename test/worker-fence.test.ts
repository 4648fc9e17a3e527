// Worker fencing in-process: the worker SDK on a MemoryRunStore under vitest's fake timers. A worker whose run
// the monitor resumed (resumeAttempts bumped past the worker's attempt) has every write refused, and stops:
// signal aborted, heartbeats stopped, later calls refused, exit code 3. test/worker-fence-processes.test.ts
// does the same with real processes (SDK, `runwarden report`, --wrap) on SQLite.
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WORKER_SUPERSEDED_EXIT_CODE, WorkerSupersededError } from '../src/core/errors.js';
import { type HeartbeatInput, type RunStatus, TAGS } from '../src/core/types.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { reportTarget } from '../src/cli/report.js';
import { parseWorkerEnv } from '../src/worker/env.js';
import { runWorker, type StartRunWorkerOptions, startRunWorker } from '../src/worker/worker.js';

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
});

afterEach(() => {
  vi.useRealTimers();
});

/** A run in `status` and a worker harness for it at `attempt`; `resume()` does what the monitor does. */
async function setup(status: RunStatus, attempt: number, extra: StartRunWorkerOptions = {}) {
  const store = new MemoryRunStore();
  const { runId } = await store.createRun({});
  for (const to of status === 'STARTING' ? ['STARTING'] : ['STARTING', 'STARTED']) {
    await store.transition(runId, { to: to as RunStatus });
  }
  for (let i = 0; i < attempt; i++) await store.incrementResumeAttempts(runId);
  const beats: HeartbeatInput[] = [];
  const original = store.heartbeat.bind(store);
  vi.spyOn(store, 'heartbeat').mockImplementation((id: string, beat?: HeartbeatInput) => {
    beats.push(beat ?? {});
    return original(id, beat);
  });
  const exits: number[] = [];
  const notices: string[] = [];
  const signals = new EventEmitter();
  const options: StartRunWorkerOptions = {
    store,
    env: { RUNWARDEN_RUN_ID: runId, RUNWARDEN_RESUME_ATTEMPT: String(attempt) },
    signals,
    exit: (code) => exits.push(code),
    notice: (message) => notices.push(message),
    ...extra,
  };
  return {
    store,
    runId,
    beats,
    exits,
    notices,
    signals,
    options,
    start: () => startRunWorker(options),
    resume: () => store.incrementResumeAttempts(runId),
    run: async () => (await store.getRun(runId))!,
    events: async () => (await store.getEvents(runId)).map((e) => e.message),
  };
}

describe('the worker SDK, superseded', () => {
  it('a SUCCESS after a resume is refused: nothing written, one line, exit 3, every later call refused', async () => {
    const t = await setup('STARTING', 0);
    const run = await t.start();
    await t.resume();
    const before = await t.events();

    const error = await run.succeed().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerSupersededError);
    expect(error).toMatchObject({ runId: t.runId, attempt: 0, currentAttempt: 1 });
    expect(t.exits).toEqual([WORKER_SUPERSEDED_EXIT_CODE]);
    expect(WORKER_SUPERSEDED_EXIT_CODE).toBe(3);
    expect(t.notices).toEqual([
      `Run ${t.runId}: this worker (attempt 0) was superseded by attempt 1; its write was refused. The run was resumed with a new worker, so this one must stop. Exiting with code 3.`,
    ]);
    expect((await t.run()).status).toBe('STARTED');
    expect(await t.events()).toEqual(before);

    expect(run.superseded).toBe(error);
    expect(run.signal.aborted).toBe(true);
    expect(run.signal.reason).toBe(error);
    await expect(run.step('next', () => 1)).rejects.toBe(error);
    await expect(run.log('hello')).rejects.toBe(error);
    await expect(run.fail(new Error('x'))).rejects.toBe(error);
    expect(() => run.progress()).toThrow(error);
    expect(t.exits).toEqual([3]);
  });

  it('a step learns it from its own event: the work is not run, and runWorker reports nothing', async () => {
    const t = await setup('STARTED', 1);
    const work = vi.fn();
    const done = runWorker(async (run) => {
      await t.resume();
      await run.step('extract', work);
    }, t.options);
    await done;
    expect(work).not.toHaveBeenCalled();
    expect(t.exits).toEqual([3]);
    const run = await t.run();
    expect(run).toMatchObject({ status: 'STARTED', resumeAttempts: 2 });
    expect(await t.events()).toEqual([
      'Run moved to STARTING.',
      'Run moved to STARTED.',
      'Run worker resumed (attempt 1)',
    ]);
  });

  it('learns it from a heartbeat while it works, and stops beating', async () => {
    const t = await setup('STARTING', 0, { heartbeatSeconds: 1 });
    const run = await t.start();
    expect(t.beats).toEqual([{ attempt: 0 }]);
    let stepSignal: AbortSignal | undefined;
    const step = run.step('long', ({ signal }) => {
      stepSignal = signal;
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    });
    const stepError = step.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1000);
    expect(t.exits).toEqual([]);
    await t.resume();
    await vi.advanceTimersByTimeAsync(1000);
    expect(t.exits).toEqual([3]);
    expect(stepSignal?.aborted).toBe(true);
    expect(await stepError).toBeInstanceOf(WorkerSupersededError);
    const beatsThen = t.beats.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.beats).toHaveLength(beatsThen);
    expect(t.beats.every((b) => b.attempt === 0)).toBe(true);
    // The refused beat wrote nothing: heartbeatAt is the one before the resume.
    expect((await t.run()).heartbeatAt).toBe(1_700_000_000_000 + 1000);
  });

  it('a progress write refused stops the worker too', async () => {
    const t = await setup('STARTING', 0);
    const run = await t.start();
    await t.resume();
    run.progress('40 of 100 files');
    await vi.advanceTimersByTimeAsync(0);
    expect(t.exits).toEqual([3]);
    expect(t.beats).toEqual([{ progress: true, attempt: 0 }]);
    expect((await t.run()).progressAt).toBeUndefined();
  });

  it('onSuperseded replaces the line and the exit; it is called once', async () => {
    const onSuperseded = vi.fn();
    const t = await setup('STARTING', 0, { onSuperseded });
    const run = await t.start();
    await t.resume();
    await expect(run.log('a')).rejects.toBeInstanceOf(WorkerSupersededError);
    await expect(run.succeed()).rejects.toBeInstanceOf(WorkerSupersededError);
    expect(onSuperseded).toHaveBeenCalledTimes(1);
    expect(onSuperseded.mock.calls[0]![0]).toBeInstanceOf(WorkerSupersededError);
    expect(t.exits).toEqual([]);
    expect(t.notices).toEqual([]);
  });

  it('a worker started after its attempt was superseded never reports STARTED', async () => {
    const t = await setup('STARTING', 0);
    await t.resume();
    await expect(t.start()).rejects.toBeInstanceOf(WorkerSupersededError);
    expect(t.exits).toEqual([3]);
    expect((await t.run()).status).toBe('STARTING');
  });

  it('a cancel whose CANCELED is refused exits 3, not 0', async () => {
    const t = await setup('STARTING', 0);
    const run = await t.start();
    const step = run.step('work', ({ signal }) => {
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    });
    const stepDone = step.catch(() => undefined);
    await t.store.transition(t.runId, {
      to: 'CANCELING',
      tags: { [TAGS.cancelReason]: 'USER_REQUEST' },
    });
    await t.resume();
    t.signals.emit('SIGTERM');
    await stepDone;
    await vi.advanceTimersByTimeAsync(0);
    expect(t.exits).toEqual([3]);
    expect((await t.run()).status).toBe('CANCELING');
  });

  it('the current attempt writes as before: a resumed worker succeeds', async () => {
    const t = await setup('STARTED', 2, { heartbeatSeconds: 1 });
    const run = await t.start();
    await run.step('a', () => 1);
    run.progress('half');
    await vi.advanceTimersByTimeAsync(1000);
    expect(await run.succeed()).toMatchObject({ status: 'SUCCESS' });
    expect(t.exits).toEqual([]);
    expect(t.beats.every((b) => b.attempt === 2)).toBe(true);
  });
});

describe('the worker environment, read once (src/worker/env.ts)', () => {
  it('reads every variable; empty is unset; the attempt defaults to 0', () => {
    expect(parseWorkerEnv({})).toEqual({ attempt: 0 });
    expect(
      parseWorkerEnv({
        RUNWARDEN_RUN_ID: 'r1',
        RUNWARDEN_STORE: 'sqlite:/x.db',
        RUNWARDEN_RESUME_ATTEMPT: '2',
        RUNWARDEN_HEARTBEAT_SECONDS: '0.5',
      }),
    ).toEqual({ runId: 'r1', store: 'sqlite:/x.db', attempt: 2, heartbeatSeconds: 0.5 });
    expect(parseWorkerEnv({ RUNWARDEN_RUN_ID: '', RUNWARDEN_RESUME_ATTEMPT: '' })).toEqual({ attempt: 0 });
  });

  it('refuses a malformed attempt or heartbeat interval, naming the variable and the value', () => {
    for (const text of ['-1', '1.5', 'two', ' 1', '1e3', '9007199254740993']) {
      expect(() => parseWorkerEnv({ RUNWARDEN_RESUME_ATTEMPT: text })).toThrow(
        `RUNWARDEN_RESUME_ATTEMPT must be a whole number >= 0; got ${JSON.stringify(text)}.`,
      );
    }
    expect(() => parseWorkerEnv({ RUNWARDEN_HEARTBEAT_SECONDS: '0' })).toThrow(
      /^RUNWARDEN_HEARTBEAT_SECONDS must be a number of seconds > 0 and <= 2147483.647; got "0"\.$/,
    );
  });

  it('runwarden report fences with the attempt only for the run the environment is about', () => {
    const env = { RUNWARDEN_RUN_ID: 'r1', RUNWARDEN_STORE: 'sqlite:/x.db', RUNWARDEN_RESUME_ATTEMPT: '1' };
    expect(reportTarget({}, env)).toMatchObject({ runId: 'r1', attempt: 1 });
    expect(reportTarget({ runId: 'r1' }, env)).toMatchObject({ runId: 'r1', attempt: 1 });
    expect(reportTarget({ runId: 'other' }, env)).toMatchObject({ runId: 'other', attempt: undefined });
    expect(() => reportTarget({}, { ...env, RUNWARDEN_RESUME_ATTEMPT: 'x' })).toThrow(
      expect.objectContaining({ code: 'INVALID_CONFIG' }),
    );
  });
});
