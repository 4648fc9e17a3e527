// `runwarden report`: the built CLI against a real SQLite file, then the shell and Python workers of
// docs/launchers.md (test/fixtures/count-lines.sh, sum-numbers.py) started by a real launcher and monitor.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TAGS } from '../src/core/types.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { FIXTURES, setupWorkers, type WorkerSetup } from './any-language.js';
import { runCli, tempDir, waitFor } from './processes.js';

describe('runwarden report', () => {
  const dir = tempDir('runwarden-report-');
  const dbPath = join(dir.path, 'runs.db');
  const storeUrl = `sqlite:${dbPath}`;
  let store: SqliteRunStore;

  beforeAll(() => {
    store = new SqliteRunStore({ path: dbPath });
  });
  afterAll(async () => {
    await store.close();
    dir.remove();
  });

  /** A run moved through `statuses` (tags on the last move). */
  async function runIn(statuses: string[], tags: Record<string, string> = {}): Promise<string> {
    const { runId } = await store.createRun({});
    for (const [i, to] of statuses.entries()) {
      const last = i === statuses.length - 1;
      await store.transition(runId, { to: to as never, ...(last ? { tags } : {}) });
    }
    return runId;
  }

  const report = (runId: string, ...args: string[]) =>
    runCli(['report', ...args], { env: { RUNWARDEN_RUN_ID: runId, RUNWARDEN_STORE: storeUrl } });

  /** One line on stderr, nothing on stdout, this exit code. */
  function expectRefused(result: { code: number | null; stdout: string; stderr: string }, code: number) {
    expect(result.code, result.stderr).toBe(code);
    expect(result.stdout).toBe('');
    expect(result.stderr.split('\n'), result.stderr).toHaveLength(2);
    expect(result.stderr).toMatch(/^runwarden: /);
    return result.stderr.slice('runwarden: '.length).trimEnd();
  }

  it('started, then success, from the environment the launcher sets; silent when written', async () => {
    const runId = await runIn(['STARTING']);
    const started = await report(runId, 'started');
    expect(started).toEqual({ code: 0, stdout: '', stderr: '' });
    expect((await store.getRun(runId))!.status).toBe('STARTED');
    expect(await report(runId, 'success', '--message', 'wrote 3 files')).toMatchObject({ code: 0 });
    const events = await store.getEvents(runId);
    expect(events.map((e) => [e.type, e.message])).toEqual([
      ['RUN_STARTING', 'Run moved to STARTING.'],
      ['RUN_START', 'Run worker started.'],
      ['RUN_SUCCESS', 'wrote 3 files'],
    ]);
  });

  it('--run-id and --store override the environment', async () => {
    const runId = await runIn(['STARTING', 'STARTED']);
    const result = await runCli(
      ['report', 'failure', '-m', 'disk full', '--run-id', runId, '--store', storeUrl],
      {
        env: { RUNWARDEN_RUN_ID: 'some-other-run', RUNWARDEN_STORE: 'sqlite:/nonexistent/runs.db' },
      },
    );
    expect(result.code, result.stderr).toBe(0);
    const run = (await store.getRun(runId))!;
    expect(run.status).toBe('FAILURE');
    expect((await store.getEvents(runId)).at(-1)?.message).toBe('disk full');
  });

  it('a resumed worker reporting started logs its resume once, and the run stays STARTED', async () => {
    const runId = await runIn(['STARTING', 'STARTED']);
    const env = { RUNWARDEN_RUN_ID: runId, RUNWARDEN_STORE: storeUrl, RUNWARDEN_RESUME_ATTEMPT: '1' };
    expect((await runCli(['report', 'started'], { env })).code).toBe(0);
    expect((await runCli(['report', 'started'], { env })).code).toBe(0);
    const events = await store.getEvents(runId);
    expect(events.filter((e) => e.message === 'Run worker resumed (attempt 1)')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'RUN_START')).toHaveLength(1);
  });

  it('success after a user cancel applies (the work finished first); canceled after one ends CANCELED', async () => {
    const finished = await runIn(['STARTING', 'STARTED', 'CANCELING'], {
      [TAGS.cancelReason]: 'USER_REQUEST',
    });
    const stopped = await runIn(['STARTING', 'STARTED', 'CANCELING'], {
      [TAGS.cancelReason]: 'USER_REQUEST',
    });
    const [a, b] = await Promise.all([report(finished, 'success'), report(stopped, 'canceled')]);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect((await store.getRun(finished))!.status).toBe('SUCCESS');
    expect((await store.getRun(stopped))!.status).toBe('CANCELED');
  });

  it('refuses, in one line and exit 1, what the run does not allow, and writes nothing', async () => {
    const ended = await runIn(['STARTING', 'FAILURE']);
    const running = await runIn(['STARTING', 'STARTED']);
    const outrun = await runIn(['STARTING', 'STARTED', 'CANCELING'], {
      [TAGS.cancelReason]: 'MAX_RUNTIME_EXCEEDED',
    });
    const notLaunched = await runIn([]);
    const [late, cancelWithoutCancel, overMaxRuntime, failOverMaxRuntime, tooEarly] = await Promise.all([
      report(ended, 'success'),
      report(running, 'canceled'),
      report(outrun, 'success'),
      report(outrun, 'failure'),
      report(notLaunched, 'started'),
    ]);
    expect(expectRefused(late, 1)).toBe(`Run ${ended} has already ended (FAILURE); not reporting SUCCESS.`);
    expect(expectRefused(cancelWithoutCancel, 1)).toBe(
      `Run ${running} is STARTED: a worker reports canceled only after a cancel request (status CANCELING); not reporting CANCELED.`,
    );
    for (const [result, wanted] of [
      [overMaxRuntime, 'SUCCESS'],
      [failOverMaxRuntime, 'FAILURE'],
    ] as const) {
      expect(expectRefused(result, 1)).toBe(
        `Run ${outrun} is being stopped by the monitor for exceeding its maximum runtime (runwarden/cancel_reason=MAX_RUNTIME_EXCEEDED) and will end FAILURE; not reporting ${wanted}.`,
      );
    }
    expect(expectRefused(tooEarly, 1)).toMatch(new RegExp(`^Run ${notLaunched} is NOT_STARTED: `));
    expect((await store.getRun(ended))!.status).toBe('FAILURE');
    expect((await store.getRun(running))!.status).toBe('STARTED');
    expect((await store.getRun(outrun))!.status).toBe('CANCELING');
    expect((await store.getRun(notLaunched))!.status).toBe('NOT_STARTED');
  });

  it('heartbeat sets heartbeatAt, progress sets progressAt too, without an event; a message is logged', async () => {
    const runId = await runIn(['STARTING', 'STARTED']);
    const before = await store.latestSeq();
    expect((await report(runId, 'heartbeat')).code).toBe(0);
    const beat = (await store.getRun(runId))!;
    expect(beat.heartbeatAt).toBeGreaterThanOrEqual(beat.startedAt!);
    expect(beat.progressAt).toBeUndefined();
    expect(await store.latestSeq()).toBe(before);

    expect((await report(runId, 'progress')).code).toBe(0);
    const progressed = (await store.getRun(runId))!;
    expect(progressed.progressAt).toBeGreaterThanOrEqual(beat.heartbeatAt!);
    expect(progressed.heartbeatAt).toBe(progressed.progressAt);
    expect(await store.latestSeq()).toBe(before);

    expect((await report(runId, 'progress', '--message', '40 of 100 files')).code).toBe(0);
    expect((await store.getEvents(runId)).at(-1)).toMatchObject({
      type: 'ENGINE_EVENT',
      message: '40 of 100 files',
    });
  });

  it('a heartbeat or progress for a run that has ended is refused (exit 1): its worker should stop', async () => {
    const runId = await runIn(['STARTING', 'STARTED', 'SUCCESS']);
    const before = await store.latestSeq();
    const [beat, progress] = await Promise.all([
      report(runId, 'heartbeat'),
      report(runId, 'progress', '-m', 'still here'),
    ]);
    expect(expectRefused(beat, 1)).toBe(
      `Run ${runId} has already ended (SUCCESS); not recording the heartbeat.`,
    );
    expect(expectRefused(progress, 1)).toBe(
      `Run ${runId} has already ended (SUCCESS); not recording the progress.`,
    );
    const run = (await store.getRun(runId))!;
    expect([run.heartbeatAt, run.progressAt]).toEqual([undefined, undefined]);
    expect(await store.latestSeq()).toBe(before);
  });

  it('an unknown run, or a store file that does not exist, is a failure (exit 1) naming it', async () => {
    const [unknown, noStore] = await Promise.all([
      report('no-such-run', 'started'),
      runCli(['report', 'started'], {
        env: { RUNWARDEN_RUN_ID: 'r1', RUNWARDEN_STORE: `sqlite:${join(dir.path, 'typo.db')}` },
      }),
    ]);
    expect(expectRefused(unknown, 1)).toBe('Unknown run id "no-such-run": no such run in the store.');
    expect(expectRefused(noStore, 1)).toBe(
      `No run store at ${join(dir.path, 'typo.db')} (from RUNWARDEN_STORE=sqlite:${join(dir.path, 'typo.db')}): check the path; a launcher passes the store its monitor uses.`,
    );
  });

  it('no run id or store, or an unknown report, is a usage error (exit 2) naming what is missing', async () => {
    const [neither, noStore, bogus, help] = await Promise.all([
      runCli(['report', 'started'], { env: { RUNWARDEN_RUN_ID: '', RUNWARDEN_STORE: '' } }),
      runCli(['report', 'started', '--run-id', 'r1'], { env: { RUNWARDEN_STORE: '' } }),
      report('r1', 'finished'),
      runCli(['report', '--help']),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: runwarden report \[options\] <what>/);
    expect(expectRefused(neither, 2)).toBe(
      'Missing the run id (--run-id, or RUNWARDEN_RUN_ID) and the store (--store, or RUNWARDEN_STORE, e.g. sqlite:/var/lib/runwarden/runs.db): a launcher sets RUNWARDEN_RUN_ID and RUNWARDEN_STORE for the run workers it starts.',
    );
    expect(expectRefused(noStore, 2)).toMatch(/^Missing the store \(--store, or RUNWARDEN_STORE/);
    expect(expectRefused(bogus, 2)).toMatch(
      /^command-argument value 'finished' is invalid for argument 'what'\. Allowed choices are started, success, failure, canceled, heartbeat, progress; see runwarden report --help$/,
    );
  });
});

describe('workers in shell and Python reporting through runwarden report', () => {
  let s: WorkerSetup | undefined;
  afterEach(async () => {
    await s?.close();
    s = undefined;
  });

  const SH = join(FIXTURES, 'count-lines.sh');
  const PY = join(FIXTURES, 'sum-numbers.py');

  it('shell: SUCCESS with its message, and FAILURE when its input is missing', async () => {
    s = await setupWorkers();
    const input = join(s.dir.path, 'three.txt');
    writeFileSync(input, 'a\nb\nc\n');
    const ok = await s.launch(['sh', SH, input]);
    const bad = await s.launch(['sh', SH, join(s.dir.path, 'missing.txt')]);
    const [okRun, badRun] = await Promise.all([s.ended(ok), s.ended(bad)]);
    expect(okRun.status).toBe('SUCCESS');
    expect((await s.store.getEvents(ok)).map((e) => e.type)).toEqual([
      'RUN_STARTING',
      'RUN_START',
      'RUN_SUCCESS',
    ]);
    expect((await s.store.getEvents(ok)).at(-1)?.message).toBe(`${input} has 3 lines`);
    expect(badRun.status).toBe('FAILURE');
    expect(badRun.tags[TAGS.failureReason]).toBeUndefined();
    expect((await s.store.getEvents(bad)).at(-1)?.message).toBe(
      `cannot read ${join(s.dir.path, 'missing.txt')}`,
    );
  });

  it('Python: SUCCESS with its total, FAILURE with the exception', async () => {
    s = await setupWorkers();
    const numbers = join(s.dir.path, 'numbers.txt');
    const broken = join(s.dir.path, 'broken.txt');
    writeFileSync(numbers, '1\n2.5\n3\n');
    writeFileSync(broken, '1\nabc\n');
    const ok = await s.launch(['python3', PY, numbers]);
    const bad = await s.launch(['python3', PY, broken]);
    const [okRun, badRun] = await Promise.all([s.ended(ok), s.ended(bad)]);
    expect(okRun.status).toBe('SUCCESS');
    expect(okRun.progressAt).toBeGreaterThanOrEqual(okRun.startedAt!);
    expect((await s.store.getEvents(ok)).at(-1)?.message).toBe('total 6.5');
    expect(badRun.status).toBe('FAILURE');
    expect((await s.store.getEvents(bad)).at(-1)?.message).toBe(
      "ValueError: could not convert string to float: 'abc\\n'",
    );
  });

  it('Python: a cancel reaches its SIGTERM handler, which reports CANCELED', async () => {
    s = await setupWorkers();
    // A FIFO nobody writes to: the worker blocks opening it, as a worker blocks on its real input.
    const fifo = join(s.dir.path, 'input.fifo');
    execFileSync('mkfifo', [fifo]);
    const runId = await s.launch(['python3', PY, fifo]);
    await waitFor(
      'the worker to report STARTED',
      async () => (await s!.store.getRun(runId))!.status === 'STARTED',
    );
    const run = await s.monitor.cancel(runId);
    expect(run.status).toBe('CANCELED');
    expect((await s.store.getEvents(runId)).at(-1)).toMatchObject({
      type: 'RUN_CANCELED',
      message: 'stopped on SIGTERM',
    });
  });

  it('the examples in docs/launchers.md are these fixtures, word for word', () => {
    const doc = readFileSync(new URL('../docs/launchers.md', import.meta.url), 'utf8');
    for (const file of [SH, PY]) expect(doc.includes(readFileSync(file, 'utf8')), file).toBe(true);
  });
});
