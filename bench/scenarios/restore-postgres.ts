// restore-pg: a cold process opens a PostgreSQL schema holding N active runs and start()s a monitor over it,
// until every run's deadline timer is armed. Opt-in (`--scenarios restore-pg --pg-url URL`): it needs a
// server. The schema is written once per size by preparePostgres and dropped by dropPostgres.
import pg from 'pg';
import { createRunMonitor } from '../../src/monitor/monitor.js';
import { PostgresRunStore } from '../../src/stores/postgres/postgres-store.js';
import { quoteIdent } from '../../src/stores/postgres/migrations.js';
import { FakeLauncher } from '../../src/testing/index.js';
import type { RunStatus } from '../../src/core/types.js';
import { FAR_CONFIG, MIX, populate, runTimerClock } from '../lib.js';
import { type RestoreResult, restoreTimer } from './restore.js';

/**
 * Writes N active runs (the MIX of statuses) to a new schema. The first runs go through the store's API;
 * the rest are copies of those rows and their events made in SQL (new run ids, events numbered after the
 * last seq, the counter moved on), so they look exactly like runs the API wrote.
 */
export async function preparePostgres(n: number, url: string, schema: string): Promise<{ ms: number }> {
  const t0 = performance.now();
  const store = new PostgresRunStore({ connectionString: url }, { schema });
  const base = Date.now();
  const templates = Math.min(n, MIX.length);
  await populate(
    store,
    templates,
    (i) => MIX[i % MIX.length] as RunStatus,
    () => base,
  );
  await store.close();
  const s = quoteIdent(schema);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN');
    // run-0000004 copies run-0000000, and so on (bench/lib.ts runIdOf).
    const copy = `FROM generate_series(${templates}, ${n - 1}) g
      JOIN ${s}.runs t ON t.run_id = 'run-' || lpad((g % ${templates})::text, 7, '0')`;
    await client.query(`INSERT INTO ${s}.runs (run_id, status, tags, created_at, updated_at, queued_at,
        launched_at, started_at, canceling_at, ended_at, resume_attempts, heartbeat_at, progress_at)
      SELECT 'run-' || lpad(g::text, 7, '0'), t.status, t.tags, t.created_at, t.updated_at, t.queued_at,
        t.launched_at, t.started_at, t.canceling_at, t.ended_at, t.resume_attempts, t.heartbeat_at, t.progress_at
      ${copy}`);
    await client.query(`INSERT INTO ${s}.events (seq, run_id, at, type, message, data)
      SELECT c.last_seq + row_number() OVER (ORDER BY g, e.seq), 'run-' || lpad(g::text, 7, '0'), e.at, e.type,
        e.message, e.data
      ${copy} JOIN ${s}.events e ON e.run_id = t.run_id CROSS JOIN ${s}.event_counter c`);
    await client.query(`UPDATE ${s}.event_counter SET last_seq = (SELECT max(seq) FROM ${s}.events)`);
    await client.query('COMMIT');
    await client.query(`ANALYZE ${s}.runs`);
    const { rows } = await client.query<{ count: string }>(
      `SELECT count(*) FROM ${s}.runs WHERE status = ANY ($1::text[])`,
      [MIX],
    );
    if (Number(rows[0]!.count) !== n)
      throw new Error(`preparePostgres: expected ${n} runs, found ${rows[0]!.count}`);
  } finally {
    await client.end();
  }
  return { ms: performance.now() - t0 };
}

export async function dropPostgres(url: string, schema: string): Promise<{ ms: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
  } finally {
    await client.end();
  }
  return { ms: 0 };
}

/** A cold monitor over the schema: from opening the store until the N-th run deadline was armed. */
export async function restorePostgres(n: number, url: string, schema: string): Promise<RestoreResult> {
  const { onTarget, result } = restoreTimer();
  const store = new PostgresRunStore({ connectionString: url }, { schema });
  const monitor = createRunMonitor({
    store,
    launcher: new FakeLauncher(),
    clock: runTimerClock(n, onTarget),
    config: FAR_CONFIG,
  });
  await monitor.start();
  return result;
}
