// Monitor configuration: camelCase options, or Dagster's snake_case `run_monitoring` block (bare or wrapped
// as in dagster.yaml). Every problem is reported at once, named the way the user spelled it.
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { TAGS } from './types.js';

export interface MonitorConfig {
  enabled: boolean;
  startTimeoutSeconds: number;
  cancelTimeoutSeconds: number;
  /** 0 = no limit. Per-run tags override it (resolveMaxRuntimeSeconds). */
  maxRuntimeSeconds: number;
  /** A STARTED run whose worker has not heartbeated for this long is hung: terminated, then resumed or failed. 0 = off. */
  heartbeatTimeoutSeconds: number;
  /** The same for progress (a step, run.progress(), a line of output under --wrap). 0 = off. */
  progressTimeoutSeconds: number;
  maxResumeRunAttempts: number;
  pollIntervalSeconds: number;
  terminateOnStartTimeout: boolean;
  /** Consecutive UNKNOWN/transient health results tolerated; the next one acts like FAILED. */
  unknownHealthTolerance: number;
  queuedTimeoutSeconds: number;
  /** Per-call limit on any launcher call; a call that hangs past it counts as failed (health: UNKNOWN). 0 = none. */
  launcherTimeoutSeconds: number;
  /** Health checks in flight at once. */
  healthCheckConcurrency: number;
  /** How often the monitor reads other processes' writes (RunStore.readEventsAfter). */
  feedPollIntervalSeconds: number;
  /** Wait before retrying a store write that failed (e.g. a busy database). */
  storeRetrySeconds: number;
  /** Run actors per shard actor: bounds every parent's children (docs/architecture.md). */
  shardSize: number;
  /** Holds crash actions when one poll finds too many workers dead at once (a dependency blip, not crashes). */
  crashBrake: CrashBrakeConfig;
  /** Decide everything, act on nothing: each decision is only written as a `Would have …` ENGINE_EVENT. */
  dryRun: boolean;
  /**
   * Several monitors on one store: how long a monitor's partition leases last without renewal (renewed every
   * third of it). A monitor that dies has its runs taken over within about this long.
   */
  leaseSeconds: number;
}

export interface CrashBrakeConfig {
  /** The share of checked runs (dead, or whose check failed) above which a poll holds its crash actions; 0 = off. */
  ratio: number;
  /** Polls that checked fewer runs than this never brake: a few crashes at once are just crashes. */
  minRuns: number;
  /** How long the brake may hold in a row; after that the monitor acts on what it finds. */
  maxHoldSeconds: number;
}

/**
 * The longest delay Node's setTimeout honours (2^31 - 1 ms); a longer one fires at once. Repeating intervals
 * are capped here so a typo cannot turn polling into a busy loop.
 */
export const MAX_INTERVAL_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

interface Kind<V> {
  schema: z.ZodType<V>;
  expected: string;
  /** For an option that is itself a block of options: validates it key by key (`path` is how it was spelled). */
  block?: (value: unknown, path: string, issues: Issue[]) => V | undefined;
}

const boolean: Kind<boolean> = { schema: z.boolean(), expected: 'true or false' };
const timeout: Kind<number> = {
  schema: z.number().min(0),
  expected: 'a finite number of seconds >= 0 (0 switches this check off)',
};
const interval: Kind<number> = {
  schema: z.number().gt(0).max(MAX_INTERVAL_SECONDS),
  expected: `a finite number of seconds > 0 and <= ${MAX_INTERVAL_SECONDS}`,
};
const boundedTimeout: Kind<number> = {
  schema: z.number().min(0).max(MAX_INTERVAL_SECONDS),
  expected: `${timeout.expected} and <= ${MAX_INTERVAL_SECONDS}`,
};
const wholeFromZero: Kind<number> = { schema: z.number().int().min(0), expected: 'a whole number >= 0' };
const wholeFromOne: Kind<number> = { schema: z.number().int().min(1), expected: 'a whole number >= 1' };
const share: Kind<number> = {
  schema: z.number().min(0).max(1),
  expected: 'a number from 0 to 1 (0 switches the brake off)',
};

/** The crash brake's own keys, each with its snake_case spelling, kind and default. */
const CRASH_BRAKE_FIELDS = {
  ratio: { snake: 'ratio', kind: share, default: 0.5 },
  minRuns: { snake: 'min_runs', kind: wholeFromOne, default: 20 },
  maxHoldSeconds: { snake: 'max_hold_seconds', kind: boundedTimeout, default: 600 },
} as const satisfies {
  [K in keyof CrashBrakeConfig]: {
    snake: string;
    kind: Kind<CrashBrakeConfig[K]>;
    default: CrashBrakeConfig[K];
  };
};

const crashBrake: Kind<CrashBrakeConfig> = {
  schema: z.object({ ratio: z.number(), minRuns: z.number(), maxHoldSeconds: z.number() }),
  expected: 'an object with ratio, min_runs and max_hold_seconds',
  block: (value, path, issues) => {
    if (!isPlainObject(value)) {
      issues.push({
        path,
        message: `expected an object with ratio, min_runs and max_hold_seconds, got ${describe(value)}`,
      });
      return undefined;
    }
    const names = Object.keys(CRASH_BRAKE_FIELDS) as (keyof CrashBrakeConfig)[];
    const result: CrashBrakeConfig = {
      ratio: CRASH_BRAKE_FIELDS.ratio.default,
      minRuns: CRASH_BRAKE_FIELDS.minRuns.default,
      maxHoldSeconds: CRASH_BRAKE_FIELDS.maxHoldSeconds.default,
    };
    const before = issues.length;
    const spelled = new Map<keyof CrashBrakeConfig, string>();
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue;
      const name = names.find((n) => n === key || CRASH_BRAKE_FIELDS[n].snake === key);
      if (!name) {
        const known = names.map((n) => CRASH_BRAKE_FIELDS[n].snake).join(', ');
        issues.push({ path: `${path}.${key}`, message: `unknown key; known keys are ${known}` });
        continue;
      }
      const other = spelled.get(name);
      if (other !== undefined) {
        issues.push({
          path: `${path}.${key}`,
          message: `given twice, as ${path}.${other} and ${path}.${key}: use one spelling`,
        });
        continue;
      }
      spelled.set(name, key);
      const { kind } = CRASH_BRAKE_FIELDS[name];
      const parsed = kind.schema.safeParse(item);
      if (parsed.success) result[name] = parsed.data;
      else
        issues.push({ path: `${path}.${key}`, message: `expected ${kind.expected}, got ${describe(item)}` });
    }
    return issues.length === before ? result : undefined;
  },
};

/**
 * The one table of options: Dagster's spelling, default and validity of every MonitorConfig field. The
 * `satisfies` makes the compiler hold it to MonitorConfig (every field, values of the right type), and
 * DEFAULT_CONFIG, SNAKE_CASE_KEYS and DagsterRunMonitoringConfig are derived from it.
 */
const FIELDS = {
  enabled: { snake: 'enabled', kind: boolean, default: true },
  startTimeoutSeconds: { snake: 'start_timeout_seconds', kind: timeout, default: 180 },
  cancelTimeoutSeconds: { snake: 'cancel_timeout_seconds', kind: timeout, default: 180 },
  maxRuntimeSeconds: { snake: 'max_runtime_seconds', kind: timeout, default: 0 },
  heartbeatTimeoutSeconds: { snake: 'heartbeat_timeout_seconds', kind: timeout, default: 0 },
  progressTimeoutSeconds: { snake: 'progress_timeout_seconds', kind: timeout, default: 0 },
  // 3 when the launcher can resume; parseMonitorConfig uses 0 for one that cannot.
  maxResumeRunAttempts: { snake: 'max_resume_run_attempts', kind: wholeFromZero, default: 3 },
  pollIntervalSeconds: { snake: 'poll_interval_seconds', kind: interval, default: 120 },
  terminateOnStartTimeout: { snake: 'terminate_on_start_timeout', kind: boolean, default: true },
  unknownHealthTolerance: { snake: 'unknown_health_tolerance', kind: wholeFromZero, default: 3 },
  queuedTimeoutSeconds: { snake: 'queued_timeout_seconds', kind: timeout, default: 0 },
  launcherTimeoutSeconds: { snake: 'launcher_timeout_seconds', kind: boundedTimeout, default: 60 },
  healthCheckConcurrency: { snake: 'health_check_concurrency', kind: wholeFromOne, default: 16 },
  feedPollIntervalSeconds: { snake: 'feed_poll_interval_seconds', kind: interval, default: 1 },
  storeRetrySeconds: { snake: 'store_retry_seconds', kind: interval, default: 5 },
  shardSize: { snake: 'shard_size', kind: wholeFromOne, default: 128 },
  crashBrake: {
    snake: 'crash_brake',
    kind: crashBrake,
    default: Object.freeze({
      ratio: CRASH_BRAKE_FIELDS.ratio.default,
      minRuns: CRASH_BRAKE_FIELDS.minRuns.default,
      maxHoldSeconds: CRASH_BRAKE_FIELDS.maxHoldSeconds.default,
    }),
  },
  dryRun: { snake: 'dry_run', kind: boolean, default: false },
  leaseSeconds: { snake: 'lease_seconds', kind: interval, default: 15 },
} as const satisfies {
  [K in keyof MonitorConfig]: { snake: string; kind: Kind<MonitorConfig[K]>; default: MonitorConfig[K] };
};

const NAMES = Object.keys(FIELDS) as (keyof MonitorConfig)[];

function fromFields<V>(value: (name: keyof MonitorConfig) => V): Record<keyof MonitorConfig, V> {
  return Object.fromEntries(NAMES.map((name) => [name, value(name)])) as Record<keyof MonitorConfig, V>;
}

export const DEFAULT_CONFIG: Readonly<MonitorConfig> = Object.freeze(
  fromFields((name) => FIELDS[name].default) as MonitorConfig,
);

/** The snake_case spelling of every option, as in Dagster's `run_monitoring` block. */
export const SNAKE_CASE_KEYS: Readonly<Record<keyof MonitorConfig, string>> = Object.freeze(
  fromFields((name) => FIELDS[name].snake),
);

/**
 * camelCase options as TypeScript callers write them; a key set to `undefined` counts as not given, and the
 * crash brake's keys left out keep their defaults.
 */
export type MonitorConfigInput = Partial<Omit<MonitorConfig, 'crashBrake'>> & {
  crashBrake?: Partial<CrashBrakeConfig>;
};

/** The crash brake block in snake_case, as in runwarden.yaml. */
export type DagsterCrashBrakeConfig = {
  [K in keyof CrashBrakeConfig as (typeof CRASH_BRAKE_FIELDS)[K]['snake']]?: CrashBrakeConfig[K];
};

/**
 * Dagster's snake_case `run_monitoring` block (its contents), with Runwarden's own keys in the same spelling.
 * `free_slots_after_run_end_seconds` is Dagster's and is accepted and ignored.
 */
export type DagsterRunMonitoringConfig = {
  [K in Exclude<keyof MonitorConfig, 'crashBrake'> as (typeof FIELDS)[K]['snake']]?: MonitorConfig[K];
} & { crash_brake?: DagsterCrashBrakeConfig; free_slots_after_run_end_seconds?: number };

/** The block wrapped in `run_monitoring`, as it sits in a dagster.yaml or runwarden.yaml. */
export interface WrappedRunMonitoringConfig {
  run_monitoring: DagsterRunMonitoringConfig;
}

/** What createRunMonitor's `config` takes: any of the three shapes parseMonitorConfig accepts. */
export type MonitorConfigOptions =
  MonitorConfigInput | DagsterRunMonitoringConfig | WrappedRunMonitoringConfig;

/** Dagster keys we accept so a dagster.yaml block parses unchanged, but that mean nothing here. */
const IGNORED_KEYS = new Set<string>([
  'free_slots_after_run_end_seconds',
] satisfies (keyof DagsterRunMonitoringConfig)[]);

const WRAPPER_KEY = 'run_monitoring';
const BY_SPELLING = new Map<string, keyof MonitorConfig>(
  NAMES.flatMap((n) => [[n, n] as const, [FIELDS[n].snake, n] as const]),
);

type Issue = { path: string; message: string };

/**
 * Parses and validates monitor configuration. `input` may be undefined (all defaults), camelCase options
 * (`Partial<MonitorConfig>`), Dagster's snake_case `run_monitoring` block, or `{ run_monitoring: block }`.
 * Throws ConfigError listing every problem.
 */
export function parseMonitorConfig(
  input: unknown,
  context: { supportsResume?: boolean } = {},
): MonitorConfig {
  const issues: Issue[] = [];
  let block: unknown = input;
  let prefix = '';

  if (input === undefined) block = {};
  else if (!isPlainObject(input)) {
    throw fail([
      {
        path: '',
        message: `expected an object (options, or a run_monitoring block), got ${describe(input)}`,
      },
    ]);
  } else if (Object.hasOwn(input, WRAPPER_KEY)) {
    prefix = `${WRAPPER_KEY}.`;
    block = input[WRAPPER_KEY];
    // A bare `run_monitoring:` line in YAML parses to null: treat it as an empty block.
    if (block === null || block === undefined) block = {};
    for (const key of Object.keys(input)) {
      if (key !== WRAPPER_KEY) {
        issues.push({
          path: key,
          message: `unexpected next to ${WRAPPER_KEY}: pass the ${WRAPPER_KEY} block alone, or only its contents`,
        });
      }
    }
    if (!isPlainObject(block)) {
      throw fail([
        ...issues,
        {
          path: WRAPPER_KEY,
          message: `expected an object of run monitoring options, got ${describe(block)}`,
        },
      ]);
    }
  }

  const values: Partial<Record<keyof MonitorConfig, unknown>> = {};
  const spelled = new Map<keyof MonitorConfig, string>();
  for (const [key, value] of Object.entries(block as Record<string, unknown>)) {
    // `{ maxRuntimeSeconds: undefined }` is how TypeScript callers say "not set".
    if (value === undefined || IGNORED_KEYS.has(key)) continue;
    const name = BY_SPELLING.get(key);
    if (!name) {
      issues.push({ path: prefix + key, message: unknownKeyMessage(key, prefix !== '') });
      continue;
    }
    const other = spelled.get(name);
    if (other !== undefined) {
      issues.push({
        path: prefix + key,
        message: `given twice, as ${prefix}${other} and ${prefix}${key}: use one spelling`,
      });
      continue;
    }
    spelled.set(name, key);
    const kind: Kind<unknown> = FIELDS[name].kind;
    if (kind.block) {
      const parsed = kind.block(value, prefix + key, issues);
      if (parsed !== undefined) values[name] = parsed;
      continue;
    }
    const parsed = kind.schema.safeParse(value);
    if (parsed.success) values[name] = parsed.data;
    else issues.push({ path: prefix + key, message: `expected ${kind.expected}, got ${describe(value)}` });
  }

  const resumeDefault = context.supportsResume === false ? 0 : DEFAULT_CONFIG.maxResumeRunAttempts;
  const attempts = values.maxResumeRunAttempts;
  if (context.supportsResume === false && typeof attempts === 'number' && attempts > 0) {
    issues.push({
      path: prefix + spelled.get('maxResumeRunAttempts')!,
      message: `the launcher cannot resume runs (supportsResume is false), so this must be 0; got ${attempts}`,
    });
  }

  if (issues.length > 0) throw fail(issues);
  return {
    ...DEFAULT_CONFIG,
    maxResumeRunAttempts: resumeDefault,
    ...(values as Partial<MonitorConfig>),
  };
}

/** The per-run max runtime tags, in the order they are looked at. */
export const MAX_RUNTIME_TAGS = [TAGS.maxRuntime, TAGS.maxRuntimeAlias] as const;

/**
 * The max runtime for one run: tag `runwarden/max_runtime` (else its alias `runwarden/max_runtime_seconds`)
 * overrides the configured default, and `0` turns the limit off. A tag value parseMaxRuntimeTag refuses is
 * returned in `invalid` (for the caller to report on the run); the next valid source applies — the alias
 * when the primary tag is the invalid one, else the configured default.
 */
export function resolveMaxRuntimeSeconds(
  tags: Record<string, string>,
  config: MonitorConfig,
): { seconds: number; invalid?: { tag: string; value: string } } {
  let invalid: { tag: string; value: string } | undefined;
  for (const tag of MAX_RUNTIME_TAGS) {
    if (!Object.hasOwn(tags, tag)) continue;
    const value = tags[tag]!;
    const seconds = parseMaxRuntimeTag(value);
    if (seconds !== undefined) return invalid ? { seconds, invalid } : { seconds };
    // Report the first bad tag: that is the one the user most likely meant to take effect.
    invalid ??= { tag, value: String(value) };
  }
  return invalid ? { seconds: config.maxRuntimeSeconds, invalid } : { seconds: config.maxRuntimeSeconds };
}

/** The per-run liveness timeouts: tag `runwarden/heartbeat_timeout` / `runwarden/progress_timeout` overrides
 * the configured default (`0` turns the check off for that run); an unusable value is returned in `invalid`. */
export function resolveLivenessSeconds(
  tags: Record<string, string>,
  config: Pick<MonitorConfig, 'heartbeatTimeoutSeconds' | 'progressTimeoutSeconds'>,
): { heartbeat: number; progress: number; invalid: { tag: string; value: string }[] } {
  const invalid: { tag: string; value: string }[] = [];
  const read = (tag: string, fallback: number) => {
    if (!Object.hasOwn(tags, tag)) return fallback;
    const seconds = parseMaxRuntimeTag(tags[tag]);
    if (seconds !== undefined) return seconds;
    invalid.push({ tag, value: String(tags[tag]) });
    return fallback;
  };
  return {
    heartbeat: read(TAGS.heartbeatTimeout, config.heartbeatTimeoutSeconds),
    progress: read(TAGS.progressTimeout, config.progressTimeoutSeconds),
    invalid,
  };
}

/** What a max runtime tag value must be, for error messages. */
export const MAX_RUNTIME_TAG_EXPECTED = 'a finite decimal number of seconds >= 0, e.g. 3600 (0 = no limit)';

/**
 * The seconds of a max runtime tag value, or undefined when the monitor would ignore it: plain decimal
 * seconds ("10", "2.5", "1e3", " 30 ") only, not "", "-1", "0x10", "1e400" or "Infinity" that Number() takes.
 */
export function parseMaxRuntimeTag(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (!/^\+?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text)) return undefined;
  const seconds = Number(text);
  return Number.isFinite(seconds) ? seconds : undefined;
}

function fail(issues: Issue[]): ConfigError {
  const lines = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message));
  const message =
    lines.length === 1
      ? `Invalid monitor configuration: ${lines[0]}.`
      : `Invalid monitor configuration (${lines.length} problems):\n${lines.map((l) => `  - ${l}.`).join('\n')}`;
  return new ConfigError(message, issues);
}

function unknownKeyMessage(key: string, wrapped: boolean): string {
  const snakeStyle = wrapped || key.includes('_') || key === key.toLowerCase();
  const suggestion = closestKey(key, snakeStyle);
  if (suggestion) return `unknown key (did you mean ${suggestion}?)`;
  const known = NAMES.map((n) => (snakeStyle ? FIELDS[n].snake : n));
  return `unknown key; known keys are ${known.join(', ')}`;
}

function closestKey(key: string, snakeStyle: boolean): string | undefined {
  const norm = normalize(key);
  const candidates: { spelling: string; norm: string }[] = [
    ...NAMES.map((n) => ({ spelling: snakeStyle ? FIELDS[n].snake : n, norm: normalize(n) })),
    ...[...IGNORED_KEYS].map((k) => ({ spelling: k, norm: normalize(k) })),
  ];
  let best: { spelling: string; score: number } | undefined;
  let tied = false;
  for (const c of candidates) {
    let score: number | undefined;
    if (c.norm === norm) score = 0;
    else if (norm.length >= 5 && c.norm.startsWith(norm)) score = 1;
    else {
      const distance = levenshtein(norm, c.norm);
      if (distance <= Math.max(1, Math.floor(norm.length / 5))) score = 1 + distance;
    }
    if (score === undefined) continue;
    if (!best || score < best.score) {
      best = { spelling: c.spelling, score };
      tied = false;
    } else if (score === best.score) tied = true;
  }
  // Two equally good guesses is no guess at all.
  return best && !tied ? best.spelling : undefined;
}

function normalize(key: string): string {
  return key.toLowerCase().replace(/[_\-\s]/g, '');
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string': {
      const text = JSON.stringify(value);
      if (value.trim() !== '' && !Number.isNaN(Number(value)))
        return `the string ${text} (write the number without quotes)`;
      if (value === 'true' || value === 'false') return `the string ${text} (write ${value} without quotes)`;
      return `the string ${text}`;
    }
    case 'number':
      return String(value);
    case 'boolean':
      return String(value);
    case 'bigint':
      return `the bigint ${value}n`;
    case 'object':
      return 'an object';
    default:
      return `a ${typeof value}`;
  }
}
