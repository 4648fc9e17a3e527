// The real host (createRunMonitor over a MemoryRunStore and a FakeLauncher) with two test-side controls:
// the monitor's store writes take scripted outcomes, and its terminate / resume / debugInfo calls wait
// until the test says how they end. Coverage is read from the real actors' microsteps.
import type { Logger } from 'pino';
import type { AnyActorRef, InspectionEvent } from 'xstate';
import { SimulatedClock } from 'xstate';
import type { MonitorConfig } from '../../src/core/config.js';
import { RunwardenError } from '../../src/core/errors.js';
import { MemoryRunStore } from '../../src/stores/memory/memory-store.js';
import { createRunMonitor, type RunMonitor } from '../../src/monitor/monitor.js';
import { FakeLauncher } from '../../src/testing/index.js';
import type {
  EngineEventInput,
  FencedWrite,
  RunRecord,
  RunStatus,
  TransitionChange,
} from '../../src/core/types.js';
import { type EdgeKey, edgeKey } from './edges.js';

export type StoreOutcome =
  | { kind: 'ok' }
  | { kind: 'error' }
  | { kind: 'lose'; to: RunStatus }
  /** The run is no longer in the store (deleted behind the monitor's back). */
  | { kind: 'gone' }
  /** For a re-read: the worker heartbeated (with progress) just before, later than anything stored. */
  | { kind: 'beat' };

const busy = () => new RunwardenError('STORE_BUSY', 'scripted: database is locked');

/** A MemoryRunStore whose writes made by the monitor follow a script; `outside` writes like a worker. */
class ScriptedStore extends MemoryRunStore {
  readonly script = {
    transition: [] as StoreOutcome[],
    appendEvent: [] as StoreOutcome[],
    incrementResumeAttempts: [] as StoreOutcome[],
    /** For the monitor's re-reads: 'error' fails it, 'lose' lets a worker's write land just before. */
    getRun: [] as StoreOutcome[],
  };
  private outsideWrite = false;
  /** How long ago writes by others happened: long enough that every deadline they start has passed. */
  outsideAgeMs = 0;

  constructor(private readonly simulated: SimulatedClock) {
    super({ clock: simulated });
  }

  /** A write by someone other than the monitor (a worker, another process): never scripted. */
  async outside(runId: string, change: TransitionChange): Promise<RunRecord | undefined> {
    this.outsideWrite = true;
    try {
      return await super.transition(runId, { at: this.simulated.now() - this.outsideAgeMs, ...change });
    } finally {
      this.outsideWrite = false;
    }
  }

  override async transition(runId: string, change: TransitionChange): Promise<RunRecord | undefined> {
    if (this.outsideWrite) return super.transition(runId, change);
    const outcome = this.script.transition.shift();
    if (outcome?.kind === 'error') throw busy();
    if (outcome?.kind === 'lose') await this.outside(runId, { to: outcome.to });
    return super.transition(runId, change);
  }

  override async appendEvent(runId: string, event: EngineEventInput) {
    if (this.script.appendEvent.shift()?.kind === 'error') throw busy();
    return super.appendEvent(runId, event);
  }

  override async incrementResumeAttempts(runId: string, options?: FencedWrite): Promise<number> {
    if (this.script.incrementResumeAttempts.shift()?.kind === 'error') throw busy();
    return super.incrementResumeAttempts(runId, options);
  }

  override async getRun(runId: string): Promise<RunRecord | undefined> {
    const outcome = this.script.getRun.shift();
    if (outcome?.kind === 'error') throw busy();
    if (outcome?.kind === 'gone') return undefined;
    if (outcome?.kind === 'lose') await this.outside(runId, { to: outcome.to });
    if (outcome?.kind === 'beat') {
      // Later than the run's own timestamps (written as old as the others' writes), yet just as old.
      await super.heartbeat(runId, { at: this.simulated.now() - this.outsideAgeMs + 1, progress: true });
    }
    return super.getRun(runId);
  }

  /** For the test's own assertions: never consumes the script. */
  getRunUnscripted(runId: string): Promise<RunRecord | undefined> {
    return super.getRun(runId);
  }

  unusedScript(): string[] {
    return Object.entries(this.script)
      .filter(([, queue]) => queue.length > 0)
      .map(([method]) => method);
  }
}

type HeldCall = 'terminate' | 'resume' | 'debugInfo';
interface Held {
  call: HeldCall;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** A FakeLauncher whose terminate / resume / debugInfo calls wait to be released by the test. */
class HeldLauncher extends FakeLauncher {
  readonly held: Held[] = [];

  private hold<T>(call: HeldCall): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.held.push({ call, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  release(call: HeldCall, outcome: { value?: unknown } | { error: true }): void {
    const index = this.held.findIndex((h) => h.call === call);
    if (index < 0) throw new Error(`no ${call} call is waiting to be released`);
    const [held] = this.held.splice(index, 1);
    if ('error' in outcome) held?.reject(new Error(`scripted: ${call} failed`));
    else held?.resolve(outcome.value);
  }

  /** The monitor gave up on the call (launcher timeout): it will never be released. */
  abandon(call: HeldCall): void {
    const index = this.held.findIndex((h) => h.call === call);
    if (index >= 0) this.held.splice(index, 1);
  }

  override async terminate(run: RunRecord): Promise<boolean> {
    await super.terminate(run);
    return this.hold<boolean>('terminate');
  }

  override async resume(run: RunRecord, attempt: number): Promise<void> {
    await super.resume(run, attempt);
    return this.hold<void>('resume');
  }

  override async debugInfo(run: RunRecord): Promise<string | undefined> {
    await super.debugInfo(run);
    return this.hold<string | undefined>('debugInfo');
  }
}

/** Edges taken by the real actors, by machine id. */
export class EdgeRecorder {
  readonly taken = new Map<string, Set<EdgeKey>>();
  /** The latest state value of each run actor (by run id) and of the supervisor ('supervisor'). */
  readonly runStates = new Map<string, unknown>();

  readonly inspect = (event: InspectionEvent) => {
    if (event.type !== '@xstate.microstep' && event.type !== '@xstate.snapshot') return;
    const actor = event.actorRef as AnyActorRef;
    const machineId = machineIdOf(actor);
    if (!machineId) return;
    if (event.type === '@xstate.microstep') {
      let edges = this.taken.get(machineId);
      if (!edges) {
        edges = new Set();
        this.taken.set(machineId, edges);
      }
      for (const t of event._transitions) edges.add(edgeKey(t));
    } else if (machineId === 'run' || machineId === 'supervisor') {
      const snapshot = event.snapshot as unknown as {
        value: unknown;
        status: string;
        context: { run?: { runId: string } };
      };
      // Run actors' ids are shard slot numbers; the run id is in their context.
      const key = machineId === 'run' ? (snapshot.context.run?.runId ?? actor.id) : machineId;
      this.runStates.set(key, snapshot.status === 'done' ? 'done' : snapshot.value);
    }
  };
}

function machineIdOf(actor: AnyActorRef | { id?: string }): string | undefined {
  const logic = (actor as unknown as { logic?: { id?: string } }).logic;
  return logic?.id;
}

export interface Environment {
  clock: SimulatedClock;
  store: ScriptedStore;
  launcher: HeldLauncher;
  monitor: RunMonitor;
  /** Settles, nudging simulated time by 0 ms until due timers have fired. */
  settle(): Promise<void>;
  advance(ms: number): Promise<void>;
}

export async function environment(
  config: Partial<MonitorConfig>,
  recorder: EdgeRecorder,
  logger?: Logger,
  outsideAgeMs = 0,
): Promise<Environment> {
  const clock = new SimulatedClock();
  clock.set(Date.UTC(2026, 0, 1));
  const store = new ScriptedStore(clock);
  store.outsideAgeMs = outsideAgeMs;
  const launcher = new HeldLauncher();
  const monitor = createRunMonitor({ store, launcher, clock, config, logger, inspect: recorder.inspect });
  const settle = async () => {
    await monitor.settle();
    for (let round = 0; round < 50; round++) {
      const before = (await store.latestSeq()) + launcher.held.length * 1e9;
      clock.increment(0);
      await monitor.settle();
      if ((await store.latestSeq()) + launcher.held.length * 1e9 === before) return;
    }
  };
  return {
    clock,
    store,
    launcher,
    monitor,
    settle,
    async advance(ms: number) {
      clock.increment(ms);
      await settle();
    },
  };
}
