// Bad invocations of the built `runwarden` CLI: exit code 2, one line on stderr, and nothing created.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { killWorkers, NODE, runCli, tempDir } from './processes.js';

const dir = tempDir('runwarden-cli-usage-');
const cli = (...args: string[]) => runCli(args, { cwd: dir.path });
/** A worker command that exits at once: these tests only look at what `launch` accepts. */
const NOOP = ['--', NODE, '-e', '0'];
/** stderr without the warning that no monitor watches the store (no monitor runs here; cli-watchers.test.ts). */
const otherWarnings = (stderr: string) =>
  stderr.replace(/^runwarden: warning: no runwarden monitor is watching .*\n/m, '');

afterAll(() => dir.remove());

// Each case is its own test so vitest bounds how many CLI processes start at once (maxConcurrency).
describe.concurrent('usage errors exit 2 with one line on stderr', () => {
  it.each<[string[], RegExp]>([
    [['xyzzy'], /^unknown command 'xyzzy'; see runwarden --help$/],
    [['rns'], /^unknown command 'rns' \(Did you mean runs\?\); see runwarden --help$/],
    [
      ['runs', '--limit', 'abc'],
      /^option '-n, --limit <n>' argument 'abc' is invalid\. expected a whole number >= 1, got abc; see runwarden runs --help$/,
    ],
    [
      ['launch', '--tag', 'foo', ...NOOP],
      /^option '-t, --tag <key=value>' argument 'foo' is invalid\. expected key=value, got "foo"; see runwarden launch --help$/,
    ],
    [['events'], /^missing required argument 'run-id'; see runwarden events --help$/],
    [
      ['monitor', '--log-level', 'bogus'],
      /^option '--log-level <level>' argument 'bogus' is invalid\. Allowed choices are fatal, .*; see runwarden monitor --help$/,
    ],
    [
      ['runs', '--limt', '3'],
      /^unknown option '--limt' \(Did you mean --limit\?\); see runwarden runs --help$/,
    ],
    [
      ['cancel', 'a', 'b'],
      /^too many arguments for 'cancel'\. Expected 1 argument but got 2; see runwarden cancel --help$/,
    ],
  ])('runwarden %s', async (args, message) => {
    const { code, stdout, stderr } = await cli(...args);
    expect(stdout).toBe('');
    const lines = stderr.split('\n');
    expect(lines, stderr).toHaveLength(2);
    expect(lines[1]).toBe('');
    expect(lines[0]!.startsWith('runwarden: '), stderr).toBe(true);
    expect(lines[0]!.slice('runwarden: '.length)).toMatch(message);
    expect(code).toBe(2);
    // Refused before anything ran: no store, no log directory.
    expect(existsSync(join(dir.path, '.runwarden'))).toBe(false);
  });

  it('no command at all prints the help on stderr and exits 2; --help and --version exit 0', async () => {
    const [bare, help, version] = await Promise.all([cli(), cli('runs', '--help'), cli('--version')]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr).toMatch(/^Usage: runwarden \[options\] \[command\]/);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: runwarden runs \[options\]/);
    expect(help.stderr).toBe('');
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe.concurrent('launch checks the max runtime tags', () => {
  const refusedDb = join(dir.path, 'refused.db');
  // Every value of both tags is checked in-process (test/config.test.ts: the CLI's rule is the monitor's);
  // here each bad value once, the two tags in turn.
  const cases = [
    ['runwarden/max_runtime', 'abc'],
    ['runwarden/max_runtime_seconds', '-5'],
    ['runwarden/max_runtime', '1e400'],
    ['runwarden/max_runtime_seconds', ''],
    ['runwarden/max_runtime', '0x10'],
    ['runwarden/max_runtime_seconds', '0x10'],
    ['runwarden/heartbeat_timeout', 'abc'],
    ['runwarden/progress_timeout', '-3'],
  ] as const;

  it.each(cases)('refuses %s=%o before any run is created', async (tag, value) => {
    const { code, stdout, stderr } = await cli(
      'launch',
      '--store',
      `sqlite:${refusedDb}`,
      '--tag',
      `${tag}=${value}`,
      ...NOOP,
    );
    expect(stderr).toBe(
      `runwarden: Invalid tag ${tag}=${JSON.stringify(value)}: expected a finite decimal number of seconds >= 0, e.g. 3600 (0 = no limit). No run was created.\n`,
    );
    expect(stdout).toBe('');
    expect(code).toBe(2);
    expect(existsSync(refusedDb)).toBe(false);
  });

  it('launches with dagster/max_runtime but warns, naming runwarden/max_runtime', async () => {
    const dbPath = join(dir.path, 'dagster.db');
    const launch = (...tags: string[]) =>
      cli('launch', '--store', `sqlite:${dbPath}`, ...tags.flatMap((t) => ['--tag', t]), ...NOOP);
    const alone = await launch('dagster/max_runtime=600');
    const both = await launch('dagster/max_runtime=600', 'runwarden/max_runtime=0');
    const store = new SqliteRunStore({ path: dbPath });
    try {
      expect(alone.code, alone.stderr).toBe(0);
      expect(otherWarnings(alone.stderr)).toBe(
        'runwarden: warning: tag dagster/max_runtime is kept on the run but Runwarden does not read it; its max runtime tag is runwarden/max_runtime (--tag runwarden/max_runtime=600).\n',
      );
      expect(both.code, both.stderr).toBe(0);
      expect(otherWarnings(both.stderr)).toBe(
        'runwarden: warning: tag dagster/max_runtime is kept on the run but Runwarden does not read it; its max runtime tag is runwarden/max_runtime.\n',
      );
      const [first, second] = await Promise.all(
        [alone, both].map((result) => store.getRun(result.stdout.trim())),
      );
      expect(first?.tags).toMatchObject({ 'dagster/max_runtime': '600' });
      expect(first?.tags['runwarden/max_runtime']).toBeUndefined();
      expect(second?.tags).toMatchObject({ 'dagster/max_runtime': '600', 'runwarden/max_runtime': '0' });
    } finally {
      await killWorkers(store);
      await store.close();
    }
  });

  it('accepts every value the monitor accepts, without a warning', async () => {
    const dbPath = join(dir.path, 'valid.db');
    const result = await cli(
      'launch',
      '--store',
      `sqlite:${dbPath}`,
      ...['runwarden/max_runtime= 30 ', 'runwarden/max_runtime_seconds=1e3'].flatMap((t) => ['--tag', t]),
      ...NOOP,
    );
    const store = new SqliteRunStore({ path: dbPath });
    try {
      expect(otherWarnings(result.stderr)).toBe('');
      expect(result.code).toBe(0);
      expect(readdirSync(dir.path)).toContain('valid.db');
      expect((await store.getRun(result.stdout.trim()))?.tags['runwarden/max_runtime']).toBe(' 30 ');
    } finally {
      await killWorkers(store);
      await store.close();
    }
  });
});
