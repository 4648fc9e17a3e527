#!/usr/bin/env node
// The `runwarden` command. Only commander is loaded up front (so --help is instant); each command imports
// what it needs. Errors are one line on stderr and a non-zero exit code: 1 for a failed operation, 2 for a
// bad invocation (commander's own errors included) or configuration.
import { readFileSync } from 'node:fs';
import { Argument, Command, type CommanderError, InvalidArgumentError, Option } from 'commander';

const program = new Command('runwarden')
  .description(
    'Run monitoring for TypeScript hosts: start, cancel and runtime timeouts, crash detection and resume.',
  )
  .version(packageVersion(), '-V, --version')
  .enablePositionalOptions()
  .showSuggestionAfterError()
  // Commander prints its errors and exits 1 by itself; ours throws them to reportError (one line, exit 2).
  // Set before the commands are added, which copy these settings.
  .exitOverride()
  .configureOutput({ outputError: () => {} })
  .addHelpText(
    'after',
    `
Configuration is read from ./runwarden.yaml when it exists (or the file given with --config, or
$RUNWARDEN_CONFIG); without one, runs are kept in ./.runwarden/runs.db. See docs/operations.md.

Try it:  runwarden demo`,
  );

/** --config and --store, shared by every command that opens the store. */
function storeOptions(command: Command): Command {
  return command
    .addOption(
      new Option('-c, --config <file>', 'config file (default: ./runwarden.yaml if it exists)').env(
        'RUNWARDEN_CONFIG',
      ),
    )
    .option(
      '-s, --store <url>',
      'store URL, overriding the config file (e.g. sqlite:/var/lib/runwarden/runs.db)',
    );
}

storeOptions(
  program
    .command('monitor')
    .description('run the monitoring daemon until SIGTERM or SIGINT')
    .addOption(
      new Option('--log-level <level>', 'log level')
        .choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
        .default('info'),
    )
    .addOption(
      new Option(
        '--inspect [port]',
        'serve the actors to the Stately inspector on 127.0.0.1:PORT, or HOST:PORT',
      )
        .preset('8899')
        .argParser(listenAddress),
    )
    .addOption(
      new Option(
        '--http <[host:]port>',
        'serve /metrics, /healthz and /readyz on 127.0.0.1:PORT, or HOST:PORT (port 0: a free one)',
      ).argParser(listenAddress),
    ),
).action(async (options) => {
  const { monitorCommand } = await import('./commands.js');
  await monitorCommand(options);
});

storeOptions(
  program
    .command('launch')
    .description('create a run and start its worker: runwarden launch [options] -- CMD [ARGS...]')
    .argument(
      '[command...]',
      'the worker command and its arguments (after --); default: launcher.process.command',
    )
    .addOption(
      new Option(
        '-t, --tag <key=value>',
        'tag the run (repeatable), e.g. --tag runwarden/max_runtime=3600',
      ).argParser(collectTag),
    )
    .option('--run-id <id>', 'the run id (default: a random UUID)')
    .option('--wrap', 'run the command under a wrapper that reports on the run for it (any language)')
    .option('--json', 'print the launched run as JSON')
    .passThroughOptions(),
).action(async (command: string[], options) => {
  const { launchCommand } = await import('./commands.js');
  await launchCommand(command, options);
});

storeOptions(
  program
    .command('runs')
    .description('list runs, newest first')
    .addOption(
      new Option(
        '--status <statuses>',
        'only runs in these statuses (comma-separated, repeatable)',
      ).argParser(collectList),
    )
    .option('-n, --limit <n>', 'show at most this many runs', positiveInt, 50)
    .option('--json', 'print the runs as a JSON array'),
).action(async (options) => {
  const { runsCommand } = await import('./commands.js');
  await runsCommand(options);
});

storeOptions(
  program
    .command('monitors')
    .description(
      'list the monitors running on this store: id, host, pid, last lease renewal, partitions, runs owned',
    )
    .option('--json', 'print the monitors as a JSON array'),
).action(async (options) => {
  const { monitorsCommand } = await import('./commands.js');
  await monitorsCommand(options);
});

storeOptions(
  program
    .command('events')
    .description("show a run's event log, oldest first")
    .argument('<run-id>', 'the run')
    .option('--json', 'print the events as a JSON array (with --follow: one JSON object a line)')
    .option('-f, --follow', 'keep printing events as they are written; exit when the run has ended'),
).action(async (runId: string, options) => {
  const { eventsCommand } = await import('./commands.js');
  await eventsCommand(runId, options);
});

storeOptions(
  program
    .command('logs')
    .description("print a run's worker log file (stdout and stderr of every attempt)")
    .argument('<run-id>', 'the run')
    .option('-f, --follow', 'keep printing as the log grows; exit when the run has ended'),
).action(async (runId: string, options) => {
  const { logsCommand } = await import('./commands.js');
  await logsCommand(runId, options);
});

storeOptions(
  program
    .command('cancel')
    .description('cancel a run: CANCELING, then SIGTERM to its worker (SIGKILL after the grace period)')
    .argument('<run-id>', 'the run')
    .option('--json', 'print the run as JSON afterwards'),
).action(async (runId: string, options) => {
  const { cancelCommand } = await import('./commands.js');
  await cancelCommand(runId, options);
});

program
  .command('report')
  .description(
    'report on the run this worker was started for (for workers in any language; exit 1 when the run does not allow it)',
  )
  .addArgument(
    new Argument('<what>', 'what to report').choices([
      'started',
      'success',
      'failure',
      'canceled',
      'heartbeat',
      'progress',
    ]),
  )
  .option('-m, --message <text>', 'the message recorded with the report')
  .option('--run-id <id>', 'the run (default: $RUNWARDEN_RUN_ID, set by the launcher)')
  .option('-s, --store <url>', 'the store (default: $RUNWARDEN_STORE, set by the launcher)')
  .action(async (what, options) => {
    const { reportCommand } = await import('./report.js');
    await reportCommand(what, options);
  });

program
  .command('demo')
  .description(
    'show every monitoring behaviour with real worker processes, in a temporary directory (a few seconds)',
  )
  .option('--keep', 'keep the demo database and logs, and print where they are')
  .action(async (options) => {
    const { runDemo } = await import('./demo/demo.js');
    const ok = await runDemo({ keep: options.keep === true });
    if (!ok) process.exitCode = 1;
  });

// Each command's usage errors name that command, so the hint points at the right --help.
for (const command of [program, ...program.commands]) command.exitOverride(throwUsageOf(command));

function throwUsageOf(command: Command): (error: CommanderError) => never {
  const name = command.parent ? `runwarden ${command.name()}` : 'runwarden';
  return (error) => {
    throw Object.assign(error, { command: name });
  };
}

function collectTag(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`expected key=value, got ${JSON.stringify(value)}.`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

function collectList(value: string, previous: string[] | undefined): string[] {
  return [
    ...(previous ?? []),
    ...value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  ];
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError(`expected a whole number >= 1, got ${value}.`);
  return n;
}

/** PORT (on 127.0.0.1: only this machine connects), HOST:PORT or [IPv6]:PORT; port 0 lets the system pick. */
function listenAddress(value: string): { host: string; port: number } {
  const match = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(value.trim());
  const port = Number(match?.[2]);
  if (!match || port > 65535) {
    throw new InvalidArgumentError(
      `expected PORT or HOST:PORT ([::1]:PORT for IPv6; port 0-65535), got ${JSON.stringify(value)}.`,
    );
  }
  return { host: match[1]?.replace(/^\[(.*)\]$/, '$1') ?? '127.0.0.1', port };
}

function packageVersion(): string {
  // dist/src/cli/cli.js → package.json three levels up (src/cli/cli.ts → two levels up from source).
  for (const rel of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'runwarden' && pkg.version) return pkg.version;
    } catch {
      // try the next location
    }
  }
  return 'unknown';
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  const { reportError } = await import('./output.js');
  process.exitCode = reportError(error);
}
