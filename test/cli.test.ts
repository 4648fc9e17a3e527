// The built `runwarden` CLI as a user runs it: config validation, launch, runs, events, cancel, --help.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMAND_TAG } from '../src/launchers/process/process-launcher.js';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import { isTerminal, type RunEvent, type RunRecord } from '../src/core/types.js';
import { killWorkers, runCli, tempDir, waitFor, workerCommand } from './processes.js';

const dir = tempDir('runwarden-cli-');
const stores: SqliteRunStore[] = [];

afterAll(async () => {
  for (const store of stores) {
    await killWorkers(store);
    await store.close();
  }
  dir.remove();
});

function writeConfig(name: string, text: string): string {
  const path = join(dir.path, name);
  writeFileSync(path, text);
  return path;
}

// test/config-file.test.ts covers every kind of problem in-process; these check what the CLI prints.
describe('runwarden.yaml validation', () => {
  const cases: { name: string; yaml: string; key: string; expected: RegExp }[] = [
    {
      name: 'an unknown key',
      yaml: 'storage:\n  sqlite:\n    path: runs.db\n    pth: other.db\n',
      key: 'storage.sqlite.pth',
      expected: /unknown key; known keys are path, busy_timeout_ms/,
    },
    {
      name: 'a wrong type',
      yaml: 'launcher:\n  process:\n    command: node worker.js\n',
      key: 'launcher.process.command',
      expected: /expected a non-empty list of non-empty strings .*, got the string "node worker.js"/,
    },
    {
      name: 'a negative timeout',
      yaml: 'run_monitoring:\n  cancel_timeout_seconds: -1\n',
      key: 'run_monitoring.cancel_timeout_seconds',
      expected: /expected a finite number of seconds >= 0 \(0 switches this check off\), got -1/,
    },
    {
      name: 'a negative heartbeat timeout',
      yaml: 'run_monitoring:\n  heartbeat_timeout_seconds: -5\n',
      key: 'run_monitoring.heartbeat_timeout_seconds',
      expected: /expected a finite number of seconds >= 0 \(0 switches this check off\), got -5/,
    },
    {
      name: 'a crash brake ratio over 1',
      yaml: 'run_monitoring:\n  crash_brake:\n    ratio: 1.5\n',
      key: 'run_monitoring.crash_brake.ratio',
      expected: /expected a number from 0 to 1/,
    },
    {
      name: 'a dry_run that is not a boolean',
      yaml: 'run_monitoring:\n  dry_run: "yes"\n',
      key: 'run_monitoring.dry_run',
      expected: /expected true or false, got the string "yes"/,
    },
  ];

  it('refuses an unknown key, a wrong type or a negative timeout with the file, the key and what was expected', async () => {
    const results = await Promise.all(
      cases.map(({ name, yaml }) => {
        const file = writeConfig(`bad-${name.replace(/\W+/g, '-')}.yaml`, yaml);
        return runCli(['monitor', '--config', file]).then((result) => ({ file, ...result }));
      }),
    );
    for (const [i, { name, key, expected }] of cases.entries()) {
      const { file, code, stdout, stderr } = results[i]!;
      expect(code, name).toBe(2);
      expect(stdout, name).toBe('');
      const lines = stderr.trimEnd().split('\n');
      expect(lines, name).toHaveLength(1);
      expect(lines[0], name).toContain(file);
      expect(lines[0], name).toContain(`${key}: `);
      expect(lines[0], name).toMatch(expected);
    }
  });

  it('reports every problem of a file in one line, and YAML syntax errors with their position', async () => {
    const file = writeConfig(
      'many.yaml',
      'run_monitoring:\n  start_timout_seconds: 5\n  enabled: "yes"\nextra: 1\n',
    );
    const broken = writeConfig('broken.yaml', 'run_monitoring: [\n');
    const [many, syntax, missing] = await Promise.all([
      runCli(['runs', '--config', file]),
      runCli(['monitor', '--config', broken]),
      runCli(['monitor', '--config', join(dir.path, 'nope.yaml')]),
    ]);
    expect(many.code).toBe(2);
    expect(many.stderr).toMatch(/^runwarden: Invalid config file .*many\.yaml \(3 problems\): [^\n]*\n$/);
    expect(many.stderr).toContain('extra: unknown key; known keys are run_monitoring, storage, launcher');
    expect(many.stderr).toContain(
      'run_monitoring.start_timout_seconds: unknown key (did you mean start_timeout_seconds?)',
    );
    expect(many.stderr).toContain('run_monitoring.enabled: expected true or false, got the string "yes"');
    expect(syntax.code).toBe(2);
    expect(syntax.stderr).toMatch(
      /^runwarden: Invalid config file .*broken\.yaml: not valid YAML: .*line \d+, column \d+\n$/,
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/Cannot read config file .*nope\.yaml: no such file\./);
  });

  it("accepts Dagster's run_monitoring block unchanged", async () => {
    const file = writeConfig(
      'dagster.yaml',
      `run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 3
  poll_interval_seconds: 120
  max_runtime_seconds: 7200
  free_slots_after_run_end_seconds: 0
storage:
  sqlite:
    path: dagster-runs.db
`,
    );
    // `launch` validates the file, then needs a command: the usage error proves the config was accepted.
    const { code, stderr } = await runCli(['launch', '--config', file]);
    expect(stderr).toMatch(/^runwarden: Nothing to launch/);
    expect(code).toBe(2);
  });
});

// The runs are independent, so these run concurrently.
describe.concurrent('launch, runs, events, cancel', () => {
  const dbPath = join(dir.path, 'data', 'runs.db');
  // Found as ./runwarden.yaml: the commands below run in its directory without --config.
  writeConfig(
    'runwarden.yaml',
    `run_monitoring:
  start_timeout_seconds: 30
storage:
  sqlite:
    path: data/runs.db
launcher:
  process:
    terminate_grace_seconds: 2
`,
  );
  const cli = (...args: string[]) => runCli(args, { cwd: dir.path });
  let store: SqliteRunStore;
  const openStore = () => {
    store ??= new SqliteRunStore({ path: dbPath });
    if (!stores.includes(store)) stores.push(store);
    return store;
  };
  const waitForRun = (runId: string, done: (run: RunRecord) => boolean) =>
    waitFor(`run ${runId}`, async () => {
      const run = await openStore().getRun(runId);
      return run && done(run) && run;
    });

  it('launch starts a worker for a new run and prints its id; runs and events show it', async () => {
    const launched = await cli('launch', '--tag', 'team=data', '--', ...workerCommand('writer', '3'));
    expect(launched.code).toBe(0);
    const runId = launched.stdout.trim();
    expect(runId).toMatch(/^[0-9a-f-]{36}$/);
    // No monitor runs here (test/cli-watchers.test.ts has one): the run is launched, with one warning.
    expect(launched.stderr).toBe(
      `runwarden: warning: no runwarden monitor is watching ${dbPath}: run ${runId} was started, but nothing enforces its timeouts or notices a crashed worker until one runs. Start one with: runwarden monitor --config ${join(dir.path, 'runwarden.yaml')}\n`,
    );
    // ./runwarden.yaml is found without --config, and its relative paths resolve next to it.
    const run = await waitForRun(runId, (r) => isTerminal(r.status));
    expect(run.status).toBe('SUCCESS');
    expect(run.tags.team).toBe('data');
    expect(JSON.parse(run.tags[COMMAND_TAG]!)).toEqual(workerCommand('writer', '3'));

    const [runsJson, table, eventsJson, eventsTable] = await Promise.all([
      cli('runs', '--json'),
      cli('runs', '--status', 'success,failure'),
      cli('events', runId, '--json'),
      cli('events', runId),
    ]);
    expect(runsJson.code).toBe(0);
    const runs = JSON.parse(runsJson.stdout) as RunRecord[];
    expect(runs.find((r) => r.runId === runId)).toMatchObject({ status: 'SUCCESS', tags: { team: 'data' } });
    expect(table.stdout).toMatch(
      /^RUN ID +STATUS +RESUMES +FAILURE REASON +CREATED +ENDED +DURATION +COMMAND\n/,
    );
    expect(table.stdout).toContain(runId);

    expect(eventsJson.code).toBe(0);
    const events = JSON.parse(eventsJson.stdout) as RunEvent[];
    expect(events.map((e) => e.type)).toEqual([
      'RUN_STARTING',
      'RUN_START',
      'ENGINE_EVENT',
      'ENGINE_EVENT',
      'ENGINE_EVENT',
      'RUN_SUCCESS',
    ]);
    expect(events.filter((e) => e.type === 'ENGINE_EVENT').map((e) => e.message)).toEqual([
      'worker 0',
      'worker 1',
      'worker 2',
    ]);
    expect(eventsTable.stdout).toMatch(/^SEQ +TIME +TYPE +MESSAGE\n/);
    expect(eventsTable.stdout).toContain('RUN_SUCCESS');
  });

  it('cancel stops a running worker, which reports CANCELED; canceling again is refused', async () => {
    const launched = await cli(
      'launch',
      '--json',
      '--run-id',
      'to-cancel',
      '--',
      ...workerCommand('cancelable'),
    );
    expect(launched.code).toBe(0);
    const record = JSON.parse(launched.stdout) as RunRecord & { logPath: string };
    expect(record).toMatchObject({ runId: 'to-cancel', status: 'STARTING' });
    expect(record.logPath).toBe(join(dir.path, 'data', 'logs', 'to-cancel.log'));
    await waitFor('the work step', async () =>
      (await openStore().getEvents('to-cancel')).some((e) => e.message === 'Step work started.'),
    );

    const canceled = await cli('cancel', 'to-cancel');
    expect(canceled.stderr).toBe('');
    expect(canceled.code).toBe(0);
    expect(canceled.stdout).toBe('Run to-cancel is CANCELED.\n');
    const events = await openStore().getEvents('to-cancel');
    expect(events.map((e) => e.message)).toContain('cleaned up');

    const again = await cli('cancel', 'to-cancel');
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      'runwarden: Run to-cancel has already ended (CANCELED); there is nothing to cancel.\n',
    );
  });

  it('--store works without a config file; errors are one line with a non-zero exit code', async () => {
    const elsewhere = tempDir('runwarden-cli-nocfg-');
    const own = ['--store', 'sqlite:own.db'];
    const failures = [
      [
        ['events', 'no-such-run', ...own],
        1,
        'runwarden: Unknown run id "no-such-run": no such run in the store.',
      ],
      [
        ['runs', '--status', 'DONE', ...own],
        2,
        'runwarden: Unknown status "DONE" for --status: expected one of',
      ],
      [['runs', '--store', 'mysql://db/runs'], 2, 'runwarden: Unsupported store URL'],
    ] as const;
    try {
      const own = new SqliteRunStore({ path: join(elsewhere.path, 'own.db') });
      await own.createRun({ runId: 'mine' });
      await own.close();
      const [viaStore, noStore, ...results] = await Promise.all([
        // A relative store URL resolves against the current directory.
        runCli(['runs', '--json', '--store', 'sqlite:own.db'], { cwd: elsewhere.path }),
        runCli(['runs'], { cwd: elsewhere.path }),
        ...failures.map(([args]) => runCli([...args], { cwd: elsewhere.path })),
      ]);
      expect(viaStore!.code, viaStore!.stderr).toBe(0);
      expect((JSON.parse(viaStore!.stdout) as RunRecord[]).map((r) => r.runId)).toEqual(['mine']);
      expect(noStore!.code, noStore!.stderr).toBe(1);
      expect(noStore!.stderr).toMatch(
        /^runwarden: No run store at .*\.runwarden\/runs\.db: nothing has been launched/,
      );
      for (const [i, [args, code, message]] of failures.entries()) {
        const result = results[i]!;
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(code);
        expect(result.stderr.split('\n'), result.stderr).toHaveLength(2);
        expect(result.stderr.startsWith(message), result.stderr).toBe(true);
      }
    } finally {
      elsewhere.remove();
    }
  });
});

describe('--help', () => {
  it('every command has help', async () => {
    const results = await Promise.all(
      [[], ['monitor'], ['launch'], ['runs'], ['events'], ['logs'], ['cancel'], ['demo']].map((command) =>
        runCli([...command, '--help']),
      ),
    );
    for (const [i, command] of [
      '',
      'monitor',
      'launch',
      'runs',
      'events',
      'logs',
      'cancel',
      'demo',
    ].entries()) {
      const { code, stdout } = results[i]!;
      expect(code, command).toBe(0);
      expect(stdout).toContain(`Usage: runwarden${command ? ` ${command}` : ''} [options]`);
    }
    expect(results[0]!.stdout).toContain('runwarden demo');
  });
});
