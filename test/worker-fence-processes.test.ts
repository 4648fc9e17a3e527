// Worker fencing with real processes on a real SQLite file: a run worker whose run the monitor resumed (here
// the test bumps resumeAttempts, as the monitor's resume effect does) is refused by the store and stops with
// exit code 3, leaving the run as it was — through the worker SDK (test/fixtures/run-worker.mjs), through
// `runwarden report`, and through the --wrap wrapper (which also stops its command). No monitor runs: the
// test plays its part, so each case shows exactly one refused write.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import type { RunStatus } from '../src/core/types.js';
import { built, isAlive, NODE, runCli, tempDir, waitFor, workerCommand } from './processes.js';

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A SQLite store in a fresh directory with one run in `status`. */
async function setup(status: 'STARTING' | 'STARTED' = 'STARTING') {
  const dir = tempDir('runwarden-fence-');
  const dbPath = join(dir.path, 'runs.db');
  const store = new SqliteRunStore({ path: dbPath });
  cleanups.push(async () => {
    await store.close();
    dir.remove();
  });
  const { runId } = await store.createRun({});
  const path: RunStatus[] = status === 'STARTING' ? ['STARTING'] : ['STARTING', 'STARTED'];
  for (const to of path) await store.transition(runId, { to });
  const env = (attempt: number, extra: Record<string, string> = {}) => ({
    RUNWARDEN_RUN_ID: runId,
    RUNWARDEN_STORE: `sqlite:${dbPath}`,
    RUNWARDEN_RESUME_ATTEMPT: String(attempt),
    ...extra,
  });
  return {
    dir,
    store,
    runId,
    env,
    run: async () => (await store.getRun(runId))!,
    types: async () => (await store.getEvents(runId)).map((e) => e.type),
    messages: async () => (await store.getEvents(runId)).map((e) => e.message),
    /** What the monitor's resume does before it launches the next worker. */
    resume: () => store.incrementResumeAttempts(runId),
    event: (message: string) =>
      waitFor(`the event ${JSON.stringify(message)}`, async () =>
        (await store.getEvents(runId)).find((e) => e.message === message),
      ),
  };
}

/**
 * A process in its own process group (as a launcher starts workers; the wrapper's guard kills its group),
 * killed with its group after the test.
 */
function start(argv: string[], env: Record<string, string>) {
  const [command, ...args] = argv;
  const child: ChildProcess = spawn(command!, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  child.on('exit', (code, signal) => (exit = { code, signal }));
  cleanups.push(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  });
  return {
    child,
    stderr: () => stderr,
    exited: (timeoutMs = 10_000) =>
      waitFor(`pid ${child.pid} to exit (stderr: ${stderr})`, () => exit, timeoutMs),
  };
}

const superseded = (runId: string, attempt: number, current: number) =>
  `Run ${runId}: this worker (attempt ${attempt}) was superseded by attempt ${current}; its write was refused.`;

describe('the worker SDK, superseded (real processes, SQLite)', () => {
  it('a worker presumed dead but alive after the resume: its writes are refused, it exits 3; the new one succeeds', async () => {
    const s = await setup();
    const old = start(workerCommand('succeed-on-go'), s.env(0));
    await s.event('Step wait started.');
    await s.resume();
    const successor = start(workerCommand('succeed-on-go'), s.env(1));
    await s.event('Run worker resumed (attempt 1)');
    await waitFor('both workers in step "wait"', async () => {
      const messages = await s.messages();
      return messages.filter((m) => m === 'Step wait started.').length === 2;
    });

    // The test says go: both finish the step; only attempt 1 may write.
    await s.store.appendEvent(s.runId, { type: 'ENGINE_EVENT', message: 'go', data: { go: true } });
    expect(await old.exited()).toEqual({ code: 3, signal: null });
    expect(old.stderr()).toContain(superseded(s.runId, 0, 1));
    expect(old.stderr()).toContain('Exiting with code 3.');
    expect(await successor.exited()).toEqual({ code: 0, signal: null });

    const run = await s.run();
    expect(run).toMatchObject({ status: 'SUCCESS', resumeAttempts: 1 });
    const events = await s.store.getEvents(s.runId);
    expect(events.filter((e) => e.type === 'RUN_SUCCESS')).toHaveLength(1);
    // One "completed" for the step: the successor's. The old worker's was refused.
    const completed = events.filter((e) => e.message === 'Step wait completed.');
    expect(completed.map((e) => (e.data as { attempt: number }).attempt)).toEqual([1]);
  }, 30_000);

  it('a superseded worker hung in a step learns it from its next heartbeat and exits 3; the run is left as it was', async () => {
    const s = await setup();
    const w = start(workerCommand('hang-resumed'), s.env(0, { RUNWARDEN_HEARTBEAT_SECONDS: '0.2' }));
    await s.event('Step wait-0 started.');
    await waitFor('a heartbeat', async () => (await s.run()).heartbeatAt !== undefined);
    const before = await s.types();
    await s.resume();
    expect(await w.exited()).toEqual({ code: 3, signal: null });
    expect(w.stderr()).toContain(superseded(s.runId, 0, 1));
    expect(await s.run()).toMatchObject({ status: 'STARTED', resumeAttempts: 1 });
    expect(await s.types()).toEqual(before);
  }, 30_000);
});

describe('runwarden report, superseded', () => {
  it('exits 3 with one line and writes nothing; the current attempt reports', async () => {
    const s = await setup('STARTED');
    await s.resume();
    const before = await s.store.getEvents(s.runId);
    for (const what of ['success', 'failure', 'heartbeat', 'progress']) {
      const result = await runCli(['report', what, '-m', 'done'], { env: s.env(0) });
      expect(result.code, result.stderr).toBe(3);
      expect(result.stdout).toBe('');
      expect(result.stderr).toBe(
        `runwarden: ${superseded(s.runId, 0, 1)} The run was resumed with a new worker, so this one must stop.\n`,
      );
    }
    const run = await s.run();
    expect(run.status).toBe('STARTED');
    expect(run.heartbeatAt).toBeUndefined();
    expect(await s.store.getEvents(s.runId)).toEqual(before);

    const current = await runCli(['report', 'success'], { env: s.env(1) });
    expect(current).toEqual({ code: 0, stdout: '', stderr: '' });
    expect((await s.run()).status).toBe('SUCCESS');
  }, 30_000);
});

describe('the --wrap wrapper, superseded', () => {
  const wrap = (command: string[], env: Record<string, string>) =>
    start([NODE, built('src/cli/wrap.js'), '--', ...command], env);

  it('learns it from a heartbeat: stops its command (SIGTERM) and exits 3 without reporting', async () => {
    const s = await setup();
    const pidFile = join(s.dir.path, 'cmd.pid');
    const w = wrap(['sh', '-c', `echo $$ > ${pidFile}; exec sleep 600`], {
      ...s.env(0, { RUNWARDEN_HEARTBEAT_SECONDS: '0.2' }),
    });
    const pid = Number(
      await waitFor('the command pid', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim()),
    );
    await waitFor('STARTED and a heartbeat', async () => {
      const run = await s.run();
      return run.status === 'STARTED' && run.heartbeatAt !== undefined;
    });
    const before = await s.types();
    await s.resume();
    expect(await w.exited()).toEqual({ code: 3, signal: null });
    expect(isAlive(pid)).toBe(false);
    expect(w.stderr()).toContain(superseded(s.runId, 0, 1));
    expect(w.stderr()).toMatch(/superseded: \["sh".*\] stopped by signal SIGTERM; not reporting/);
    expect(await s.run()).toMatchObject({ status: 'STARTED', resumeAttempts: 1 });
    expect(await s.types()).toEqual(before);
  }, 30_000);

  it("its command's SUCCESS after the resume is refused: exit 3, the run left STARTED", async () => {
    const s = await setup();
    const go = join(s.dir.path, 'go');
    const w = wrap(['sh', '-c', `while [ ! -e ${go} ]; do sleep 0.02; done; echo done`], s.env(0));
    await waitFor('STARTED', async () => (await s.run()).status === 'STARTED');
    await s.resume();
    writeFileSync(go, '');
    expect(await w.exited()).toEqual({ code: 3, signal: null });
    expect(w.stderr()).toContain(superseded(s.runId, 0, 1));
    expect(await s.run()).toMatchObject({ status: 'STARTED' });
    expect(await s.types()).toEqual(['RUN_STARTING', 'RUN_START']);
  }, 30_000);

  it('started for an attempt already superseded: never starts its command, exits 3', async () => {
    const s = await setup('STARTED');
    await s.resume();
    const marker = join(s.dir.path, 'ran');
    const w = wrap(['touch', marker], s.env(0));
    expect(await w.exited()).toEqual({ code: 3, signal: null });
    expect(w.stderr()).toContain(
      `run ${s.runId} was resumed with a newer worker (attempt 1); this wrapper is attempt 0: not starting`,
    );
    expect(existsSync(marker)).toBe(false);
  }, 30_000);

  it('a command that ignores SIGTERM is SIGKILLed after the grace period', async () => {
    const s = await setup();
    const pidFile = join(s.dir.path, 'cmd.pid');
    const w = wrap(
      ['sh', '-c', `trap '' TERM; echo $$ > ${pidFile}; while :; do sleep 0.1; done`],
      s.env(0, { RUNWARDEN_HEARTBEAT_SECONDS: '0.2' }),
    );
    const pid = Number(
      await waitFor('the command pid', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim()),
    );
    await waitFor('STARTED', async () => (await s.run()).status === 'STARTED');
    const resumedAt = Date.now();
    await s.resume();
    expect(await w.exited(30_000)).toEqual({ code: 3, signal: null });
    expect(Date.now() - resumedAt).toBeGreaterThanOrEqual(10_000);
    expect(isAlive(pid)).toBe(false);
    expect(w.stderr()).toMatch(/stopped by signal SIGKILL; not reporting/);
  }, 45_000);
});
