// The naive XState baseline: the same run machine and effects, every run actor spawned under one parent
// with spawnChild and its run id as child id, on XState's own scheduler — what the issue calls "naive
// XState". No sharding, no indexed delayed events. Only what the scenarios exercise is wired.
import { createActor, enqueueActions, fromPromise, setup, stopChild } from 'xstate';
import {
  type EngineEventInput,
  type LauncherCallInput,
  type RunMachineEvent,
  runMachine,
  runSettings,
  runTiming,
  type StartTimeoutInput,
  type StartTimeoutOutput,
  type WriteStatusInput,
  type WriteStatusOutput,
} from '../machines/run.machine.js';
import { messages } from '../machines/messages.js';
import { runSystemId } from '../machines/shard.machine.js';
import { parseMonitorConfig, resolveMaxRuntimeSeconds } from '../src/core/config.js';
import {
  ACTIVE_STATUSES,
  type Clock,
  type HealthResult,
  isTerminal,
  type RunLauncher,
  type RunRecord,
  type RunStore,
  statusOfEvent,
} from '../src/core/types.js';
import { pages } from './lib.js';

export interface NaiveMonitor {
  start(): Promise<void>;
  /** One health poll over every STARTED run, `concurrency` checks at a time. */
  pollHealth(concurrency: number): Promise<void>;
  stop(): void;
}

export function createNaiveMonitor(options: {
  store: RunStore;
  launcher: RunLauncher;
  clock: Clock;
  config: Record<string, unknown>;
}): NaiveMonitor {
  const { store, launcher, clock } = options;
  const config = parseMonitorConfig(options.config, { supportsResume: launcher.supportsResume });
  const settings = runSettings(config);
  const mustGet = async (runId: string) => {
    const run = await store.getRun(runId);
    if (!run) throw new Error(`no run ${runId}`);
    return run;
  };
  const run = runMachine.provide({
    ...runTiming(() => clock.now()),
    actors: {
      writeStatus: fromPromise<WriteStatusOutput, WriteStatusInput>(async ({ input }) => {
        const { runId, to, from, message, tags } = input;
        const written = await store.transition(runId, { to, from, message, tags, at: clock.now() });
        return written ? { applied: true, run: written } : { applied: false, run: await store.getRun(runId) };
      }),
      appendEngineEvent: fromPromise<void, EngineEventInput>(async ({ input }) => {
        await store.appendEvent(input.runId, {
          type: 'ENGINE_EVENT',
          message: input.message,
          data: input.data,
        });
      }),
      readRun: fromPromise<RunRecord | undefined, LauncherCallInput>(({ input }) => mustGet(input.runId)),
      recordResumeAttempt: fromPromise<number, LauncherCallInput>(({ input }) =>
        store.incrementResumeAttempts(input.runId),
      ),
      terminateWorker: fromPromise<boolean, LauncherCallInput>(async ({ input }) =>
        launcher.terminate(await mustGet(input.runId)),
      ),
      resumeWorker: fromPromise<void, LauncherCallInput & { attempt: number }>(async ({ input }) =>
        launcher.resume?.(await mustGet(input.runId), input.attempt),
      ),
      failStartTimeout: fromPromise<StartTimeoutOutput, StartTimeoutInput>(async ({ input }) => {
        const { runId, startTimeoutSeconds, terminate } = input;
        const debugInfo = await launcher.debugInfo?.(await mustGet(runId));
        const written = await store.transition(runId, {
          to: 'FAILURE',
          from: ['STARTING'],
          message: messages.startTimeout(startTimeoutSeconds, debugInfo),
          at: clock.now(),
        });
        if (!written) return { applied: false, run: await store.getRun(runId) };
        if (terminate) await launcher.terminate(written);
        return { applied: true, run: written };
      }),
    },
  });
  const parent = setup({
    types: {
      events: {} as
        | { type: 'runs.updated'; runs: RunRecord[] }
        | { type: 'health.checked'; run: RunRecord; result: HealthResult }
        | { type: 'xstate.done.actor.*'; actorId: string },
    },
    actors: { run },
  }).createMachine({
    context: {},
    on: {
      'runs.updated': {
        actions: enqueueActions(({ event, enqueue, system }) => {
          for (const record of event.runs) {
            const actor = system.get(runSystemId(record.runId));
            if (actor) {
              const update: RunMachineEvent = { type: 'run.updated', run: record };
              enqueue.sendTo(actor, update);
            } else if (!isTerminal(record.status)) {
              const maxRuntime = resolveMaxRuntimeSeconds(record.tags, config);
              enqueue.spawnChild('run', {
                id: record.runId,
                systemId: runSystemId(record.runId),
                input: { run: record, settings, maxRuntimeSeconds: maxRuntime.seconds },
              });
            }
          }
        }),
      },
      'health.checked': {
        actions: enqueueActions(({ event, enqueue, system }) => {
          const actor = system.get(runSystemId(event.run.runId));
          if (!actor) return;
          const followUp: RunMachineEvent = { type: 'health.checked', run: event.run, result: event.result };
          enqueue.sendTo(actor, followUp);
        }),
      },
      'xstate.done.actor.*': { actions: stopChild(({ event }) => event.actorId) },
    },
  });
  const actor = createActor(parent, { clock });
  let unsubscribe: (() => void) | undefined;
  return {
    async start() {
      actor.start();
      unsubscribe = store.subscribe((event) => {
        if (!statusOfEvent(event.type)) return;
        void store.getRun(event.runId).then((record) => {
          if (record) actor.send({ type: 'runs.updated', runs: [record] });
        });
      });
      for await (const page of pages(store, [...ACTIVE_STATUSES]))
        actor.send({ type: 'runs.updated', runs: page });
    },
    async pollHealth(concurrency) {
      const queue: RunRecord[] = [];
      for await (const page of pages(store, ['STARTED'])) queue.push(...page);
      let next = 0;
      const worker = async () => {
        while (next < queue.length) {
          const record = queue[next++] as RunRecord;
          const result = await launcher.checkHealth!(record);
          actor.send({ type: 'health.checked', run: record, result });
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
    },
    stop() {
      unsubscribe?.();
      actor.stop();
    },
  };
}
