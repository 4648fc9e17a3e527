import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  DEFAULT_CONFIG,
  MAX_RUNTIME_TAGS,
  type MonitorConfig,
  parseMaxRuntimeTag,
  parseMonitorConfig,
  resolveMaxRuntimeSeconds,
  SNAKE_CASE_KEYS,
} from '../src/core/config.js';
import { ConfigError } from '../src/core/errors.js';
import { TAGS } from '../src/core/types.js';

/** The ConfigError parseMonitorConfig throws for `input`; fails the test if it does not throw one. */
function configError(input: unknown, context?: { supportsResume?: boolean }): ConfigError {
  try {
    parseMonitorConfig(input, context);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(input)}`);
}

const SECONDS = 'a finite number of seconds >= 0 (0 switches this check off)';
const INTERVAL = 'a finite number of seconds > 0 and <= 2147483';

describe('parseMonitorConfig: defaults', () => {
  const expected: MonitorConfig = {
    enabled: true,
    startTimeoutSeconds: 180,
    cancelTimeoutSeconds: 180,
    maxRuntimeSeconds: 0,
    heartbeatTimeoutSeconds: 0,
    progressTimeoutSeconds: 0,
    maxResumeRunAttempts: 3,
    pollIntervalSeconds: 120,
    terminateOnStartTimeout: true,
    unknownHealthTolerance: 3,
    queuedTimeoutSeconds: 0,
    launcherTimeoutSeconds: 60,
    healthCheckConcurrency: 16,
    feedPollIntervalSeconds: 1,
    storeRetrySeconds: 5,
    shardSize: 128,
    crashBrake: { ratio: 0.5, minRuns: 20, maxHoldSeconds: 600 },
    dryRun: false,
    leaseSeconds: 15,
  };

  it('DEFAULT_CONFIG holds the documented defaults and is frozen', () => {
    expect(DEFAULT_CONFIG).toEqual(expected);
    expect(Object.isFrozen(DEFAULT_CONFIG)).toBe(true);
  });

  it.each([
    ['undefined', undefined],
    ['{}', {}],
    ['an empty run_monitoring block', { run_monitoring: {} }],
    ['a bare `run_monitoring:` (null)', { run_monitoring: null }],
  ])('%s gives every default', (_label, input) => {
    expect(parseMonitorConfig(input)).toEqual(expected);
  });

  it('returns a fresh object each time', () => {
    const a = parseMonitorConfig(undefined);
    a.startTimeoutSeconds = 1;
    expect(parseMonitorConfig(undefined).startTimeoutSeconds).toBe(180);
    expect(DEFAULT_CONFIG.startTimeoutSeconds).toBe(180);
  });

  it('maxResumeRunAttempts defaults to 0 when the launcher cannot resume, 3 otherwise', () => {
    expect(parseMonitorConfig({}, { supportsResume: false }).maxResumeRunAttempts).toBe(0);
    expect(parseMonitorConfig({}, { supportsResume: true }).maxResumeRunAttempts).toBe(3);
    expect(parseMonitorConfig({}, {}).maxResumeRunAttempts).toBe(3);
  });

  it('treats undefined values as not set', () => {
    expect(parseMonitorConfig({ maxRuntimeSeconds: undefined, startTimeoutSeconds: 5 })).toEqual({
      ...expected,
      startTimeoutSeconds: 5,
    });
    // Not a clash either: only one of the two spellings has a value.
    expect(
      parseMonitorConfig({ startTimeoutSeconds: undefined, start_timeout_seconds: 7 }).startTimeoutSeconds,
    ).toBe(7);
  });
});

describe('parseMonitorConfig: accepted spellings', () => {
  const full: MonitorConfig = {
    enabled: false,
    startTimeoutSeconds: 30,
    cancelTimeoutSeconds: 45.5,
    maxRuntimeSeconds: 3600,
    heartbeatTimeoutSeconds: 90,
    progressTimeoutSeconds: 900,
    maxResumeRunAttempts: 0,
    pollIntervalSeconds: 0.5,
    terminateOnStartTimeout: false,
    unknownHealthTolerance: 0,
    queuedTimeoutSeconds: 600,
    launcherTimeoutSeconds: 0,
    healthCheckConcurrency: 1,
    feedPollIntervalSeconds: 0.25,
    storeRetrySeconds: 2,
    shardSize: 1,
    crashBrake: { ratio: 0.25, minRuns: 5, maxHoldSeconds: 30 },
    dryRun: true,
    leaseSeconds: 4,
  };
  const snake = Object.fromEntries(
    Object.entries(full).map(([k, v]) => [SNAKE_CASE_KEYS[k as keyof MonitorConfig], v]),
  );

  it('a full camelCase object', () => {
    expect(parseMonitorConfig(full)).toEqual(full);
  });

  it('a full snake_case block', () => {
    expect(snake).toEqual({
      enabled: false,
      start_timeout_seconds: 30,
      cancel_timeout_seconds: 45.5,
      max_runtime_seconds: 3600,
      heartbeat_timeout_seconds: 90,
      progress_timeout_seconds: 900,
      max_resume_run_attempts: 0,
      poll_interval_seconds: 0.5,
      terminate_on_start_timeout: false,
      unknown_health_tolerance: 0,
      queued_timeout_seconds: 600,
      launcher_timeout_seconds: 0,
      health_check_concurrency: 1,
      feed_poll_interval_seconds: 0.25,
      store_retry_seconds: 2,
      shard_size: 1,
      // The block's own keys take either spelling.
      crash_brake: { ratio: 0.25, minRuns: 5, maxHoldSeconds: 30 },
      dry_run: true,
      lease_seconds: 4,
    });
    expect(parseMonitorConfig(snake)).toEqual(full);
  });

  it('a snake_case block wrapped in run_monitoring', () => {
    expect(parseMonitorConfig({ run_monitoring: snake })).toEqual(full);
  });

  it('a mix of spellings for different fields', () => {
    expect(parseMonitorConfig({ start_timeout_seconds: 1, cancelTimeoutSeconds: 2 })).toMatchObject({
      startTimeoutSeconds: 1,
      cancelTimeoutSeconds: 2,
    });
  });

  it('the block from the Dagster docs, parsed from YAML', () => {
    const yaml = `
run_monitoring:
  enabled: true
  # values below are the defaults
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 3 # experimental if above 0
  poll_interval_seconds: 120
  max_runtime_seconds: 7200
  free_slots_after_run_end_seconds: 60
`;
    expect(parseMonitorConfig(parseYaml(yaml))).toEqual({ ...DEFAULT_CONFIG, maxRuntimeSeconds: 7200 });
  });

  it('accepts and ignores Dagster’s free_slots_after_run_end_seconds, whatever its value', () => {
    expect(parseMonitorConfig({ free_slots_after_run_end_seconds: 30 })).toEqual(DEFAULT_CONFIG);
    expect(parseMonitorConfig({ run_monitoring: { free_slots_after_run_end_seconds: 'x' } })).toEqual(
      DEFAULT_CONFIG,
    );
  });

  it('0 switches the timeouts off and is accepted', () => {
    expect(
      parseMonitorConfig({
        start_timeout_seconds: 0,
        cancel_timeout_seconds: 0,
        max_runtime_seconds: 0,
        queued_timeout_seconds: 0,
        launcher_timeout_seconds: 0,
        unknown_health_tolerance: 0,
        max_resume_run_attempts: 0,
      }),
    ).toMatchObject({
      startTimeoutSeconds: 0,
      cancelTimeoutSeconds: 0,
      maxRuntimeSeconds: 0,
      heartbeatTimeoutSeconds: 0,
      progressTimeoutSeconds: 0,
      queuedTimeoutSeconds: 0,
      launcherTimeoutSeconds: 0,
      unknownHealthTolerance: 0,
      maxResumeRunAttempts: 0,
    });
  });

  it('an explicit 0 resume attempts is fine with a launcher that cannot resume', () => {
    expect(
      parseMonitorConfig({ maxResumeRunAttempts: 0 }, { supportsResume: false }).maxResumeRunAttempts,
    ).toBe(0);
  });

  it('accepts objects without a prototype (e.g. from some YAML/JSON parsers)', () => {
    const input = Object.assign(Object.create(null) as object, { start_timeout_seconds: 9 });
    expect(parseMonitorConfig(input).startTimeoutSeconds).toBe(9);
  });
});

describe('parseMonitorConfig: errors name the field as spelled', () => {
  it('a numeric string is a type error, not silently converted (wrapped path)', () => {
    const error = configError({ run_monitoring: { start_timeout_seconds: '180' } });
    expect(error.message).toBe(
      `Invalid monitor configuration: run_monitoring.start_timeout_seconds: expected ${SECONDS}, got the string "180" (write the number without quotes).`,
    );
    expect(error.issues).toEqual([
      {
        path: 'run_monitoring.start_timeout_seconds',
        message: `expected ${SECONDS}, got the string "180" (write the number without quotes)`,
      },
    ]);
    expect(error.code).toBe('INVALID_CONFIG');
  });

  it('a negative camelCase value', () => {
    expect(configError({ cancelTimeoutSeconds: -1 }).message).toBe(
      `Invalid monitor configuration: cancelTimeoutSeconds: expected ${SECONDS}, got -1.`,
    );
  });

  it.each([
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['NaN', Number.NaN],
  ])('a non-finite value (%s)', (text, value) => {
    expect(configError({ max_runtime_seconds: value }).issues).toEqual([
      { path: 'max_runtime_seconds', message: `expected ${SECONDS}, got ${text}` },
    ]);
  });

  it.each<[string, unknown, string]>([
    ['enabled', 'yes', 'expected true or false, got the string "yes"'],
    ['enabled', 'true', 'expected true or false, got the string "true" (write true without quotes)'],
    ['terminate_on_start_timeout', 1, 'expected true or false, got 1'],
    ['terminateOnStartTimeout', null, 'expected true or false, got null'],
    ['queued_timeout_seconds', [], `expected ${SECONDS}, got an array`],
    ['queuedTimeoutSeconds', {}, `expected ${SECONDS}, got an object`],
    ['start_timeout_seconds', true, `expected ${SECONDS}, got true`],
    ['startTimeoutSeconds', 10n, `expected ${SECONDS}, got the bigint 10n`],
    ['max_resume_run_attempts', 1.5, 'expected a whole number >= 0, got 1.5'],
    ['maxResumeRunAttempts', -1, 'expected a whole number >= 0, got -1'],
    ['unknown_health_tolerance', 2.5, 'expected a whole number >= 0, got 2.5'],
    [
      'unknownHealthTolerance',
      '3',
      'expected a whole number >= 0, got the string "3" (write the number without quotes)',
    ],
    ['health_check_concurrency', 0, 'expected a whole number >= 1, got 0'],
    ['healthCheckConcurrency', 2.5, 'expected a whole number >= 1, got 2.5'],
    ['shard_size', 0, 'expected a whole number >= 1, got 0'],
    ['shardSize', -5, 'expected a whole number >= 1, got -5'],
    ['poll_interval_seconds', 0, `expected ${INTERVAL}, got 0`],
    ['pollIntervalSeconds', -3, `expected ${INTERVAL}, got -3`],
    ['poll_interval_seconds', 3_000_000, `expected ${INTERVAL}, got 3000000`],
    ['feed_poll_interval_seconds', 0, `expected ${INTERVAL}, got 0`],
    ['store_retry_seconds', 0, `expected ${INTERVAL}, got 0`],
    ['storeRetrySeconds', '5', `expected ${INTERVAL}, got the string "5" (write the number without quotes)`],
    ['launcher_timeout_seconds', -1, `expected ${SECONDS} and <= 2147483, got -1`],
    ['launcherTimeoutSeconds', 1e9, `expected ${SECONDS} and <= 2147483, got 1000000000`],
    ['lease_seconds', 0, `expected ${INTERVAL}, got 0`],
    ['leaseSeconds', '15', `expected ${INTERVAL}, got the string "15" (write the number without quotes)`],
  ])('%s = %o', (key, value, message) => {
    const error = configError({ [key]: value });
    expect(error.issues).toEqual([{ path: key, message }]);
    expect(error.message).toBe(`Invalid monitor configuration: ${key}: ${message}.`);
  });

  it('accepts the largest interval Node timers can hold', () => {
    expect(parseMonitorConfig({ poll_interval_seconds: 2_147_483 }).pollIntervalSeconds).toBe(2_147_483);
  });

  it('reports every problem at once, in input order', () => {
    const error = configError({
      run_monitoring: {
        enabled: 'no',
        start_timeout_seconds: -5,
        bogus: 1,
        poll_interval_seconds: 0,
      },
    });
    expect(error.issues.map((i) => i.path)).toEqual([
      'run_monitoring.enabled',
      'run_monitoring.start_timeout_seconds',
      'run_monitoring.bogus',
      'run_monitoring.poll_interval_seconds',
    ]);
    expect(error.message).toBe(
      [
        'Invalid monitor configuration (4 problems):',
        '  - run_monitoring.enabled: expected true or false, got the string "no".',
        `  - run_monitoring.start_timeout_seconds: expected ${SECONDS}, got -5.`,
        `  - run_monitoring.bogus: unknown key; known keys are ${Object.values(SNAKE_CASE_KEYS).join(', ')}.`,
        `  - run_monitoring.poll_interval_seconds: expected ${INTERVAL}, got 0.`,
      ].join('\n'),
    );
  });

  it('max resume attempts > 0 with a launcher that cannot resume', () => {
    const error = configError({ run_monitoring: { max_resume_run_attempts: 3 } }, { supportsResume: false });
    expect(error.message).toBe(
      'Invalid monitor configuration: run_monitoring.max_resume_run_attempts: the launcher cannot resume runs (supportsResume is false), so this must be 0; got 3.',
    );
    expect(configError({ maxResumeRunAttempts: 1 }, { supportsResume: false }).issues).toEqual([
      {
        path: 'maxResumeRunAttempts',
        message: 'the launcher cannot resume runs (supportsResume is false), so this must be 0; got 1',
      },
    ]);
  });

  it('both spellings of one field', () => {
    const error = configError({ startTimeoutSeconds: 10, start_timeout_seconds: 10 });
    expect(error.issues).toEqual([
      {
        path: 'start_timeout_seconds',
        message: 'given twice, as startTimeoutSeconds and start_timeout_seconds: use one spelling',
      },
    ]);
    expect(configError({ run_monitoring: { shard_size: 4, shardSize: 4 } }).message).toBe(
      'Invalid monitor configuration: run_monitoring.shardSize: given twice, as run_monitoring.shard_size and run_monitoring.shardSize: use one spelling.',
    );
  });
});

describe('parseMonitorConfig: unknown keys', () => {
  it.each<[Record<string, unknown>, string, string]>([
    [{ start_timeout: 1 }, 'start_timeout', 'unknown key (did you mean start_timeout_seconds?)'],
    [{ startTimeout: 1 }, 'startTimeout', 'unknown key (did you mean startTimeoutSeconds?)'],
    [{ StartTimeoutSeconds: 1 }, 'StartTimeoutSeconds', 'unknown key (did you mean startTimeoutSeconds?)'],
    [
      { 'start-timeout-seconds': 1 },
      'start-timeout-seconds',
      'unknown key (did you mean start_timeout_seconds?)',
    ],
    [
      { cancel_timout_seconds: 1 },
      'cancel_timout_seconds',
      'unknown key (did you mean cancel_timeout_seconds?)',
    ],
    [{ max_runtime: 1 }, 'max_runtime', 'unknown key (did you mean max_runtime_seconds?)'],
    [{ maxResumeAttempts: 1 }, 'maxResumeAttempts', 'unknown key (did you mean maxResumeRunAttempts?)'],
    [
      { run_monitoring: { pol_interval_seconds: 1 } },
      'run_monitoring.pol_interval_seconds',
      'unknown key (did you mean poll_interval_seconds?)',
    ],
    [
      { freeSlotsAfterRunEndSeconds: 1 },
      'freeSlotsAfterRunEndSeconds',
      'unknown key (did you mean free_slots_after_run_end_seconds?)',
    ],
  ])('%o', (input, path, message) => {
    expect(configError(input).issues).toEqual([{ path, message }]);
  });

  it('lists the known keys, in the caller’s style, when nothing is close', () => {
    expect(configError({ zzz: 1 }).issues[0]!.message).toBe(
      `unknown key; known keys are ${Object.values(SNAKE_CASE_KEYS).join(', ')}`,
    );
    expect(configError({ somethingElse: 1 }).issues[0]!.message).toBe(
      `unknown key; known keys are ${Object.keys(DEFAULT_CONFIG).join(', ')}`,
    );
  });

  it('names each unknown key', () => {
    const error = configError({ a_thing: 1, startTimeoutSeconds: 3, other: 2 });
    expect(error.issues.map((i) => i.path)).toEqual(['a_thing', 'other']);
    expect(error.message).toMatch(
      /^Invalid monitor configuration \(2 problems\):\n {2}- a_thing: unknown key/,
    );
  });

  it('an own "__proto__" key is just an unknown key', () => {
    const error = configError(JSON.parse('{"__proto__": {"enabled": false}}'));
    expect(error.issues.map((i) => i.path)).toEqual(['__proto__']);
  });

  it('keys next to the run_monitoring wrapper are refused', () => {
    const error = configError({ run_monitoring: { enabled: true }, run_launcher: {} });
    expect(error.issues).toEqual([
      {
        path: 'run_launcher',
        message:
          'unexpected next to run_monitoring: pass the run_monitoring block alone, or only its contents',
      },
    ]);
  });
});

describe('parseMonitorConfig: input shape', () => {
  it.each<[string, unknown, string]>([
    ['null', null, 'null'],
    ['an array', [], 'an array'],
    ['a string', 'enabled', 'the string "enabled"'],
    ['a number', 5, '5'],
    ['a Map', new Map(), 'an object'],
  ])('refuses %s', (_label, input, given) => {
    const error = configError(input);
    expect(error.message).toBe(
      `Invalid monitor configuration: expected an object (options, or a run_monitoring block), got ${given}.`,
    );
    expect(error.issues).toEqual([
      { path: '', message: `expected an object (options, or a run_monitoring block), got ${given}` },
    ]);
  });

  it('refuses a run_monitoring value that is not an object', () => {
    expect(configError({ run_monitoring: 'on' }).issues).toEqual([
      {
        path: 'run_monitoring',
        message: 'expected an object of run monitoring options, got the string "on"',
      },
    ]);
    expect(configError({ run_monitoring: [1] }).message).toBe(
      'Invalid monitor configuration: run_monitoring: expected an object of run monitoring options, got an array.',
    );
  });
});

describe('resolveMaxRuntimeSeconds', () => {
  const config = { ...DEFAULT_CONFIG, maxRuntimeSeconds: 600 };

  it('uses the configured default without tags', () => {
    expect(resolveMaxRuntimeSeconds({}, config)).toEqual({ seconds: 600 });
    expect(resolveMaxRuntimeSeconds({ other: '5' }, DEFAULT_CONFIG)).toEqual({ seconds: 0 });
  });

  it.each<[string, number]>([
    ['10', 10],
    ['2.5', 2.5],
    [' 30 ', 30],
    ['+7', 7],
    ['1e3', 1000],
    ['.5', 0.5],
    ['0', 0],
    ['0.0', 0],
  ])('the primary tag %o overrides the config', (value, seconds) => {
    expect(resolveMaxRuntimeSeconds({ [TAGS.maxRuntime]: value }, config)).toEqual({ seconds });
  });

  it('0 turns the limit off for that run even when the config sets one', () => {
    expect(resolveMaxRuntimeSeconds({ [TAGS.maxRuntime]: '0' }, config)).toEqual({ seconds: 0 });
    expect(resolveMaxRuntimeSeconds({ [TAGS.maxRuntimeAlias]: '0' }, config)).toEqual({ seconds: 0 });
  });

  it('the alias applies alone', () => {
    expect(resolveMaxRuntimeSeconds({ 'runwarden/max_runtime_seconds': '45' }, config)).toEqual({
      seconds: 45,
    });
  });

  it('the primary wins when both are valid', () => {
    expect(
      resolveMaxRuntimeSeconds(
        { 'runwarden/max_runtime': '20', 'runwarden/max_runtime_seconds': '45' },
        config,
      ),
    ).toEqual({ seconds: 20 });
  });

  it.each(['', 'abc', '-1', '-0', 'Infinity', 'NaN', '0x10', '1e400', '10s', '1,5', '5 5'])(
    'an invalid value %o is reported and the configured default applies',
    (value) => {
      expect(resolveMaxRuntimeSeconds({ [TAGS.maxRuntime]: value }, config)).toEqual({
        seconds: 600,
        invalid: { tag: 'runwarden/max_runtime', value },
      });
      expect(resolveMaxRuntimeSeconds({ [TAGS.maxRuntimeAlias]: value }, DEFAULT_CONFIG)).toEqual({
        seconds: 0,
        invalid: { tag: 'runwarden/max_runtime_seconds', value },
      });
    },
  );

  it('an invalid primary falls back to a valid alias, and is still reported', () => {
    expect(
      resolveMaxRuntimeSeconds(
        { 'runwarden/max_runtime': 'soon', 'runwarden/max_runtime_seconds': '45' },
        config,
      ),
    ).toEqual({ seconds: 45, invalid: { tag: 'runwarden/max_runtime', value: 'soon' } });
  });

  it('a valid primary hides an invalid alias', () => {
    expect(
      resolveMaxRuntimeSeconds(
        { 'runwarden/max_runtime': '20', 'runwarden/max_runtime_seconds': 'x' },
        config,
      ),
    ).toEqual({ seconds: 20 });
  });

  it('both invalid: the primary is reported, the default applies', () => {
    expect(
      resolveMaxRuntimeSeconds(
        { 'runwarden/max_runtime': 'x', 'runwarden/max_runtime_seconds': 'y' },
        config,
      ),
    ).toEqual({ seconds: 600, invalid: { tag: 'runwarden/max_runtime', value: 'x' } });
  });

  // `runwarden launch` refuses a tag with parseMaxRuntimeTag: it must refuse exactly what the monitor ignores.
  it.each([
    '',
    '  ',
    'abc',
    '-5',
    '-0',
    '1e400',
    '0x10',
    '0b1',
    '0o7',
    'Infinity',
    '10s',
    '1_000',
    '10',
    '0',
    '2.5',
    ' 30 ',
    '1e3',
  ])('parseMaxRuntimeTag(%o) agrees with resolveMaxRuntimeSeconds, for both tags', (value) => {
    const seconds = parseMaxRuntimeTag(value);
    for (const tag of MAX_RUNTIME_TAGS) {
      const resolved = resolveMaxRuntimeSeconds({ [tag]: value }, config);
      expect(resolved).toEqual(
        seconds === undefined ? { seconds: 600, invalid: { tag, value } } : { seconds },
      );
    }
  });

  it('parseMaxRuntimeTag refuses the values Number() would take', () => {
    for (const value of ['', '0x10', '-5', '1e400', 'Infinity', ' '])
      expect(parseMaxRuntimeTag(value)).toBeUndefined();
    expect(Number('0x10')).toBe(16);
    expect(parseMaxRuntimeTag('600')).toBe(600);
    expect(MAX_RUNTIME_TAGS).toEqual(['runwarden/max_runtime', 'runwarden/max_runtime_seconds']);
  });

  it('ignores inherited properties', () => {
    const tags = Object.create({ [TAGS.maxRuntime]: '5' }) as Record<string, string>;
    expect(resolveMaxRuntimeSeconds(tags, config)).toEqual({ seconds: 600 });
  });
});
