// runwarden: run monitoring for TypeScript hosts.
export { messages } from '../machines/messages.js';
export { type RunContext, type RunInput, type RunSettings, runMachine } from '../machines/run.machine.js';
export { runSystemId, shardMachine } from '../machines/shard.machine.js';
export { supervisorMachine } from '../machines/supervisor.machine.js';
export { realClock } from './clock.js';
export {
  DEFAULT_CONFIG,
  type MonitorConfig,
  parseMonitorConfig,
  resolveMaxRuntimeSeconds,
} from './config.js';
export * from './errors.js';
export { MemoryRunStore } from './memory-store.js';
export { createRunMonitor, type RunMonitor, type RunMonitorOptions } from './monitor.js';
export * from './types.js';
