// Model-based tests for the supervisor and its shards: paths generated from the supervisor machine with
// xstate/graph, replayed against the real host with shardSize 1 (so every run opens a shard and seals the
// previous one). The suite fails if any edge of the supervisor or shard machine was never taken.

import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { type AnyActorRef, getNextSnapshot, type InspectionEvent } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { type ShardContext, shardMachine } from '../../machines/shard.machine.js';
import { supervisorMachine } from '../../machines/supervisor.machine.js';
import { sleepOn } from '../../src/core/clock.js';
import type { RunRecord } from '../../src/core/types.js';
import { allEdges, type EdgeKey } from './edges.js';
import { EdgeRecorder, type Environment, environment } from './environment.js';

type SupervisorSnapshot = ReturnType<typeof supervisorMachine.transition>;
type Event = { type: string; [key: string]: unknown };

const POLL_SECONDS = 10;
const config = { pollIntervalSeconds: POLL_SECONDS, shardSize: 1, startTimeoutSeconds: 0 };
const recorder = new EdgeRecorder();
let comparedSteps = 0;

const sampleRun: RunRecord = {
  runId: 'sample',
  status: 'STARTED',
  tags: {},
  createdAt: 0,
  updatedAt: 0,
  resumeAttempts: 0,
};

const EVENTS: Event[] = [
  { type: 'runs.updated', runs: [sampleRun] },
  { type: 'health.checked', run: sampleRun, result: { status: 'RUNNING' } },
  { type: 'poll.done' },
  { type: 'xstate.after.pollInterval.supervisor.waitingToPoll' },
  { type: 'shard.drained', shardId: '1' },
  { type: 'runs.release', partitions: [63] },
];

const input = {
  shardSize: 1,
  pollIntervalSeconds: POLL_SECONDS,
  now: () => 0,
  runInput: (run: RunRecord) => ({
    run,
    maxRuntimeSeconds: 0,
    settings: {
      startTimeoutSeconds: 0,
      cancelTimeoutSeconds: 0,
      queuedTimeoutSeconds: 0,
      maxResumeRunAttempts: 0,
      unknownHealthTolerance: 0,
      terminateOnStartTimeout: false,
      launcherTimeoutSeconds: 60,
      storeRetrySeconds: 5,
    },
  }),
};

/**
 * Time as the model sees it. `steady`: it stands still, so polls are short and each waits for its slot.
 * `overrun`: two intervals pass whenever the machine looks at the clock, so every poll overruns its slot.
 */
type Timing = 'steady' | 'overrun';
function modelNow(timing: Timing): () => number {
  if (timing === 'steady') return () => 0;
  let now = 0;
  return () => (now += 2 * POLL_SECONDS * 1000);
}

interface SupervisorPath {
  timing: Timing;
  events: Event[];
  states: SupervisorSnapshot[];
  description: string;
}

function generate(timing: Timing): SupervisorPath[] {
  const options = {
    input: { ...input, now: modelNow(timing) },
    events: EVENTS,
    serializeState: (s: SupervisorSnapshot) => JSON.stringify(s.value),
  };
  const prefixes = getShortestPaths(supervisorMachine, options as never);
  const paths: SupervisorPath[] = [];
  for (const prefix of prefixes) {
    const events = prefix.steps.slice(1).map((step) => step.event as Event);
    const states = prefix.steps.slice(1).map((step) => step.state as SupervisorSnapshot);
    for (const event of EVENTS) {
      const next = getNextSnapshot(supervisorMachine, prefix.state as SupervisorSnapshot, event as never);
      paths.push({
        timing,
        events: [...events, event],
        states: [...states, next as SupervisorSnapshot],
        description: `${timing}: ${[...events, event].map((e) => e.type.replace('xstate.after.', 'timer:')).join(' → ')}`,
      });
    }
  }
  return paths;
}

let runCounter = 0;
const startedRuns = async (env: Environment) => env.store.listRuns({ statuses: ['STARTED'] });

/** A poll that takes two intervals: its health check answers only once the clock has moved that far. */
async function overrunPoll(env: Environment): Promise<void> {
  if ((await startedRuns(env)).length === 0) await execute(env, { type: 'runs.updated' }, 'steady');
  env.launcher.setHealth(() => {
    const answer = sleepOn(env.clock, 2 * POLL_SECONDS * 1000).promise.then(() => ({
      status: 'RUNNING' as const,
    }));
    env.launcher.setHealth('RUNNING');
    return answer;
  });
  await env.advance(POLL_SECONDS * 1000); // the next poll starts and hangs on the check
  const checks = env.launcher.calls.health.length;
  await env.advance(2 * POLL_SECONDS * 1000); // it ends past its slot: the next one starts at once
  expect(env.launcher.calls.health.length, 'the next poll started at once').toBeGreaterThan(checks);
}

/** Each supervisor event, caused the way production causes it. */
async function execute(env: Environment, event: Event, timing: Timing): Promise<void> {
  switch (event.type) {
    case 'runs.updated': {
      // A new run appears in the store feed: the supervisor spawns an actor (and, with shardSize 1, a shard).
      const { runId } = await env.store.createRun({ runId: `run-${++runCounter}` });
      await env.store.outside(runId, { to: 'STARTING' });
      await env.store.outside(runId, { to: 'STARTED' });
      break;
    }
    case 'health.checked': {
      if ((await startedRuns(env)).length === 0) await execute(env, { type: 'runs.updated' }, timing);
      await env.advance(POLL_SECONDS * 1000);
      expect(env.launcher.calls.health.length, 'a health check ran').toBeGreaterThan(0);
      break;
    }
    case 'poll.done':
      if (timing === 'overrun') await overrunPoll(env);
      break; // a poll over a FakeLauncher finishes at once: it already happened
    case 'xstate.after.pollInterval.supervisor.waitingToPoll':
      await env.advance(POLL_SECONDS * 1000);
      break;
    case 'shard.drained': {
      // Two runs: the second opens shard 2 and seals shard 1; finishing the first drains shard 1.
      await execute(env, { type: 'runs.updated' }, timing);
      await execute(env, { type: 'runs.updated' }, timing);
      const [first] = await startedRuns(env);
      if (first) await env.store.outside(first.runId, { to: 'SUCCESS' });
      break;
    }
    case 'runs.release': {
      // A second monitor joins the store: at its next renewal this one sheds half of the partitions.
      await execute(env, { type: 'runs.updated' }, timing);
      await env.store.renewLeases({ monitorId: 'other', host: 'elsewhere', pid: 1 }, 15_000);
      await env.advance(5_000);
      const monitors = await env.store.listMonitors();
      const mine = monitors.find((m) => m.monitorId === env.monitor.monitorId);
      expect(mine?.partitions, 'the monitor renewed and shed half of its partitions').toHaveLength(32);
      break;
    }
    default:
      throw new Error(`no executor for ${event.type}`);
  }
  await env.settle();
}

function supervisorState(): unknown {
  return recorder.runStates.get('supervisor');
}

describe('supervisor and shards: generated paths replayed against the real host', () => {
  const steady = generate('steady');
  // Overrunning polls matter only where a poll ends; the other events behave as in `steady`.
  const overrun = generate('overrun').filter((path) => path.events.at(-1)?.type === 'poll.done');
  const paths = [...steady, ...overrun];

  it('generates a path for every event from every state', () => {
    expect(steady.length).toBe(2 * EVENTS.length);
    expect(overrun.length).toBeGreaterThan(0);
  });

  for (const path of paths) {
    it(path.description, async () => {
      const env = await environment(config, recorder);
      try {
        await env.monitor.start();
        await env.settle();
        for (const [i, event] of path.events.entries()) {
          await execute(env, event, path.timing);
          const model = path.states[i] as SupervisorSnapshot;
          // `polling` is transient against a FakeLauncher: the poll finishes within the step.
          if (model.value === 'polling') continue;
          comparedSteps += 1;
          expect(supervisorState(), `step ${i + 1} of ${path.description}`).toEqual(model.value);
          // Every active run has exactly one live actor; finished ones have none.
          const active = await env.store.listRuns({ statuses: ['STARTED'] });
          for (const run of active) expect(recorder.runStates.get(run.runId), run.runId).not.toBe('done');
        }
      } finally {
        await env.monitor.stop();
      }
    });
  }

  it('a run actor that fails is dropped by its shard, watched again by the next sweep, and harms no other run', async () => {
    // A log sink that throws when the bad run's invalid tag is reported: the run actor's entry action fails.
    const logger = pino({ level: 'silent' });
    let failures = 0;
    logger.warn = (() => {
      failures += 1;
      throw new Error('log sink is down');
    }) as never;
    const errors: string[] = [];
    logger.error = ((_: unknown, message: string) => errors.push(message)) as never;
    const env = await environment({ ...config, startTimeoutSeconds: 50 }, recorder, logger);
    try {
      await env.monitor.start();
      const bad = await env.store.createRun({ runId: 'bad', tags: { 'runwarden/max_runtime': 'soon' } });
      const good = await env.store.createRun({ runId: 'good' });
      await env.store.outside(bad.runId, { to: 'STARTING' });
      await env.store.outside(good.runId, { to: 'STARTING' });
      await env.settle();
      expect(failures).toBe(1);
      // Run actors' child ids are shard slots: the report must still name the run.
      expect(errors).toContain(
        "The monitor's actor for run bad failed (log sink is down); the next poll will watch the run again.",
      );
      await env.advance(POLL_SECONDS * 1000); // the sweep spawns the bad run's actor again
      expect(failures).toBe(2);
      expect(supervisorState()).toBe('waitingToPoll');
      await env.advance(40 * 1000); // the good run's start deadline
      env.launcher.release('debugInfo', { value: undefined });
      await env.settle();
      expect((await env.store.getRun(good.runId))?.status).toBe('FAILURE');
    } finally {
      await env.monitor.stop();
    }
  });

  it('a poll sends each run actor one event per check: no run.updated for a record whose status it has', async () => {
    const received: string[] = [];
    const counting = new EdgeRecorder();
    const inspect = (event: InspectionEvent) => {
      counting.inspect(event);
      const logic = (event.actorRef as unknown as { logic?: { id?: string } }).logic;
      if (event.type === '@xstate.event' && logic?.id === 'run') received.push(event.event.type);
    };
    const env = await environment(config, { ...counting, inspect } as EdgeRecorder);
    try {
      await env.monitor.start();
      for (const runId of ['a', 'b', 'c']) {
        await env.store.createRun({ runId });
        await env.store.outside(runId, { to: 'STARTING' });
        await env.store.outside(runId, { to: 'STARTED' });
      }
      await env.settle();
      const checks = env.launcher.calls.health.length;
      received.length = 0;
      await env.advance(POLL_SECONDS * 1000);
      expect(env.launcher.calls.health.length - checks, 'one check per STARTED run').toBe(3);
      expect(received).toEqual(['health.checked', 'health.checked', 'health.checked']);
    } finally {
      await env.monitor.stop();
    }
  });

  it('a run that finishes in the open shard leaves it open; the next run seals it, and it drains', async () => {
    const shards = new Map<string, { status: string; running: number; sealed: boolean }>();
    const inspect = (event: InspectionEvent) => {
      recorder.inspect(event);
      const logic = (event.actorRef as unknown as { logic?: { id?: string } }).logic;
      if (event.type !== '@xstate.snapshot' || logic?.id !== 'shard') return;
      const { status, context } = event.snapshot as unknown as { status: string; context: ShardContext };
      shards.set((event.actorRef as AnyActorRef).id, {
        status,
        running: context.running,
        sealed: context.sealed,
      });
    };
    const env = await environment(config, { ...recorder, inspect } as EdgeRecorder);
    try {
      await env.monitor.start();
      await execute(env, { type: 'runs.updated' }, 'steady');
      const [run] = await startedRuns(env);
      await env.store.outside(run!.runId, { to: 'SUCCESS' });
      await env.settle();
      expect(shards.get('1')).toEqual({ status: 'active', running: 0, sealed: false });
      await execute(env, { type: 'runs.updated' }, 'steady'); // shardSize 1: opens shard 2, seals shard 1
      expect(shards.get('1')).toEqual({ status: 'done', running: 0, sealed: true });
      expect(shards.get('2')).toEqual({ status: 'active', running: 1, sealed: false });
    } finally {
      await env.monitor.stop();
    }
  });

  it('every edge of the supervisor and shard machines was taken by a real actor', () => {
    for (const machine of [supervisorMachine, shardMachine]) {
      const taken = recorder.taken.get(machine.id) ?? new Set<EdgeKey>();
      const missing = [...allEdges(machine)].filter((edge) => !taken.has(edge));
      expect(missing, machine.id).toEqual([]);
    }
    expect(comparedSteps).toBeGreaterThan(0);
  });
});
