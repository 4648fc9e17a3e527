// ProcessRunLauncher against real processes (node -e scripts) and the real MemoryRunStore.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidTagsError, LaunchError } from '../src/core/errors.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import {
  ATTEMPT_TAG,
  COMMAND_TAG,
  PID_START_TAG,
  PID_TAG,
  ProcessRunLauncher,
  type ProcessRunLauncherOptions,
} from '../src/launchers/process/process-launcher.js';
import type { RunRecord } from '../src/core/types.js';

const NODE = process.execPath;
const IDLE = 'setInterval(() => {}, 1000);';
const SCRIPT_TAG = 'test/script';

let store: MemoryRunStore;
let logDir: string;
/** Every pid a test started (workers, grandchildren, bystanders): killed with their groups afterwards. */
let pids: Set<number>;
let bystanders: ChildProcess[];

beforeEach(() => {
  store = new MemoryRunStore();
  logDir = mkdtempSync(join(tmpdir(), 'runwarden-launcher-'));
  pids = new Set();
  bystanders = [];
});

afterEach(async () => {
  for (const run of await store.listRuns()) {
    const pid = Number(run.tags[PID_TAG]);
    if (pid > 1) pids.add(pid);
  }
  for (const pid of pids) {
    kill(-pid);
    kill(pid);
  }
  for (const child of bystanders) child.kill('SIGKILL');
  rmSync(logDir, { recursive: true, force: true });
});

function kill(pid: number): void {
  // Never this test process (one test records its pid as a fake worker) or its group.
  if (Math.abs(pid) === process.pid || Math.abs(pid) <= 1 || !Number.isInteger(pid)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function makeLauncher(options: Partial<ProcessRunLauncherOptions> = {}): ProcessRunLauncher {
  return new ProcessRunLauncher({
    store,
    // A function command: each test puts its worker script in a tag.
    command: (run) => [NODE, '-e', run.tags[SCRIPT_TAG] ?? IDLE],
    logDir,
    terminateGraceMs: 300,
    killWaitMs: 1000,
    ...options,
  });
}

async function createRun(script: string, tags: Record<string, string> = {}): Promise<RunRecord> {
  return store.createRun({ tags: { [SCRIPT_TAG]: script, ...tags } });
}

async function fresh(runId: string): Promise<RunRecord> {
  const run = await store.getRun(runId);
  if (!run) throw new Error(`no run ${runId}`);
  return run;
}

async function launched(launcher: ProcessRunLauncher, script: string): Promise<RunRecord> {
  const run = await createRun(script);
  await launcher.launch(run);
  const after = await fresh(run.runId);
  pids.add(Number(after.tags[PID_TAG]));
  return after;
}

function procStat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Zombies count as dead: this machine's init does not always reap orphans. */
function isAlive(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat[0] !== 'Z' && stat[0] !== 'X';
}

async function waitFor<T>(probe: () => T | Promise<T>, what: string, ms = 3000): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function readLog(launcher: ProcessRunLauncher, runId: string): string {
  try {
    return readFileSync(launcher.logPath(runId), 'utf8');
  } catch {
    return '';
  }
}

async function waitForLog(
  launcher: ProcessRunLauncher,
  runId: string,
  pattern: RegExp,
): Promise<RegExpMatchArray> {
  return waitFor(() => readLog(launcher, runId).match(pattern), `log of ${runId} to match ${pattern}`);
}

async function healthOnceSettled(launcher: ProcessRunLauncher, run: RunRecord) {
  return waitFor(async () => {
    const result = await launcher.checkHealth(run);
    return result.status === 'RUNNING' ? undefined : result;
  }, `worker of ${run.runId} to stop running`);
}

describe('launch', () => {
  it('starts the worker in its own process group, logs its output, records its identity, reports RUNNING', async () => {
    const launcher = makeLauncher({
      env: { EXTRA: 'extra-value' },
      storeEnv: { RUNWARDEN_STORE: 'sqlite:/tmp/x.db' },
    });
    const run = await launched(
      launcher,
      `console.log('out', process.env.RUNWARDEN_RUN_ID, process.env.RUNWARDEN_RESUME_ATTEMPT, process.env.EXTRA, process.env.RUNWARDEN_STORE);
       console.error('err-line'); ${IDLE}`,
    );
    const pid = Number(run.tags[PID_TAG]);
    const stat = procStat(pid)!;
    expect(run.tags[PID_START_TAG]).toBe(stat[19]); // field 22: starttime
    expect(run.tags[ATTEMPT_TAG]).toBe('0');
    expect(Number(stat[2])).toBe(pid); // field 5: pgrp — the worker leads its own group

    await waitForLog(launcher, run.runId, /^err-line$/m);
    const log = readLog(launcher, run.runId);
    expect(log).toContain(`out ${run.runId} 0 extra-value sqlite:/tmp/x.db`);
    expect(launcher.logPath(run.runId)).toBe(join(logDir, `${run.runId}.log`));

    expect(await launcher.checkHealth(run)).toMatchObject({ status: 'RUNNING' });
  });

  it('creates the log directory and keeps odd run ids inside it', async () => {
    const nested = join(logDir, 'a', 'b');
    const launcher = makeLauncher({ logDir: nested });
    const run = await store.createRun({
      runId: '../escape/run',
      tags: { [SCRIPT_TAG]: 'console.log("hi")' },
    });
    await launcher.launch(run);
    pids.add(Number((await fresh(run.runId)).tags[PID_TAG]));
    expect(launcher.logPath(run.runId)).toBe(join(nested, '..%2Fescape%2Frun.log'));
    await waitForLog(launcher, run.runId, /^hi$/m);
  });

  it('rejects a missing executable with a LaunchError naming the command and the OS error', async () => {
    const launcher = makeLauncher({ command: ['/nonexistent/worker-bin', '--flag'] });
    const run = await store.createRun({});
    const error = await launcher.launch(run).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LaunchError);
    expect((error as LaunchError).code).toBe('LAUNCH_FAILED');
    expect((error as Error).message).toContain('/nonexistent/worker-bin');
    expect((error as Error).message).toContain('ENOENT');
    expect((await fresh(run.runId)).tags[PID_TAG]).toBeUndefined();
  });

  it('uses a runwarden/command tag as argv and rejects a malformed one naming the tag', async () => {
    const launcher = makeLauncher({ command: ['/nonexistent/never-used'] });
    const ok = await store.createRun({
      tags: { [COMMAND_TAG]: JSON.stringify([NODE, '-e', 'console.log("from-tag")']) },
    });
    await launcher.launch(ok);
    pids.add(Number((await fresh(ok.runId)).tags[PID_TAG]));
    await waitForLog(launcher, ok.runId, /^from-tag$/m);

    for (const bad of ['node worker.js', '[]', '["node", 3]', '{"argv":["node"]}', '[""]']) {
      const run = await store.createRun({ tags: { [COMMAND_TAG]: bad } });
      const error = await launcher.launch(run).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidTagsError);
      expect((error as Error).message).toContain(COMMAND_TAG);
      expect((await fresh(run.runId)).tags[PID_TAG]).toBeUndefined();
    }
  });

  it('kills the worker and rejects when its identity cannot be recorded', async () => {
    // eslint-disable-next-line prefer-const -- FailingTags reads it from a closure; it is set after the class exists.
    let launcher: ProcessRunLauncher | undefined;
    let workerPid = 0;
    class FailingTags extends MemoryRunStore {
      override async setTags(runId: string): Promise<RunRecord> {
        // Fail only once the worker is surely up, so we know which pid must then be killed.
        workerPid = Number((await waitForLog(launcher!, runId, /^pid=(\d+)$/m))[1]);
        pids.add(workerPid);
        throw new Error('store is down');
      }
    }
    store = new FailingTags();
    launcher = makeLauncher();
    const run = await createRun(`console.log('pid=' + process.pid); ${IDLE}`);
    await expect(launcher.launch(run)).rejects.toThrow(/could not record it in the store.*store is down/);
    const pid = workerPid;
    await waitFor(() => !isAlive(pid), 'unrecorded worker to be killed');
    // No pid in the tags, but this instance knows what became of the worker it started.
    expect(await launcher.checkHealth(await fresh(run.runId))).toEqual({
      status: 'FAILED',
      message: 'Run worker was killed by signal SIGKILL',
    });
  });
});

describe('checkHealth', () => {
  it('reports a worker killed by SIGKILL as FAILED with the signal', async () => {
    const launcher = makeLauncher();
    const run = await launched(launcher, IDLE);
    process.kill(Number(run.tags[PID_TAG]), 'SIGKILL');
    expect(await healthOnceSettled(launcher, run)).toEqual({
      status: 'FAILED',
      message: 'Run worker was killed by signal SIGKILL',
    });
  });

  it('reports a non-zero exit as FAILED with the code', async () => {
    const launcher = makeLauncher();
    const run = await launched(launcher, 'process.exit(3)');
    expect(await healthOnceSettled(launcher, run)).toEqual({
      status: 'FAILED',
      message: 'Run worker exited with code 3',
    });
  });

  it('reports exit 0 as FAILED while the run is not terminal, SUCCESS once it is', async () => {
    const launcher = makeLauncher();
    const run = await launched(launcher, 'process.exit(0)');
    expect(await healthOnceSettled(launcher, run)).toEqual({
      status: 'FAILED',
      message: 'Run worker exited with code 0 without reporting a final status',
    });
    await store.transition(run.runId, { to: 'STARTING' });
    const done = await store.transition(run.runId, { to: 'SUCCESS' });
    expect(await launcher.checkHealth(done!)).toMatchObject({ status: 'SUCCESS' });
  });

  it('works from the tags alone, as after a monitor restart: RUNNING if alive, NOT_FOUND if gone', async () => {
    const first = makeLauncher();
    const alive = await launched(first, IDLE);
    const dead = await launched(first, IDLE);
    process.kill(Number(dead.tags[PID_TAG]), 'SIGKILL');
    await waitFor(
      async () => (await first.checkHealth(dead)).status === 'FAILED',
      'first launcher to see the exit',
    );

    const restarted = makeLauncher();
    expect(await restarted.checkHealth(alive)).toMatchObject({ status: 'RUNNING' });
    const result = await restarted.checkHealth(dead);
    expect(result.status).toBe('NOT_FOUND');
    expect(result.message).toContain(`/proc/${dead.tags[PID_TAG]}/stat`);
  });

  it('never mistakes a reused pid for the worker, and terminate leaves that process alone', async () => {
    // A live, unrelated process in its own group stands in for a process that got the worker's old pid.
    const bystander = spawn(NODE, ['-e', IDLE], { detached: true, stdio: 'ignore' });
    bystanders.push(bystander);
    await new Promise((resolve) => bystander.once('spawn', resolve));
    const pid = bystander.pid!;
    const realStart = procStat(pid)![19]!;
    const run = await store.createRun({
      tags: { [PID_TAG]: String(pid), [PID_START_TAG]: String(Number(realStart) - 1), [ATTEMPT_TAG]: '0' },
    });
    const launcher = makeLauncher();

    const result = await launcher.checkHealth(run);
    expect(result.status).toBe('NOT_FOUND');
    expect(result.message).toMatch(/another process/);

    // The recorded worker is gone, so terminate succeeds — without signalling the pid's new owner.
    expect(await launcher.terminate(run)).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(isAlive(pid)).toBe(true);
    expect(bystander.exitCode).toBeNull();
  });

  it('reports UNKNOWN (transient) when no pid is recorded yet, NOT_FOUND when the tags are unusable', async () => {
    const launcher = makeLauncher();
    const none = await store.createRun({});
    // Its launch may still be recording the pid: not evidence of death, so the monitor's tolerance decides.
    expect(await launcher.checkHealth(none)).toEqual({
      status: 'UNKNOWN',
      transient: true,
      message: `No run worker pid recorded yet (tag ${PID_TAG} is missing on run ${none.runId}); its launch may still be recording it.`,
    });
    expect(await launcher.terminate(none)).toBe(true);
    const unusable: Record<string, string>[] = [
      { [PID_TAG]: '-1', [PID_START_TAG]: '5' },
      { [PID_TAG]: '1', [PID_START_TAG]: '5' },
      { [PID_TAG]: String(process.pid) }, // no start time: the pid can't be trusted
    ];
    for (const tags of unusable) {
      const run = await store.createRun({ tags });
      expect((await launcher.checkHealth(run)).status).toBe('NOT_FOUND');
      expect(await launcher.terminate(run)).toBe(true);
    }
  });

  it('reads /proc carefully: zombies are exited, odd comm names parse, unreadable entries are UNKNOWN', async () => {
    const procRoot = join(logDir, 'proc');
    const fakeStat = (pid: number, comm: string, state: string, start: string) => {
      mkdirSync(join(procRoot, String(pid)), { recursive: true });
      const rest = [state, '1', String(pid), String(pid), ...Array(15).fill('0'), start, '0', '0'];
      writeFileSync(join(procRoot, String(pid), 'stat'), `${pid} (${comm}) ${rest.join(' ')}\n`);
    };
    const launcher = makeLauncher({ procRoot });
    const runFor = (pid: number, start: string) =>
      store.createRun({ tags: { [PID_TAG]: String(pid), [PID_START_TAG]: start } });

    fakeStat(4001, 'worker) S 1 (x', 'S', '777');
    expect(await launcher.checkHealth(await runFor(4001, '777'))).toMatchObject({ status: 'RUNNING' });

    fakeStat(4002, 'node', 'Z', '888');
    const zombie = await launcher.checkHealth(await runFor(4002, '888'));
    expect(zombie.status).toBe('NOT_FOUND');
    expect(zombie.message).toMatch(/zombie/);

    mkdirSync(join(procRoot, '4003', 'stat'), { recursive: true }); // reading a directory fails with EISDIR
    expect(await launcher.checkHealth(await runFor(4003, '1'))).toMatchObject({
      status: 'UNKNOWN',
      transient: true,
    });

    expect(await launcher.checkHealth(await runFor(4004, '1'))).toMatchObject({ status: 'NOT_FOUND' });
  });
});

describe('terminate', () => {
  it('returns true quickly for a worker that exits on SIGTERM', async () => {
    const launcher = makeLauncher({ terminateGraceMs: 5000 });
    const run = await launched(launcher, IDLE);
    const started = Date.now();
    expect(await launcher.terminate(run)).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(isAlive(Number(run.tags[PID_TAG]))).toBe(false);
    expect(await launcher.checkHealth(run)).toEqual({
      status: 'FAILED',
      message: 'Run worker was killed by signal SIGTERM',
    });
  });

  it('sends SIGKILL after the grace period to a worker that ignores SIGTERM', async () => {
    const launcher = makeLauncher({ terminateGraceMs: 300 });
    const run = await launched(
      launcher,
      `process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('ready'); ${IDLE}`,
    );
    await waitForLog(launcher, run.runId, /^ready$/m);
    const started = Date.now();
    expect(await launcher.terminate(run)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(readLog(launcher, run.runId)).toContain('ignoring SIGTERM');
    expect(await launcher.checkHealth(run)).toMatchObject({
      message: 'Run worker was killed by signal SIGKILL',
    });
  });

  it('kills the whole process group, including a grandchild that outlives its parent', async () => {
    const launcher = makeLauncher({ terminateGraceMs: 300 });
    // The worker dies on SIGTERM; its child ignores SIGTERM and must still be killed.
    const grandchild = `process.on('SIGTERM', () => {}); ${IDLE}`;
    const run = await launched(
      launcher,
      `const c = require('node:child_process').spawn(process.execPath, ['-e', ${JSON.stringify(grandchild)}], { stdio: 'ignore' });
       c.on('spawn', () => console.log('grandchild=' + c.pid)); ${IDLE}`,
    );
    const worker = Number(run.tags[PID_TAG]);
    const grandchildPid = Number((await waitForLog(launcher, run.runId, /^grandchild=(\d+)$/m))[1]);
    pids.add(grandchildPid);
    expect(isAlive(grandchildPid)).toBe(true);

    expect(await launcher.terminate(run)).toBe(true);
    expect(isAlive(worker)).toBe(false);
    expect(isAlive(grandchildPid)).toBe(false);
  });

  it('returns true for a worker that is already gone, and works without in-memory state', async () => {
    const first = makeLauncher();
    const run = await launched(first, 'process.exit(0)');
    await healthOnceSettled(first, run);
    expect(await first.terminate(run)).toBe(true);

    const live = await launched(first, IDLE);
    expect(await makeLauncher().terminate(live)).toBe(true);
    expect(isAlive(Number(live.tags[PID_TAG]))).toBe(false);
  });
});

describe('resume', () => {
  it('starts a new worker with RUNWARDEN_RESUME_ATTEMPT and records its identity', async () => {
    const launcher = makeLauncher();
    const script = `console.log('attempt=' + process.env.RUNWARDEN_RESUME_ATTEMPT + ' pid=' + process.pid);
      if (process.env.RUNWARDEN_RESUME_ATTEMPT === '0') process.exit(1); ${IDLE}`;
    const run = await launched(launcher, script);
    expect(await healthOnceSettled(launcher, run)).toMatchObject({ status: 'FAILED' });

    await launcher.resume(run, 1);
    const resumed = await fresh(run.runId);
    pids.add(Number(resumed.tags[PID_TAG]));
    expect(resumed.tags[ATTEMPT_TAG]).toBe('1');
    expect(resumed.tags[PID_TAG]).not.toBe(run.tags[PID_TAG]);
    expect(resumed.tags[PID_START_TAG]).toBe(procStat(Number(resumed.tags[PID_TAG]))![19]);
    await waitForLog(launcher, run.runId, new RegExp(`^attempt=1 pid=${resumed.tags[PID_TAG]}$`, 'm'));
    expect(readLog(launcher, run.runId)).toContain(`attempt=0 pid=${run.tags[PID_TAG]}`); // appended, not replaced
    expect(await launcher.checkHealth(resumed)).toMatchObject({ status: 'RUNNING' });
  });

  it('stops a previous worker that is somehow still alive before starting the next', async () => {
    const launcher = makeLauncher();
    const run = await launched(launcher, IDLE);
    await launcher.resume(run, 1);
    expect(isAlive(Number(run.tags[PID_TAG]))).toBe(false);
    const resumed = await fresh(run.runId);
    pids.add(Number(resumed.tags[PID_TAG]));
    expect(await launcher.checkHealth(resumed)).toMatchObject({ status: 'RUNNING' });
  });
});

describe('debugInfo', () => {
  it('returns the tail of the log, and undefined when there is none', async () => {
    const launcher = makeLauncher();
    const none = await store.createRun({});
    expect(await launcher.debugInfo(none)).toBeUndefined();

    const run = await launched(launcher, `for (let i = 1; i <= 500; i++) console.log('line ' + i);`);
    await waitForLog(launcher, run.runId, /^line 500$/m);
    const info = (await launcher.debugInfo(run))!;
    const [header, ...lines] = info.split('\n');
    expect(header).toBe(`Run worker log tail (${launcher.logPath(run.runId)}):`);
    expect(lines).toHaveLength(40);
    expect(lines[0]).toBe('line 461');
    expect(lines.at(-1)).toBe('line 500');
    expect(info.length).toBeLessThan(4200);
  });
});
