// The input types of the monitor configuration. `npm run typecheck` compiles this file, so every
// `@ts-expect-error` below is a test: it fails the type check if the line after it compiles. At run time the
// same inputs go through parseMonitorConfig, which must agree with the types.
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  type CrashBrakeConfig,
  type DagsterRunMonitoringConfig,
  DEFAULT_CONFIG,
  type MonitorConfig,
  type MonitorConfigInput,
  type MonitorConfigOptions,
  parseMonitorConfig,
  SNAKE_CASE_KEYS,
  type WrappedRunMonitoringConfig,
} from '../src/core/config.js';
import { ConfigError } from '../src/core/errors.js';

describe('MonitorConfigOptions', () => {
  it('takes camelCase options, the snake_case block and the wrapped block', () => {
    const camel: MonitorConfigOptions = { startTimeoutSeconds: 10, maxRuntimeSeconds: undefined };
    const snake: MonitorConfigOptions = { start_timeout_seconds: 10, free_slots_after_run_end_seconds: 60 };
    const wrapped: MonitorConfigOptions = { run_monitoring: { start_timeout_seconds: 10, shard_size: 4 } };
    for (const input of [camel, snake, wrapped]) {
      expect(parseMonitorConfig(input).startTimeoutSeconds).toBe(10);
    }
  });

  it('refuses a misspelt key or a value of the wrong type, at compile time as at run time', () => {
    const refused: unknown[] = [
      // @ts-expect-error a typo in a camelCase key
      { startTimoutSeconds: 10 } satisfies MonitorConfigOptions,
      // @ts-expect-error a number written as a string
      { startTimeoutSeconds: '10' } satisfies MonitorConfigOptions,
      // @ts-expect-error a typo in a snake_case key
      { start_timout_seconds: 10 } satisfies MonitorConfigOptions,
      // @ts-expect-error a boolean written as a string, inside the wrapper
      { run_monitoring: { enabled: 'true' } } satisfies MonitorConfigOptions,
    ];
    for (const input of refused) expect(() => parseMonitorConfig(input)).toThrow(ConfigError);
  });

  it('is the union of the three shapes', () => {
    expectTypeOf<MonitorConfigOptions>().toEqualTypeOf<
      MonitorConfigInput | DagsterRunMonitoringConfig | WrappedRunMonitoringConfig
    >();
    expectTypeOf<MonitorConfigInput>().toEqualTypeOf<
      Partial<Omit<MonitorConfig, 'crashBrake'>> & { crashBrake?: Partial<CrashBrakeConfig> }
    >();
    expectTypeOf<WrappedRunMonitoringConfig>().toEqualTypeOf<{
      run_monitoring: DagsterRunMonitoringConfig;
    }>();
  });
});

describe('DagsterRunMonitoringConfig', () => {
  type Snake = typeof SNAKE_CASE_KEYS;

  it('has the snake_case spelling of every MonitorConfig key, with the same value type', () => {
    expectTypeOf<keyof DagsterRunMonitoringConfig>().toEqualTypeOf<
      | 'enabled'
      | 'start_timeout_seconds'
      | 'cancel_timeout_seconds'
      | 'max_runtime_seconds'
      | 'heartbeat_timeout_seconds'
      | 'progress_timeout_seconds'
      | 'max_resume_run_attempts'
      | 'poll_interval_seconds'
      | 'terminate_on_start_timeout'
      | 'unknown_health_tolerance'
      | 'queued_timeout_seconds'
      | 'launcher_timeout_seconds'
      | 'health_check_concurrency'
      | 'feed_poll_interval_seconds'
      | 'store_retry_seconds'
      | 'shard_size'
      | 'crash_brake'
      | 'dry_run'
      | 'lease_seconds'
      | 'free_slots_after_run_end_seconds'
    >();
    expectTypeOf<DagsterRunMonitoringConfig['enabled']>().toEqualTypeOf<boolean | undefined>();
    expectTypeOf<DagsterRunMonitoringConfig['shard_size']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<Snake>().toEqualTypeOf<Readonly<Record<keyof MonitorConfig, string>>>();
  });

  it('agrees with the runtime table: SNAKE_CASE_KEYS and DEFAULT_CONFIG cover the same keys', () => {
    const everyKey: Required<DagsterRunMonitoringConfig> = {
      enabled: true,
      start_timeout_seconds: 1,
      cancel_timeout_seconds: 1,
      max_runtime_seconds: 1,
      heartbeat_timeout_seconds: 1,
      progress_timeout_seconds: 1,
      max_resume_run_attempts: 1,
      poll_interval_seconds: 1,
      terminate_on_start_timeout: true,
      unknown_health_tolerance: 1,
      queued_timeout_seconds: 1,
      launcher_timeout_seconds: 1,
      health_check_concurrency: 1,
      feed_poll_interval_seconds: 1,
      store_retry_seconds: 1,
      shard_size: 1,
      crash_brake: { ratio: 0.5, min_runs: 2, max_hold_seconds: 3 },
      dry_run: true,
      lease_seconds: 1,
      free_slots_after_run_end_seconds: 1,
    };
    const { free_slots_after_run_end_seconds: _ignored, ...ours } = everyKey;
    expect(Object.keys(ours).sort()).toEqual(Object.values(SNAKE_CASE_KEYS).sort());
    expect(Object.keys(SNAKE_CASE_KEYS)).toEqual(Object.keys(DEFAULT_CONFIG));
    expect(parseMonitorConfig(everyKey)).toMatchObject({
      enabled: true,
      shardSize: 1,
      crashBrake: { ratio: 0.5, minRuns: 2, maxHoldSeconds: 3 },
      dryRun: true,
    });
  });
});
