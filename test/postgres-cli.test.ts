// The built CLI on a PostgreSQL store, as the README shows it: `runwarden monitor --store postgres://…`, a
// run launched by another process, its worker reporting through RUNWARDEN_STORE; and the one-line errors for
// a bad URL, an unreachable server, an unknown role, a missing database and a newer schema.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PostgresRunStore } from '../src/stores/postgres/postgres-store.js';
import { built, killWorkers, NODE, runCli, tempDir, waitFor, workerCommand } from './processes.js';
import { adminQuery, dropSchemas, PG_URL, uniqueSchema } from './postgres.js';

const dir = tempDir('runwarden-pg-cli-');
const schemas: string[] = [];
const children: ChildProcess[] = [];
const stores: PostgresRunStore[] = [];

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const store of stores) {
    await killWorkers(store);
    await store.close();
  }
  await dropSchemas(...schemas);
  dir.remove();
});

function newSchemaUrl(): { schema: string; url: string } {
  const schema = uniqueSchema();
  schemas.push(schema);
  return { schema, url: `${PG_URL}?schema=${schema}` };
}

describe('runwarden on a PostgreSQL store', () => {
  it('monitor, launch and a worker reporting through RUNWARDEN_STORE; the monitor hears the worker at once', async () => {
    const { schema, url } = newSchemaUrl();
    // A feed poll far longer than the test: the worker's reports reach the monitor through NOTIFY.
    writeFileSync(
      join(dir.path, 'runwarden.yaml'),
      'run_monitoring:\n  start_timeout_seconds: 60\n  poll_interval_seconds: 0.5\n  feed_poll_interval_seconds: 60\n',
    );
    const monitor = spawn(NODE, [built('src/cli/cli.js'), 'monitor', '--store', url], {
      cwd: dir.path,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(monitor);
    let output = '';
    monitor.stdout!.on('data', (d) => (output += d));
    monitor.stderr!.on('data', (d) => (output += d));
    await waitFor('the monitor to run', () => output.includes('runwarden monitor running'), 15_000);
    expect(output).toContain(`(schema ${schema})`);

    const launched = await runCli(['launch', '--store', url, '--', ...workerCommand('succeed')], {
      cwd: dir.path,
    });
    expect(launched.code, launched.stderr).toBe(0);
    // A monitor holds leases on the store: launch knows it is watched, from any machine.
    expect(launched.stderr).toBe('');
    const runId = launched.stdout.trim();
    const store = new PostgresRunStore({ connectionString: PG_URL }, { schema });
    stores.push(store);
    await waitFor(
      'the worker to report SUCCESS',
      async () => (await store.getRun(runId))?.status === 'SUCCESS',
    );
    await waitFor(
      'the monitor to log the worker’s SUCCESS',
      () => output.includes(`"runId":"${runId}","status":"SUCCESS"`),
      10_000,
    );

    const runs = await runCli(['runs', '--store', url, '--json'], { cwd: dir.path });
    expect(
      JSON.parse(runs.stdout).map((r: { runId: string; status: string }) => [r.runId, r.status]),
    ).toEqual([[runId, 'SUCCESS']]);
    const events = await runCli(['events', runId, '--store', url, '--json'], { cwd: dir.path });
    expect(JSON.parse(events.stdout).map((e: { type: string }) => e.type)).toEqual([
      'RUN_STARTING',
      'RUN_START',
      'RUN_SUCCESS',
    ]);

    monitor.kill('SIGTERM');
    const code = await new Promise((resolve) => monitor.once('exit', resolve));
    expect(code, output).toBe(0);

    // The monitor released its leases when it stopped: nothing watches the store now, and launch says so.
    const unwatched = await runCli(['launch', '--store', url, '--', ...workerCommand('succeed')], {
      cwd: dir.path,
    });
    expect(unwatched.code, unwatched.stderr).toBe(0);
    expect(unwatched.stderr).toContain(
      `runwarden: warning: no runwarden monitor is watching ${PG_URL} (schema ${schema}): run ${unwatched.stdout.trim()} was started`,
    );
  }, 60_000);

  it('says in one line what is wrong with the URL, the server, the role, the database or the schema version', async () => {
    const { schema, url } = newSchemaUrl();
    const seeded = new PostgresRunStore({ connectionString: PG_URL }, { schema });
    await seeded.latestSeq();
    await seeded.close();
    await adminQuery(`INSERT INTO "${schema}".schema_migrations (version, description) VALUES (7, 'future')`);
    const base = new URL(PG_URL);
    const at = (change: (u: URL) => void) => {
      const u = new URL(PG_URL);
      change(u);
      return u.toString();
    };
    const cases: [string, string, RegExp][] = [
      [
        'bad URL',
        `postgres://postgres:hunter2@${base.hostname}:99999/test`,
        /^runwarden: Invalid store URL "postgres:\/\/postgres:\*\*\*@[^"]+:99999\/test": expected postgres:\/\//,
      ],
      [
        'unreachable',
        at((u) => {
          u.password = 'hunter2';
          u.port = '1';
        }),
        /^runwarden: Cannot use the PostgreSQL run store postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/test: the server refused the connection \(127\.0\.0\.1:1, ECONNREFUSED\)\. Check that the server runs/,
      ],
      [
        'unknown role',
        at((u) => {
          u.username = 'rw_no_such_role';
          u.password = 'hunter2';
        }),
        /^runwarden: Cannot use the PostgreSQL run store postgres:\/\/rw_no_such_role:\*\*\*@.*: the server refused the credentials \(.*rw_no_such_role.*, 28\w\w\w\)\. Check the user name and password/,
      ],
      [
        'missing database',
        at((u) => {
          u.pathname = '/rw_no_such_database';
        }),
        /^runwarden: Cannot use the PostgreSQL run store .*\/rw_no_such_database: database "rw_no_such_database" does not exist \(3D000\)\. Create it/,
      ],
      [
        'newer schema',
        url,
        /^runwarden: The PostgreSQL run store .* \(schema rw_test_\w+\) has schema version 7, but this version of Runwarden only knows versions up to \d+\. Upgrade Runwarden/,
      ],
    ];
    const results = await Promise.all(cases.map(([, store]) => runCli(['runs', '--store', store])));
    for (const [i, [name, , expected]] of cases.entries()) {
      const { code, stdout, stderr } = results[i]!;
      expect(stdout, name).toBe('');
      expect(stderr.trimEnd().split('\n'), `${name}: ${stderr}`).toHaveLength(1);
      expect(stderr, name).toMatch(expected);
      expect(stderr, name).not.toContain('hunter2');
      expect(code, name).toBe(name === 'bad URL' ? 2 : 1);
    }
  }, 30_000);
});
