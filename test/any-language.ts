// Shared by test/report.test.ts and test/wrap.test.ts: run workers that are not Node programs, started by a
// real ProcessRunLauncher on a real SQLite file, watched by a monitor in this process with short timeouts.
// Workers find `runwarden` on their PATH: a shim that runs the built CLI, as an installed package would.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MonitorConfig } from '../src/core/config.js';
import { isTerminal, type RunRecord } from '../src/core/types.js';
import {
  COMMAND_TAG,
  ProcessRunLauncher,
  type ProcessRunLauncherOptions,
} from '../src/launchers/process/process-launcher.js';
import { createRunMonitor, type RunMonitor, type RunMonitorOptions } from '../src/monitor/monitor.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { built, killWorkers, NODE, tempDir, waitFor } from './processes.js';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

const BASE_CONFIG: Partial<MonitorConfig> = {
  startTimeoutSeconds: 15,
  cancelTimeoutSeconds: 15,
  pollIntervalSeconds: 0.2,
  feedPollIntervalSeconds: 0.1,
  maxResumeRunAttempts: 1,
  launcherTimeoutSeconds: 15,
};

export interface WorkerSetup {
  dir: ReturnType<typeof tempDir>;
  storeUrl: string;
  store: SqliteRunStore;
  launcher: ProcessRunLauncher;
  monitor: RunMonitor;
  /** Env for running the built CLI or a worker by hand: PATH with the shim, the store. */
  env: Record<string, string>;
  /** Creates a run of `argv` and launches it; resolves its id. */
  launch(argv: string[], tags?: Record<string, string>): Promise<string>;
  /** Polls until the run has ended. */
  ended(runId: string, timeoutMs?: number): Promise<RunRecord>;
  close(): Promise<void>;
}

export async function setupWorkers(
  options: {
    config?: Partial<MonitorConfig>;
    wrap?: boolean;
    start?: boolean;
    /** Added to every worker's environment. */
    env?: Record<string, string>;
    /** For tests that read the monitor's log lines or metrics. */
    logger?: RunMonitorOptions['logger'];
    metrics?: RunMonitorOptions['metrics'];
    /** e.g. `procRoot`, for a test that makes the launcher's health checks fail. */
    launcher?: Pick<ProcessRunLauncherOptions, 'procRoot'>;
  } = {},
): Promise<WorkerSetup> {
  const dir = tempDir('runwarden-any-language-');
  const dbPath = join(dir.path, 'runs.db');
  const storeUrl = `sqlite:${dbPath}`;
  const store = new SqliteRunStore({ path: dbPath });
  const env = { PATH: `${shim(dir.path)}:${process.env.PATH}`, RUNWARDEN_STORE: storeUrl };
  const launcher = new ProcessRunLauncher({
    store,
    command: ['false'],
    logDir: join(dir.path, 'logs'),
    env: { ...options.env, PATH: env.PATH },
    storeEnv: { RUNWARDEN_STORE: storeUrl },
    terminateGraceMs: 5000,
    killWaitMs: 2000,
    wrap: options.wrap,
    wrapperCommand: [NODE, built('src/cli/wrap.js')],
    ...options.launcher,
  });
  const monitor = createRunMonitor({
    store,
    launcher,
    config: { ...BASE_CONFIG, ...options.config },
    logger: options.logger,
    metrics: options.metrics,
  });
  if (options.start !== false) await monitor.start();
  return {
    dir,
    storeUrl,
    store,
    launcher,
    monitor,
    env,
    async launch(argv, tags = {}) {
      const run = await store.createRun({ tags: { ...tags, [COMMAND_TAG]: JSON.stringify(argv) } });
      await monitor.launch(run.runId);
      return run.runId;
    },
    ended(runId, timeoutMs = 15_000) {
      return waitFor(
        `run ${runId} to end`,
        async () => {
          const run = (await store.getRun(runId))!;
          return isTerminal(run.status) && run;
        },
        timeoutMs,
      );
    },
    async close() {
      await monitor.stop();
      await killWorkers(store);
      await store.close();
      dir.remove();
    },
  };
}

/** A directory holding a `runwarden` that runs the built CLI. */
function shim(root: string): string {
  const bin = join(root, 'bin');
  mkdirSync(bin);
  const path = join(bin, 'runwarden');
  writeFileSync(path, `#!/bin/sh\nexec '${NODE}' '${built('src/cli/cli.js')}' "$@"\n`);
  chmodSync(path, 0o755);
  return bin;
}
