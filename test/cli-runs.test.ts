// `runwarden runs`: the ENDED and DURATION columns, and durationMs in --json.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { duration } from '../src/cli/output.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import type { RunRecord } from '../src/core/types.js';
import { runCli, tempDir } from './processes.js';

const dir = tempDir('runwarden-cli-runs-');
afterAll(() => dir.remove());

describe('duration', () => {
  it.each([
    [undefined, '-'],
    [0, '0ms'],
    [850, '850ms'],
    [999.9, '999ms'],
    [1_000, '1s'],
    [59_999, '59s'],
    [65_000, '1m 05s'],
    [3_599_000, '59m 59s'],
    [3_600_000, '1h 00m'],
    [2 * 3_600_000 + 3 * 60_000 + 59_000, '2h 03m'],
    [3 * 86_400_000 + 4 * 3_600_000, '3d 04h'],
    [-5, '0ms'], // a clock step backwards is not a negative duration
  ])('%o ms is %s', (ms, text) => {
    expect(duration(ms)).toBe(text);
  });
});

describe('runs', () => {
  it('shows when each run ended and how long it ran (still running: so far; never started: -)', async () => {
    const dbPath = join(dir.path, 'runs.db');
    const store = new SqliteRunStore({ path: dbPath });
    const now = Date.now();
    const t0 = now - 600_000;
    try {
      await store.createRun({ runId: 'ended', at: t0 });
      await store.transition('ended', { to: 'STARTING', at: t0 + 10 });
      await store.transition('ended', { to: 'STARTED', at: t0 + 1_000 });
      await store.transition('ended', { to: 'SUCCESS', at: t0 + 66_000 });
      await store.createRun({ runId: 'running', at: now - 20_000 });
      await store.transition('running', { to: 'STARTING', at: now - 20_000 });
      await store.transition('running', { to: 'STARTED', at: now - 10_000 });
      await store.createRun({ runId: 'timed-out', at: now - 30_000 });
      await store.transition('timed-out', { to: 'STARTING', at: now - 30_000 });
      await store.transition('timed-out', { to: 'FAILURE', at: now - 25_000 });
    } finally {
      await store.close();
    }

    const [table, json] = await Promise.all([
      runCli(['runs', '--store', `sqlite:${dbPath}`]),
      runCli(['runs', '--json', '--store', `sqlite:${dbPath}`]),
    ]);
    expect(table.code, table.stderr).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^RUN ID +STATUS +RESUMES +FAILURE REASON +CREATED +ENDED +DURATION +COMMAND$/);
    const cells = Object.fromEntries(rows.map((row) => [row.split(/ {2,}/)[0], row.split(/ {2,}/)]));
    expect(cells.ended!.slice(4)).toEqual([
      new Date(t0).toISOString(),
      new Date(t0 + 66_000).toISOString(),
      '1m 05s',
      '(configured command)',
    ]);
    expect(cells.running![5]).toBe('-');
    // Measured against the CLI's clock: at least the 10 s it had run when the test wrote it.
    expect(Number(/^(\d+)s$/.exec(cells.running![6]!)?.[1])).toBeGreaterThanOrEqual(10);
    expect(cells['timed-out']!.slice(5, 7)).toEqual([new Date(now - 25_000).toISOString(), '-']);

    expect(json.code, json.stderr).toBe(0);
    const byId = Object.fromEntries(
      (JSON.parse(json.stdout) as (RunRecord & { durationMs?: number })[]).map((r) => [r.runId, r]),
    );
    expect(byId.ended).toMatchObject({ startedAt: t0 + 1_000, endedAt: t0 + 66_000, durationMs: 65_000 });
    expect(byId.running!.durationMs).toBeGreaterThanOrEqual(10_000);
    expect(byId.running!.endedAt).toBeUndefined();
    expect(byId['timed-out']).not.toHaveProperty('durationMs');
  });
});
