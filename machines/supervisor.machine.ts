// The supervisor: routes store updates and health results to run actors (spawning one, in a shard, for
// every active run it has not seen), and runs the health poll as a delayed transition.
// Unknown run ids are ignored, never thrown: one bad event must not stop the supervisor.
import { type AnyActorRef, assign, enqueueActions, fromCallback, setup, stopChild } from 'xstate';
import type { HealthResult, RunRecord } from '../src/core/types.js';
import { isTerminal, RUN_STATUSES } from '../src/core/types.js';
import { newerRun, type RunInput, type RunMachineEvent } from './run.machine.js';
import {
  type RunSpawn,
  type RunsReleaseEvent,
  runSystemId,
  type ShardParentEvent,
  shardMachine,
} from './shard.machine.js';

export interface SupervisorInput {
  shardSize: number;
  pollIntervalSeconds: number;
  /** The host's clock: polls keep a fixed rate on it. */
  now: () => number;
  /** Pure: the run actor input for a record (settings + max runtime resolved from its tags). */
  runInput: (run: RunRecord) => RunInput;
}

export interface SupervisorContext extends SupervisorInput {
  /** When the next health poll is due: polls keep a fixed rate, poll k at start + k × pollInterval. */
  nextPollAt: number | undefined;
  openShardId: string | undefined;
  openShardRuns: number;
  shardsOpened: number;
}

export type SupervisorEvent =
  | { type: 'runs.updated'; runs: RunRecord[] }
  | { type: 'health.checked'; run: RunRecord; result: HealthResult }
  | { type: 'poll.done' }
  | RunsReleaseEvent
  | ShardParentEvent;

export interface PollHealthInput {
  /** Fire-and-forget events back to the supervisor: one `health.checked` per run, then `poll.done`. */
  readonly kind: 'pollHealth';
}

type Routed = { run: RunRecord; event?: RunMachineEvent };

/** The health poll's child id; shards count from 1. */
const POLL_ID = '0';

/** The first slot of the grid (slot, slot + interval, …) that lies after `at`; the first poll's is at + interval. */
function nextPollSlot(slot: number | undefined, at: number, interval: number): number {
  if (slot === undefined) return at + interval;
  const next = slot + interval;
  return next > at ? next : next + (Math.floor((at - next) / interval) + 1) * interval;
}

// enqueue() cannot see the sibling action names while setup() is being typed; the name is checked at runtime.
const reportBadRecord = (problem: string) => ({ type: 'reportBadRecord', params: { problem } }) as never;

/** Whether a run actor's copy of its record has this record's status (a read of its snapshot, no copy). */
function sameStatus(actor: AnyActorRef, run: RunRecord): boolean {
  const snapshot = actor.getSnapshot() as { context?: { run?: RunRecord } } | undefined;
  return snapshot?.context?.run?.status === run.status;
}

/** Why a record cannot be watched, or undefined when it can. */
function recordProblem(run: RunRecord | undefined): string | undefined {
  if (!run || typeof run.runId !== 'string' || run.runId === '') return 'a run record without a runId';
  if (!RUN_STATUSES.includes(run.status))
    return `run ${run.runId}: unknown status ${JSON.stringify(run.status)}`;
  if (!run.tags || typeof run.tags !== 'object') return `run ${run.runId}: tags missing`;
  return undefined;
}

export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
  },
  actors: {
    shard: shardMachine,
    // Provided by the host: sweeps every active run into `runs.updated`, then checks each STARTED run's
    // worker with bounded concurrency and a per-call timeout, sending results back as they come.
    pollHealth: fromCallback<{ type: 'stop' }, PollHealthInput>(({ sendBack }) => {
      sendBack({ type: 'poll.done' });
    }),
  },
  delays: {
    pollInterval: ({ context }) => Math.max(0, (context.nextPollAt ?? context.now()) - context.now()),
  },
  guards: {
    pollDue: ({ context }) => context.nextPollAt !== undefined && context.now() >= context.nextPollAt,
  },
  actions: {
    // A poll books the next slot of a fixed grid as it starts; one that overran its slot is followed at
    // once by the next, and slots missed entirely are skipped rather than run back to back.
    bookNextPoll: assign({
      nextPollAt: ({ context }) =>
        nextPollSlot(context.nextPollAt, context.now(), context.pollIntervalSeconds * 1000),
    }),
    route: enqueueActions(({ context, event, enqueue, system }) => {
      const routed: Routed[] = [];
      if (event.type === 'runs.updated') {
        // Keep the newest record per run: a batch may hold several updates of one run.
        const latest = new Map<string, RunRecord>();
        for (const run of event.runs) {
          const seen = latest.get(run.runId);
          latest.set(run.runId, seen ? newerRun(seen, run) : run);
        }
        for (const run of latest.values()) routed.push({ run });
      } else if (event.type === 'health.checked') {
        // The common case, a run whose actor has the record's status: it gets the supervisor's event itself,
        // which carries the record and the result; one run-actor event per check and nothing built here.
        const actor = recordProblem(event.run) ? undefined : system.get(runSystemId(event.run.runId));
        if (actor && sameStatus(actor, event.run)) {
          enqueue.sendTo(actor, event);
          return;
        }
        routed.push({ run: event.run, event });
      }

      let { openShardId, openShardRuns, shardsOpened } = context;
      // New runs go to their shard in one event per shard, sent before that shard is sealed.
      let spawns: RunSpawn[] = [];
      const sendSpawns = () => {
        if (openShardId !== undefined && spawns.length > 0) {
          enqueue.sendTo(openShardId, { type: 'runs.spawn', runs: spawns });
        }
        spawns = [];
      };
      for (const { run, event: followUp } of routed) {
        // A malformed record from a store is reported and skipped; it must not stop the supervisor.
        const problem = recordProblem(run);
        if (problem) {
          enqueue(reportBadRecord(problem));
          continue;
        }
        const actor = system.get(runSystemId(run.runId));
        if (actor) {
          const update: RunMachineEvent = { type: 'run.updated', run };
          enqueue.sendTo(actor, update);
          if (followUp) enqueue.sendTo(actor, followUp);
          continue;
        }
        if (isTerminal(run.status)) continue;
        // Only a run about to be spawned needs its settings; a health poll routes every run, so resolving
        // them for runs that already have an actor was garbage per check.
        let input: RunInput;
        try {
          input = context.runInput(run);
        } catch (error) {
          enqueue(reportBadRecord(`run ${run.runId}: ${String(error)}`));
          continue;
        }
        if (openShardId === undefined || openShardRuns >= context.shardSize) {
          sendSpawns();
          if (openShardId !== undefined) enqueue.sendTo(openShardId, { type: 'shard.seal' });
          shardsOpened += 1;
          // Numbers as child ids, here and for the poll: XState copies `children` on every spawn, and V8
          // copies it fast only while the `children` objects it has seen have few shapes (integer keys
          // alone share one). String keys here made each spawn of a run cost ~8 µs more at 100k runs
          // (docs/performance.md). The inspector names shards `shard-<n>`.
          openShardId = String(shardsOpened);
          openShardRuns = 0;
          enqueue.spawnChild('shard', { id: openShardId, input: { shardId: openShardId } });
        }
        openShardRuns += 1;
        spawns.push({ input, followUp });
      }
      sendSpawns();
      if (openShardId !== context.openShardId || shardsOpened !== context.shardsOpened) {
        enqueue.assign({ openShardId, openShardRuns, shardsOpened });
      } else if (openShardRuns !== context.openShardRuns) {
        enqueue.assign({ openShardRuns });
      }
    }),
    // Host-provided: log a record the supervisor could not use.
    reportBadRecord: (_, _params: { problem: string }) => {},
    // Every shard stops its runs in the released partitions (a shard does not know its runs' partitions
    // in advance, and releases are rare: a rebalance or a lost lease).
    releaseRuns: enqueueActions(({ event, enqueue, self }) => {
      if (event.type !== 'runs.release') return;
      // (Read defensively: xstate/graph walks the machine with a stand-in `self` that has no snapshot.)
      const children: Record<string, unknown> = self.getSnapshot()?.children ?? {};
      for (const [id, child] of Object.entries(children)) {
        if ((child as AnyActorRef | undefined)?.src === 'shard') enqueue.sendTo(id, event);
      }
    }),
    stopDrainedShard: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'shard.drained') return;
      enqueue(stopChild(event.shardId));
      if (event.shardId === context.openShardId) enqueue.assign({ openShardId: undefined, openShardRuns: 0 });
    }),
  },
}).createMachine({
  id: 'supervisor',
  context: ({ input }) => ({
    ...input,
    nextPollAt: undefined,
    openShardId: undefined,
    openShardRuns: 0,
    shardsOpened: 0,
  }),
  on: {
    'runs.updated': { actions: 'route' },
    'health.checked': { actions: 'route' },
    'shard.drained': { actions: 'stopDrainedShard' },
    'runs.release': { actions: 'releaseRuns' },
  },
  initial: 'polling',
  states: {
    // The first poll runs at once, so a restarted monitor finds workers that died while it was down.
    // Detection latency is bounded by one interval, since the cadence does not drift by each poll's length.
    polling: {
      entry: 'bookNextPoll',
      // A number as id too (shards count from 1): see route.
      invoke: { src: 'pollHealth', id: POLL_ID, input: { kind: 'pollHealth' as const } },
      on: { 'poll.done': 'waitingToPoll' },
    },
    waitingToPoll: {
      always: { guard: 'pollDue', target: 'polling' },
      after: { pollInterval: 'polling' },
    },
  },
});
