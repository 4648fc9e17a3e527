// The XState floor: the least any one-actor-per-run monitor can cost on this machine. Each run is a
// two-state machine, its deadline an `after` transition into one effect (a promise actor), then final;
// runs are spawned into shards of 128, one event per shard, which stop finished runs. No routing, no
// feed, no settings, no effect tracking: what is left is XState creating, timing and stopping actors.
// Runwarden's own cost is the difference between this and its figure.
import { type Actor, createActor, enqueueActions, fromPromise, setup, stopChild } from 'xstate';
import {
  ACTIVE_STATUSES,
  type Clock,
  type RunRecord,
  type RunStatus,
  type RunStore,
} from '../src/core/types.js';
import { deadlineOf, FAR_SECONDS, pages } from './lib.js';

export interface XStateFloorOptions {
  store: RunStore;
  clock: Clock;
  statuses: RunStatus[];
  /** The run's deadline (epoch ms). */
  deadlineOf: (run: RunRecord) => number;
  /** What the run's deadline does: one effect. */
  act: (run: RunRecord) => Promise<unknown>;
  shardSize?: number;
}

interface FloorRunContext {
  run: RunRecord;
  deadline: number;
}

export function createXStateFloor(options: XStateFloorOptions) {
  const { store, clock, statuses, deadlineOf, act, shardSize = 128 } = options;
  const floorRun = setup({
    types: { context: {} as FloorRunContext, input: {} as FloorRunContext },
    actors: { act: fromPromise<unknown, RunRecord>(({ input }) => act(input)) },
    delays: { deadline: ({ context }) => Math.max(0, context.deadline - clock.now()) },
  }).createMachine({
    id: 'floorRun',
    context: ({ input }) => input,
    initial: 'armed',
    states: {
      armed: { after: { deadline: 'acting' } },
      acting: {
        invoke: { src: 'act', input: ({ context }) => context.run, onDone: 'done', onError: 'done' },
      },
      done: { type: 'final' },
    },
  });
  const floorShard = setup({
    types: {
      context: {} as { spawned: number },
      events: {} as
        { type: 'runs.spawn'; runs: FloorRunContext[] } | { type: 'xstate.done.actor.*'; actorId: string },
    },
    actors: { run: floorRun },
  }).createMachine({
    id: 'floorShard',
    context: { spawned: 0 },
    on: {
      'runs.spawn': {
        actions: enqueueActions(({ context, event, enqueue }) => {
          let { spawned } = context;
          for (const input of event.runs) enqueue.spawnChild('run', { id: String(spawned++), input });
          enqueue.assign({ spawned });
        }),
      },
      'xstate.done.actor.*': {
        actions: enqueueActions(({ event, enqueue }) => enqueue(stopChild(event.actorId))),
      },
    },
  });

  const shards: Actor<typeof floorShard>[] = [];
  return {
    async start(): Promise<void> {
      let batch: FloorRunContext[] = [];
      const flush = () => {
        const shard = createActor(floorShard, { clock }).start();
        shard.send({ type: 'runs.spawn', runs: batch });
        shards.push(shard);
        batch = [];
      };
      for await (const page of pages(store, statuses)) {
        for (const run of page) {
          batch.push({ run, deadline: deadlineOf(run) });
          if (batch.length === shardSize) flush();
        }
      }
      if (batch.length > 0) flush();
    },
    stop(): void {
      for (const shard of shards) shard.stop();
    },
  };
}

/** The floor over every active run, each armed FAR_SECONDS past its status timestamp (track, restore). */
export function createFarXStateFloor(store: RunStore, clock: Clock) {
  return createXStateFloor({
    store,
    clock,
    statuses: [...ACTIVE_STATUSES],
    deadlineOf: (run) => deadlineOf(run, FAR_SECONDS),
    act: (run) => store.transition(run.runId, { to: 'FAILURE', from: [run.status], message: 'deadline' }),
  });
}
