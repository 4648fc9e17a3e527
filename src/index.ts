// runwarden: run monitoring for TypeScript hosts.
export { messages } from '../machines/messages.js';
export {
  type RunContext,
  type RunInput,
  type RunSettings,
  runMachine,
  runSettings,
  runTiming,
} from '../machines/run.machine.js';
export { runSystemId, shardMachine } from '../machines/shard.machine.js';
export { supervisorMachine } from '../machines/supervisor.machine.js';
export { realClock } from './core/clock.js';
export {
  type CrashBrakeConfig,
  type DagsterCrashBrakeConfig,
  type DagsterRunMonitoringConfig,
  DEFAULT_CONFIG,
  type MonitorConfig,
  type MonitorConfigInput,
  type MonitorConfigOptions,
  parseMonitorConfig,
  resolveMaxRuntimeSeconds,
  type WrappedRunMonitoringConfig,
} from './core/config.js';
export * from './core/errors.js';
export { MemoryRunStore } from './stores/memory/memory-store.js';
export { LeaseLostError, PARTITION_COUNT, partitionOf } from './stores/contract.js';
export type { MonitorLogger } from './monitor/logger.js';
export { createRunMonitor, type RunMonitor, type RunMonitorOptions } from './monitor/monitor.js';
export type { MetricsRegistry } from './monitor/metrics.js';
export {
  ATTEMPT_TAG,
  COMMAND_TAG,
  PID_START_TAG,
  PID_TAG,
  PROCESS_LAUNCHER_TAGS,
  ProcessRunLauncher,
  type ProcessRunLauncherOptions,
  WORKER_ENV,
  WRAP_TAG,
} from './launchers/process/process-launcher.js';
export {
  migrateSqlite,
  SQLITE_MIGRATIONS,
  SQLITE_SCHEMA_VERSION,
  type SqliteMigration,
  SqliteRunStore,
  type SqliteRunStoreOptions,
  StoreBusyError,
} from './stores/sqlite/sqlite-store.js';
export {
  type PostgresConnection,
  PostgresRunStore,
  type PostgresRunStoreOptions,
} from './stores/postgres/postgres-store.js';
export type { PostgresClient, PostgresPool, PostgresQueryResult } from './stores/postgres/pg-types.js';
export { StoreUnavailableError } from './stores/postgres/connection-error.js';
export {
  formatStoreUrl,
  type OpenStoreOptions,
  openStore,
  parseStoreUrl,
  STORE_ENV,
  type StoreLocation,
} from './stores/store-url.js';
export * from './core/types.js';
