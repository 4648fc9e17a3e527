// restore: a cold process opens a SQLite file holding N active runs and start()s a monitor over it, until
// every run's deadline timer is armed. The file is written once per size by prepareSqlite.
import Database from 'better-sqlite3';
import { createRunMonitor } from '../../src/monitor/monitor.js';
import { SqliteRunStore } from '../../src/stores/sqlite/sqlite-store.js';
import { createNaiveMonitor } from '../naive.js';
import { createFarXStateFloor } from '../xstate-floor.js';
import { FakeLauncher } from '../../src/testing/index.js';
import { ACTIVE_STATUSES, type RunStatus } from '../../src/core/types.js';
import {
  cpuSince,
  deadlineOf,
  FAR_CONFIG,
  FAR_SECONDS,
  MIX,
  pages,
  populate,
  runTimerClock,
  runIdOf,
} from '../lib.js';

export type RestoreVariant = 'runwarden' | 'naive' | 'floor' | 'xstate';

export interface RestoreResult {
  /** From opening the store until the N-th run deadline was armed. */
  restoreMs: number;
  /** CPU (user + system, all threads) over the same span: less disturbed by other load than wall time. */
  cpuMs: number;
  /** Process uptime at that moment: includes starting Node and loading the modules. */
  uptimeMs: number;
}

/**
 * Writes N active runs (the MIX of statuses) to a new SQLite file. The first runs go through the store's
 * API; through the API 100k runs take half a minute, so the rest are copies of those rows and their events
 * (column for column, whatever the schema holds) with the run id changed, in one transaction.
 */
export async function prepareSqlite(
  n: number,
  path: string,
  mix: readonly RunStatus[] = MIX,
  base = Date.now(),
): Promise<{ ms: number }> {
  const t0 = performance.now();
  const store = SqliteRunStore.open(path);
  const templates = Math.min(n, mix.length);
  await populate(
    store,
    templates,
    (i) => mix[i % mix.length] as RunStatus,
    () => base,
  );
  await store.close();
  const db = new Database(path);
  try {
    const copyRows = (table: string, skip: string[]) => {
      const columns = (
        db.prepare(`SELECT name FROM pragma_table_info('${table}')`).all() as { name: string }[]
      )
        .map((c) => c.name)
        .filter((c) => !skip.includes(c));
      const select = db.prepare(`SELECT ${columns.join(', ')} FROM ${table} WHERE run_id = ?`);
      const insert = db.prepare(
        `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`,
      );
      const rowsOf = Array.from({ length: templates }, (_, t) => select.all(runIdOf(t)) as object[]);
      return (i: number) => {
        for (const row of rowsOf[i % templates] ?? []) insert.run({ ...row, run_id: runIdOf(i) });
      };
    };
    const copyRun = copyRows('runs', []);
    const copyEvents = copyRows('events', ['seq']);
    db.transaction(() => {
      for (let i = templates; i < n; i++) {
        copyRun(i);
        copyEvents(i);
      }
    })();
  } finally {
    db.close();
  }
  // Read back through the store: the copies must look like runs the API wrote.
  const check = SqliteRunStore.open(path);
  const last = await check.getRun(runIdOf(n - 1));
  const listed = (await check.listRuns({ statuses: [...ACTIVE_STATUSES] })).length;
  await check.close();
  if (listed !== n || last?.status !== mix[(n - 1) % mix.length]) {
    throw new Error(`prepareSqlite: expected ${n} active runs, the store lists ${listed}`);
  }
  return { ms: performance.now() - t0 };
}

/**
 * Times a cold restore from now: `onTarget` is called when the N-th run deadline is armed, and `result`
 * then resolves with the wall time, the process CPU and the uptime (performance.now() counts from the
 * process's start).
 */
export function restoreTimer(): { onTarget: () => void; result: Promise<RestoreResult> } {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let onTarget!: () => void;
  const result = new Promise<RestoreResult>((resolve) => {
    onTarget = () => {
      const armedAt = performance.now();
      resolve({ restoreMs: armedAt - t0, cpuMs: cpuSince(cpu0), uptimeMs: armedAt });
    };
  });
  return { onTarget, result };
}

export async function restore(variant: RestoreVariant, n: number, path: string): Promise<RestoreResult> {
  const { onTarget, result } = restoreTimer();
  const store = SqliteRunStore.open(path);
  if (variant === 'floor') {
    const timers = new Map<string, NodeJS.Timeout>();
    let count = 0;
    for await (const page of pages(store, [...ACTIVE_STATUSES])) {
      for (const run of page) {
        const { runId } = run;
        timers.set(
          runId,
          setTimeout(() => timers.delete(runId), Math.max(0, deadlineOf(run, FAR_SECONDS) - Date.now())),
        );
        if (++count === n) onTarget();
      }
    }
  } else if (variant === 'xstate') {
    const floor = createFarXStateFloor(store, runTimerClock(n, onTarget));
    await floor.start();
  } else {
    const clock = runTimerClock(n, onTarget);
    const launcher = new FakeLauncher();
    const monitor =
      variant === 'naive'
        ? createNaiveMonitor({ store, launcher, clock, config: FAR_CONFIG })
        : createRunMonitor({ store, launcher, clock, config: FAR_CONFIG });
    await monitor.start();
  }
  return result;
}
