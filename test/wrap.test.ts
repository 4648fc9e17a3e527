// --wrap: commands that know nothing of Runwarden, run under the built wrapper (src/cli/wrap.ts) by a real
// ProcessRunLauncher on a real SQLite file, watched by a monitor in this process with a short poll.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { TAGS } from '../src/core/types.js';
import { PID_TAG, ProcessRunLauncher, WRAP_TAG } from '../src/launchers/process/process-launcher.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { setupWorkers, type WorkerSetup } from './any-language.js';
import { isAlive, killWorkers, runCli, tempDir, waitFor } from './processes.js';

let s: WorkerSetup | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

const sh = (script: string) => ['sh', '-c', script];

/** Waits for a file the command writes (its pid), and resolves its content. */
const written = (path: string) =>
  waitFor(`${path} to be written`, () => existsSync(path) && readFileSync(path, 'utf8').trim());

async function wrapperPid(setup: WorkerSetup, runId: string): Promise<number> {
  return Number(
    await waitFor(
      'the wrapper pid to be recorded',
      async () => (await setup.store.getRun(runId))!.tags[PID_TAG],
    ),
  );
}

/** Processes in process group `pgid` that are not zombies. */
function liveMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe('runwarden --wrap, with a monitor', () => {
  it('exit 0: STARTED once spawned, then SUCCESS; the output goes to the run log', async () => {
    s = await setupWorkers({ wrap: true });
    const runId = await s.launch(sh('echo to stdout; echo to stderr >&2'));
    const run = await s.ended(runId);
    expect(run.status).toBe('SUCCESS');
    expect(run.tags[WRAP_TAG]).toBe('true');
    const events = await s.store.getEvents(runId);
    expect(events.map((e) => e.type)).toEqual(['RUN_STARTING', 'RUN_START', 'RUN_SUCCESS']);
    expect(events[1]!.message).toMatch(
      /^Run worker started: \["sh","-c","echo to stdout; echo to stderr >&2"\] \(pid \d+\) under the runwarden wrapper \(pid \d+\)\.$/,
    );
    expect(events[2]!.message).toBe(
      'Run succeeded: ["sh","-c","echo to stdout; echo to stderr >&2"] exited with code 0.',
    );
    const log = readFileSync(s.launcher.logPath(runId), 'utf8');
    expect(log).toContain('under the runwarden wrapper\nto stdout\nto stderr\n');
  });

  it('exit 3: FAILURE with the exit code and the last 20 lines of output', async () => {
    s = await setupWorkers({ wrap: true });
    const runId = await s.launch(sh('for i in $(seq 1 25); do echo "line $i"; done; echo oops >&2; exit 3'));
    const run = await s.ended(runId);
    expect(run.status).toBe('FAILURE');
    const message = (await s.store.getEvents(runId)).at(-1)!.message;
    const lines = message.split('\n');
    expect(lines[0]).toMatch(
      /^Run failed: \["sh","-c",".*"\] exited with code 3\. Last 20 lines of its output:$/,
    );
    expect(lines.slice(1)).toEqual([...Array.from({ length: 19 }, (_, i) => `line ${i + 7}`), 'oops']);
  });

  it('a command killed by SIGKILL is left to the monitor, which resumes the run', async () => {
    s = await setupWorkers({ wrap: true });
    const pidFile = join(s.dir.path, 'cmd.pid');
    const runId = await s.launch(
      sh(
        `if [ "$RUNWARDEN_RESUME_ATTEMPT" = 0 ]; then echo $$ > ${pidFile}; exec sleep 600; fi; echo "attempt $RUNWARDEN_RESUME_ATTEMPT"`,
      ),
    );
    const cmdPid = Number(await written(pidFile));
    await waitFor('STARTED', async () => (await s!.store.getRun(runId))!.status === 'STARTED');
    process.kill(cmdPid, 'SIGKILL');

    const run = await s.ended(runId);
    expect(run.status).toBe('SUCCESS');
    expect(run.resumeAttempts).toBe(1);
    const events = await s.store.getEvents(runId);
    const texts = events.map((e) => e.message);
    // The wrapper reported nothing for the kill, and died by the same signal: the launcher says so.
    expect(texts).toContain(
      `${messages.workerStatus({ status: 'FAILED', message: 'Run worker was killed by signal SIGKILL' })} Resuming run ${runId} with a new worker.`,
    );
    expect(texts).toContain('Run worker resumed (attempt 1)');
    expect(events.filter((e) => e.type === 'RUN_START')).toHaveLength(1);
    expect(readFileSync(s.launcher.logPath(runId), 'utf8')).toMatch(
      /wrapper: \["sh",.*\] was killed by signal SIGKILL, which the wrapper did not send: not reporting/,
    );
  });

  it('a cancel: SIGTERM forwarded to the command, which stops; then CANCELED', async () => {
    s = await setupWorkers({ wrap: true });
    const runId = await s.launch(sh('trap "echo got SIGTERM; exit 0" TERM; echo ready; sleep 600 & wait'));
    await waitFor('STARTED', async () => (await s!.store.getRun(runId))!.status === 'STARTED');
    await waitFor('the command to be ready', () =>
      readFileSync(s!.launcher.logPath(runId), 'utf8').includes('ready'),
    );

    const run = await s.monitor.cancel(runId);
    expect(run.status).toBe('CANCELED');
    expect((await s.store.getEvents(runId)).at(-1)!.message).toMatch(
      /^Run canceled: \["sh",.*\] stopped after the cancel request \(exit code 0\)\.$/,
    );
    const log = readFileSync(s.launcher.logPath(runId), 'utf8');
    expect(log.match(/^got SIGTERM$/gm)).toHaveLength(1);
    expect(liveMembers(Number(run.tags[PID_TAG]))).toEqual([]);
  });

  it('over its max runtime: the command is stopped and the wrapper reports nothing; FAILURE, MAX_RUNTIME_EXCEEDED', async () => {
    s = await setupWorkers({ wrap: true });
    // Exits 0 on SIGTERM: that must not become a SUCCESS or a CANCELED.
    const runId = await s.launch(sh('trap "exit 0" TERM; sleep 600 & wait'), { [TAGS.maxRuntime]: '1' });
    const run = await s.ended(runId);
    expect(run.status).toBe('FAILURE');
    expect(run.tags[TAGS.failureReason]).toBe('MAX_RUNTIME_EXCEEDED');
    const events = await s.store.getEvents(runId);
    expect(events.at(-1)?.message).toBe(messages.maxRuntimeExceeded(1));
    expect(events.map((e) => e.type)).not.toContain('RUN_CANCELED');
    await waitFor('the wrapper to say why it did not report', () =>
      readFileSync(s!.launcher.logPath(runId), 'utf8').includes(
        'stopped; the run is being stopped for exceeding its maximum runtime: not reporting, the monitor decides.',
      ),
    );
  });
});

describe('signs of life under --wrap', () => {
  it('each output line is progress, written at most once a second; no heartbeats unless asked for', async () => {
    s = await setupWorkers({ wrap: true, start: false });
    // 50 lines, one every 20 ms or more: each arrives on its own, and the throttle must hold them back.
    const runId = await s.launch(
      sh('i=0; while [ $i -lt 50 ]; do echo "line $i"; i=$((i + 1)); sleep 0.02; done'),
    );
    const run = await s.ended(runId);
    expect(run.status).toBe('SUCCESS');
    expect(run.progressAt).toBeGreaterThanOrEqual(run.startedAt!);
    const log = readFileSync(s.launcher.logPath(runId), 'utf8');
    const summary =
      /^\[runwarden\] (\S+) wrapper: \["sh",.*\] exited with code 0 after 50 lines of output \((\d+) progress writes?, 0 heartbeats\)\.$/m.exec(
        log,
      );
    expect(summary, log).not.toBeNull();
    // One write at the first line, then at most one a second while the lines keep coming.
    const seconds = (Date.parse(summary![1]!) - run.startedAt!) / 1000;
    const writes = Number(summary![2]);
    expect(writes).toBeGreaterThanOrEqual(1);
    expect(writes, `${writes} progress writes in ${seconds} s`).toBeLessThanOrEqual(Math.ceil(seconds) + 2);

    const quiet = await s.ended(await s.launch(sh('exit 0')));
    expect(quiet.status).toBe('SUCCESS');
    expect([quiet.heartbeatAt, quiet.progressAt]).toEqual([undefined, undefined]);
  });

  it('heartbeats every RUNWARDEN_HEARTBEAT_SECONDS while the command lives, silent or not', async () => {
    s = await setupWorkers({ wrap: true, start: false, env: { RUNWARDEN_HEARTBEAT_SECONDS: '0.1' } });
    const go = join(s.dir.path, 'go');
    const runId = await s.launch(sh(`while [ ! -e ${go} ]; do sleep 0.05; done`));
    const beats = new Set<number>();
    await waitFor('three heartbeats', async () => {
      const at = (await s!.store.getRun(runId))!.heartbeatAt;
      if (at !== undefined) beats.add(at);
      return beats.size >= 3;
    });
    writeFileSync(go, '');
    const run = await s.ended(runId);
    expect(run.status).toBe('SUCCESS');
    expect(run.progressAt).toBeUndefined();
    expect(readFileSync(s.launcher.logPath(runId), 'utf8')).toMatch(
      /after 0 lines of output \(0 progress writes, \d+ heartbeats\)/,
    );
  });

  it('a RUNWARDEN_HEARTBEAT_SECONDS that is not a number of seconds > 0 stops the wrapper before the command', async () => {
    s = await setupWorkers({ wrap: true, start: false, env: { RUNWARDEN_HEARTBEAT_SECONDS: 'often' } });
    const marker = join(s.dir.path, 'ran');
    const runId = await s.launch(sh(`touch ${marker}`));
    await waitFor('the wrapper to refuse', () =>
      readFileSync(s!.launcher.logPath(runId), 'utf8').includes(
        'wrapper: RUNWARDEN_HEARTBEAT_SECONDS must be a number of seconds > 0 and <= 2147483.647; got "often".',
      ),
    );
    expect(existsSync(marker)).toBe(false);
    expect((await s.store.getRun(runId))!.status).toBe('STARTING');
  });
});

describe('the wrapper never leaves its command behind', () => {
  it('SIGKILL to the wrapper alone: its guard kills the command', async () => {
    s = await setupWorkers({ wrap: true, start: false });
    const pidFile = join(s.dir.path, 'cmd.pid');
    const runId = await s.launch(sh(`echo $$ > ${pidFile}; exec sleep 600`));
    const cmdPid = Number(await written(pidFile));
    const wrapper = await wrapperPid(s, runId);
    // The command runs in the wrapper's process group, next to the guard.
    expect(liveMembers(wrapper)).toEqual(expect.arrayContaining([wrapper, cmdPid]));
    expect(liveMembers(wrapper)).toHaveLength(3);

    process.kill(wrapper, 'SIGKILL');
    await waitFor('the command to be gone', () => !isAlive(cmdPid));
    await waitFor('the whole group to be gone', () => liveMembers(wrapper).length === 0);
  });
});

describe('ProcessRunLauncher with wrap', () => {
  const dir = tempDir('runwarden-wrap-launcher-');
  const dbPath = join(dir.path, 'runs.db');
  afterAll(() => dir.remove());

  async function withLauncher(
    options: Partial<ConstructorParameters<typeof ProcessRunLauncher>[0]>,
    body: (launcher: ProcessRunLauncher, store: SqliteRunStore) => Promise<void>,
  ) {
    const store = new SqliteRunStore({ path: dbPath });
    const launcher = new ProcessRunLauncher({
      store,
      command: ['sh', '-c', 'exit 0'],
      logDir: join(dir.path, 'logs'),
      storeEnv: { RUNWARDEN_STORE: `sqlite:${dbPath}` },
      terminateGraceMs: 300,
      ...options,
    });
    try {
      await body(launcher, store);
    } finally {
      await killWorkers(store);
      await store.close();
    }
  }

  it("terminate sends a wrapped worker's SIGTERM to the wrapper alone, which forwards it; SIGKILL to the group", async () => {
    const marks = join(dir.path, 'marks');
    // A stand-in wrapper: records its SIGTERM and exits; its child records any SIGTERM and stays.
    const fake = `trap 'echo leader >> ${marks}; exit 0' TERM
sh -c 'trap "echo child >> ${marks}" TERM; echo ready >> ${marks}; while :; do sleep 600 & wait; done' &
wait`;
    await withLauncher(
      { wrap: true, wrapperCommand: ['sh', '-c', fake, 'wrapper'] },
      async (launcher, store) => {
        const created = await store.createRun({});
        await launcher.launch(created);
        await waitFor(
          'the child to be ready',
          () => existsSync(marks) && readFileSync(marks, 'utf8').includes('ready'),
        );
        const run = (await store.getRun(created.runId))!;
        expect(run.tags[WRAP_TAG]).toBe('true');
        expect(await launcher.terminate(run)).toBe(true);
        expect(readFileSync(marks, 'utf8').split('\n').filter(Boolean)).toEqual(['ready', 'leader']);
        expect(liveMembers(Number(run.tags[PID_TAG]))).toEqual([]);
      },
    );
  });

  it('refuses a wrap tag that is not true or false, and a wrapped run without RUNWARDEN_STORE', async () => {
    await withLauncher({}, async (launcher, store) => {
      const bad = await store.createRun({ tags: { [WRAP_TAG]: 'yes' } });
      await expect(launcher.launch(bad)).rejects.toThrow(
        `Run ${bad.runId}: tag runwarden/wrap must be true or false; got "yes".`,
      );
    });
    await withLauncher({ storeEnv: {}, env: { RUNWARDEN_STORE: '' } }, async (launcher, store) => {
      const run = await store.createRun({ tags: { [WRAP_TAG]: 'true' } });
      await expect(launcher.launch(run)).rejects.toThrow(
        /is wrapped, and the wrapper reports through the store named in RUNWARDEN_STORE, which its environment does not set/,
      );
    });
  });
});

describe('runwarden launch --wrap and launcher.process.wrap', () => {
  const dir = tempDir('runwarden-wrap-cli-');
  const store = new SqliteRunStore({ path: join(dir.path, 'runs.db') });
  const url = `sqlite:${join(dir.path, 'runs.db')}`;
  const ended = (runId: string) =>
    waitFor(`run ${runId} to end`, async () => {
      const run = await store.getRun(runId);
      return run && ['SUCCESS', 'FAILURE', 'CANCELED'].includes(run.status) && run;
    });

  it('launch --wrap tags the run and wraps its command; a missing command is a FAILURE saying so', async () => {
    const [ok, missing] = await Promise.all([
      runCli(['launch', '--wrap', '--store', url, '--', 'sh', '-c', 'echo hello from sh'], { cwd: dir.path }),
      runCli(['launch', '--wrap', '--store', url, '--', 'no-such-command-here'], { cwd: dir.path }),
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(missing.code, missing.stderr).toBe(0);
    const okRun = await ended(ok.stdout.trim());
    expect(okRun).toMatchObject({ status: 'SUCCESS', tags: { [WRAP_TAG]: 'true' } });
    expect(readFileSync(join(dir.path, 'logs', `${okRun.runId}.log`), 'utf8')).toContain('hello from sh\n');
    const missingRun = await ended(missing.stdout.trim());
    expect(missingRun.status).toBe('FAILURE');
    expect((await store.getEvents(missingRun.runId)).at(-1)!.message).toBe(
      'Run failed: could not start command ["no-such-command-here"]: spawn no-such-command-here ENOENT',
    );
  });

  it('launcher.process.wrap: true in runwarden.yaml wraps the configured command', async () => {
    const config = join(dir.path, 'wrapped.yaml');
    writeFileSync(
      config,
      `storage:\n  sqlite:\n    path: runs.db\nlauncher:\n  process:\n    wrap: true\n    command: [sh, -c, 'echo bad input >&2; exit 4']\n`,
    );
    const result = await runCli(['launch', '--config', config], { cwd: dir.path });
    expect(result.code, result.stderr).toBe(0);
    const run = await ended(result.stdout.trim());
    expect(run.status).toBe('FAILURE');
    expect(run.tags[WRAP_TAG]).toBe('true');
    expect((await store.getEvents(run.runId)).at(-1)!.message).toBe(
      'Run failed: ["sh","-c","echo bad input >&2; exit 4"] exited with code 4. Last line of its output:\nbad input',
    );
  });

  afterAll(async () => {
    await killWorkers(store);
    await store.close();
    dir.remove();
  });
});
