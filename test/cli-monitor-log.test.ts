// The daemon's log tells every status change of every run, also those a worker in another process writes.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { built, NODE, tempDir, waitFor } from './processes.js';

const dir = tempDir('runwarden-monitor-log-');
const path = join(dir.path, 'runs.db');
const store = new SqliteRunStore({ path });
const daemon = spawn(NODE, [built('src/cli/cli.js'), 'monitor', '--store', `sqlite:${path}`], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
let output = '';
daemon.stdout.on('data', (d) => {
  output += d;
});
daemon.stderr.on('data', (d) => {
  output += d;
});

afterAll(async () => {
  daemon.kill('SIGKILL');
  await store.close();
  dir.remove();
});

const lines = () =>
  output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; runId?: string; status?: string });

it(
  'logs a worker’s STARTED and SUCCESS, written by another process, with the run id',
  { timeout: 60_000 },
  async () => {
    await waitFor(
      'the monitor to run',
      () => lines().some((l) => l.msg.includes('runwarden monitor running')),
      30_000,
    );
    const { runId } = await store.createRun({});
    await store.transition(runId, { to: 'STARTING' });
    await store.transition(runId, { to: 'STARTED', message: 'worker up' });
    await store.transition(runId, { to: 'SUCCESS', message: 'all done' });
    const logged = await waitFor(
      'the daemon to log the SUCCESS',
      () => {
        const mine = lines().filter((l) => l.runId === runId && l.status !== undefined);
        return mine.some((l) => l.status === 'SUCCESS') && mine;
      },
      30_000,
    );
    expect(logged.map((l) => l.status)).toEqual(['STARTING', 'STARTED', 'SUCCESS']);
    expect(logged.at(-1)?.msg).toBe('Run SUCCESS: all done');
  },
);
