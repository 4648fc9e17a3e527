// `runwarden events --follow` and `runwarden logs [--follow]` as real CLI processes, following runs that
// other processes (a real run worker, this test process) write to a real SQLite file.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import type { RunEvent } from '../src/core/types.js';
import { built, killWorkers, NODE, runCli, tempDir, waitFor } from './processes.js';

const dir = tempDir('runwarden-cli-follow-');
const dbPath = join(dir.path, 'runs.db');
const logDir = join(dir.path, 'logs');
// Found as ./runwarden.yaml by every command below (they run in its directory).
writeFileSync(join(dir.path, 'runwarden.yaml'), 'storage:\n  sqlite:\n    path: runs.db\n');
const store = new SqliteRunStore({ path: dbPath });
const followers: ChildProcess[] = [];

afterAll(async () => {
  for (const child of followers) child.kill('SIGKILL');
  await killWorkers(store);
  await store.close();
  dir.remove();
});

/** Tests that chain several CLI and worker processes get time on a loaded machine. */
const LONG = 60_000;
/** How long to wait for a process to print or write something. */
const PATIENCE = 20_000;

const cli = (...args: string[]) => runCli(args, { cwd: dir.path });

/** A long-running CLI process: its output so far, and its exit. */
function startCli(...args: string[]) {
  const child = spawn(NODE, [built('src/cli/cli.js'), ...args], {
    cwd: dir.path,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  followers.push(child);
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (out.stdout += d));
  child.stderr.on('data', (d) => (out.stderr += d));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out, exit };
}

/**
 * A worker (on the built SDK) that prints and logs, waits until the test creates `gate`, then prints and
 * logs again, reports SUCCESS, and prints one more line while it exits.
 */
function gatedWorker(gate: string): string[] {
  const sdk = pathToFileURL(built('src/worker/worker.js')).href;
  const script = `
    import { existsSync } from 'node:fs';
    import { setTimeout as sleep } from 'node:timers/promises';
    const { startRunWorker } = await import(${JSON.stringify(sdk)});
    // Printed lines are joined at run time: the log's header line quotes this script.
    const say = (stream, ...words) => stream.write(words.join(' ') + '\\n');
    const run = await startRunWorker();
    say(process.stdout, 'first', 'line');
    await run.log('before the gate');
    while (!existsSync(${JSON.stringify(gate)})) await sleep(20);
    say(process.stdout, 'second', 'line');
    say(process.stderr, 'to', 'stderr');
    await run.log('after the gate');
    await run.succeed();
    say(process.stdout, 'after', 'success');`;
  return [NODE, '--input-type=module', '-e', script];
}

async function launchGated(name: string): Promise<{ runId: string; open: () => void }> {
  const gate = join(dir.path, `${name}.gate`);
  const launched = await cli('launch', '--run-id', name, '--', ...gatedWorker(gate));
  expect(launched.code, launched.stderr).toBe(0);
  return { runId: name, open: () => writeFileSync(gate, '') };
}

describe.concurrent('events --follow', () => {
  it(
    'prints each event once as the worker writes it, one JSON object a line, and exits 0 after SUCCESS',
    async () => {
      const { runId, open } = await launchGated('followed');
      const follower = startCli('events', runId, '--follow', '--json');
      await waitFor(
        'the follower to print the worker event',
        () => follower.out.stdout.includes('before the gate'),
        PATIENCE,
      );
      expect(follower.out.stdout).not.toContain('RUN_SUCCESS');
      open();
      expect(await follower.exit).toBe(0);
      expect(follower.out.stderr).toBe('');
      const printed = follower.out.stdout
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as RunEvent);
      // Exactly the stored log: nothing missed, nothing twice, in order, ending with the terminal event.
      expect(printed).toEqual(await store.getEvents(runId));
      expect(printed.map((e) => e.message)).toContain('after the gate');
      expect(printed.at(-1)!.type).toBe('RUN_SUCCESS');

      // A run that has already ended: its history, then exit at once.
      const again = await cli('events', runId, '--follow');
      expect(again.code).toBe(0);
      const lines = again.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^SEQ +TIME +TYPE +MESSAGE$/);
      expect(lines).toHaveLength(printed.length + 1);
      expect(lines.at(-1)).toMatch(/^\d+ +\S+Z +RUN_SUCCESS +Run succeeded\.$/);
    },
    LONG,
  );

  it.each(['SIGINT', 'SIGTERM'] as const)(
    'follows a run that does not end until %s, then exits 0',
    async (signal) => {
      const runId = `quiet-${signal}`;
      await store.createRun({ runId });
      const follower = startCli('events', runId, '--follow');
      await waitFor('the header', () => follower.out.stdout.startsWith('SEQ'), PATIENCE);
      await store.appendEvent(runId, { type: 'ENGINE_EVENT', message: `hello from the test\nsecond line` });
      await waitFor(
        'the appended event',
        () => follower.out.stdout.includes('hello from the test'),
        PATIENCE,
      );
      expect(follower.out.stdout).toMatch(/\n\d+ +\S+Z +ENGINE_EVENT +hello from the test \| second line\n$/);
      follower.child.kill(signal);
      expect(await follower.exit).toBe(0);
      expect(follower.out.stderr).toBe('');
    },
    LONG,
  );

  it('an unknown run id exits 1 naming it', async () => {
    const result = await cli('events', 'no-such-run', '--follow');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe('runwarden: Unknown run id "no-such-run": no such run in the store.\n');
  });
});

describe.concurrent('logs', () => {
  it(
    "--follow prints the worker's output as it is written, and exits 0 when the run has ended",
    async () => {
      const { runId, open } = await launchGated('logged');
      const follower = startCli('logs', runId, '--follow');
      await waitFor('the first line', () => follower.out.stdout.includes('first line\n'), PATIENCE);
      expect(follower.out.stdout).toMatch(
        /^\[runwarden\] \S+ starting run worker for run logged \(attempt 0\)/,
      );
      expect(follower.out.stdout).not.toContain('second line');
      open();
      expect(await follower.exit).toBe(0);
      expect(follower.out.stderr).toBe('');
      const file = readFileSync(join(logDir, 'logged.log'), 'utf8');
      // Also what the worker wrote after reporting SUCCESS, while it exited.
      expect(file).toMatch(/second line\n[^]*to stderr\n[^]*after success\n$/);
      expect(follower.out.stdout).toBe(file);

      const plain = await cli('logs', runId);
      expect(plain.code).toBe(0);
      expect(plain.stdout).toBe(file);
    },
    LONG,
  );

  it('a run without a log file exits 1 naming the path looked for; an unknown run exits 1 naming it', async () => {
    await store.createRun({ runId: 'never-launched' });
    await store.createRun({ runId: 'elsewhere' });
    await store.transition('elsewhere', { to: 'STARTING' });
    const [notLaunched, notHere, unknown] = await Promise.all([
      cli('logs', 'never-launched'),
      cli('logs', 'elsewhere', '--follow'),
      cli('logs', 'no-such-run'),
    ]);
    expect(notLaunched.code).toBe(1);
    expect(notLaunched.stdout).toBe('');
    expect(notLaunched.stderr).toBe(
      `runwarden: No log file for run never-launched at ${join(logDir, 'never-launched.log')}: its worker has not been launched yet (NOT_STARTED).\n`,
    );
    expect(notHere.code).toBe(1);
    expect(notHere.stderr).toBe(
      `runwarden: No log file for run elsewhere at ${join(logDir, 'elsewhere.log')}: its worker was not started by this configuration's process launcher (launcher.process.log_dir is ${logDir}).\n`,
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('runwarden: Unknown run id "no-such-run": no such run in the store.\n');
  });
});
