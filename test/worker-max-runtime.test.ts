// "A maximum-runtime stop is final once written", with a real run-worker process and a real SQLite file: a
// worker that reports SUCCESS just after the monitor wrote CANCELING for max runtime must not turn the run
// into a SUCCESS. Outcomes are polled for with bounded waits.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { createRunMonitor, type RunMonitor } from '../src/monitor/monitor.js';
import { COMMAND_TAG, PID_TAG, ProcessRunLauncher } from '../src/launchers/process/process-launcher.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { isTerminal, type RunRecord, TAGS } from '../src/core/types.js';
import { built, isAlive, killWorkers, NODE, tempDir, waitFor } from './processes.js';

const OUTRUN_WORKER = fileURLToPath(new URL('./fixtures/outrun-worker.mjs', import.meta.url));

/**
 * A ProcessRunLauncher whose terminate reaches the worker late: only once the worker has exited on its own.
 * That holds open, deterministically, the window a loaded machine opens by chance between the monitor's
 * CANCELING write and its SIGTERM, in which the worker reports.
 */
class LateTerminateLauncher extends ProcessRunLauncher {
  workerGoneBeforeTerminate: boolean | undefined;

  constructor(
    private readonly runs: SqliteRunStore,
    logDir: string,
    dbPath: string,
  ) {
    super({
      store: runs,
      command: ['false'],
      logDir,
      storeEnv: { RUNWARDEN_STORE: `sqlite:${dbPath}` },
      terminateGraceMs: 300,
      killWaitMs: 1000,
    });
  }

  override async terminate(run: RunRecord): Promise<boolean> {
    const pid = Number((await this.runs.getRun(run.runId))?.tags[PID_TAG]);
    await waitFor('the worker to exit on its own', () => !isAlive(pid));
    this.workerGoneBeforeTerminate = true;
    return super.terminate(run);
  }
}

let cleanup: (() => Promise<void>) | undefined;

afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

it('a worker that reports SUCCESS just after the monitor wrote CANCELING for max runtime ends FAILURE / MAX_RUNTIME_EXCEEDED', async () => {
  const dir = tempDir('runwarden-outrun-');
  const dbPath = join(dir.path, 'runs.db');
  const store = new SqliteRunStore({ path: dbPath });
  const launcher = new LateTerminateLauncher(store, join(dir.path, 'logs'), dbPath);
  const monitor: RunMonitor = createRunMonitor({
    store,
    launcher,
    config: {
      startTimeoutSeconds: 10,
      cancelTimeoutSeconds: 10,
      pollIntervalSeconds: 0.2,
      feedPollIntervalSeconds: 0.1,
      launcherTimeoutSeconds: 15,
    },
  });
  cleanup = async () => {
    await monitor.stop();
    await killWorkers(store);
    await store.close();
    dir.remove();
  };
  await monitor.start();

  const command = [NODE, OUTRUN_WORKER, built('src/worker/worker.js')];
  const { runId } = await store.createRun({
    tags: { [TAGS.maxRuntime]: '1', [COMMAND_TAG]: JSON.stringify(command) },
  });
  await monitor.launch(runId);
  const run = await waitFor(
    `run ${runId} to end`,
    async () => {
      const current = await store.getRun(runId);
      return current && isTerminal(current.status) && current;
    },
    15_000,
  );

  const events = await store.getEvents(runId);
  const log = readFileSync(launcher.logPath(runId), 'utf8');
  expect(run.status).toBe('FAILURE');
  expect(run.tags[TAGS.failureReason]).toBe('MAX_RUNTIME_EXCEEDED');
  // The worker's SUCCESS came after the CANCELING write and before any SIGTERM, and was refused.
  expect(launcher.workerGoneBeforeTerminate).toBe(true);
  expect(log).toContain(`Run ${runId}: not reporting SUCCESS: the monitor is stopping this run`);
  expect(log).toContain('exit 143');
  expect(log).not.toContain('succeed() resolved');
  expect(events.map((e) => e.type).filter((type) => type !== 'ENGINE_EVENT')).toEqual([
    'RUN_STARTING',
    'RUN_START',
    'RUN_CANCELING',
    'RUN_FAILURE',
  ]);
  expect(events.at(-1)?.message).toBe(messages.maxRuntimeExceeded(1));
});
