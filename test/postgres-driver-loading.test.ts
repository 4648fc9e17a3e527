// `pg` is loaded only when a PostgreSQL store is used: a run worker and the CLI on a SQLite store never
// resolve it (recorded with a loader hook in real processes), and the same CLI command on a postgres:// URL
// does.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { built, NODE, tempDir, workerCommand } from './processes.js';
import { dropSchemas, PG_URL, uniqueSchema } from './postgres.js';

const RECORD_IMPORTS = fileURLToPath(new URL('./fixtures/record-imports.mjs', import.meta.url));
const PG_MODULE = /\/node_modules\/pg\//;

const dir = tempDir('runwarden-pg-loading-');
const schemas: string[] = [];
afterAll(async () => {
  dir.remove();
  await dropSchemas(...schemas);
});

/** Runs argv (argv[0] is node) with the import recorder; resolves the exit code and what it resolved. */
function recorded(
  name: string,
  argv: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; modules: string; output: string }> {
  const file = join(dir.path, `${name}.imports`);
  writeFileSync(file, '');
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, ['--import', RECORD_IMPORTS, ...argv.slice(1)], {
      env: { ...process.env, ...env, RECORD_IMPORTS: file },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, modules: readFileSync(file, 'utf8'), output }));
  });
}

describe('the pg driver is loaded only for PostgreSQL stores', () => {
  it('a run worker on the SDK with a SQLite RUNWARDEN_STORE never loads pg', async () => {
    const db = join(dir.path, 'runs.db');
    const store = new SqliteRunStore({ path: db });
    await store.createRun({ runId: 'w1' });
    await store.transition('w1', { to: 'STARTING' });
    const result = await recorded('worker', workerCommand('succeed'), {
      RUNWARDEN_RUN_ID: 'w1',
      RUNWARDEN_STORE: `sqlite:${db}`,
    });
    expect(result.code, result.output).toBe(0);
    expect((await store.getRun('w1'))?.status).toBe('SUCCESS');
    await store.close();
    expect(result.modules, 'the recorder saw the worker SDK').toMatch(/\/src\/worker\/worker\.js/);
    expect(result.modules).not.toMatch(PG_MODULE);
  });

  it('the CLI on a SQLite store never loads pg; on a postgres:// URL it does', async () => {
    const db = join(dir.path, 'cli.db');
    await new SqliteRunStore({ path: db }).close();
    const sqlite = await recorded('cli-sqlite', [
      NODE,
      built('src/cli/cli.js'),
      'runs',
      '--store',
      `sqlite:${db}`,
    ]);
    expect(sqlite.code, sqlite.output).toBe(0);
    expect(sqlite.output).toContain('No runs yet.');
    expect(sqlite.modules).not.toMatch(PG_MODULE);

    const schema = uniqueSchema();
    schemas.push(schema);
    const pg = await recorded('cli-pg', [
      NODE,
      built('src/cli/cli.js'),
      'runs',
      '--store',
      `${PG_URL}?schema=${schema}`,
    ]);
    expect(pg.code, pg.output).toBe(0);
    expect(pg.output).toContain('No runs yet.');
    expect(pg.modules).toMatch(PG_MODULE);
  });
});
