// A launch that nothing watches warns: `runwarden monitor` keeps a heartbeat file next to the database, and
// `runwarden launch` checks it (isMonitorWatching). In-process for the file rules, then with real processes.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { heartbeatPath, isMonitorWatching, startHeartbeat } from '../src/cli/watchers.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { PID_TAG } from '../src/launchers/process/process-launcher.js';
import { built, killWorkers, NODE, runCli, tempDir, waitFor } from './processes.js';

const dir = tempDir('runwarden-cli-watchers-');
const monitors: ChildProcess[] = [];
const stores: SqliteRunStore[] = [];

afterAll(async () => {
  for (const child of monitors) child.kill('SIGKILL');
  for (const store of stores) {
    await killWorkers(store);
    await store.close();
  }
  dir.remove();
});

describe('isMonitorWatching', () => {
  const store = { path: join(dir.path, 'unit.db') };
  const file = heartbeatPath(store.path);
  const write = (beat: object | string) =>
    writeFileSync(file, typeof beat === 'string' ? beat : JSON.stringify(beat));
  const now = Date.now();
  const fresh = { pid: process.pid, host: hostname(), at: now - 1_000, intervalMs: 5_000 };

  it('reads <db>.monitor.json: fresh and alive counts; stale, dead, malformed or missing does not', async () => {
    expect(file).toBe(`${store.path}.monitor.json`);
    expect(await isMonitorWatching(store, now)).toBe(false); // no file

    write(fresh);
    expect(await isMonitorWatching(store, now)).toBe(true);
    // Stale after 3 of its own intervals.
    write({ ...fresh, at: now - 15_000 });
    expect(await isMonitorWatching(store, now)).toBe(true);
    write({ ...fresh, at: now - 15_001 });
    expect(await isMonitorWatching(store, now)).toBe(false);
    write({ ...fresh, at: now - 15_001, intervalMs: 10_000 });
    expect(await isMonitorWatching(store, now)).toBe(true);

    // A pid that is gone, on this host: its monitor was killed and left the file behind.
    const exited = spawn(NODE, ['-e', '0']);
    await new Promise((resolve) => exited.on('close', resolve));
    write({ ...fresh, pid: exited.pid });
    expect(await isMonitorWatching(store, now)).toBe(false);
    // Another host's pid cannot be checked from here: the time alone decides.
    write({ ...fresh, pid: exited.pid, host: `not-${hostname()}` });
    expect(await isMonitorWatching(store, now)).toBe(true);

    for (const bad of ['', '{', 'null', '[]', JSON.stringify({ ...fresh, pid: 'x' })]) {
      write(bad);
      expect(await isMonitorWatching(store, now), bad).toBe(false);
    }
    write({ ...fresh, intervalMs: 0 });
    expect(await isMonitorWatching(store, now)).toBe(false);
  });

  it('startHeartbeat writes at once and removes its own file on stop, but not another monitor’s', async () => {
    const db = join(dir.path, 'writer.db');
    const heartbeat = startHeartbeat(db, { intervalMs: 60_000 });
    const beat = JSON.parse(readFileSync(heartbeatPath(db), 'utf8')) as Record<string, unknown>;
    expect(beat).toMatchObject({ pid: process.pid, host: hostname(), intervalMs: 60_000 });
    expect(await isMonitorWatching({ path: db })).toBe(true);
    heartbeat.stop();
    expect(existsSync(heartbeatPath(db))).toBe(false);

    const mine = startHeartbeat(db, { intervalMs: 60_000 });
    const theirs = JSON.stringify({ ...beat, pid: process.pid + 1, at: Date.now() });
    writeFileSync(heartbeatPath(db), theirs);
    mine.stop();
    expect(readFileSync(heartbeatPath(db), 'utf8')).toBe(theirs);
  });
});

// Each test has its own database; up to 5 CLI processes one after another, so they get time on a loaded machine.
describe('runwarden launch', () => {
  /** A database, `runwarden launch` and `runwarden monitor` on it, and the warning launch prints there. */
  function setup(name: string) {
    const dbPath = join(dir.path, `${name}.db`);
    const file = heartbeatPath(dbPath);
    const store = new SqliteRunStore({ path: dbPath });
    stores.push(store);
    // A worker that neither reports nor ends soon: only the launch is looked at (afterAll kills it).
    const launch = () =>
      runCli(['launch', '--store', `sqlite:${dbPath}`, '--', 'sleep', '60'], { cwd: dir.path });
    const db = dbPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    // One line, naming the store and the command that watches it.
    const warning = new RegExp(
      `^runwarden: warning: no runwarden monitor is watching ${db}: run [0-9a-f-]{36} was started, but nothing enforces its timeouts or notices a crashed worker until one runs\\. Start one with: runwarden monitor --store sqlite:${db}\\n$`,
    );

    async function startMonitor(): Promise<{ child: ChildProcess; exit: Promise<number | null> }> {
      const child = spawn(NODE, [built('src/cli/cli.js'), 'monitor', '--store', `sqlite:${dbPath}`], {
        cwd: dir.path,
        stdio: 'ignore',
      });
      monitors.push(child);
      const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      await waitFor('the monitor heartbeat', () => readBeat()?.pid === child.pid, 20_000);
      return { child, exit };
    }

    function readBeat(): { pid: number; at: number } | undefined {
      try {
        return JSON.parse(readFileSync(file, 'utf8')) as { pid: number; at: number };
      } catch {
        return undefined;
      }
    }

    /** Launched all the same: the run is STARTING with its worker recorded. */
    async function expectLaunched(result: { code: number | null; stdout: string }): Promise<void> {
      expect(result.code).toBe(0);
      const run = await store.getRun(result.stdout.trim());
      expect(run?.status).toBe('STARTING');
      expect(run?.tags[PID_TAG]).toMatch(/^\d+$/);
    }

    return { file, launch, warning, startMonitor, readBeat, expectLaunched };
  }

  it('warns when no monitor watches, not while one does, and again once it stopped', async () => {
    const { file, launch, warning, startMonitor, expectLaunched } = setup('stopped');
    const alone = await launch();
    expect(alone.stderr).toMatch(warning);
    await expectLaunched(alone);

    const monitor = await startMonitor();
    const watched = await launch();
    expect(watched.stderr).toBe('');
    await expectLaunched(watched);

    // A clean stop removes the heartbeat.
    monitor.child.kill('SIGTERM');
    expect(await monitor.exit).toBe(0);
    expect(existsSync(file)).toBe(false);
    const afterStop = await launch();
    expect(afterStop.stderr).toMatch(warning);
    await expectLaunched(afterStop);
  }, 60_000);

  it('a monitor killed with SIGKILL leaves its heartbeat file behind, and it does not count', async () => {
    const { launch, warning, startMonitor, readBeat, expectLaunched } = setup('killed');
    const killed = await startMonitor();
    killed.child.kill('SIGKILL');
    await killed.exit;
    const afterKill = await launch();
    expect(afterKill.stderr).toMatch(warning);
    await expectLaunched(afterKill);
    // Still fresh by its time (so the dead pid is what made it not count), and still there.
    const beat = readBeat();
    expect(beat?.pid).toBe(killed.child.pid);
    expect(Date.now() - beat!.at).toBeLessThan(15_000);
  }, 60_000);
});
