// Paths through the run machine, generated with xstate/graph: the shortest path to every reachable state,
// extended by every event that state accepts, so every edge the model can take ends some path.
import {
  type AnyStateNode,
  createActor,
  fromTransition,
  getNextSnapshot,
  type InspectionEvent,
} from 'xstate';
import { getAdjacencyMap, getShortestPaths } from 'xstate/graph';
import {
  type RunContext,
  type RunInput,
  runMachine,
  runSettings,
  type StartTimeoutOutput,
} from '../../machines/run.machine.js';
import { ALLOWED_MOVES, type RunRecord, type RunStatus, TAGS } from '../../src/core/types.js';
import { type EdgeKey, edgeKey } from './edges.js';

export type RunSnapshot = ReturnType<typeof runMachine.transition>;
export type ModelEvent = { type: string; [key: string]: unknown };

/** What each effect state does, so the generator knows its outcomes and the replay how to cause them. */
export type Effect =
  | { kind: 'write'; to: RunStatus; tags?: Record<string, string> }
  | { kind: 'append' }
  | { kind: 'read' }
  | { kind: 'count' }
  | { kind: 'launcher'; call: 'terminate' | 'resume' }
  /** A start timeout: debug info (a held launcher call), FAILURE (a scripted write), then terminate (held). */
  | { kind: 'startTimeout' };

export const EFFECTS: Record<string, Effect> = {
  'run.timingOutStart.failing': { kind: 'startTimeout' },
  'run.timingOutStart.reportingTerminateFailure': { kind: 'append' },
  'run.started.confirmingCrash': { kind: 'read' },
  'run.started.watching.liveness.confirming': { kind: 'read' },
  'run.started.stoppingStalledWorker': { kind: 'launcher', call: 'terminate' },
  'run.started.resuming.announcing': { kind: 'append' },
  'run.started.resuming.countingAttempt': { kind: 'count' },
  'run.started.resuming.announcingLaunch': { kind: 'append' },
  'run.started.resuming.launchingWorker': { kind: 'launcher', call: 'resume' },
  'run.started.resuming.reportingResumeFailure': { kind: 'append' },
  'run.started.resuming.stoppingResumedWorker': { kind: 'launcher', call: 'terminate' },
  'run.exceedingMaxRuntime.canceling': {
    kind: 'write',
    to: 'CANCELING',
    tags: { [TAGS.cancelReason]: 'MAX_RUNTIME_EXCEEDED' },
  },
  'run.exceedingMaxRuntime.terminating': { kind: 'launcher', call: 'terminate' },
  'run.exceedingMaxRuntime.reportingTerminateException': { kind: 'append' },
  'run.canceling.markingCanceled': { kind: 'write', to: 'CANCELED' },
  'run.failing.writing': { kind: 'write', to: 'FAILURE' },
  'run.dryRun.reporting': { kind: 'append' },
  'run.recovering.refreshing': { kind: 'read' },
};

/** Every check on, with short timeouts. */
const ALL_ON = {
  startTimeoutSeconds: 100,
  cancelTimeoutSeconds: 100,
  queuedTimeoutSeconds: 100,
  maxRuntimeSeconds: 1000,
  heartbeatTimeoutSeconds: 50,
  progressTimeoutSeconds: 70,
  maxResumeRunAttempts: 1,
  unknownHealthTolerance: 1,
  terminateOnStartTimeout: true,
  launcherTimeoutSeconds: 30,
  storeRetrySeconds: 5,
  pollIntervalSeconds: 1,
  dryRun: false,
} as const;

/**
 * The configurations between them take every `choosing` branch: everything on with every deadline ahead
 * when armed, everything on with every deadline already passed when armed (the run's timestamps are old),
 * everything off, and a dry run both ways.
 */
export const MODEL_CONFIGS = {
  allOn: ALL_ON,
  // The same settings; what differs is how old the records are (RECORD_AGE_MS).
  overdue: ALL_ON,
  // Overdue too, without a maximum runtime (which would end the watch before liveness is looked at).
  overdueUnlimited: { ...ALL_ON, maxRuntimeSeconds: 0 },
  allOff: {
    startTimeoutSeconds: 0,
    cancelTimeoutSeconds: 0,
    queuedTimeoutSeconds: 0,
    maxRuntimeSeconds: 0,
    heartbeatTimeoutSeconds: 0,
    progressTimeoutSeconds: 0,
    maxResumeRunAttempts: 0,
    unknownHealthTolerance: 0,
    terminateOnStartTimeout: false,
    launcherTimeoutSeconds: 30,
    storeRetrySeconds: 5,
    pollIntervalSeconds: 1,
    dryRun: false,
  },
  // Every decision only written down: timers firing, and deadlines already passed when armed.
  dryRun: { ...ALL_ON, dryRun: true },
  dryRunOverdue: { ...ALL_ON, maxRuntimeSeconds: 0, dryRun: true },
} as const;

export type ModelConfig = (typeof MODEL_CONFIGS)[ModelConfigName];
export type ModelConfigName = keyof typeof MODEL_CONFIGS;

/** How old the records of runs are in each configuration: older than every deadline in `overdue`. */
export const RECORD_AGE_MS: Record<ModelConfigName, number> = {
  allOn: 0,
  overdue: 10_000_000,
  overdueUnlimited: 10_000_000,
  allOff: 0,
  dryRun: 0,
  dryRunOverdue: 10_000_000,
};

/**
 * The run machine as the model sees time: it does not move, so a deadline is overdue when armed exactly
 * when the configuration's records are older than every deadline (all of them are on in `overdue`).
 */
function modelMachine(configName: ModelConfigName) {
  const overdue = RECORD_AGE_MS[configName] > 0;
  return runMachine.provide({ guards: { overdue: () => overdue } });
}

function modelInput(config: ModelConfig): RunInput {
  return {
    run: { runId: 'model', status: 'NOT_STARTED', tags: {}, createdAt: 0, updatedAt: 0, resumeAttempts: 0 },
    settings: runSettings(config),
    maxRuntimeSeconds: config.maxRuntimeSeconds,
    heartbeatTimeoutSeconds: config.heartbeatTimeoutSeconds,
    progressTimeoutSeconds: config.progressTimeoutSeconds,
  };
}

function activeNodes(snapshot: RunSnapshot): AnyStateNode[] {
  return snapshot._nodes as AnyStateNode[];
}

/** The state node whose invoke is running, if the snapshot sits in an effect state. */
export function effectNode(snapshot: RunSnapshot): AnyStateNode | undefined {
  return activeNodes(snapshot).find((node) => EFFECTS[node.id] !== undefined);
}

function moved(run: RunRecord, to: RunStatus): RunRecord {
  return { ...run, status: to, updatedAt: run.updatedAt + 1 };
}

function afterEvents(snapshot: RunSnapshot): ModelEvent[] {
  const events: ModelEvent[] = [];
  for (const node of activeNodes(snapshot)) {
    for (const type of node.transitions.keys()) if (type.startsWith('xstate.after.')) events.push({ type });
  }
  return events;
}

/** Every event the environment can produce in this state, with the outcomes effects can have. */
function eventsFor(snapshot: RunSnapshot): ModelEvent[] {
  if (snapshot.status !== 'active') return [];
  const context = snapshot.context as RunContext;
  const run = context.run;
  const events = afterEvents(snapshot);
  const effectState = effectNode(snapshot);
  const effect = effectState ? EFFECTS[effectState.id] : undefined;
  const inWatching = snapshot.matches({ started: 'watching' });

  // Workers (and users) move the stored status whenever nothing of the monitor's holds the store:
  // in waiting states and while a launcher call is out (a start timeout's starts with one).
  if (!effect || effect.kind === 'launcher' || effect.kind === 'startTimeout') {
    for (const to of ALLOWED_MOVES[run.status]) events.push({ type: 'run.updated', run: moved(run, to) });
  }
  if (inWatching) {
    for (const status of ['RUNNING', 'FAILED', 'UNKNOWN'] as const) {
      events.push({ type: 'health.checked', result: { status, message: `model ${status}` } });
    }
  }
  if (effectState && effect) {
    const invokeId = (effectState.invoke[0] as { id: string }).id;
    const done = (output: unknown) => ({ type: `xstate.done.actor.${invokeId}`, output });
    events.push({ type: `xstate.error.actor.${invokeId}`, error: new Error('model: effect failed') });
    switch (effect.kind) {
      case 'write': {
        const written = moved(run, effect.to);
        events.push(done({ applied: true, run: { ...written, tags: { ...written.tags, ...effect.tags } } }));
        // The compare-and-set loses to a write that landed first.
        for (const to of ALLOWED_MOVES[run.status].filter((s) => s !== effect.to)) {
          events.push(done({ applied: false, run: moved(run, to) }));
        }
        break;
      }
      case 'read': {
        events.push(done(run));
        if (effectState.id === 'run.recovering.refreshing') {
          events.push({ type: `xstate.error.actor.${invokeId}`, error: { code: 'RUN_NOT_FOUND' } });
        }
        if (effectState.id === 'run.started.confirmingCrash') events.push(done(moved(run, 'SUCCESS')));
        if (effectState.id === 'run.started.watching.liveness.confirming') {
          // The worker heartbeated (with progress) since the actor's copy, or finished.
          const beat = run.updatedAt + 1;
          events.push(done({ ...run, heartbeatAt: beat, progressAt: beat }), done(moved(run, 'SUCCESS')));
        }
        break;
      }
      case 'count':
        events.push(done(run.resumeAttempts + 1));
        break;
      case 'append':
        events.push(done(undefined));
        break;
      case 'launcher':
        if (effect.call === 'terminate') events.push(done(true), done(false));
        else events.push(done(undefined));
        break;
      case 'startTimeout': {
        // An update the actor recorded while the debug info was out makes the write lose to it.
        if (run.status !== 'STARTING') {
          events.push(done({ applied: false, run }));
          break;
        }
        const tags = { ...run.tags, [TAGS.failureReason]: 'START_TIMEOUT' };
        const written = { ...moved(run, 'FAILURE'), tags };
        events.push(done({ applied: true, run: written }));
        if (context.settings.terminateOnStartTimeout) {
          events.push(done({ applied: true, run: written, terminateError: 'model: worker still there' }));
        }
        for (const to of ALLOWED_MOVES.STARTING.filter((s) => s !== 'FAILURE')) {
          events.push(done({ applied: false, run: moved(run, to) }));
        }
        break;
      }
    }
  }
  return events;
}

/** Only what decides behaviour: keeps the traversal finite (timestamps and messages are left out). */
function serialize(snapshot: RunSnapshot): string {
  const c = snapshot.context as RunContext;
  return JSON.stringify([
    snapshot.value,
    snapshot.status,
    c.run.status,
    c.run.tags[TAGS.cancelReason],
    c.run.resumeAttempts,
    c.unknownStreak,
    c.failure?.reason,
    c.failure?.terminateWorker,
  ]);
}

export interface ModelPath {
  config: ModelConfigName;
  events: ModelEvent[];
  /** The model's snapshot after each event. */
  states: RunSnapshot[];
  description: string;
}

/** The edges one model step takes (its own transition and the eventless ones after it). */
function modelEdges(configName: ModelConfigName, snapshot: RunSnapshot, event: ModelEvent): EdgeKey[] {
  const edges: EdgeKey[] = [];
  const inspector = createActor(
    fromTransition((s) => s, {}),
    {
      inspect: (e: InspectionEvent) => {
        if (e.type === '@xstate.microstep') for (const t of e._transitions) edges.push(edgeKey(t));
      },
    },
  );
  const scope = {
    self: inspector,
    logger: () => {},
    id: '',
    sessionId: 'model',
    defer: () => {},
    system: inspector.system,
    stopChild: () => {},
    emit: () => {},
    actionExecutor: () => {},
  };
  modelMachine(configName).transition(snapshot, event as never, scope as never);
  return edges;
}

/**
 * Every path from the traversal, keeping only those that take an edge no shorter path took: the same
 * edge coverage with far fewer replays.
 */
export function generateCoveringPaths(configName: ModelConfigName, covered: Set<EdgeKey>): ModelPath[] {
  const kept: ModelPath[] = [];
  const all = generatePaths(configName).sort((a, b) => a.events.length - b.events.length);
  for (const path of all) {
    const before = path.states.length > 1 ? path.states[path.states.length - 2] : undefined;
    const last = path.events[path.events.length - 1];
    if (!last) continue;
    const from = before ?? initialSnapshot(configName);
    const fresh = modelEdges(configName, from, last).filter((edge) => !covered.has(edge));
    if (fresh.length === 0) continue;
    kept.push(path);
    let state = initialSnapshot(configName);
    for (const [i, event] of path.events.entries()) {
      for (const edge of modelEdges(configName, state, event)) covered.add(edge);
      state = path.states[i] as RunSnapshot;
    }
  }
  return kept;
}

export function initialSnapshot(configName: ModelConfigName): RunSnapshot {
  const actor = createActor(modelMachine(configName), { input: modelInput(MODEL_CONFIGS[configName]) });
  return actor.getSnapshot() as RunSnapshot;
}

function generatePaths(configName: ModelConfigName): ModelPath[] {
  const input = modelInput(MODEL_CONFIGS[configName]);
  // The graph's types want the machine's own event union; ours are the same events, built generically.
  const options = { input, events: eventsFor, serializeState: serialize } as unknown as NonNullable<
    Parameters<typeof getShortestPaths<typeof runMachine>>[1]
  >;
  const machine = modelMachine(configName);
  const prefixes = getShortestPaths(machine, options);
  const adjacency = getAdjacencyMap(machine, options);
  const paths: ModelPath[] = [];
  for (const prefix of prefixes) {
    const prefixEvents = prefix.steps.slice(1).map((step) => step.event as ModelEvent);
    const prefixStates = prefix.steps.slice(1).map((step) => step.state as RunSnapshot);
    const entry = (
      adjacency as unknown as Record<string, { transitions: Record<string, { event: unknown }> }>
    )[serialize(prefix.state as RunSnapshot)];
    for (const transition of Object.values(entry?.transitions ?? {})) {
      const event = transition.event as ModelEvent;
      const next = getNextSnapshot(machine, prefix.state as RunSnapshot, event as never) as RunSnapshot;
      const events = [...prefixEvents, event];
      paths.push({
        config: configName,
        events,
        states: [...prefixStates, next],
        description: `${configName}: ${events.map(describe).join(' → ')}`,
      });
    }
  }
  return paths;
}

function describe(event: ModelEvent): string {
  if (event.type === 'run.updated') return `store:${(event.run as RunRecord).status}`;
  if (event.type === 'health.checked') return `health:${(event.result as { status: string }).status}`;
  if (event.type.startsWith('xstate.after.')) return `timer:${event.type.split('.')[2]}`;
  const kind = event.type.startsWith('xstate.done.')
    ? 'done'
    : (event.error as { code?: string } | undefined)?.code === 'RUN_NOT_FOUND'
      ? 'error(run gone)'
      : 'error';
  const state = event.type.replace(/^xstate\.(done|error)\.actor\.0\.run\./, '');
  const output = event.output;
  const written = output as unknown as StartTimeoutOutput;
  const detail =
    output && typeof output === 'object' && 'applied' in output
      ? `(${written.applied ? (written.terminateError ? 'applied, worker still there' : 'applied') : `lost to ${written.run?.status}`})`
      : output !== undefined && typeof output !== 'object'
        ? `(${String(output)})`
        : output && typeof output === 'object' && 'heartbeatAt' in output
          ? `(${(output as RunRecord).status}, heartbeat)`
          : output && typeof output === 'object' && 'status' in output
            ? `(${(output as RunRecord).status})`
            : '';
  return `${state}:${kind}${detail}`;
}
