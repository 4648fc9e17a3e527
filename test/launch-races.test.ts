// Races between ProcessRunLauncher's launch/resume and the monitor, found by a chaos run under load, made
// deterministic: gates hold a start at a chosen point (before the spawn, or while the pid is being recorded)
// while real worker processes run and a real SQLite file is shared. The monitor's own timers are simulated.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SimulatedClock } from 'xstate';
import type { MonitorConfig } from '../src/core/config.js';
import {
  type HealthResult,
  type RunLauncher,
  type RunRecord,
  type RunStatus,
  TAGS,
} from '../src/core/types.js';
import {
  COMMAND_TAG,
  PID_START_TAG,
  PID_TAG,
  ProcessRunLauncher,
} from '../src/launchers/process/process-launcher.js';
import { createRunMonitor, type RunMonitor } from '../src/monitor/monitor.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { isAlive, NODE, sqliteProcessLauncher, tempDir, waitFor, workerCommand } from './processes.js';

/** Holds whoever passes it until opened; counts who got there. */
class Gate {
  entered = 0;
  private release!: () => void;
  private readonly opened = new Promise<void>((resolve) => {
    this.release = resolve;
  });

  async pass(): Promise<void> {
    this.entered++;
    await this.opened;
  }

  open(): void {
    this.release();
  }
}

// The launcher creates its log directory right before it spawns: holding that call holds the spawn.
const spawnGate = vi.hoisted(() => ({ current: undefined as { pass(): Promise<void> } | undefined }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...actual,
    mkdir: async (...args: Parameters<typeof actual.mkdir>) => {
      await spawnGate.current?.pass();
      return actual.mkdir(...args);
    },
  };
});

/** A real SQLite store whose setTags (the launcher recording a worker's pid) can be held open. */
class SlowTagStore extends SqliteRunStore {
  tagGate: Gate | undefined;

  override async setTags(runId: string, tags: Record<string, string>): Promise<RunRecord> {
    await this.tagGate?.pass();
    return super.setTags(runId, tags);
  }
}

const IDLE = 'setInterval(() => {}, 1000);';

interface Setup {
  store: SlowTagStore;
  launcher: ProcessRunLauncher;
  dbPath: string;
  remove(): void;
  monitor?: RunMonitor;
}

let current: Setup | undefined;

afterEach(async () => {
  spawnGate.current = undefined;
  if (!current) return;
  const { store, monitor, remove } = current;
  current = undefined;
  if (store.tagGate) store.tagGate.open();
  await monitor?.stop();
  for (const run of await store.listRuns()) for (const pid of liveWorkersOf(run.runId)) killGroup(pid);
  await store.close();
  remove();
});

function setup(): Setup {
  const dir = tempDir('runwarden-races-');
  const dbPath = join(dir.path, 'runs.db');
  const store = new SlowTagStore({ path: dbPath });
  const launcher = sqliteProcessLauncher(store, dir.path, dbPath, [NODE, '-e', IDLE]);
  current = { store, launcher, dbPath, remove: dir.remove };
  return current;
}

/** Live processes started for a run, found by the environment the launcher gave them. */
function liveWorkersOf(runId: string): number[] {
  const needle = `RUNWARDEN_RUN_ID=${runId}`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(needle)) pids.push(+entry);
    } catch {
      // gone, or not ours
    }
  }
  return pids.filter(isAlive);
}

/** A call a gate holds: if the test fails first, its late rejection (store closed) must not be unhandled. */
function held<T>(call: Promise<T>): Promise<T> {
  call.catch(() => {});
  return call;
}

function killGroup(pid: number): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

async function getRun(s: Setup, runId: string): Promise<RunRecord> {
  const run = await s.store.getRun(runId);
  if (!run) throw new Error(`no run ${runId}`);
  return run;
}

/** Moves a run along allowed moves to `to`, as the monitor or a worker would. */
async function moveTo(s: Setup, runId: string, to: RunStatus): Promise<void> {
  const paths: Record<string, RunStatus[]> = {
    STARTING: ['STARTING'],
    STARTED: ['STARTING', 'STARTED'],
  };
  for (const status of paths[to] ?? [to]) await s.store.transition(runId, { to: status });
}

/** A STARTED run whose worker (started by this launcher, recorded in the tags) has died. */
async function runWithDeadWorker(s: Setup): Promise<RunRecord> {
  const run = await s.store.createRun({
    tags: { [COMMAND_TAG]: JSON.stringify([NODE, '-e', 'process.exit(1)']) },
  });
  await moveTo(s, run.runId, 'STARTED');
  await s.launcher.launch(await getRun(s, run.runId));
  await waitFor('the first worker to exit', () => liveWorkersOf(run.runId).length === 0);
  await s.store.setTags(run.runId, { [COMMAND_TAG]: JSON.stringify([NODE, '-e', IDLE]) });
  return getRun(s, run.runId);
}

describe('a worker that reports STARTED before its pid is recorded', () => {
  const POLLS = 5; // more than the default unknownHealthTolerance (3)

  it('is not resumed next to itself by the monitor health polls in that window', async () => {
    const s = setup();
    const clock = new SimulatedClock();
    clock.set(Date.now());
    const checked: HealthResult[] = [];
    const launcher = s.launcher;
    // The real launcher, with every health result it gives the monitor written down.
    const watched: RunLauncher = {
      supportsHealthCheck: true,
      supportsResume: true,
      launch: (run) => launcher.launch(run),
      resume: (run, attempt) => launcher.resume(run, attempt),
      terminate: (run) => launcher.terminate(run),
      debugInfo: (run) => launcher.debugInfo(run),
      checkHealth: async (run) => {
        const result = await launcher.checkHealth(run);
        checked.push(result);
        return result;
      },
    };
    // Each poll may take many clock steps on a loaded machine: no other deadline may come first.
    const config: Partial<MonitorConfig> = {
      startTimeoutSeconds: 3600,
      launcherTimeoutSeconds: 3600,
      pollIntervalSeconds: 1,
    };
    const monitor = createRunMonitor({ store: s.store, launcher: watched, clock, config });
    s.monitor = monitor;
    await monitor.start();

    const run = await s.store.createRun({
      tags: { [COMMAND_TAG]: JSON.stringify(workerCommand('hang-resumed')) },
    });
    const tagGate = (s.store.tagGate = new Gate());
    const launching = held(monitor.launch(run.runId));
    await waitFor('the launch to be recording the pid', () => tagGate.entered > 0);
    await waitFor(
      'the worker to report STARTED',
      async () => (await getRun(s, run.runId)).status === 'STARTED',
    );

    // Real health polls of the monitor, each one inside the window.
    for (let poll = 1; poll <= POLLS; poll++) {
      await waitFor(`health poll ${poll}`, () => {
        clock.increment(250);
        return checked.length >= poll;
      });
    }

    tagGate.open();
    await launching;
    await monitor.settle();
    const after = await getRun(s, run.runId);
    expect(after.status).toBe('STARTED');
    expect(after.resumeAttempts).toBe(0);
    const events = await s.store.getEvents(run.runId);
    expect(events.map((e) => e.message).filter((m) => /resum/i.test(m))).toEqual([]);
    expect(liveWorkersOf(run.runId)).toEqual([Number(after.tags[PID_TAG])]);
    // The launcher held the child: every poll saw it running.
    expect(checked.map((r) => r.status)).toEqual(Array(POLLS).fill('RUNNING'));
  });

  it('resume: health answers from the new worker while its pid is recorded, not from the dead one the tags name', async () => {
    const s = setup();
    const run = await runWithDeadWorker(s);
    expect(await s.launcher.checkHealth(run)).toMatchObject({ status: 'FAILED' });

    const tagGate = (s.store.tagGate = new Gate());
    const resuming = held(s.launcher.resume(run, 1));
    await waitFor('the resume to be recording the pid', () => tagGate.entered > 0);
    const [newPid] = liveWorkersOf(run.runId);
    expect(newPid).toBeDefined();
    expect(await s.launcher.checkHealth(run)).toEqual({
      status: 'RUNNING',
      message: `Run worker pid ${newPid} is running.`,
    });

    tagGate.open();
    await resuming;
    expect((await getRun(s, run.runId)).tags[PID_TAG]).toBe(String(newPid));
  });

  it('resume: a record read before the new pid was recorded is checked against the store, not reported dead', async () => {
    const s = setup();
    const stale = await runWithDeadWorker(s);
    await s.launcher.resume(stale, 1);
    const fresh = await getRun(s, stale.runId);
    expect(fresh.tags[PID_TAG]).not.toBe(stale.tags[PID_TAG]);
    expect(await s.launcher.checkHealth(stale)).toMatchObject({
      status: 'RUNNING',
      message: `Run worker pid ${fresh.tags[PID_TAG]} is running.`,
    });
  });

  it('before the spawn, health is UNKNOWN and transient: the pid is not recorded yet', async () => {
    const s = setup();
    const run = await runWithDeadWorker(s);
    const gate = (spawnGate.current = new Gate());
    const resuming = held(s.launcher.resume(run, 1));
    await waitFor('the resume to be about to spawn', () => gate.entered > 0);
    expect(await s.launcher.checkHealth(run)).toEqual({
      status: 'UNKNOWN',
      transient: true,
      message: `A run worker for run ${run.runId} is being started (attempt 1); its pid is not recorded yet.`,
    });
    gate.open();
    await resuming;
    expect(await s.launcher.checkHealth(await getRun(s, run.runId))).toMatchObject({ status: 'RUNNING' });
  });

  it('a launcher that did not start the worker answers UNKNOWN, transient, while no pid is recorded', async () => {
    const s = setup();
    const run = await s.store.createRun({});
    await moveTo(s, run.runId, 'STARTED');
    const tagGate = (s.store.tagGate = new Gate());
    const launching = held(s.launcher.launch(await getRun(s, run.runId)));
    await waitFor('the launch to be recording the pid', () => tagGate.entered > 0);

    // As a restarted monitor in another process would see it.
    const other = new ProcessRunLauncher({ store: s.store, command: ['false'], logDir: '/nonexistent' });
    expect(await other.checkHealth(await getRun(s, run.runId))).toEqual({
      status: 'UNKNOWN',
      transient: true,
      message: `No run worker pid recorded yet (tag ${PID_TAG} is missing on run ${run.runId}); its launch may still be recording it.`,
    });
    tagGate.open();
    await launching;
  });

  it('terminate stops the worker being recorded as well as the one the tags name', async () => {
    const s = setup();
    const run = await runWithDeadWorker(s);
    const tagGate = (s.store.tagGate = new Gate());
    const resuming = held(s.launcher.resume(run, 1));
    await waitFor('the resume to be recording the pid', () => tagGate.entered > 0);
    const [newPid] = liveWorkersOf(run.runId);
    expect(newPid).toBeDefined();

    expect(await s.launcher.terminate(run)).toBe(true);
    expect(isAlive(newPid!)).toBe(false);
    tagGate.open();
    await resuming;
  });
});

describe('a worker spawned for a run that has already ended', () => {
  it('is stopped at once when the start timeout failed the run while it was being spawned', async () => {
    const s = setup();
    const clock = new SimulatedClock();
    clock.set(Date.now());
    const config: Partial<MonitorConfig> = { startTimeoutSeconds: 5 };
    const monitor = createRunMonitor({ store: s.store, launcher: s.launcher, clock, config });
    s.monitor = monitor;
    await monitor.start();

    const run = await s.store.createRun({
      tags: { [COMMAND_TAG]: JSON.stringify(workerCommand('never-starts')) },
    });
    const gate = (spawnGate.current = new Gate());
    const launching = monitor.launch(run.runId).catch((error: unknown) => error);
    await waitFor('the launch to be about to spawn', () => gate.entered > 0);
    await waitFor('the start timeout to fail the run', async () => {
      clock.increment(500);
      return (await getRun(s, run.runId)).status === 'FAILURE';
    });
    expect((await getRun(s, run.runId)).tags[TAGS.failureReason]).toBe('START_TIMEOUT');

    gate.open();
    await launching;
    expect((await getRun(s, run.runId)).tags[PID_TAG]).toMatch(/^\d+$/);
    await waitFor('the late worker to be stopped', () => liveWorkersOf(run.runId).length === 0, 5_000);
  });

  const ended: [string, RunStatus][] = [
    ['launch', 'FAILURE'],
    ['launch', 'CANCELED'],
    ['resume', 'FAILURE'],
    ['resume', 'CANCELED'],
  ];
  it.each(ended)(
    '%s: a run ended %s while spawning gets its worker stopped before the call returns',
    async (call, status) => {
      const s = setup();
      const run = call === 'launch' ? await s.store.createRun({}) : await runWithDeadWorker(s);
      if (call === 'launch') await moveTo(s, run.runId, 'STARTING');
      const gate = (spawnGate.current = new Gate());
      const starting = held(call === 'launch' ? s.launcher.launch(run) : s.launcher.resume(run, 1));
      await waitFor('the start to be about to spawn', () => gate.entered > 0);
      await moveTo(s, run.runId, status === 'CANCELED' ? 'CANCELING' : status);
      if (status === 'CANCELED') await moveTo(s, run.runId, 'CANCELED');
      gate.open();
      await starting;

      const after = await getRun(s, run.runId);
      expect(after.tags[PID_START_TAG]).toMatch(/^\d+$/);
      expect(isAlive(Number(after.tags[PID_TAG]))).toBe(false);
      expect(liveWorkersOf(run.runId)).toEqual([]);
      expect(readFileSync(s.launcher.logPath(run.runId), 'utf8')).toContain(
        `run ${run.runId} is already ${status}: stopping its run worker pid ${after.tags[PID_TAG]}`,
      );
    },
  );

  it('is left alone when the run ended SUCCESS: the worker finished it itself', async () => {
    const s = setup();
    const run = await s.store.createRun({});
    await moveTo(s, run.runId, 'STARTING');
    const gate = (spawnGate.current = new Gate());
    const launching = held(s.launcher.launch(run));
    await waitFor('the launch to be about to spawn', () => gate.entered > 0);
    await moveTo(s, run.runId, 'SUCCESS');
    gate.open();
    await launching;
    expect(liveWorkersOf(run.runId)).toEqual([Number((await getRun(s, run.runId)).tags[PID_TAG])]);
  });
});
