// The behaviour every RunStore must share, written against the interface only so the same suite checks the
// memory, SQLite and PostgreSQL stores. A store's own test file calls describeRunStoreConformance.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DuplicateRunError,
  InvalidTagsError,
  InvalidTransitionError,
  RunNotFoundError,
  WorkerSupersededError,
} from '../src/core/errors.js';
import {
  ALLOWED_MOVES,
  isTerminal,
  RUN_STATUSES,
  type RunEvent,
  type RunEventType,
  type RunRecord,
  type RunStatus,
  type RunStore,
  STATUS_EVENT,
  STATUS_TIMESTAMP,
  TAGS,
  TERMINAL_STATUSES,
} from '../src/core/types.js';
import { describeLeaseConformance } from './lease-conformance.js';

interface ConformanceClock {
  now(): number;
  set(ms: number): void;
}

/** A clock that stands still until the test sets it: what a store's conformance run gives it. */
export function simulatedClock(start = 0): ConformanceClock {
  let now = start;
  return {
    now: () => now,
    set(ms: number) {
      now = ms;
    },
  };
}

export interface ConformanceContext {
  /** A fresh, empty store whose default `at` is `clock.now()`. */
  store: RunStore;
  clock: ConformanceClock;
  cleanup?: () => Promise<void>;
}

const TIMESTAMP_FIELDS = ['queuedAt', 'launchedAt', 'startedAt', 'cancelingAt', 'endedAt'] as const;

/** Shortest sequence of moves from NOT_STARTED to each status, derived from ALLOWED_MOVES. */
function pathsFromStart(): Record<RunStatus, RunStatus[]> {
  const paths = { NOT_STARTED: [] } as unknown as Record<RunStatus, RunStatus[]>;
  const queue: RunStatus[] = ['NOT_STARTED'];
  while (queue.length > 0) {
    const status = queue.shift()!;
    for (const next of ALLOWED_MOVES[status]) {
      if (paths[next] === undefined) {
        paths[next] = [...paths[status], next];
        queue.push(next);
      }
    }
  }
  return paths;
}

const PATHS = pathsFromStart();

export function describeRunStoreConformance(name: string, factory: () => Promise<ConformanceContext>): void {
  describe(name, () => {
    let store: RunStore;
    let clock: ConformanceClock;
    let cleanup: (() => Promise<void>) | undefined;

    beforeEach(async () => {
      ({ store, clock, cleanup } = await factory());
      clock.set(1_000);
    });

    afterEach(async () => {
      await cleanup?.();
    });

    /** Creates a run and walks it to `status` along allowed moves, one clock tick (1 s) per move. */
    async function runIn(status: RunStatus, runId?: string): Promise<RunRecord> {
      let record = await store.createRun({ runId });
      for (const to of PATHS[status]) {
        clock.set(clock.now() + 1_000);
        const next = await store.transition(record.runId, { to });
        if (!next) throw new Error(`setup: could not move ${record.runId} to ${to}`);
        record = next;
      }
      return record;
    }

    async function snapshot(runId: string) {
      return { run: await store.getRun(runId), events: await store.getEvents(runId) };
    }

    async function allEvents(): Promise<RunEvent[]> {
      const out: RunEvent[] = [];
      let after = 0;
      for (;;) {
        const page = await store.readEventsAfter(after, 1_000);
        if (page.length === 0) return out;
        out.push(...page);
        after = page[page.length - 1]!.seq;
      }
    }

    describe('createRun / getRun', () => {
      it('creates a NOT_STARTED run with defaults and appends no event', async () => {
        clock.set(5_000);
        const run = await store.createRun({});
        expect(typeof run.runId).toBe('string');
        expect(run.runId.length).toBeGreaterThan(0);
        expect(run).toEqual({
          runId: run.runId,
          status: 'NOT_STARTED',
          tags: {},
          createdAt: 5_000,
          updatedAt: 5_000,
          resumeAttempts: 0,
        });
        for (const field of TIMESTAMP_FIELDS) expect(run[field]).toBeUndefined();
        expect(await store.getRun(run.runId)).toEqual(run);
        expect(await store.getEvents(run.runId)).toEqual([]);
        expect(await store.readEventsAfter(0, 100)).toEqual([]);
      });

      it('generates distinct run ids', async () => {
        const a = await store.createRun({});
        const b = await store.createRun({});
        expect(a.runId).not.toBe(b.runId);
      });

      it('uses the given runId, tags and at', async () => {
        const run = await store.createRun({ runId: 'run-1', tags: { team: 'data', 'x/y': '' }, at: 42 });
        expect(run).toMatchObject({
          runId: 'run-1',
          tags: { team: 'data', 'x/y': '' },
          createdAt: 42,
          updatedAt: 42,
        });
        expect(await store.getRun('run-1')).toEqual(run);
      });

      it('copies the tags it is given', async () => {
        const tags = { a: '1' };
        await store.createRun({ runId: 'run-1', tags });
        tags.a = 'changed';
        (tags as Record<string, string>).b = 'added';
        expect((await store.getRun('run-1'))!.tags).toEqual({ a: '1' });
      });

      it('refuses a duplicate run id and leaves the first run alone', async () => {
        await store.createRun({ runId: 'dup', tags: { a: '1' }, at: 10 });
        await expect(store.createRun({ runId: 'dup', tags: { b: '2' }, at: 20 })).rejects.toBeInstanceOf(
          DuplicateRunError,
        );
        expect(await store.getRun('dup')).toMatchObject({ tags: { a: '1' }, createdAt: 10 });
      });

      it('refuses concurrent creates of one id but one', async () => {
        const results = await Promise.allSettled(
          Array.from({ length: 10 }, (_, i) => store.createRun({ runId: 'same', tags: { i: String(i) } })),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        for (const r of results) {
          if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(DuplicateRunError);
        }
      });

      it.each([
        ['an array', ['a']],
        ['null', null],
        ['a string', 'a=b'],
      ])('refuses tags that are %s', async (_label, tags) => {
        await expect(store.createRun({ runId: 'r', tags: tags as never })).rejects.toBeInstanceOf(
          InvalidTagsError,
        );
        expect(await store.getRun('r')).toBeUndefined();
      });

      it.each([
        ['a number', 1],
        ['null', null],
        ['undefined', undefined],
        ['an object', { nested: 'x' }],
        ['a boolean', true],
      ])('refuses a tag value that is %s, naming the key', async (_label, value) => {
        const error = await store
          .createRun({ runId: 'r', tags: { good: 'x', 'bad/key': value } as never })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidTagsError);
        expect((error as Error).message).toContain('bad/key');
        expect(await store.getRun('r')).toBeUndefined();
      });

      it.each([
        ['empty', ''],
        ['a number', 7],
        ['null', null],
      ])('refuses a run id that is %s', async (_label, runId) => {
        await expect(store.createRun({ runId: runId as never })).rejects.toMatchObject({
          code: 'INVALID_RUN_ID',
        });
        expect(await store.listRuns()).toEqual([]);
      });

      it('resolves undefined for an unknown run id', async () => {
        expect(await store.getRun('nope')).toBeUndefined();
      });
    });

    describe('transition: every pair of statuses', () => {
      for (const from of RUN_STATUSES) {
        for (const to of RUN_STATUSES) {
          if (ALLOWED_MOVES[from].includes(to)) {
            it(`${from} → ${to} applies, sets its timestamp and appends ${STATUS_EVENT[to as Exclude<RunStatus, 'NOT_STARTED'>]}`, async () => {
              const before = await runIn(from, 'run-1');
              const eventsBefore = await store.getEvents('run-1');
              clock.set(100_000);
              const after = await store.transition('run-1', { to, from: [from] });
              expect(after).toBeDefined();
              expect(after!.status).toBe(to);
              expect(after!.updatedAt).toBe(100_000);
              expect(after!.createdAt).toBe(before.createdAt);
              const field = STATUS_TIMESTAMP[to]!;
              const expected: Partial<RunRecord> = { ...before, status: to, updatedAt: 100_000 };
              // startedAt is only ever set once; every other status timestamp takes the new time.
              if (!(field === 'startedAt' && before.startedAt !== undefined)) {
                (expected as Record<string, unknown>)[field] = 100_000;
              }
              expect(after).toEqual(expected);
              expect(await store.getRun('run-1')).toEqual(after);

              const events = await store.getEvents('run-1');
              expect(events.slice(0, -1)).toEqual(eventsBefore);
              expect(events).toHaveLength(eventsBefore.length + 1);
              const event = events.at(-1)!;
              expect(event).toMatchObject({
                runId: 'run-1',
                at: 100_000,
                type: STATUS_EVENT[to as Exclude<RunStatus, 'NOT_STARTED'>],
              });
              expect(typeof event.message).toBe('string');
              expect(event.message).toContain(to);
            });

            it(`${from} → ${to} applies without \`from\``, async () => {
              await runIn(from, 'run-1');
              const after = await store.transition('run-1', { to });
              expect(after?.status).toBe(to);
              const events = await store.getEvents('run-1');
              expect(events.at(-1)!.type).toBe(STATUS_EVENT[to as Exclude<RunStatus, 'NOT_STARTED'>]);
              // The default message is shared by every store.
              expect(events.at(-1)!.message).toBe(`Run moved to ${to}.`);
            });
          } else {
            it(`${from} → ${to} is refused: throws with \`from: [${from}]\`, ${to === 'NOT_STARTED' ? 'throws' : 'resolves undefined'} without`, async () => {
              await runIn(from, 'run-1');
              const before = await snapshot('run-1');
              clock.set(100_000);
              await expect(
                store.transition('run-1', { to, from: [from], tags: { should: 'not-apply' } }),
              ).rejects.toBeInstanceOf(InvalidTransitionError);
              expect(await snapshot('run-1')).toEqual(before);

              const attempt = store.transition('run-1', { to, tags: { should: 'not-apply' } });
              // Nothing can move into NOT_STARTED, so asking for it is a caller bug whatever the run's status;
              // any other refused move is a lost race (the run moved on) and resolves undefined.
              if (to === 'NOT_STARTED') await expect(attempt).rejects.toBeInstanceOf(InvalidTransitionError);
              else expect(await attempt).toBeUndefined();
              expect(await snapshot('run-1')).toEqual(before);
            });
          }
        }
      }
    });

    describe('transition', () => {
      it('defaults `at` to the clock and uses the given message verbatim', async () => {
        await store.createRun({ runId: 'run-1' });
        clock.set(7_000);
        const run = await store.transition('run-1', { to: 'QUEUED', message: 'Queued by the scheduler.' });
        expect(run).toMatchObject({ status: 'QUEUED', queuedAt: 7_000, updatedAt: 7_000 });
        const [event] = await store.getEvents('run-1');
        expect(event).toMatchObject({ type: 'RUN_QUEUED', at: 7_000, message: 'Queued by the scheduler.' });
      });

      it('uses an explicit `at` over the clock', async () => {
        await store.createRun({ runId: 'run-1' });
        clock.set(7_000);
        const run = await store.transition('run-1', { to: 'STARTING', at: 6_500 });
        expect(run).toMatchObject({ launchedAt: 6_500, updatedAt: 6_500 });
        expect((await store.getEvents('run-1'))[0]!.at).toBe(6_500);
      });

      it('never changes a terminal run, whatever is asked', async () => {
        for (const terminal of TERMINAL_STATUSES) {
          const runId = `t-${terminal}`;
          await runIn(terminal, runId);
          const before = await snapshot(runId);
          clock.set(clock.now() + 60_000);
          for (const to of RUN_STATUSES) {
            const attempt = store.transition(runId, { to, tags: { x: 'y' } });
            if (to === 'NOT_STARTED') await expect(attempt).rejects.toBeInstanceOf(InvalidTransitionError);
            else expect(await attempt).toBeUndefined();
            // Naming the terminal status in `from` is a caller bug: nothing leaves a terminal status.
            await expect(store.transition(runId, { to, from: [terminal] })).rejects.toBeInstanceOf(
              InvalidTransitionError,
            );
          }
          expect(await snapshot(runId)).toEqual(before);
        }
      });

      it('compare-and-set: a losing `from` resolves undefined and changes nothing', async () => {
        await runIn('STARTED', 'run-1');
        const before = await snapshot('run-1');
        const lost = await store.transition('run-1', {
          to: 'FAILURE',
          from: ['STARTING'],
          message: 'start timeout',
          tags: { 'runwarden/failure_reason': 'START_TIMEOUT' },
        });
        expect(lost).toBeUndefined();
        expect(await snapshot('run-1')).toEqual(before);

        const won = await store.transition('run-1', { to: 'FAILURE', from: ['STARTING', 'STARTED'] });
        expect(won?.status).toBe('FAILURE');
      });

      it('refuses a `from` list that names any status unable to move to `to`, even if the run is elsewhere', async () => {
        await runIn('STARTING', 'run-1');
        const before = await snapshot('run-1');
        // STARTING → STARTED is fine, STARTED → STARTED is not: the whole request is a caller bug.
        await expect(
          store.transition('run-1', { to: 'STARTED', from: ['STARTING', 'STARTED'] }),
        ).rejects.toBeInstanceOf(InvalidTransitionError);
        expect(await snapshot('run-1')).toEqual(before);
      });

      it('an empty `from` list never applies', async () => {
        await runIn('STARTING', 'run-1');
        const before = await snapshot('run-1');
        expect(await store.transition('run-1', { to: 'FAILURE', from: [] })).toBeUndefined();
        expect(await snapshot('run-1')).toEqual(before);
      });

      it('keeps the first startedAt through later moves, and each move its own timestamp', async () => {
        await store.createRun({ runId: 'run-1', at: 0 });
        await store.transition('run-1', { to: 'QUEUED', at: 10 });
        await store.transition('run-1', { to: 'STARTING', at: 20 });
        await store.transition('run-1', { to: 'STARTED', at: 30 });
        await store.incrementResumeAttempts('run-1');
        await store.transition('run-1', { to: 'CANCELING', at: 40 });
        const done = await store.transition('run-1', { to: 'SUCCESS', at: 50 });
        expect(done).toMatchObject({
          status: 'SUCCESS',
          createdAt: 0,
          queuedAt: 10,
          launchedAt: 20,
          startedAt: 30,
          cancelingAt: 40,
          endedAt: 50,
          updatedAt: 50,
          resumeAttempts: 1,
        });
        expect(await store.getRun('run-1')).toEqual(done);
        expect((await store.getEvents('run-1')).map((e) => [e.type, e.at])).toEqual([
          ['RUN_QUEUED', 10],
          ['RUN_STARTING', 20],
          ['RUN_START', 30],
          ['RUN_CANCELING', 40],
          ['RUN_SUCCESS', 50],
        ]);
      });

      it('merges tags in the same step, and only when it applies', async () => {
        await store.createRun({ runId: 'run-1', tags: { a: '1', b: '2' } });
        const run = await store.transition('run-1', {
          to: 'FAILURE',
          tags: { b: 'x', 'runwarden/failure_reason': 'Z' },
        });
        expect(run!.tags).toEqual({ a: '1', b: 'x', 'runwarden/failure_reason': 'Z' });
        expect((await store.getRun('run-1'))!.tags).toEqual(run!.tags);
        expect(await store.transition('run-1', { to: 'CANCELED', tags: { c: '3' } })).toBeUndefined();
        expect((await store.getRun('run-1'))!.tags).toEqual(run!.tags);
      });

      it('refuses invalid tags and changes nothing', async () => {
        await store.createRun({ runId: 'run-1' });
        const before = await snapshot('run-1');
        const error = await store
          .transition('run-1', { to: 'QUEUED', tags: { ok: 'x', n: 5 } as never })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidTagsError);
        expect((error as Error).message).toContain('"n"');
        expect(await snapshot('run-1')).toEqual(before);
      });

      it('throws RunNotFoundError for an unknown run', async () => {
        await expect(store.transition('nope', { to: 'QUEUED' })).rejects.toBeInstanceOf(RunNotFoundError);
        await expect(store.transition('nope', { to: 'FAILURE', from: ['STARTED'] })).rejects.toBeInstanceOf(
          RunNotFoundError,
        );
      });
    });

    describe('appendEvent / getEvents', () => {
      it('appends an ENGINE_EVENT with data, at defaulting to the clock', async () => {
        await store.createRun({ runId: 'run-1' });
        clock.set(3_000);
        const data = { attempt: 2, nested: { list: [1, 'two', null], flag: true } };
        const event = await store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'hello', data });
        expect(event).toEqual({
          runId: 'run-1',
          seq: event.seq,
          at: 3_000,
          type: 'ENGINE_EVENT',
          message: 'hello',
          data,
        });
        expect(await store.getEvents('run-1')).toEqual([event]);
        const plain = await store.appendEvent('run-1', {
          type: 'ENGINE_EVENT',
          message: 'no data',
          at: 2_500,
        });
        expect(plain.at).toBe(2_500);
        expect(plain.data).toBeUndefined();
        expect((await store.getEvents('run-1'))[1]!.data).toBeUndefined();
        // Engine events do not touch the run.
        expect((await store.getRun('run-1'))!.updatedAt).toBe(1_000);
      });

      it('appends to terminal runs too', async () => {
        await runIn('FAILURE', 'run-1');
        const event = await store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'after the end' });
        expect((await store.getEvents('run-1')).at(-1)).toEqual(event);
        expect((await store.getRun('run-1'))!.status).toBe('FAILURE');
      });

      it('refuses status event types: those only come from transition', async () => {
        await store.createRun({ runId: 'run-1' });
        await expect(
          store.appendEvent('run-1', { type: 'RUN_SUCCESS', message: 'sneaky' } as never),
        ).rejects.toMatchObject({ code: 'INVALID_EVENT' });
        expect(await store.getEvents('run-1')).toEqual([]);
        expect((await store.getRun('run-1'))!.status).toBe('NOT_STARTED');
      });

      it('lists a run’s events oldest first and filters by type', async () => {
        await store.createRun({ runId: 'run-1' });
        await store.createRun({ runId: 'other' });
        await store.transition('run-1', { to: 'STARTING' });
        await store.appendEvent('other', { type: 'ENGINE_EVENT', message: 'not mine' });
        await store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'e1' });
        await store.transition('run-1', { to: 'STARTED' });
        await store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'e2' });
        await store.transition('run-1', { to: 'SUCCESS' });

        const events = await store.getEvents('run-1');
        expect(events.map((e) => e.type)).toEqual([
          'RUN_STARTING',
          'ENGINE_EVENT',
          'RUN_START',
          'ENGINE_EVENT',
          'RUN_SUCCESS',
        ]);
        expect(events.every((e) => e.runId === 'run-1')).toBe(true);
        for (let i = 1; i < events.length; i++) expect(events[i]!.seq).toBeGreaterThan(events[i - 1]!.seq);

        const engine = await store.getEvents('run-1', { types: ['ENGINE_EVENT'] });
        expect(engine.map((e) => e.message)).toEqual(['e1', 'e2']);
        const some = await store.getEvents('run-1', { types: ['RUN_SUCCESS', 'RUN_STARTING'] });
        expect(some.map((e) => e.type)).toEqual(['RUN_STARTING', 'RUN_SUCCESS']);
        expect(await store.getEvents('run-1', { types: ['RUN_CANCELED'] })).toEqual([]);
        expect(await store.getEvents('run-1', { types: [] })).toEqual([]);
        expect(await store.getEvents('run-1', {})).toEqual(events);
      });

      it('throws RunNotFoundError for an unknown run', async () => {
        await expect(
          store.appendEvent('nope', { type: 'ENGINE_EVENT', message: 'x' }),
        ).rejects.toBeInstanceOf(RunNotFoundError);
        await expect(store.getEvents('nope')).rejects.toBeInstanceOf(RunNotFoundError);
        await expect(store.getEvents('nope', { types: ['ENGINE_EVENT'] })).rejects.toBeInstanceOf(
          RunNotFoundError,
        );
        expect(await store.readEventsAfter(0, 10)).toEqual([]);
      });
    });

    describe('incrementResumeAttempts', () => {
      it('counts durably and appends no event', async () => {
        await runIn('STARTED', 'run-1');
        const eventsBefore = await store.getEvents('run-1');
        expect(await store.incrementResumeAttempts('run-1')).toBe(1);
        expect(await store.incrementResumeAttempts('run-1')).toBe(2);
        expect(await store.incrementResumeAttempts('run-1')).toBe(3);
        const run = await store.getRun('run-1');
        expect(run).toMatchObject({ resumeAttempts: 3, status: 'STARTED' });
        expect((await store.listRuns()).find((r) => r.runId === 'run-1')!.resumeAttempts).toBe(3);
        expect(await store.getEvents('run-1')).toEqual(eventsBefore);
      });

      it('counts concurrent increments without losing any', async () => {
        await store.createRun({ runId: 'run-1' });
        const results = await Promise.all(
          Array.from({ length: 20 }, () => store.incrementResumeAttempts('run-1')),
        );
        expect([...results].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
        expect((await store.getRun('run-1'))!.resumeAttempts).toBe(20);
      });

      it('throws RunNotFoundError for an unknown run', async () => {
        await expect(store.incrementResumeAttempts('nope')).rejects.toBeInstanceOf(RunNotFoundError);
      });
    });

    describe('setTags', () => {
      it('merges tags, bumps updatedAt and appends no event', async () => {
        await store.createRun({ runId: 'run-1', tags: { a: '1', b: '2' } });
        clock.set(9_000);
        const run = await store.setTags('run-1', { b: 'x', c: '3' });
        expect(run).toMatchObject({
          status: 'NOT_STARTED',
          tags: { a: '1', b: 'x', c: '3' },
          updatedAt: 9_000,
        });
        expect(await store.getRun('run-1')).toEqual(run);
        expect(await store.getEvents('run-1')).toEqual([]);
      });

      it('works on a terminal run without changing its status', async () => {
        await runIn('CANCELED', 'run-1');
        const run = await store.setTags('run-1', { note: 'x' });
        expect(run).toMatchObject({ status: 'CANCELED', tags: { note: 'x' } });
      });

      it('refuses invalid tags naming the key, and changes nothing', async () => {
        await store.createRun({ runId: 'run-1', tags: { a: '1' } });
        const before = await snapshot('run-1');
        const error = await store
          .setTags('run-1', { ok: 'x', 'worker/pid': 123 } as never)
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidTagsError);
        expect((error as Error).message).toContain('worker/pid');
        await expect(store.setTags('run-1', null as never)).rejects.toBeInstanceOf(InvalidTagsError);
        expect(await snapshot('run-1')).toEqual(before);
      });

      it('throws RunNotFoundError for an unknown run', async () => {
        await expect(store.setTags('nope', { a: '1' })).rejects.toBeInstanceOf(RunNotFoundError);
      });
    });

    describe('heartbeat', () => {
      it('sets heartbeatAt (and progressAt with progress) without an event or a new updatedAt', async () => {
        const started = await runIn('STARTED', 'run-1');
        const seq = await store.latestSeq();
        clock.set(50_000);
        const beat = await store.heartbeat('run-1');
        expect(beat).toMatchObject({ status: 'STARTED', heartbeatAt: 50_000, updatedAt: started.updatedAt });
        expect(beat.progressAt).toBeUndefined();
        const progress = await store.heartbeat('run-1', { at: 60_000, progress: true });
        expect(progress).toMatchObject({ heartbeatAt: 60_000, progressAt: 60_000 });
        await store.heartbeat('run-1', { at: 70_000 });
        expect(await store.getRun('run-1')).toMatchObject({ heartbeatAt: 70_000, progressAt: 60_000 });
        expect(await store.latestSeq()).toBe(seq);
        expect((await store.listRuns({ statuses: ['STARTED'] }))[0]).toEqual(await store.getRun('run-1'));
      });

      it('leaves a run that has ended as it is', async () => {
        const ended = await runIn('SUCCESS', 'run-1');
        expect(await store.heartbeat('run-1', { at: 99_000, progress: true })).toEqual(ended);
        expect(await store.getRun('run-1')).toEqual(ended);
      });

      it('refuses an unknown run and a bad timestamp', async () => {
        await expect(store.heartbeat('nope')).rejects.toBeInstanceOf(RunNotFoundError);
        await runIn('STARTED', 'run-1');
        await expect(store.heartbeat('run-1', { at: Number.NaN })).rejects.toThrow(/at/);
        await expect(store.heartbeat('run-1', 'now' as never)).rejects.toThrow(/heartbeat/i);
        expect((await store.getRun('run-1'))?.heartbeatAt).toBeUndefined();
      });
    });

    describe('listRuns', () => {
      // Mixed case on purpose: runs are listed in plain code-unit order ('B' < 'a'), never a locale's collation.
      const ids = ['run-c', 'run-a', 'run-B', 'run-e', 'run-d'];
      const sorted = [...ids].sort();

      beforeEach(async () => {
        await runIn('STARTED', 'run-c');
        await runIn('NOT_STARTED', 'run-a');
        await runIn('SUCCESS', 'run-B');
        await runIn('STARTED', 'run-e');
        await runIn('CANCELING', 'run-d');
      });

      it('lists every run in runId order', async () => {
        const runs = await store.listRuns();
        expect(runs.map((r) => r.runId)).toEqual(sorted);
        expect(runs.map((r) => r.runId)).toEqual(['run-B', 'run-a', 'run-c', 'run-d', 'run-e']);
        for (const run of runs) expect(await store.getRun(run.runId)).toEqual(run);
        expect(await store.listRuns({})).toEqual(runs);
      });

      it('filters by status', async () => {
        expect((await store.listRuns({ statuses: ['STARTED'] })).map((r) => r.runId)).toEqual([
          'run-c',
          'run-e',
        ]);
        expect((await store.listRuns({ statuses: ['SUCCESS', 'NOT_STARTED'] })).map((r) => r.runId)).toEqual([
          'run-B',
          'run-a',
        ]);
        expect(
          (
            await store.listRuns({ statuses: ['NOT_STARTED', 'QUEUED', 'STARTING', 'STARTED', 'CANCELING'] })
          ).map((r) => r.runId),
        ).toEqual(['run-a', 'run-c', 'run-d', 'run-e']);
        expect(await store.listRuns({ statuses: ['FAILURE'] })).toEqual([]);
        expect(await store.listRuns({ statuses: [] })).toEqual([]);
      });

      it('filters by tags: every given tag, with exactly the given value', async () => {
        await store.setTags('run-c', { 'team/x': 'a', 'runwarden/terminate_pending': 'true' });
        await store.setTags('run-e', { 'team/x': 'b' });
        await store.setTags('run-B', { 'team/x': 'a', 'runwarden/terminate_pending': 'false' });
        const ids = async (filter: Parameters<RunStore['listRuns']>[0]) =>
          (await store.listRuns(filter)).map((r) => r.runId);
        expect(await ids({ tags: { 'team/x': 'a' } })).toEqual(['run-B', 'run-c']);
        expect(await ids({ tags: { 'team/x': 'a', 'runwarden/terminate_pending': 'true' } })).toEqual([
          'run-c',
        ]);
        expect(await ids({ tags: { 'team/x': 'a' }, statuses: ['SUCCESS'] })).toEqual(['run-B']);
        expect(await ids({ tags: { 'team/x': 'a' }, afterRunId: 'run-B', limit: 1 })).toEqual(['run-c']);
        expect(await ids({ tags: { 'team/x': '' } })).toEqual([]);
        expect(await ids({ tags: { 'no/such': 'a' } })).toEqual([]);
        // A key that looks like a JSON path is only a key.
        await store.setTags('run-d', { 'a.b': '1', $: '2' });
        expect(await ids({ tags: { 'a.b': '1', $: '2' } })).toEqual(['run-d']);
        expect(await ids({ tags: {} })).toEqual(sorted);
        await expect(store.listRuns({ tags: { 'team/x': 1 as unknown as string } })).rejects.toThrow(
          InvalidTagsError,
        );
      });

      it('applies limit after the status filter', async () => {
        expect((await store.listRuns({ limit: 2 })).map((r) => r.runId)).toEqual(['run-B', 'run-a']);
        expect((await store.listRuns({ limit: 100 })).map((r) => r.runId)).toEqual(sorted);
        expect(
          (await store.listRuns({ statuses: ['STARTED', 'CANCELING'], limit: 2 })).map((r) => r.runId),
        ).toEqual(['run-c', 'run-d']);
        expect(await store.listRuns({ limit: 0 })).toEqual([]);
      });

      it('pages with afterRunId, whether or not that run exists', async () => {
        expect((await store.listRuns({ afterRunId: 'run-a' })).map((r) => r.runId)).toEqual([
          'run-c',
          'run-d',
          'run-e',
        ]);
        expect((await store.listRuns({ afterRunId: 'run-b' })).map((r) => r.runId)).toEqual([
          'run-c',
          'run-d',
          'run-e',
        ]);
        expect(await store.listRuns({ afterRunId: 'run-e' })).toEqual([]);
        expect((await store.listRuns({ afterRunId: '' })).map((r) => r.runId)).toEqual(sorted);
        expect(
          (await store.listRuns({ afterRunId: 'run-B', statuses: ['STARTED'], limit: 1 })).map(
            (r) => r.runId,
          ),
        ).toEqual(['run-c']);

        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.listRuns({ limit: 2, afterRunId: after });
          if (page.length === 0) break;
          seen.push(...page.map((r) => r.runId));
          after = page.at(-1)!.runId;
        }
        expect(seen).toEqual(sorted);
      });
    });

    describe('a maximum-runtime stop is final once written', () => {
      const maxRuntime = { [TAGS.cancelReason]: 'MAX_RUNTIME_EXCEEDED' };

      /** A STARTED run the monitor has moved to CANCELING for maximum runtime, as the run actor writes it. */
      async function stoppedForMaxRuntime(runId: string): Promise<RunRecord> {
        await runIn('STARTED', runId);
        const run = await store.transition(runId, { to: 'CANCELING', from: ['STARTED'], tags: maxRuntime });
        if (!run) throw new Error('setup: the CANCELING write did not apply');
        return run;
      }

      it('refuses SUCCESS and CANCELED from it, with or without `from`, and writes nothing', async () => {
        await stoppedForMaxRuntime('run-1');
        const before = await snapshot('run-1');
        clock.set(100_000);
        for (const to of ['SUCCESS', 'CANCELED'] as const) {
          expect(await store.transition('run-1', { to, tags: { late: 'x' } })).toBeUndefined();
          expect(await store.transition('run-1', { to, from: ['CANCELING'] })).toBeUndefined();
        }
        expect(
          await store.transition('run-1', { to: 'SUCCESS', from: ['STARTED', 'CANCELING'] }),
        ).toBeUndefined();
        expect(await snapshot('run-1')).toEqual(before);
      });

      it('lets it end FAILURE, whoever writes', async () => {
        await stoppedForMaxRuntime('run-1');
        const monitor = await store.transition('run-1', {
          to: 'FAILURE',
          from: ['CANCELING'],
          tags: { [TAGS.failureReason]: 'MAX_RUNTIME_EXCEEDED' },
        });
        expect(monitor).toMatchObject({
          status: 'FAILURE',
          tags: { ...maxRuntime, [TAGS.failureReason]: 'MAX_RUNTIME_EXCEEDED' },
        });
        await stoppedForMaxRuntime('run-2');
        expect(await store.transition('run-2', { to: 'FAILURE' })).toMatchObject({ status: 'FAILURE' });
      });

      it('a SUCCESS that lands before the CANCELING write wins: the CANCELING write does not apply', async () => {
        await runIn('STARTED', 'run-1');
        expect(await store.transition('run-1', { to: 'SUCCESS' })).toMatchObject({ status: 'SUCCESS' });
        expect(
          await store.transition('run-1', { to: 'CANCELING', from: ['STARTED'], tags: maxRuntime }),
        ).toBeUndefined();
        expect(await store.getRun('run-1')).toMatchObject({ status: 'SUCCESS', tags: {} });
      });

      it.each([
        ['USER_REQUEST', { [TAGS.cancelReason]: 'USER_REQUEST' }],
        ['no reason', {}],
      ])('a cancel with %s may still end SUCCESS or CANCELED', async (_label, tags) => {
        for (const to of ['SUCCESS', 'CANCELED'] as const) {
          const runId = `run-${to}`;
          await runIn('STARTED', runId);
          await store.transition(runId, { to: 'CANCELING', from: ['STARTED'], tags });
          expect(await store.transition(runId, { to, from: ['CANCELING'] })).toMatchObject({ status: to });
        }
      });

      it('the same reason on a run that is not CANCELING restricts nothing', async () => {
        await store.createRun({ runId: 'run-1', tags: maxRuntime });
        await store.transition('run-1', { to: 'STARTING' });
        await store.transition('run-1', { to: 'STARTED' });
        expect(await store.transition('run-1', { to: 'SUCCESS' })).toMatchObject({ status: 'SUCCESS' });
      });
    });

    describe('input every store refuses the same way', () => {
      it.each([
        ['a string', '5'],
        ['NaN', Number.NaN],
        ['Infinity', Number.POSITIVE_INFINITY],
        ['null', null],
      ])('an `at` that is %s, naming it, and writes nothing', async (_label, at) => {
        const invalid = { code: 'INVALID_TIMESTAMP', message: expect.stringContaining('`at`') };
        await expect(store.createRun({ runId: 'bad', at: at as never })).rejects.toMatchObject(invalid);
        expect(await store.getRun('bad')).toBeUndefined();
        await store.createRun({ runId: 'run-1' });
        const before = await snapshot('run-1');
        await expect(store.transition('run-1', { to: 'QUEUED', at: at as never })).rejects.toMatchObject(
          invalid,
        );
        await expect(
          store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'x', at: at as never }),
        ).rejects.toMatchObject(invalid);
        expect(await snapshot('run-1')).toEqual(before);
      });

      it('an engine event that is not an object, or whose message is not a string', async () => {
        await store.createRun({ runId: 'run-1' });
        for (const event of [null, 'hello', { type: 'ENGINE_EVENT' }, { type: 'ENGINE_EVENT', message: 5 }]) {
          await expect(store.appendEvent('run-1', event as never)).rejects.toMatchObject({
            code: 'INVALID_EVENT',
          });
        }
        expect(await store.getEvents('run-1')).toEqual([]);
      });

      it('event data that JSON cannot hold, naming the problem, and writes nothing', async () => {
        await store.createRun({ runId: 'run-1' });
        const circular: Record<string, unknown> = {};
        circular.self = circular;
        for (const data of [circular, 10n, () => 1, Symbol('s')]) {
          const error = await store
            .appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'x', data })
            .catch((e: unknown) => e);
          expect(error).toMatchObject({
            code: 'INVALID_EVENT',
            message: expect.stringContaining('JSON-serialisable'),
          });
        }
        expect(await store.getEvents('run-1')).toEqual([]);
        expect(await store.latestSeq()).toBe(0);
      });

      it('event data comes back as JSON would carry it, from every store', async () => {
        await store.createRun({ runId: 'run-1' });
        const data = { when: new Date(0), gone: undefined, skipped: () => 1, list: [undefined, 1] };
        const appended = await store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'x', data });
        const expected = { when: '1970-01-01T00:00:00.000Z', list: [null, 1] };
        expect(appended.data).toStrictEqual(expected);
        expect((await store.getEvents('run-1'))[0]!.data).toStrictEqual(expected);
        expect((await store.readEventsAfter(0, 1))[0]!.data).toStrictEqual(expected);
        const nullData = await store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'y', data: null });
        expect(nullData.data).toBeNull();
      });

      it('a listener that is not a function', () => {
        expect(() => store.subscribe('listener' as never)).toThrow(
          expect.objectContaining({ code: 'INVALID_LISTENER' }),
        );
      });

      it('reads a fractional limit as rounded up, and a negative or NaN one as none', async () => {
        await store.createRun({ runId: 'a' });
        await store.createRun({ runId: 'b' });
        await store.createRun({ runId: 'c' });
        for (const message of ['1', '2', '3'])
          await store.appendEvent('a', { type: 'ENGINE_EVENT', message });
        expect(await store.listRuns({ limit: 1.5 })).toHaveLength(2);
        expect(await store.listRuns({ limit: -1 })).toEqual([]);
        expect(await store.listRuns({ limit: Number.NaN })).toEqual([]);
        expect(await store.listRuns({ limit: Number.POSITIVE_INFINITY })).toHaveLength(3);
        expect(await store.readEventsAfter(0, 1.5)).toHaveLength(2);
        expect(await store.readEventsAfter(0, -1)).toEqual([]);
        expect(await store.readEventsAfter(0, Number.NaN)).toEqual([]);
        expect(await store.readEventsAfter(0, Number.POSITIVE_INFINITY)).toHaveLength(3);
      });
    });

    describe('seq and readEventsAfter', () => {
      async function writeMix(): Promise<void> {
        await store.createRun({ runId: 'r1' });
        await store.createRun({ runId: 'r2' });
        await store.createRun({ runId: 'r3' });
        await store.transition('r2', { to: 'STARTING' });
        await store.appendEvent('r1', { type: 'ENGINE_EVENT', message: 'm1' });
        await store.transition('r1', { to: 'QUEUED' });
        await store.transition('r3', { to: 'CANCELED' });
        await store.appendEvent('r2', { type: 'ENGINE_EVENT', message: 'm2' });
        await store.transition('r2', { to: 'STARTED' });
        await store.appendEvent('r3', { type: 'ENGINE_EVENT', message: 'm3' });
      }

      it('gives every event a store-wide, strictly increasing seq ≥ 1 in write order', async () => {
        await writeMix();
        const events = await allEvents();
        expect(events.map((e) => `${e.runId}:${e.type === 'ENGINE_EVENT' ? e.message : e.type}`)).toEqual([
          'r2:RUN_STARTING',
          'r1:m1',
          'r1:RUN_QUEUED',
          'r3:RUN_CANCELED',
          'r2:m2',
          'r2:RUN_START',
          'r3:m3',
        ]);
        expect(events[0]!.seq).toBeGreaterThanOrEqual(1);
        for (let i = 1; i < events.length; i++) expect(events[i]!.seq).toBeGreaterThan(events[i - 1]!.seq);
        // The feed and the per-run logs are the same events.
        const perRun = [
          ...(await store.getEvents('r1')),
          ...(await store.getEvents('r2')),
          ...(await store.getEvents('r3')),
        ].sort((a, b) => a.seq - b.seq);
        expect(perRun).toEqual(events);
      });

      it('pages with (seq, limit)', async () => {
        await writeMix();
        const all = await allEvents();
        expect(all).toHaveLength(7);
        const seqs = all.map((e) => e.seq);

        expect(await store.readEventsAfter(0, 3)).toEqual(all.slice(0, 3));
        expect(await store.readEventsAfter(seqs[2]!, 3)).toEqual(all.slice(3, 6));
        expect(await store.readEventsAfter(seqs[5]!, 3)).toEqual(all.slice(6));
        expect(await store.readEventsAfter(seqs[6]!, 3)).toEqual([]);
        expect(await store.readEventsAfter(seqs[6]! + 1_000, 3)).toEqual([]);
        expect(await store.readEventsAfter(0, 1)).toEqual(all.slice(0, 1));
        expect(await store.readEventsAfter(0, 100)).toEqual(all);
        expect(await store.readEventsAfter(0, 0)).toEqual([]);
        // A seq between two events (stores may leave gaps) starts at the next one.
        expect(await store.readEventsAfter(seqs[3]! - 0.5, 2)).toEqual(all.slice(3, 5));

        const paged: RunEvent[] = [];
        let after = 0;
        for (;;) {
          const page = await store.readEventsAfter(after, 2);
          expect(page.length).toBeLessThanOrEqual(2);
          if (page.length === 0) break;
          paged.push(...page);
          after = page.at(-1)!.seq;
        }
        expect(paged).toEqual(all);
      });

      it('latestSeq is 0 on an empty store, then the newest event’s seq', async () => {
        expect(await store.latestSeq()).toBe(0);
        await store.createRun({ runId: 'r0' });
        expect(await store.latestSeq()).toBe(0);
        await writeMix();
        const all = await allEvents();
        expect(await store.latestSeq()).toBe(all.at(-1)!.seq);
        expect(await store.readEventsAfter(await store.latestSeq(), 10)).toEqual([]);
        // Refused and lost writes append nothing, so they do not move it.
        await store.transition('r3', { to: 'FAILURE' });
        await store.setTags('r1', { a: 'b' });
        await store.incrementResumeAttempts('r1');
        expect(await store.latestSeq()).toBe(all.at(-1)!.seq);
        const next = await store.appendEvent('r1', { type: 'ENGINE_EVENT', message: 'n' });
        expect(await store.latestSeq()).toBe(next.seq);
      });

      it('returns the events in the shape the writes returned them', async () => {
        await store.createRun({ runId: 'r1' });
        const appended = await store.appendEvent('r1', {
          type: 'ENGINE_EVENT',
          message: 'x',
          at: 5,
          data: { k: ['v'] },
        });
        expect(await store.readEventsAfter(0, 10)).toEqual([appended]);
      });
    });

    describe('subscribe', () => {
      it('delivers this store’s writes in order, before the write resolves', async () => {
        const received: RunEvent[] = [];
        store.subscribe((e) => received.push(e));
        await store.createRun({ runId: 'r1' });
        expect(received).toEqual([]);
        await store.transition('r1', { to: 'STARTING' });
        expect(received.map((e) => e.type)).toEqual(['RUN_STARTING']);
        await store.appendEvent('r1', { type: 'ENGINE_EVENT', message: 'hi', data: { n: 1 } });
        expect(received.map((e) => e.type)).toEqual(['RUN_STARTING', 'ENGINE_EVENT']);
        await store.transition('r1', { to: 'STARTED' });
        await store.incrementResumeAttempts('r1');
        await store.setTags('r1', { a: 'b' });
        expect(await store.transition('r1', { to: 'STARTING', from: ['NOT_STARTED'] })).toBeUndefined();
        expect(received).toEqual(await store.getEvents('r1'));
      });

      it('delivers to every listener; unsubscribe stops delivery and is idempotent', async () => {
        const a: string[] = [];
        const b: string[] = [];
        const offA = store.subscribe((e) => a.push(e.message));
        store.subscribe((e) => b.push(e.message));
        await store.createRun({ runId: 'r1' });
        await store.appendEvent('r1', { type: 'ENGINE_EVENT', message: 'one' });
        offA();
        offA();
        await store.appendEvent('r1', { type: 'ENGINE_EVENT', message: 'two' });
        expect(a).toEqual(['one']);
        expect(b).toEqual(['one', 'two']);
      });

      it('a throwing listener breaks neither the write nor the other listeners', async () => {
        const received: string[] = [];
        store.subscribe(() => {
          throw new Error('listener bug');
        });
        store.subscribe((e) => received.push(e.type));
        await store.createRun({ runId: 'r1' });
        const run = await store.transition('r1', { to: 'STARTING' });
        expect(run?.status).toBe('STARTING');
        const event = await store.appendEvent('r1', { type: 'ENGINE_EVENT', message: 'still works' });
        expect(event.message).toBe('still works');
        expect(received).toEqual(['RUN_STARTING', 'ENGINE_EVENT']);
        expect((await store.getRun('r1'))!.status).toBe('STARTING');
        expect(await store.getEvents('r1')).toHaveLength(2);
      });

      it('hands listeners copies', async () => {
        store.subscribe((e) => {
          e.message = 'mutated';
          (e.data as { n: number }).n = 99;
        });
        await store.createRun({ runId: 'r1' });
        await store.appendEvent('r1', { type: 'ENGINE_EVENT', message: 'orig', data: { n: 1 } });
        expect((await store.getEvents('r1'))[0]).toMatchObject({ message: 'orig', data: { n: 1 } });
      });
    });

    describe('returned objects are copies', () => {
      it('records', async () => {
        const created = await store.createRun({ runId: 'r1', tags: { a: '1' } });
        created.status = 'FAILURE';
        created.tags.a = 'x';
        const got = (await store.getRun('r1'))!;
        expect(got).toMatchObject({ status: 'NOT_STARTED', tags: { a: '1' } });
        got.tags.b = 'y';
        got.resumeAttempts = 9;
        const moved = (await store.transition('r1', { to: 'STARTING' }))!;
        moved.tags.c = 'z';
        moved.launchedAt = 0;
        const listed = (await store.listRuns())[0]!;
        listed.tags.d = 'w';
        const tagged = await store.setTags('r1', { e: 'v' });
        tagged.tags.f = 'u';
        expect(await store.getRun('r1')).toEqual({
          ...got,
          status: 'STARTING',
          resumeAttempts: 0,
          tags: { a: '1', e: 'v' },
          launchedAt: 1_000,
          updatedAt: 1_000,
        });
      });

      it('events, including their data', async () => {
        await store.createRun({ runId: 'r1' });
        const data = { list: [1, 2], inner: { k: 'v' } };
        const appended = await store.appendEvent('r1', { type: 'ENGINE_EVENT', message: 'm', data });
        data.list.push(3);
        data.inner.k = 'changed-input';
        (appended.data as typeof data).inner.k = 'changed-returned';
        appended.message = 'changed';
        const [fromGet] = await store.getEvents('r1');
        (fromGet!.data as typeof data).list.length = 0;
        const [fromFeed] = await store.readEventsAfter(0, 1);
        fromFeed!.seq = -1;
        expect(await store.getEvents('r1')).toEqual([
          {
            runId: 'r1',
            seq: appended.seq,
            at: 1_000,
            type: 'ENGINE_EVENT',
            message: 'm',
            data: { list: [1, 2], inner: { k: 'v' } },
          },
        ]);
        expect(await store.readEventsAfter(0, 1)).toEqual(await store.getEvents('r1'));
      });
    });

    describe('worker fencing (attempt)', () => {
      /** A STARTED run resumed `resumes` times, as the monitor does before launching the next worker. */
      async function resumed(runId: string, resumes: number): Promise<RunRecord> {
        await runIn('STARTED', runId);
        for (let i = 0; i < resumes; i++) await store.incrementResumeAttempts(runId);
        return (await store.getRun(runId))!;
      }

      it('refuses a SUCCESS from an attempt older than resumeAttempts, naming both, and writes nothing', async () => {
        await resumed('run-1', 2);
        const before = await snapshot('run-1');
        const seq = await store.latestSeq();
        const error = await store
          .transition('run-1', { to: 'SUCCESS', attempt: 1, tags: { done: 'yes' } })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(WorkerSupersededError);
        expect(error).toMatchObject({
          code: 'WORKER_SUPERSEDED',
          runId: 'run-1',
          attempt: 1,
          currentAttempt: 2,
        });
        expect((error as Error).message).toMatch(/run-1.*attempt 1.*attempt 2/);
        expect(await snapshot('run-1')).toEqual(before);
        expect(await store.latestSeq()).toBe(seq);
      });

      it('refuses a stale attempt even when its move would not apply (the worker must learn it)', async () => {
        await runIn('SUCCESS', 'run-1');
        await store.incrementResumeAttempts('run-1');
        await expect(store.transition('run-1', { to: 'FAILURE', attempt: 0 })).rejects.toBeInstanceOf(
          WorkerSupersededError,
        );
      });

      it('accepts the current attempt, a newer one, and writes without one (the monitor)', async () => {
        await resumed('run-1', 1);
        expect(await store.transition('run-1', { to: 'CANCELING', attempt: 1 })).toMatchObject({
          status: 'CANCELING',
        });
        expect(await store.transition('run-1', { to: 'SUCCESS', attempt: 2 })).toMatchObject({
          status: 'SUCCESS',
        });
        await resumed('run-2', 3);
        expect(await store.transition('run-2', { to: 'FAILURE' })).toMatchObject({ status: 'FAILURE' });
        // A first worker (attempt 0) on a run never resumed.
        await runIn('STARTING', 'run-3');
        expect(await store.transition('run-3', { to: 'STARTED', attempt: 0 })).toMatchObject({
          status: 'STARTED',
        });
      });

      it('fences heartbeats: a stale one is refused and sets nothing; the current one is written', async () => {
        await resumed('run-1', 1);
        clock.set(50_000);
        await expect(store.heartbeat('run-1', { attempt: 0, progress: true })).rejects.toBeInstanceOf(
          WorkerSupersededError,
        );
        expect(await store.getRun('run-1')).toMatchObject({ resumeAttempts: 1 });
        expect((await store.getRun('run-1'))!.heartbeatAt).toBeUndefined();
        expect((await store.getRun('run-1'))!.progressAt).toBeUndefined();
        expect(await store.heartbeat('run-1', { attempt: 1 })).toMatchObject({ heartbeatAt: 50_000 });
      });

      it('fences engine events: a stale one is refused and appends nothing; the current one is appended', async () => {
        await resumed('run-1', 1);
        const before = await snapshot('run-1');
        const seq = await store.latestSeq();
        await expect(
          store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'step done', attempt: 0 }),
        ).rejects.toBeInstanceOf(WorkerSupersededError);
        expect(await snapshot('run-1')).toEqual(before);
        expect(await store.latestSeq()).toBe(seq);
        const event = await store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'ok', attempt: 1 });
        expect(event).toMatchObject({ runId: 'run-1', message: 'ok' });
        expect(event).not.toHaveProperty('attempt');
        await expect(
          store.appendEvent('nope', { type: 'ENGINE_EVENT', message: 'x', attempt: 0 }),
        ).rejects.toBeInstanceOf(RunNotFoundError);
      });

      it('refuses an attempt that is not a whole number >= 0, naming the field, and writes nothing', async () => {
        await runIn('STARTED', 'run-1');
        const before = await snapshot('run-1');
        for (const attempt of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '0', null]) {
          const bad = attempt as never;
          for (const write of [
            () => store.transition('run-1', { to: 'SUCCESS', attempt: bad }),
            () => store.heartbeat('run-1', { attempt: bad }),
            () => store.appendEvent('run-1', { type: 'ENGINE_EVENT', message: 'x', attempt: bad }),
          ]) {
            const error = await write().catch((e: unknown) => e);
            expect(error).toMatchObject({ code: 'INVALID_ATTEMPT' });
            expect((error as Error).message).toMatch(/`attempt` must be a whole number >= 0/);
          }
        }
        expect(await snapshot('run-1')).toEqual(before);
      });

      it('a resume racing a stale SUCCESS: either the SUCCESS landed first or it was refused', async () => {
        await runIn('STARTED', 'run-1');
        const [write, count] = await Promise.all([
          store.transition('run-1', { to: 'SUCCESS', attempt: 0 }).catch((e: unknown) => e),
          store.incrementResumeAttempts('run-1'),
        ]);
        expect(count).toBe(1);
        const run = (await store.getRun('run-1'))!;
        if (write instanceof WorkerSupersededError) expect(run.status).toBe('STARTED');
        else expect(run.status).toBe('SUCCESS');
      });
    });
    describeLeaseConformance(() => ({ store, clock }));

    describe('concurrency', () => {
      it('200 transitions on different runs and 50 racing CAS writes on one run', async () => {
        const ids = Array.from({ length: 200 }, (_, i) => `bulk-${String(i).padStart(3, '0')}`);
        await Promise.all(ids.map((runId) => store.createRun({ runId })));
        await runIn('STARTING', 'contested');
        const targets: RunStatus[] = ['STARTED', 'CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED'];

        const [bulk, race] = await Promise.all([
          Promise.all(ids.map((runId) => store.transition(runId, { to: 'STARTING', from: ['NOT_STARTED'] }))),
          Promise.all(
            Array.from({ length: 50 }, (_, i) =>
              store.transition('contested', {
                to: targets[i % targets.length]!,
                from: ['STARTING'],
                message: `writer ${i}`,
                tags: { writer: String(i) },
              }),
            ),
          ),
        ]);

        expect(bulk.every((r) => r?.status === 'STARTING')).toBe(true);
        for (const runId of ids) {
          expect((await store.getEvents(runId)).map((e) => e.type)).toEqual(['RUN_STARTING']);
        }

        const winners = race.filter((r): r is RunRecord => r !== undefined);
        expect(winners).toHaveLength(1);
        const winner = winners[0]!;
        const contested = (await store.getRun('contested'))!;
        expect(contested).toEqual(winner);
        const events = await store.getEvents('contested');
        expect(events.map((e) => e.type)).toEqual([
          'RUN_STARTING',
          STATUS_EVENT[winner.status as Exclude<RunStatus, 'NOT_STARTED'>],
        ]);
        expect(events[1]!.message).toBe(`writer ${winner.tags.writer}`);

        const feed = await allEvents();
        expect(feed).toHaveLength(200 + 2);
        expect(new Set(feed.map((e) => e.seq)).size).toBe(feed.length);
        for (let i = 1; i < feed.length; i++) expect(feed[i]!.seq).toBeGreaterThan(feed[i - 1]!.seq);
        expect((await store.listRuns({ statuses: ['STARTING'] })).map((r) => r.runId)).toEqual(ids);
      });
    });

    it('covers every status and event type (guards this suite against new statuses)', () => {
      expect(Object.keys(PATHS).sort()).toEqual([...RUN_STATUSES].sort());
      const eventTypes = new Set<RunEventType>(Object.values(STATUS_EVENT));
      expect(eventTypes.size).toBe(RUN_STATUSES.length - 1);
      expect(RUN_STATUSES.filter(isTerminal)).toEqual([...TERMINAL_STATUSES]);
    });
  });
}
