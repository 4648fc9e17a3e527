// runwarden.yaml parsing and store URLs, in-process (test/cli.test.ts checks what the CLI prints).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../src/core/config.js';
import {
  ConfigFileError,
  defaultConfig,
  loadConfigFile,
  parseConfigFile,
  storeUrlOf,
  withStore,
} from '../src/cli/config-file.js';
import { ConfigError } from '../src/core/errors.js';
import { formatStoreUrl, openStore, parseStoreUrl } from '../src/stores/store-url.js';

const FILE = '/etc/runwarden/runwarden.yaml';

function problems(text: string): { path: string; message: string }[] {
  try {
    parseConfigFile(text, FILE);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigFileError);
    expect((error as Error).message).not.toContain('\n');
    return (error as ConfigFileError).issues;
  }
  throw new Error('expected the file to be refused');
}

describe('runwarden.yaml', () => {
  it('an empty file means the defaults, with the data next to the file', () => {
    const config = parseConfigFile('', FILE);
    expect(config.monitor).toEqual(DEFAULT_CONFIG);
    expect(config.storage.sqlite.path).toBe('/etc/runwarden/.runwarden/runs.db');
    expect(config.launcher.process.logDir).toBe('/etc/runwarden/.runwarden/logs');
    expect(storeUrlOf(config)).toBe('sqlite:/etc/runwarden/.runwarden/runs.db');
  });

  it('reads every section; relative paths resolve against the file', () => {
    const config = parseConfigFile(
      `run_monitoring:
  start_timeout_seconds: 60
  max_resume_run_attempts: 1
  free_slots_after_run_end_seconds: 0   # Dagster's; accepted and ignored
storage:
  sqlite:
    path: data/runs.db
    busy_timeout_ms: 2000
launcher:
  process:
    command: [node, worker.js]
    cwd: app
    env: { NODE_ENV: production }
    log_dir: /var/log/runwarden
    terminate_grace_seconds: 2.5
    kill_wait_seconds: 1
    wrap: true
`,
      FILE,
    );
    expect(config.monitor).toMatchObject({ startTimeoutSeconds: 60, maxResumeRunAttempts: 1 });
    expect(config.storage.sqlite).toEqual({ path: '/etc/runwarden/data/runs.db', busyTimeoutMs: 2000 });
    expect(config.launcher.process).toEqual({
      command: ['node', 'worker.js'],
      cwd: '/etc/runwarden/app',
      env: { NODE_ENV: 'production' },
      logDir: '/var/log/runwarden',
      logDirConfigured: true,
      terminateGraceMs: 2500,
      killWaitMs: 1000,
      wrap: true,
    });
  });

  it('a bare `run_monitoring:` line or empty sections are fine', () => {
    expect(parseConfigFile('run_monitoring:\nstorage:\nlauncher:\n', FILE).monitor).toEqual(DEFAULT_CONFIG);
    const bare = parseConfigFile('storage:\n  sqlite:\nlauncher:\n  process:\n', FILE);
    expect(bare.storage.sqlite).toEqual({
      path: '/etc/runwarden/.runwarden/runs.db',
      busyTimeoutMs: undefined,
    });
    expect(bare.launcher.process.logDir).toBe('/etc/runwarden/.runwarden/logs');
  });

  it('storage.sqlite without a path keeps the default path (busy_timeout_ms alone)', () => {
    for (const text of [
      'storage: { sqlite: { busy_timeout_ms: 100 } }\n',
      'storage:\n  sqlite:\n    busy_timeout_ms: 100\n',
    ]) {
      expect(parseConfigFile(text, FILE).storage.sqlite).toEqual({
        path: '/etc/runwarden/.runwarden/runs.db',
        busyTimeoutMs: 100,
      });
    }
    expect(parseConfigFile('storage: { sqlite: {} }\n', FILE).storage.sqlite.path).toBe(
      '/etc/runwarden/.runwarden/runs.db',
    );
  });

  it('names the key and what was expected for every problem', () => {
    expect(
      problems(`run_monitoring:
  start_timeout_seconds: -1
  poll_intervall_seconds: 5
storage:
  sqlite: { path: '' }
launcher:
  process:
    command: []
    env: { PORT: 8080 }
    surprise: true
    wrap: 'yes'
logging: debug
`),
    ).toEqual([
      { path: 'storage.sqlite.path', message: 'expected a non-empty path, got the string ""' },
      {
        path: 'launcher.process.command',
        message:
          'expected a non-empty list of non-empty strings (the argv, e.g. [node, worker.js]; no shell is involved), got an empty list',
      },
      {
        path: 'launcher.process.env.PORT',
        message: 'expected a mapping of variable names to string values (quote numbers), got 8080',
      },
      { path: 'launcher.process.wrap', message: 'expected true or false, got the string "yes"' },
      {
        path: 'launcher.process.surprise',
        message:
          'unknown key; known keys are command, cwd, env, log_dir, terminate_grace_seconds, kill_wait_seconds, wrap',
      },
      { path: 'logging', message: 'unknown key; known keys are run_monitoring, storage, launcher, http' },
      {
        path: 'run_monitoring.start_timeout_seconds',
        message: 'expected a finite number of seconds >= 0 (0 switches this check off), got -1',
      },
      {
        path: 'run_monitoring.poll_intervall_seconds',
        message: 'unknown key (did you mean poll_interval_seconds?)',
      },
    ]);
  });

  it('refuses a terminate grace period the monitor would not wait for', () => {
    expect(
      problems(
        'run_monitoring: { launcher_timeout_seconds: 10 }\nlauncher: { process: { terminate_grace_seconds: 9 } }\n',
      ),
    ).toEqual([
      {
        path: 'launcher.process.terminate_grace_seconds',
        message:
          'expected terminate_grace_seconds + kill_wait_seconds (11) below run_monitoring.launcher_timeout_seconds (10), or the monitor gives up on stopping a worker before SIGKILL is sent',
      },
    ]);
    expect(
      parseConfigFile('run_monitoring: { launcher_timeout_seconds: 0 }\n', FILE).monitor
        .launcherTimeoutSeconds,
    ).toBe(0);
  });

  it('refuses a file that is not a mapping, or not YAML', () => {
    expect(problems('- a\n- b\n')).toEqual([{ path: '', message: 'expected a mapping of keys, got a list' }]);
    expect(() => parseConfigFile('a: [\n', FILE)).toThrow(
      /^Invalid config file \/etc\/runwarden\/runwarden\.yaml: not valid YAML: .*line 2, column 1$/,
    );
  });

  it('a missing default file means defaults; a missing explicit file is an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'runwarden-cfg-'));
    try {
      expect(loadConfigFile(join(dir, 'runwarden.yaml')).file).toBeUndefined();
      expect(() => loadConfigFile(join(dir, 'runwarden.yaml'), { explicit: true })).toThrow(
        `Cannot read config file ${join(dir, 'runwarden.yaml')}: no such file.`,
      );
      writeFileSync(join(dir, 'runwarden.yaml'), 'storage: { sqlite: { path: x.db } }\n');
      expect(loadConfigFile(join(dir, 'runwarden.yaml'), { explicit: true }).storage.sqlite.path).toBe(
        join(dir, 'x.db'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--store moves the database, and the log dir with it unless log_dir was configured', () => {
    const moved = withStore(defaultConfig('/srv'), { kind: 'sqlite', path: '/data/runs.db' });
    expect(moved.storage.sqlite.path).toBe('/data/runs.db');
    expect(moved.launcher.process.logDir).toBe('/data/logs');
    const pinned = withStore(parseConfigFile('launcher: { process: { log_dir: /var/log/rw } }\n', FILE), {
      kind: 'sqlite',
      path: '/data/runs.db',
    });
    expect(pinned.launcher.process.logDir).toBe('/var/log/rw');
  });
});

describe('store URLs', () => {
  it('accepts sqlite:<absolute>, sqlite:///<absolute> and sqlite:<relative>', () => {
    expect(parseStoreUrl('sqlite:/var/runs.db')).toEqual({ kind: 'sqlite', path: '/var/runs.db' });
    expect(parseStoreUrl('sqlite:///var/runs.db')).toEqual({ kind: 'sqlite', path: '/var/runs.db' });
    expect(parseStoreUrl('sqlite:runs.db', { baseDir: '/srv' })).toEqual({
      kind: 'sqlite',
      path: '/srv/runs.db',
    });
    expect(parseStoreUrl('SQLITE:./a/b.db', { baseDir: '/srv' })).toEqual({
      kind: 'sqlite',
      path: '/srv/a/b.db',
    });
    expect(formatStoreUrl({ kind: 'sqlite', path: '/var/runs.db' })).toBe('sqlite:/var/runs.db');
  });

  it('refuses anything else with a message showing the accepted form', () => {
    for (const [url, text] of [
      ['/var/runs.db', /expected sqlite:<path to the database file>/],
      [
        'mysql://bob:pw@host/db',
        /"mysql:\/\/bob:\*\*\*@host\/db": expected sqlite:<path>.* or postgres:\/\//,
      ],
      ['sqlite://host/runs.db', /use sqlite:\/absolute\/path/],
      ['sqlite:', /give the path of a database file/],
      ['sqlite::memory:', /can't be shared with run workers/],
    ] as const) {
      expect(() => parseStoreUrl(url), url).toThrow(ConfigError);
      expect(() => parseStoreUrl(url), url).toThrow(text);
    }
  });

  it('openStore opens a SqliteRunStore at the path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runwarden-url-'));
    try {
      const store = openStore(`sqlite:${join(dir, 'runs.db')}`);
      await store.createRun({ runId: 'r' });
      await store.close();
      const again = openStore('sqlite:runs.db', { baseDir: dir });
      expect((await again.getRun('r'))?.runId).toBe('r');
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
