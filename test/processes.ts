// Helpers for the tests that run real processes against the built package (test/global-setup.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import {
  COMMAND_TAG,
  PID_START_TAG,
  PID_TAG,
  ProcessRunLauncher,
} from '../src/launchers/process/process-launcher.js';
import { createRunMonitor } from '../src/monitor/monitor.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import type { RunStore } from '../src/core/types.js';

export const NODE = process.execPath;

/** A file of the built package, e.g. built('src/cli/cli.js'). */
export function built(path: string): string {
  return join(inject('runwardenBuild'), path);
}

const WORKER_FIXTURE = fileURLToPath(new URL('./fixtures/run-worker.mjs', import.meta.url));

/** The argv of a test worker (test/fixtures/run-worker.mjs) in `mode`. */
export function workerCommand(mode: string, ...args: string[]): string[] {
  return [NODE, WORKER_FIXTURE, built('src/worker/worker.js'), mode, ...args];
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI to completion. */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [built('src/cli/cli.js'), ...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`runwarden ${args.join(' ')} did not finish within ${options.timeoutMs ?? 15_000} ms`),
      );
    }, options.timeoutMs ?? 15_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Polls `check` until it returns something other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * SIGKILLs the process group of every worker recorded in the store (test cleanup), and the given processes.
 * A recorded worker is only signalled while its pid still has the recorded start time (not a reused pid).
 */
export async function killWorkers(store: RunStore, extraPids: Iterable<number> = []): Promise<void> {
  const pids = new Set(extraPids);
  for (const run of await store.listRuns().catch(() => [])) {
    const pid = Number(run.tags[PID_TAG]);
    if (pid > 1 && startTime(pid) === run.tags[PID_START_TAG]) pids.add(pid);
  }
  for (const pid of pids) {
    if (pid <= 1 || pid === process.pid) continue;
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

/** Field 22 of /proc/<pid>/stat (after the parenthesised command name), or undefined. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A killed process stays a zombie until its parent reaps it (late, under load); it is gone for every
  // purpose here, as it is for ProcessRunLauncher. The state follows the parenthesised command name.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * The process launcher of the tests' SQLite stores: workers run `command`, log into `dir`/logs, reach the
 * store at `dbPath`, and get a short terminate grace.
 */
export function sqliteProcessLauncher(
  store: RunStore,
  dir: string,
  dbPath: string,
  command: string[] = ['false'],
): ProcessRunLauncher {
  return new ProcessRunLauncher({
    store,
    command,
    logDir: join(dir, 'logs'),
    storeEnv: { RUNWARDEN_STORE: `sqlite:${dbPath}` },
    terminateGraceMs: 300,
    killWaitMs: 1000,
  });
}

/**
 * A SQLite store in a temp folder with a runwarden.yaml for `runwarden monitor --config` processes (the given
 * run_monitoring lines, worker logs beside it, a short terminate grace), and a launcher and monitor in this
 * process that launch runs the way `runwarden launch` does.
 */
export function cliMonitorSetup(prefix: string, runMonitoring: string, startTimeoutSeconds: number) {
  const dir = tempDir(prefix);
  const dbPath = join(dir.path, 'runs.db');
  const configFile = join(dir.path, 'runwarden.yaml');
  writeFileSync(
    configFile,
    `run_monitoring:
${runMonitoring.trimEnd()}
storage:
  sqlite:
    path: runs.db
launcher:
  process:
    log_dir: logs
    terminate_grace_seconds: 0.3
    kill_wait_seconds: 1
`,
  );
  const store = new SqliteRunStore({ path: dbPath });
  const launcher = sqliteProcessLauncher(store, dir.path, dbPath);
  const control = createRunMonitor({ store, launcher, config: { startTimeoutSeconds } });
  /** Every `runwarden monitor` started here, for the test's cleanup. */
  const monitors: ChildProcess[] = [];

  /** Starts `runwarden monitor --config … ARGS` and resolves with its "running" log line once it is watching. */
  async function startMonitor(args: string[] = [], timeoutMs = 15_000) {
    const child = spawn(NODE, [built('src/cli/cli.js'), 'monitor', '--config', configFile, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    monitors.push(child);
    let output = '';
    child.stdout!.on('data', (d) => {
      output += d;
    });
    child.stderr!.on('data', (d) => {
      output += d;
    });
    const line = await waitFor(
      'a monitor to start',
      () => output.split('\n').find((l) => l.includes('runwarden monitor running')) ?? undefined,
      timeoutMs,
    );
    return { child, output: () => output, running: JSON.parse(line) as { time: string; monitorId: string } };
  }

  /** Creates a run of the fixture worker in `mode` and launches it, as `runwarden launch` does. */
  async function launch(mode: string, tags: Record<string, string> = {}): Promise<string> {
    const run = await store.createRun({
      tags: { ...tags, [COMMAND_TAG]: JSON.stringify(workerCommand(mode)) },
    });
    await control.launch(run.runId);
    return run.runId;
  }

  return { dir, dbPath, configFile, store, launcher, control, monitors, startMonitor, launch };
}
