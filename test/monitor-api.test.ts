// The embedding surface of createRunMonitor: what it refuses, what it accepts, and the XState internals
// its scheduler relies on.
import { afterEach, describe, expect, it } from 'vitest';
import { createActor, createMachine, SimulatedClock } from 'xstate';
import { RunwardenError } from '../src/core/errors.js';
import { createRunMonitor, type RunMonitor } from '../src/monitor/monitor.js';
import type { MonitorLogger } from '../src/monitor/logger.js';
import { installIndexedScheduler } from '../src/monitor/scheduler.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { FakeLauncher } from '../src/testing/index.js';
import { newClock, SECOND } from './harness.js';

const monitors: RunMonitor[] = [];
afterEach(async () => {
  for (const m of monitors.splice(0)) await m.stop();
});

describe('launch after stop', () => {
  it('is refused clearly, and no worker is started', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const launcher = new FakeLauncher();
    const monitor = createRunMonitor({ store, launcher, clock });
    await monitor.start();
    await monitor.stop();
    const { runId } = await store.createRun({});
    const refused = await monitor.launch(runId).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(RunwardenError);
    expect((refused as RunwardenError).code).toBe('MONITOR_STOPPED');
    expect((refused as Error).message).toContain(runId);
    expect(launcher.calls.launch).toEqual([]);
    expect((await store.getRun(runId))?.status).toBe('NOT_STARTED');
  });

  it('a monitor started again after stop launches again; one never started launches (the CLI does)', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const launcher = new FakeLauncher();
    const never = createRunMonitor({ store, launcher, clock });
    expect((await never.launch((await store.createRun({})).runId)).status).toBe('STARTING');
    const restarted = createRunMonitor({ store, launcher, clock });
    monitors.push(restarted);
    await restarted.start();
    await restarted.stop();
    await restarted.start();
    expect((await restarted.launch((await store.createRun({})).runId)).status).toBe('STARTING');
  });
});

describe('logger', () => {
  it('accepts any logger with pino’s method shape and logs the monitor’s decisions through it', async () => {
    const lines: { level: string; message: string; runId?: unknown }[] = [];
    const logger = (bindings: Record<string, unknown> = {}): MonitorLogger => {
      const at =
        (level: string) =>
        (first: unknown, second?: string): void => {
          const message = typeof first === 'string' ? first : (second ?? '');
          lines.push({ level, message, runId: bindings.runId });
        };
      return {
        info: at('info'),
        warn: at('warn'),
        error: at('error'),
        debug: at('debug'),
        child: (more) => logger({ ...bindings, ...more }),
      };
    };
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const monitor = createRunMonitor({
      store,
      launcher: new FakeLauncher(),
      clock,
      logger: logger(),
      config: { startTimeoutSeconds: 10 },
    });
    monitors.push(monitor);
    const { runId } = await store.createRun({});
    await monitor.start();
    clock.increment(10 * SECOND);
    await monitor.settle();
    expect(lines.map((l) => l.message)).toContain('Run monitor started.');
    expect(lines.find((l) => l.runId === runId && l.level === 'info')?.message).toContain(
      'it was never launched',
    );
  });
});

describe('the indexed scheduler and the XState internals it relies on', () => {
  it('installs on this XState version (a change of its internals fails here, not silently)', () => {
    const clock = new SimulatedClock();
    const actor = createActor(createMachine({}), { clock });
    expect(installIndexedScheduler(actor.system, clock)).toBeUndefined();
  });

  it('delivers delayed events through the system, and cancels them with the actor that scheduled them', () => {
    const clock = new SimulatedClock();
    const machine = createMachine({
      initial: 'a',
      states: { a: { after: { 1000: 'b' } }, b: { after: { 1000: 'c' } }, c: {} },
    });
    const actor = createActor(machine, { clock });
    expect(installIndexedScheduler(actor.system, clock)).toBeUndefined();
    actor.start();
    clock.increment(1000);
    expect(actor.getSnapshot().value).toBe('b');
    actor.stop(); // its pending timer goes with it
    clock.increment(1000);
    expect(actor.getSnapshot().value).toBe('b');
  });

  it('says which internal is missing when XState changes', () => {
    const clock = new SimulatedClock();
    const actor = createActor(createMachine({}), { clock });
    delete (actor.system as unknown as { _relay?: unknown })._relay;
    expect(installIndexedScheduler(actor.system, clock)).toBe('system._relay is not a function');
  });
});
