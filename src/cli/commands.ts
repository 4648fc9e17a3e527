// What the `runwarden` subcommands do (cli.ts defines their flags). Every command opens the store the
// config names; `launch` and `cancel` drive a RunMonitor that is never started — they only use its launch()
// and cancel() — so the deadlines they create are enforced by whichever `runwarden monitor` is running.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { duration, formatTable, oneLine, padEnd, time, UsageError } from './output.js';
import { copyFrom, followEvents, followFile, stopOnSignals, writeOut } from './follow.js';
import { heartbeatPath, isMonitorWatching, startHeartbeat } from './watchers.js';
import {
  DEFAULT_CONFIG_FILE,
  loadConfigFile,
  type RunwardenFileConfig,
  storeLocationOf,
  storeUrlOf,
  withStore,
} from './config-file.js';
import { MAX_RUNTIME_TAG_EXPECTED, MAX_RUNTIME_TAGS, parseMaxRuntimeTag } from '../core/config.js';
import { LaunchError, RunNotFoundError, RunwardenError } from '../core/errors.js';
import type { RunMonitorOptions } from '../monitor/monitor.js';
import type { MonitorLogger } from '../monitor/logger.js';
import type { MonitorHttpServer, MonitorPhase } from './http-server.js';
import type { Registry } from 'prom-client';
import { COMMAND_TAG, ProcessRunLauncher, WRAP_TAG } from '../launchers/process/process-launcher.js';
import { openStoreAt, parseStoreUrl, redactCredentials, STORE_ENV } from '../stores/store-url.js';
import {
  isTerminal,
  RUN_EVENT_TYPES,
  RUN_STATUSES,
  type RunEvent,
  type RunRecord,
  type RunStatus,
  type RunStore,
  statusOfEvent,
  TAGS,
} from '../core/types.js';

export interface StoreOptions {
  config?: string;
  store?: string;
}

/** The config file (explicit, or ./runwarden.yaml when present, else defaults) with --store applied. */
function resolveConfig(options: StoreOptions): RunwardenFileConfig {
  const config =
    options.config !== undefined
      ? loadConfigFile(options.config, { explicit: true })
      : loadConfigFile(DEFAULT_CONFIG_FILE);
  if (options.store === undefined) return config;
  return withStore(config, parseStoreUrl(options.store));
}

type OpenedStore = RunStore & { close(): Promise<void> };

/** Opens (creating if needed) the configured store: a SQLite file, or a PostgreSQL schema. */
function openForWriting(config: RunwardenFileConfig): OpenedStore {
  const location = storeLocationOf(config);
  if (location.kind === 'sqlite') mkdirSync(dirname(location.path), { recursive: true });
  return openStoreAt(location, { busyTimeoutMs: config.storage.sqlite.busyTimeoutMs });
}

/**
 * Opens an existing store; a missing SQLite file is an error rather than a new empty database. (A
 * PostgreSQL schema is created on first use, which for a reading command is an empty store.)
 */
function openExisting(config: RunwardenFileConfig): OpenedStore {
  const location = storeLocationOf(config);
  const { path, busyTimeoutMs } = config.storage.sqlite;
  if (location.kind === 'sqlite' && !existsSync(path)) {
    throw new RunwardenError(
      'STORE_NOT_FOUND',
      `No run store at ${path}: nothing has been launched with this configuration yet${config.file ? ` (${config.file})` : ' (no runwarden.yaml here; pass --config or --store)'}.`,
    );
  }
  return openStoreAt(location, { busyTimeoutMs });
}

/** The store for messages: the SQLite file, or the PostgreSQL URL (password masked) and schema. */
function storeName(config: RunwardenFileConfig): string {
  const location = storeLocationOf(config);
  if (location.kind === 'sqlite') return location.path;
  return `${redactCredentials(location.url)} (schema ${location.schema})`;
}

function makeLauncher(config: RunwardenFileConfig, store: RunStore): ProcessRunLauncher {
  const proc = config.launcher.process;
  const configured = proc.command;
  return new ProcessRunLauncher({
    store,
    command:
      configured ??
      ((run: RunRecord) => {
        throw new LaunchError(
          run.runId,
          `No worker command for run ${run.runId}: it has no ${COMMAND_TAG} tag and launcher.process.command is not configured.`,
        );
      }),
    cwd: proc.cwd,
    env: proc.env,
    logDir: proc.logDir,
    terminateGraceMs: proc.terminateGraceMs,
    killWaitMs: proc.killWaitMs,
    storeEnv: { [STORE_ENV]: storeUrlOf(config) },
    wrap: proc.wrap,
  });
}

/** The monitor (and XState with it) is only loaded by the commands that need it. */
async function newMonitor(options: RunMonitorOptions) {
  const { createRunMonitor } = await import('../monitor/monitor.js');
  return createRunMonitor(options);
}

async function closing<T>(store: OpenedStore, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } finally {
    await store.close();
  }
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

function warn(text: string): void {
  process.stderr.write(`runwarden: warning: ${text}\n`);
}

// --- monitor ---------------------------------------------------------------------------------------------

export async function monitorCommand(
  options: StoreOptions & {
    logLevel?: string;
    inspect?: { host: string; port: number };
    http?: { host: string; port: number };
  },
): Promise<void> {
  const config = resolveConfig(options);
  const { pino } = await import('pino');
  const logger = pino(
    { name: 'runwarden', level: options.logLevel ?? 'info', timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: 1, sync: true }),
  );
  // First, so a port in use ends the command before anything else is opened.
  const inspector = options.inspect
    ? await (await import('./inspect.js')).startInspectorServer(options.inspect, { logger })
    : undefined;
  let http: HttpEndpoints | undefined;
  try {
    const address = options.http ?? config.http;
    http = address && (await serveHttp(address, logger));
    await watchRuns(config, logger, inspector?.inspect, http);
  } finally {
    await http?.server.close();
    await inspector?.close();
  }
}

async function watchRuns(
  config: RunwardenFileConfig,
  logger: MonitorLogger,
  inspect: RunMonitorOptions['inspect'],
  http: HttpEndpoints | undefined,
): Promise<void> {
  const store = openForWriting(config);
  if (http) http.store = store;
  const launcher = makeLauncher(config, store);
  const monitor = await newMonitor({
    store,
    launcher,
    config: config.monitor,
    logger,
    inspect,
    metrics: http?.registry,
  });

  let stopRequested!: (signal: string) => void;
  const stopping = new Promise<string>((resolve) => {
    stopRequested = resolve;
  });
  const onSignal = (signal: NodeJS.Signals) => stopRequested(signal);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  // The monitor's own timers keep the process alive; this covers `enabled: false`.
  const keepAlive = setInterval(() => {}, 1 << 30);

  let heartbeat: { stop(): void } | undefined;
  // Every status change of every run, also those workers write: the monitor's own decisions say why.
  monitor.subscribe((event) => {
    const status = statusOfEvent(event.type);
    if (status)
      logger.info({ runId: event.runId, status, seq: event.seq }, `Run ${status}: ${event.message}`);
  });
  try {
    await monitor.start();
    if (http) http.phase = 'running';
    // Tells `runwarden launch` that a monitor watches this SQLite file. A disabled monitor watches nothing.
    if (config.monitor.enabled && !config.storage.postgres) {
      const path = config.storage.sqlite.path;
      heartbeat = startHeartbeat(path, {
        onError: (err) =>
          logger.warn({ err, path: heartbeatPath(path) }, 'Could not write the monitor heartbeat file.'),
      });
    }
    logger.info(
      {
        store: storeName(config),
        config: config.file ?? '(defaults)',
        logDir: config.launcher.process.logDir,
        monitorId: monitor.monitorId,
        ...(http && { http: http.server.url }),
      },
      'runwarden monitor running; stop it with SIGTERM or SIGINT',
    );
    const signal = await stopping;
    if (http) http.phase = 'stopping';
    logger.info({ signal }, 'Stopping the monitor (run workers keep running).');
    heartbeat?.stop();
    // A second signal while stopping: give up waiting.
    process.once('SIGTERM', () => process.exit(143));
    process.once('SIGINT', () => process.exit(130));
    await monitor.stop();
  } finally {
    if (http) http.phase = 'stopping';
    heartbeat?.stop();
    clearInterval(keepAlive);
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await store.close();
  }
  logger.info('runwarden monitor stopped.');
}

/** `--http`: what /healthz and /readyz report follows `phase` and `store`, which watchRuns sets. */
interface HttpEndpoints {
  registry: Registry;
  server: MonitorHttpServer;
  phase: MonitorPhase;
  store: OpenedStore | undefined;
}

/** Listens (before the store is opened), with a registry for Node's process metrics and the monitor's. */
async function serveHttp(
  address: { host: string; port: number },
  logger: MonitorLogger,
): Promise<HttpEndpoints> {
  const [{ Registry, collectDefaultMetrics }, { isLoopback, startHttpServer }] = await Promise.all([
    import('prom-client'),
    import('./http-server.js'),
  ]);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const endpoints: Omit<HttpEndpoints, 'server'> = { registry, phase: 'starting', store: undefined };
  const server = await startHttpServer({
    ...address,
    registry,
    logger,
    phase: () => endpoints.phase,
    probeStore: async () => {
      if (!endpoints.store) throw new Error('the store is not open yet');
      return endpoints.store.latestSeq();
    },
  });
  logger.info({ url: server.url }, `Serving /metrics, /healthz and /readyz on ${server.url}`);
  if (!isLoopback(address.host)) {
    logger.warn(
      { host: address.host },
      `HTTP is served on ${address.host}, not only to this machine: /metrics has no authentication, so keep the port behind a firewall.`,
    );
  }
  return Object.assign(endpoints, { server });
}

// --- launch ----------------------------------------------------------------------------------------------

export async function launchCommand(
  command: string[],
  options: StoreOptions & { tag?: Record<string, string>; runId?: string; json?: boolean; wrap?: boolean },
): Promise<void> {
  checkSecondsTags(options.tag ?? {});
  const config = resolveConfig(options);
  if (command.length === 0 && !config.launcher.process.command) {
    throw new UsageError(
      'Nothing to launch: give the worker command after --, e.g. runwarden launch -- node worker.js (or set launcher.process.command in runwarden.yaml).',
    );
  }
  const tags: Record<string, string> = { ...options.tag };
  if (command.length > 0) tags[COMMAND_TAG] = JSON.stringify(command);
  // A tag, not just this launcher's option: the monitor that resumes the run must wrap it too.
  if (options.wrap) tags[WRAP_TAG] = 'true';
  const store = openForWriting(config);
  await closing(store, async () => {
    const launcher = makeLauncher(config, store);
    const monitor = await newMonitor({ store, launcher, config: config.monitor });
    // The heartbeat file sits next to a SQLite database; monitors of a PostgreSQL store may be anywhere.
    const { path } = config.storage.sqlite;
    const watched = config.storage.postgres !== undefined || (await isMonitorWatching({ path }));
    const run = await store.createRun({ runId: options.runId, tags });
    const launched = await monitor.launch(run.runId);
    if (options.json) print(JSON.stringify({ ...launched, logPath: launcher.logPath(run.runId) }, null, 2));
    else print(launched.runId);
    if (!watched) {
      warn(
        `no runwarden monitor is watching ${path}: run ${run.runId} was started, but nothing enforces its timeouts or notices a crashed worker until one runs. Start one with: ${monitorInvocation(config, options)}`,
      );
    }
  });
}

/** The `runwarden monitor` command line that watches the store these options name. */
function monitorInvocation(config: RunwardenFileConfig, options: StoreOptions): string {
  const words = ['runwarden', 'monitor'];
  if (config.file !== undefined) words.push('--config', config.file);
  if (options.store !== undefined) words.push('--store', redactCredentials(storeUrlOf(config)));
  return words.map(shellWord).join(' ');
}

/** `word` as typed in a shell: as is when it is plain, else quoted. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : JSON.stringify(word);
}

/** The tag Dagster users paste from their runs; Runwarden does not read it. */
const DAGSTER_MAX_RUNTIME_TAG = 'dagster/max_runtime';

/** Tags whose value is seconds, read by the monitor with the same rule as the max runtime tag. */
const SECONDS_TAGS = [...MAX_RUNTIME_TAGS, TAGS.heartbeatTimeout, TAGS.progressTimeout];

/**
 * Refuses a max runtime, heartbeat or progress timeout tag the monitor would ignore (the run would silently
 * have another limit or none), before any run exists; warns about Dagster's tag, which is kept but has no
 * effect.
 */
function checkSecondsTags(tags: Record<string, string>): void {
  for (const tag of SECONDS_TAGS) {
    if (Object.hasOwn(tags, tag) && parseMaxRuntimeTag(tags[tag]) === undefined) {
      throw new UsageError(
        `Invalid tag ${tag}=${JSON.stringify(tags[tag])}: expected ${MAX_RUNTIME_TAG_EXPECTED}. No run was created.`,
      );
    }
  }
  if (!Object.hasOwn(tags, DAGSTER_MAX_RUNTIME_TAG)) return;
  const value = tags[DAGSTER_MAX_RUNTIME_TAG]!;
  const seconds = parseMaxRuntimeTag(value) === undefined ? '<seconds>' : value.trim();
  const ours = MAX_RUNTIME_TAGS.some((tag) => Object.hasOwn(tags, tag));
  warn(
    `tag ${DAGSTER_MAX_RUNTIME_TAG} is kept on the run but Runwarden does not read it; its max runtime tag is ${TAGS.maxRuntime}${ours ? '' : ` (--tag ${TAGS.maxRuntime}=${seconds})`}.`,
  );
}

// --- runs ------------------------------------------------------------------------------------------------

export async function runsCommand(
  options: StoreOptions & { status?: string[]; limit?: number; json?: boolean },
): Promise<void> {
  const statuses = parseStatuses(options.status ?? []);
  const config = resolveConfig(options);
  const store = openExisting(config);
  const runs = await closing(store, async () => {
    const all: RunRecord[] = [];
    let afterRunId: string | undefined;
    for (;;) {
      const page = await store.listRuns({ statuses, limit: 1000, afterRunId });
      all.push(...page);
      if (page.length < 1000) break;
      afterRunId = page.at(-1)!.runId;
    }
    all.sort((a, b) => b.createdAt - a.createdAt || (a.runId < b.runId ? -1 : 1));
    return all.slice(0, options.limit ?? 50);
  });
  const now = Date.now();
  if (options.json) {
    print(
      JSON.stringify(
        runs.map((run) => withDuration(run, now)),
        null,
        2,
      ),
    );
    return;
  }
  if (runs.length === 0) {
    print(statuses ? `No runs in ${statuses.join(', ')}.` : 'No runs yet.');
    return;
  }
  print(
    formatTable(
      ['RUN ID', 'STATUS', 'RESUMES', 'FAILURE REASON', 'CREATED', 'ENDED', 'DURATION', 'COMMAND'],
      runs.map((run) => [
        run.runId,
        run.status,
        String(run.resumeAttempts),
        run.tags[TAGS.failureReason] ?? '-',
        time(run.createdAt),
        time(run.endedAt),
        duration(runDuration(run, now)),
        commandText(run.tags[COMMAND_TAG]),
      ]),
    ),
  );
}

/** How long the run has run: from STARTED to its end, or to `now` while it goes; undefined if it never started. */
function runDuration(run: RunRecord, now: number): number | undefined {
  if (run.startedAt === undefined) return undefined;
  return (run.endedAt ?? now) - run.startedAt;
}

/** The record with `durationMs` (see runDuration) for --json; absent when the run never started. */
function withDuration(run: RunRecord, now: number): RunRecord & { durationMs?: number } {
  const ms = runDuration(run, now);
  return ms === undefined ? run : { ...run, durationMs: ms };
}

function parseStatuses(values: string[]): RunStatus[] | undefined {
  if (values.length === 0) return undefined;
  return values.map((value) => {
    const status = value.toUpperCase() as RunStatus;
    if (!RUN_STATUSES.includes(status)) {
      throw new UsageError(
        `Unknown status ${JSON.stringify(value)} for --status: expected one of ${RUN_STATUSES.join(', ')}.`,
      );
    }
    return status;
  });
}

function commandText(tag: string | undefined): string {
  if (tag === undefined) return '(configured command)';
  try {
    const argv = JSON.parse(tag) as unknown;
    if (Array.isArray(argv))
      return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(String(a)) ? a : JSON.stringify(a))).join(' ');
  } catch {
    // show it as stored
  }
  return tag;
}

// --- monitors --------------------------------------------------------------------------------------------

export async function monitorsCommand(options: StoreOptions & { json?: boolean }): Promise<void> {
  const config = resolveConfig(options);
  const store = openExisting(config);
  // Every built-in store lists its monitors; openExisting gives a RunStore, where the method is optional.
  const monitors = await closing(store, async () => (store.listMonitors ? store.listMonitors() : []));
  if (options.json) {
    print(JSON.stringify(monitors, null, 2));
    return;
  }
  if (monitors.length === 0) {
    print('No monitor is running on this store (none renewed its lease in time).');
    return;
  }
  const now = Date.now();
  print(
    formatTable(
      ['MONITOR ID', 'HOST', 'PID', 'STARTED', 'LAST RENEWAL', 'PARTITIONS', 'RUNS OWNED'],
      monitors.map((m) => [
        m.monitorId,
        m.host,
        String(m.pid),
        time(m.startedAt),
        `${time(m.renewedAt)} (${duration(now - m.renewedAt)} ago)`,
        String(m.partitions.length),
        String(m.runsOwned),
      ]),
    ),
  );
}

// --- events ----------------------------------------------------------------------------------------------

export async function eventsCommand(
  runId: string,
  options: StoreOptions & { json?: boolean; follow?: boolean },
): Promise<void> {
  const config = resolveConfig(options);
  const store = openExisting(config);
  if (options.follow) {
    await closing(store, () => followEventsOf(store, runId, options.json === true));
    return;
  }
  const events = await closing(store, () => store.getEvents(runId));
  if (options.json) {
    print(JSON.stringify(events, null, 2));
    return;
  }
  print(
    formatTable(
      ['SEQ', 'TIME', 'TYPE', 'MESSAGE'],
      events.map((event) => [String(event.seq), time(event.at), event.type, oneLine(event.message)]),
    ),
  );
}

const TYPE_WIDTH = Math.max(...RUN_EVENT_TYPES.map((type) => type.length));

/** events --follow: the table (fixed column widths, as rows come one by one) or one JSON object a line. */
async function followEventsOf(store: RunStore, runId: string, json: boolean): Promise<void> {
  if (!(await store.getRun(runId))) throw new RunNotFoundError(runId);
  // Room for the seqs of the next few orders of magnitude; a longer one just pushes its row's columns.
  const widths = [Math.max(3, String(await store.latestSeq()).length + 1), 24, TYPE_WIDTH];
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : padEnd(cell, widths[i]!)))
      .join('  ')
      .trimEnd();
  const stop = stopOnSignals();
  try {
    if (!json) await writeOut(`${line(['SEQ', 'TIME', 'TYPE', 'MESSAGE'])}\n`);
    const onEvent = (event: RunEvent) =>
      writeOut(
        `${json ? JSON.stringify(event) : line([String(event.seq), time(event.at), event.type, oneLine(event.message)])}\n`,
      );
    await followEvents(store, runId, { signal: stop.signal, onEvent });
  } finally {
    stop.dispose();
  }
}

// --- logs ------------------------------------------------------------------------------------------------

/** After its end, a run's worker may still be writing its last lines while it exits; wait at most this long. */
const WORKER_EXIT_WAIT_MS = 5_000;

export async function logsCommand(
  runId: string,
  options: StoreOptions & { follow?: boolean },
): Promise<void> {
  const config = resolveConfig(options);
  const store = openExisting(config);
  await closing(store, async () => {
    const run = await store.getRun(runId);
    if (!run) throw new RunNotFoundError(runId);
    const launcher = makeLauncher(config, store);
    const path = launcher.logPath(runId);
    if (!existsSync(path)) {
      const why =
        run.status === 'NOT_STARTED' || run.status === 'QUEUED'
          ? `its worker has not been launched yet (${run.status})`
          : `its worker was not started by this configuration's process launcher (launcher.process.log_dir is ${config.launcher.process.logDir})`;
      throw new RunwardenError('LOG_NOT_FOUND', `No log file for run ${runId} at ${path}: ${why}.`);
    }
    if (!options.follow) {
      await copyFrom(path, 0, { write: writeOut });
      return;
    }
    const stop = stopOnSignals();
    let endedAt: number | undefined;
    const ended = async () => {
      const current = await store.getRun(runId);
      if (!current || !isTerminal(current.status)) return false;
      endedAt ??= Date.now();
      if (Date.now() - endedAt >= WORKER_EXIT_WAIT_MS) return true;
      const health = await launcher.checkHealth(current).catch(() => undefined);
      return health?.status !== 'RUNNING';
    };
    try {
      await followFile(path, { signal: stop.signal, write: writeOut, ended });
    } finally {
      stop.dispose();
    }
  });
}

// --- cancel ----------------------------------------------------------------------------------------------

export async function cancelCommand(
  runId: string,
  options: StoreOptions & { json?: boolean },
): Promise<void> {
  const config = resolveConfig(options);
  const store = openExisting(config);
  const run = await closing(store, async () => {
    const current = await store.getRun(runId);
    if (!current) throw new RunNotFoundError(runId);
    if (isTerminal(current.status)) {
      throw new RunwardenError(
        'NOT_CANCELABLE',
        `Run ${runId} has already ended (${current.status}); there is nothing to cancel.`,
      );
    }
    const launcher = makeLauncher(config, store);
    if (current.status === 'CANCELING') {
      // Canceled before: make sure the worker got the message (an earlier `cancel` may have been interrupted).
      await launcher.terminate(current);
      return (await store.getRun(runId)) ?? current;
    }
    const monitor = await newMonitor({ store, launcher, config: config.monitor });
    return monitor.cancel(runId);
  });
  if (options.json) {
    print(JSON.stringify(run, null, 2));
    return;
  }
  if (run.status === 'CANCELING') {
    const seconds = config.monitor.cancelTimeoutSeconds;
    print(
      `Run ${runId} is CANCELING: its worker was asked to stop${seconds > 0 ? `; the monitor marks it CANCELED after ${seconds} seconds if the worker does not report first` : ''}.`,
    );
  } else {
    print(`Run ${runId} is ${run.status}.`);
  }
}
