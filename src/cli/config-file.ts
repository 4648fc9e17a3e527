// runwarden.yaml: the file the `runwarden` CLI reads. Three sections, all optional:
//
//   run_monitoring:        # Dagster's block, keys unchanged (see src/core/config.ts)
//     start_timeout_seconds: 180
//   storage:
//     sqlite: { path: .runwarden/runs.db, busy_timeout_ms: 5000 }
//     # or, instead of sqlite:  postgres: { url: postgres://user@host:5432/db, schema: runwarden }
//   launcher:
//     process: { command: [node, worker.js], log_dir: .runwarden/logs, terminate_grace_seconds: 10, wrap: false }
//   http: { host: 127.0.0.1, port: 9464 }   # `runwarden monitor` serves /metrics, /healthz, /readyz
//
// The whole file is validated with zod before anything starts; every problem is reported with the file, the
// key path and what was expected, on one line. Relative paths resolve against the file's directory.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { type MonitorConfig, parseMonitorConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { formatStoreUrl, parseStoreUrl, redactCredentials, type StoreLocation } from '../stores/store-url.js';

export const DEFAULT_CONFIG_FILE = 'runwarden.yaml';
/** ProcessRunLauncher's defaults (terminateGraceMs, killWaitMs), in seconds. */
const DEFAULT_GRACE_SECONDS = 10;
const DEFAULT_KILL_WAIT_SECONDS = 2;
/** Where a directory without a runwarden.yaml keeps its runs (relative to the current directory). */
const DEFAULT_DATA_DIR = '.runwarden';

export interface RunwardenFileConfig {
  /** The file read, absolute; undefined when the defaults were used. */
  file: string | undefined;
  monitor: MonitorConfig;
  storage: {
    sqlite: { path: string; busyTimeoutMs: number | undefined };
    /** When set, the store is this PostgreSQL schema and `sqlite` is not used. */
    postgres: { url: string; schema: string } | undefined;
  };
  launcher: {
    process: {
      command: string[] | undefined;
      cwd: string | undefined;
      env: Record<string, string>;
      /** Absolute; by default a `logs` directory next to the database file. */
      logDir: string;
      /** Whether log_dir was given (else it follows the database, also when --store moves it). */
      logDirConfigured: boolean;
      terminateGraceMs: number | undefined;
      killWaitMs: number | undefined;
      /** Run each command under the Runwarden wrapper, which reports on the run for it. */
      wrap: boolean;
    };
  };
  /** Where `runwarden monitor` serves /metrics, /healthz and /readyz; undefined: no HTTP server. */
  http: { host: string; port: number } | undefined;
}

/** The store a config names: its PostgreSQL schema when `storage.postgres` is set, else its SQLite file. */
export function storeLocationOf(config: RunwardenFileConfig): StoreLocation {
  const { postgres, sqlite } = config.storage;
  return postgres ? { kind: 'postgres', ...postgres } : { kind: 'sqlite', path: sqlite.path };
}

/** The store URL of a config (what run workers get in RUNWARDEN_STORE). */
export function storeUrlOf(config: RunwardenFileConfig): string {
  return formatStoreUrl(storeLocationOf(config));
}

/** A config file that is missing, unreadable, not YAML or not valid. The message is one line. */
export class ConfigFileError extends ConfigError {
  constructor(
    readonly file: string,
    message: string,
    issues: { path: string; message: string }[] = [],
  ) {
    super(message, issues);
  }
}

// --- schema ----------------------------------------------------------------------------------------------

/** A leaf schema whose every issue says what was expected. */
function leaf<T extends z.ZodType>(schema: (expected: string) => T, expected: string): T {
  return schema(expected);
}

const seconds = leaf((e) => z.number({ error: e }).min(0, { error: e }), 'a number of seconds >= 0');
const milliseconds = leaf(
  (e) => z.number({ error: e }).int({ error: e }).min(0, { error: e }),
  'a whole number of milliseconds >= 0',
);
const path = leaf((e) => z.string({ error: e }).min(1, { error: e }), 'a non-empty path');
const argv = leaf(
  (e) => z.array(z.string({ error: e }).min(1, { error: e }), { error: e }).min(1, { error: e }),
  'a non-empty list of non-empty strings (the argv, e.g. [node, worker.js]; no shell is involved)',
);
const port = leaf(
  (e) => z.number({ error: e }).int({ error: e }).min(0, { error: e }).max(65535, { error: e }),
  'a port number 0-65535 (0 picks a free port)',
);
const host = leaf(
  (e) => z.string({ error: e }).regex(/^[^\s[\]]+$/, { error: e }),
  'a host name or IP address without brackets or spaces, e.g. 127.0.0.1, 0.0.0.0 or ::1',
);
const env = leaf(
  (e) => z.record(z.string(), z.string({ error: e }), { error: e }),
  'a mapping of variable names to string values (quote numbers)',
);

const postgresUrl = leaf(
  (e) => z.string({ error: e }).regex(/^postgres(ql)?:\/\//i, { error: e }),
  'a postgres:// or postgresql:// URL, e.g. postgres://user@127.0.0.1:5432/database',
);
const schemaName = leaf(
  (e) => z.string({ error: e }).regex(/^[a-z_][a-z0-9_]{0,62}$/, { error: e }),
  'a schema name of lower-case letters, digits and underscores, starting with a letter or underscore',
);

function section<S extends z.ZodRawShape>(shape: S) {
  const known = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? `unknown key; known keys are ${known}` : 'a mapping of keys',
  });
}

const fileSchema = section({
  // Validated by parseMonitorConfig, which knows Dagster's keys and their spellings.
  run_monitoring: z.unknown().optional(),
  // Every key has a default, so every section may be left out or left empty (a bare `sqlite:` is null).
  storage: section({
    sqlite: section({ path: path.optional(), busy_timeout_ms: milliseconds.optional() })
      .nullable()
      .optional(),
    postgres: section({ url: postgresUrl, schema: schemaName.optional() }).optional(),
  })
    .nullable()
    .optional(),
  launcher: section({
    process: section({
      command: argv.optional(),
      cwd: path.optional(),
      env: env.optional(),
      log_dir: path.optional(),
      terminate_grace_seconds: seconds.optional(),
      kill_wait_seconds: seconds.optional(),
      wrap: leaf((e) => z.boolean({ error: e }), 'true or false').optional(),
    })
      .nullable()
      .optional(),
  })
    .nullable()
    .optional(),
  http: section({ host: host.optional(), port }).optional(),
});

// --- loading ---------------------------------------------------------------------------------------------

/**
 * Reads and validates a config file. With `explicit` false (no --config given), a missing file means "use
 * the defaults" (data in ./.runwarden); an explicitly named file must exist.
 */
export function loadConfigFile(file: string, options: { explicit?: boolean } = {}): RunwardenFileConfig {
  const absolute = resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !options.explicit) return defaultConfig();
    const why = code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new ConfigFileError(absolute, `Cannot read config file ${absolute}: ${why}.`);
  }
  return parseConfigFile(text, absolute);
}

/** The configuration used when there is no runwarden.yaml. */
export function defaultConfig(baseDir = process.cwd()): RunwardenFileConfig {
  return parseConfigObject({}, undefined, baseDir);
}

/** Parses the text of a config file; `file` (absolute) is named in errors and anchors relative paths. */
export function parseConfigFile(text: string, file: string): RunwardenFileConfig {
  let data: unknown;
  try {
    data = parseYaml(text, { prettyErrors: true });
  } catch (error) {
    const first = String((error as Error).message)
      .split('\n')[0]!
      .replace(/:\s*$/, '');
    throw new ConfigFileError(file, `Invalid config file ${file}: not valid YAML: ${first}`);
  }
  return parseConfigObject(data ?? {}, file, dirname(file));
}

/** Validates an already-parsed config object. */
function parseConfigObject(data: unknown, file: string | undefined, baseDir: string): RunwardenFileConfig {
  const where = file ?? 'configuration';
  const issues: { path: string; message: string }[] = [];
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const at = issue.path.map(String);
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) issues.push({ path: joinPath([...at, key]), message: issue.message });
        continue;
      }
      const value = valueAt(data, at);
      issues.push({
        path: joinPath(at),
        message:
          value === undefined
            ? `missing; expected ${issue.message}`
            : `expected ${issue.message}, got ${describe(value)}`,
      });
    }
  }

  let monitor: MonitorConfig | undefined;
  const block = isObject(data) ? data.run_monitoring : undefined;
  try {
    // ProcessRunLauncher resumes runs, so Dagster's max_resume_run_attempts is allowed.
    monitor = parseMonitorConfig({ run_monitoring: block ?? {} }, { supportsResume: true });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    issues.push(...error.issues);
  }

  // terminate() must finish (SIGTERM, grace, SIGKILL, wait) within the monitor's limit on launcher calls.
  const proc = parsed.success ? parsed.data.launcher?.process : undefined;
  const stopSeconds =
    (proc?.terminate_grace_seconds ?? DEFAULT_GRACE_SECONDS) +
    (proc?.kill_wait_seconds ?? DEFAULT_KILL_WAIT_SECONDS);
  if (monitor && monitor.launcherTimeoutSeconds > 0 && stopSeconds >= monitor.launcherTimeoutSeconds) {
    issues.push({
      path: `launcher.process.${proc?.terminate_grace_seconds !== undefined ? 'terminate_grace_seconds' : 'kill_wait_seconds'}`,
      message: `expected terminate_grace_seconds + kill_wait_seconds (${stopSeconds}) below run_monitoring.launcher_timeout_seconds (${monitor.launcherTimeoutSeconds}), or the monitor gives up on stopping a worker before SIGKILL is sent`,
    });
  }

  const storage = parsed.success ? parsed.data.storage : undefined;
  const postgres = storage?.postgres && postgresOf(storage.postgres, issues);
  if (storage?.postgres && storage.sqlite) {
    issues.push({ path: 'storage', message: 'expected sqlite or postgres, not both' });
  }

  if (issues.length > 0 || !parsed.success || !monitor) {
    const lines = issues.map((i) => `${i.path || '(top level)'}: ${i.message}`);
    const message =
      lines.length === 1
        ? `Invalid config file ${where}: ${lines[0]}`
        : `Invalid config file ${where} (${lines.length} problems): ${lines.join('; ')}`;
    throw new ConfigFileError(where, message, issues);
  }

  const sqlite = parsed.data.storage?.sqlite;
  const abs = (p: string) => resolve(baseDir, p);
  const dbPath = abs(sqlite?.path ?? `${DEFAULT_DATA_DIR}/runs.db`);
  return {
    file,
    monitor,
    storage: {
      sqlite: {
        path: dbPath,
        busyTimeoutMs: sqlite?.busy_timeout_ms,
      },
      postgres,
    },
    launcher: {
      process: {
        command: proc?.command,
        cwd: proc?.cwd === undefined ? undefined : abs(proc.cwd),
        env: proc?.env ?? {},
        logDir: proc?.log_dir === undefined ? defaultLogDir(dbPath) : abs(proc.log_dir),
        logDirConfigured: proc?.log_dir !== undefined,
        terminateGraceMs:
          proc?.terminate_grace_seconds === undefined ? undefined : proc.terminate_grace_seconds * 1000,
        killWaitMs: proc?.kill_wait_seconds === undefined ? undefined : proc.kill_wait_seconds * 1000,
        wrap: proc?.wrap ?? false,
      },
    },
    // 127.0.0.1 unless a host is given: metrics and health are not for other machines by accident.
    http: parsed.data.http && { host: parsed.data.http.host ?? '127.0.0.1', port: parsed.data.http.port },
  };
}

/**
 * The config with its store moved to `location` (the --store option). An unconfigured log dir follows a
 * SQLite file; with PostgreSQL it stays where the config put it.
 */
export function withStore(config: RunwardenFileConfig, location: StoreLocation): RunwardenFileConfig {
  if (location.kind === 'postgres') {
    const { url, schema } = location;
    return { ...config, storage: { ...config.storage, postgres: { url, schema } } };
  }
  const { path } = location;
  const proc = config.launcher.process;
  return {
    ...config,
    storage: { sqlite: { ...config.storage.sqlite, path }, postgres: undefined },
    launcher: { process: { ...proc, logDir: proc.logDirConfigured ? proc.logDir : defaultLogDir(path) } },
  };
}

/** storage.postgres with the URL checked; `schema` there wins over a ?schema= in the URL. */
function postgresOf(
  block: { url: string; schema?: string | undefined },
  issues: { path: string; message: string }[],
): { url: string; schema: string } | undefined {
  try {
    const location = parseStoreUrl(block.url);
    if (location.kind !== 'postgres') return undefined;
    return { url: location.url, schema: block.schema ?? location.schema };
  } catch (error) {
    issues.push({
      path: 'storage.postgres.url',
      message: redactCredentials((error as Error).message).replace(/^Invalid store URL /, 'invalid URL '),
    });
    return undefined;
  }
}

function defaultLogDir(dbPath: string): string {
  return join(dirname(dbPath), 'logs');
}

function joinPath(parts: string[]): string {
  return parts.reduce(
    (acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part),
    '',
  );
}

function valueAt(data: unknown, path: string[]): unknown {
  let value = data;
  for (const part of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null (an empty value)';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  switch (typeof value) {
    case 'string':
      // A store URL may carry a password.
      return `the string ${redactCredentials(JSON.stringify(value))}`;
    case 'number':
    case 'boolean':
      return String(value);
    case 'object':
      return 'a mapping';
    default:
      return `a ${typeof value}`;
  }
}
