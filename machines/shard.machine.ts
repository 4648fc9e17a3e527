// A shard owns a bounded number of run actors. XState copies a parent's `children` map on every spawn and
// stop, so the supervisor never spawns runs itself: it fills one shard up to `shardSize`, seals it, opens
// the next, and stops a sealed shard once its last run has finished.
import { type ActorRefFrom, assign, enqueueActions, sendParent, setup, stopChild } from 'xstate';
import { partitionOf } from '../src/stores/contract.js';
import { type RunInput, type RunMachineEvent, runMachine } from './run.machine.js';

/** Run actors register under this system id, so anyone holding the system can route to them in O(1). */
export const runSystemId = (runId: string) => `run:${runId}`;

export interface ShardContext {
  shardId: string;
  running: number;
  /** Run actors spawned so far; the next one's child id. */
  spawned: number;
  sealed: boolean;
}

/** A run for the shard to watch, and an event to hand its actor once spawned (a health result). */
export interface RunSpawn {
  input: RunInput;
  followUp?: RunMachineEvent | undefined;
}

export type ShardEvent =
  | { type: 'runs.spawn'; runs: RunSpawn[] }
  | { type: 'shard.seal' }
  | RunsReleaseEvent
  | { type: 'xstate.done.actor.*'; actorId: string }
  | { type: 'xstate.error.actor.*'; actorId: string; error: unknown };

/**
 * Another monitor owns these partitions now (several monitors on one store): their run actors stop at once,
 * without acting. Deadlines are absolute, so the new owner arms the same ones.
 */
export interface RunsReleaseEvent {
  type: 'runs.release';
  partitions: number[];
}

/** A run actor that threw; `runId` is read from its last snapshot (its child id is only a slot number). */
export interface RunActorError {
  runId: string | undefined;
  error: unknown;
}

/** The run behind an `xstate.error.actor.*` event the shard received. */
export function failedRun(
  shard: { getSnapshot(): { children: Record<string, unknown> } },
  event: { actorId: string; error: unknown },
): RunActorError {
  const child = shard.getSnapshot().children[event.actorId] as ActorRefFrom<typeof runMachine> | undefined;
  return { runId: child?.getSnapshot().context.run.runId, error: event.error };
}

export type ShardParentEvent = { type: 'shard.drained'; shardId: string };

export const shardMachine = setup({
  types: {
    context: {} as ShardContext,
    events: {} as ShardEvent,
    input: {} as { shardId: string },
  },
  actors: { run: runMachine },
  actions: {
    // One event per batch, not per run: a shard's macrostep costs about as much as spawning a run.
    spawnRuns: enqueueActions(({ context, event, enqueue, system }) => {
      if (event.type !== 'runs.spawn') return;
      let { running, spawned } = context;
      for (const { input, followUp } of event.runs) {
        // One system id string per run, for the lookups and the registration.
        const systemId = runSystemId(input.run.runId);
        // Two updates for a new run can cross: the second one finds the actor the first one spawned.
        const existing = system.get(systemId);
        if (existing) {
          const update: RunMachineEvent = { type: 'run.updated', run: input.run };
          enqueue.sendTo(existing, update);
        } else {
          // Child ids are slot numbers, not run ids: XState copies `children` on every spawn and stop, and
          // V8 copies integer-keyed objects as flat arrays but builds new hidden classes for string keys
          // (150 µs against 7 µs per stop at 128 children). Routing uses the system id.
          enqueue.spawnChild('run', { id: String(spawned), systemId, input });
          spawned += 1;
          running += 1;
        }
        if (followUp) enqueue(({ system: sys }) => sys.get(systemId)?.send(followUp));
      }
      enqueue.assign({ running, spawned });
    }),
    // Two plain action creators: a finished run is stopped and counted the same way every time.
    stopFinishedRun: stopChild(({ event }) => (event as { actorId: string }).actorId),
    countFinishedRun: assign({ running: ({ context }) => context.running - 1 }),
    releaseRuns: enqueueActions(({ event, enqueue, self }) => {
      if (event.type !== 'runs.release') return;
      const partitions = new Set(event.partitions);
      let released = 0;
      for (const child of Object.values(self.getSnapshot().children)) {
        const run = (child as ActorRefFrom<typeof runMachine>).getSnapshot().context.run;
        if (!partitions.has(partitionOf(run.runId))) continue;
        enqueue(stopChild(child as ActorRefFrom<typeof runMachine>));
        released += 1;
      }
      if (released > 0) enqueue.assign({ running: ({ context }) => context.running - released });
    }),
    // Host-provided: log a run actor that failed. The shard drops it; the next sweep spawns a fresh one.
    // (`failedRun` says which run it was.)
    reportRunActorError: () => {},
    seal: assign({ sealed: true }),
    reportDrained: sendParent(({ context }): ShardParentEvent => ({
      type: 'shard.drained',
      shardId: context.shardId,
    })),
  },
  guards: {
    drained: ({ context }) => context.sealed && context.running === 0,
    lastRunOfSealed: ({ context }) => context.sealed && context.running === 1,
  },
}).createMachine({
  id: 'shard',
  context: ({ input }) => ({ shardId: input.shardId, running: 0, spawned: 0, sealed: false }),
  initial: 'active',
  states: {
    active: {
      on: {
        'runs.spawn': { actions: 'spawnRuns' },
        // Decided here rather than in `checking`: one microstep per finished run instead of two.
        'xstate.done.actor.*': [
          { guard: 'lastRunOfSealed', actions: ['stopFinishedRun', 'countFinishedRun'], target: 'drained' },
          { actions: ['stopFinishedRun', 'countFinishedRun'] },
        ],
        // One run's failure stays with that run: without this the error would stop the shard, then the
        // supervisor, and with it the monitoring of every run.
        'xstate.error.actor.*': {
          actions: ['reportRunActorError', 'stopFinishedRun', 'countFinishedRun'],
          target: 'checking',
        },
        'shard.seal': { actions: 'seal', target: 'checking' },
        'runs.release': { actions: 'releaseRuns', target: 'checking' },
      },
    },
    checking: {
      always: [{ guard: 'drained', target: 'drained' }, { target: 'active' }],
    },
    drained: { entry: 'reportDrained', type: 'final' },
  },
});
