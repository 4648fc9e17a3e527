// Model-based tests: paths generated from the run machine with xstate/graph are replayed against the real
// host (createRunMonitor + MemoryRunStore + FakeLauncher, simulated time). After every step the real run
// actor must be in the model's state and the store must hold the status and events the path implies.
// The suite fails if any edge of the run machine was not taken by some real run actor.
import { describe, expect, it } from 'vitest';
import {
  deadlines,
  type RunContext,
  runMachine,
  type StartTimeoutOutput,
} from '../../machines/run.machine.js';
import { type RunRecord, type RunStatus, STATUS_EVENT, TAGS } from '../../src/core/types.js';
import { allEdges, type EdgeKey } from './edges.js';
import { EdgeRecorder, type Environment, environment, type StoreOutcome } from './environment.js';
import {
  EFFECTS,
  type Effect,
  effectNode,
  generateCoveringPaths,
  initialSnapshot,
  MODEL_CONFIGS,
  type ModelConfig,
  type ModelEvent,
  type ModelPath,
  RECORD_AGE_MS,
  type RunSnapshot,
} from './run-model.js';

const RUN_ID = 'model';
const recorder = new EdgeRecorder();
/** Steps at which the real host was compared with the model (the suite must not pass vacuously). */
let comparedSteps = 0;
const modelCovered = new Set<EdgeKey>();
const paths: ModelPath[] = [
  ...generateCoveringPaths('allOn', modelCovered),
  ...generateCoveringPaths('overdue', modelCovered),
  ...generateCoveringPaths('overdueUnlimited', modelCovered),
  ...generateCoveringPaths('allOff', modelCovered),
  ...generateCoveringPaths('dryRun', modelCovered),
  ...generateCoveringPaths('dryRunOverdue', modelCovered),
];

type Resolution = { effect: Effect; event: ModelEvent };

/** An event that ends the effect the model is in: for store effects it happened already (scripted). */
function resolution(state: RunSnapshot, event: ModelEvent): Resolution | undefined {
  if (!event.type.startsWith('xstate.done.actor.') && !event.type.startsWith('xstate.error.actor.'))
    return undefined;
  const node = effectNode(state);
  const effect = node ? EFFECTS[node.id] : undefined;
  return effect ? { effect, event } : undefined;
}

// A start timeout waits on the launcher first, so the real host rests in it like in a launcher call.
const isStoreEffect = (effect: Effect) => effect.kind !== 'launcher' && effect.kind !== 'startTimeout';
const failed = (event: ModelEvent) => event.type.startsWith('xstate.error.');

/**
 * Store effects complete at once, so how they end is scripted before the step that starts them. A timer
 * whose deadline has passed fires at once too, so the script looks through it.
 */
async function scriptStoreOutcomes(
  env: Environment,
  config: ModelConfig,
  path: ModelPath,
  from: number,
  initial: RunSnapshot,
): Promise<void> {
  for (let j = from; j < path.events.length; j++) {
    const before = j === 0 ? initial : (path.states[j - 1] as RunSnapshot);
    const event = path.events[j] as ModelEvent;
    const delay = delayName(event);
    if (delay && isDeadline(delay) && (await msUntil(env, config, before, delay)) === 0) continue;
    const r = resolution(before, event);
    if (r?.effect.kind === 'startTimeout') {
      // Its FAILURE write happens once its debug info is released: scripted now, in order.
      env.store.script.transition.push(startTimeoutWrite(before, r.event));
      return;
    }
    if (!r || !isStoreEffect(r.effect)) return;
    const output = r.event.output as
      { applied?: boolean; run?: RunRecord; status?: RunStatus; heartbeatAt?: number } | undefined;
    const gone = (r.event.error as { code?: string } | undefined)?.code === 'RUN_NOT_FOUND';
    const outcome: StoreOutcome = failed(r.event)
      ? gone
        ? { kind: 'gone' }
        : { kind: 'error' }
      : r.effect.kind === 'read' && output?.heartbeatAt !== undefined && output.status === 'STARTED'
        ? { kind: 'beat' }
        : r.effect.kind === 'write' && output?.applied === false && output.run
          ? { kind: 'lose', to: output.run.status }
          : r.effect.kind === 'read' &&
              output?.status &&
              output.status !== 'STARTED' &&
              output.status !== before.context.run.status
            ? { kind: 'lose', to: output.status }
            : { kind: 'ok' };
    const queue = {
      write: env.store.script.transition,
      append: env.store.script.appendEvent,
      count: env.store.script.incrementResumeAttempts,
      read: env.store.script.getRun,
      launcher: [],
    }[r.effect.kind];
    queue.push(outcome);
  }
}

/** How a start timeout's FAILURE write ends, for the outcome the model chose. */
function startTimeoutWrite(before: RunSnapshot, event: ModelEvent): StoreOutcome {
  if (failed(event)) return { kind: 'error' };
  const output = event.output as StartTimeoutOutput;
  // A worker's write the actor already saw makes the compare-and-set lose by itself.
  if (output.applied || before.context.run.status !== 'STARTING') return { kind: 'ok' };
  return { kind: 'lose', to: (output.run as RunRecord).status };
}

const isDeadline = (delay: string) => delay !== 'launcherTimeout' && delay !== 'storeRetry';

function delayName(event: ModelEvent): string | undefined {
  return event.type.startsWith('xstate.after.') ? event.type.split('.')[2] : undefined;
}

/** How long until the timer behind `delay` fires, from the real stored record. */
async function msUntil(
  env: Environment,
  config: ModelConfig,
  model: RunSnapshot,
  delay: string,
): Promise<number> {
  if (delay === 'launcherTimeout') return config.launcherTimeoutSeconds * 1000;
  if (delay === 'storeRetry') return config.storeRetrySeconds * 1000;
  const run = (await env.store.getRunUnscripted(RUN_ID)) as RunRecord;
  const context: RunContext = { ...(model.context as RunContext), run };
  const byDelay: Record<string, (c: RunContext) => number> = {
    notLaunchedTimeout: deadlines.notStarted,
    queuedTimeout: deadlines.queued,
    startTimeout: deadlines.starting,
    maxRuntime: deadlines.started,
    cancelTimeout: deadlines.canceling,
    livenessTimeout: deadlines.liveness,
  };
  const deadline = byDelay[delay]?.(context);
  if (deadline === undefined) throw new Error(`unknown delay ${delay}`);
  return Math.max(0, deadline - env.clock.now());
}

async function execute(env: Environment, config: ModelConfig, before: RunSnapshot, event: ModelEvent) {
  const r = resolution(before, event);
  if (r) {
    if (r.effect.kind === 'launcher') {
      env.launcher.release(r.effect.call, failed(event) ? { error: true } : { value: event.output });
    }
    if (r.effect.kind === 'startTimeout') {
      // Debug info, then the scripted write; then the termination, if the write applied and one is due.
      env.launcher.release('debugInfo', { value: 'model debug info' });
      const output = event.output as StartTimeoutOutput | undefined;
      if (output?.applied && config.terminateOnStartTimeout) {
        await env.settle();
        env.launcher.release('terminate', { value: output.terminateError === undefined });
      }
    }
    return; // store effects: already happened as scripted
  }
  const delay = delayName(event);
  if (delay) {
    if (delay === 'launcherTimeout') {
      const node = effectNode(before);
      const effect = node ? EFFECTS[node.id] : undefined;
      if (effect?.kind === 'launcher') env.launcher.abandon(effect.call);
    }
    await env.advance(await msUntil(env, config, before, delay));
    return;
  }
  if (event.type === 'run.updated') {
    await env.store.outside(RUN_ID, { to: (event.run as RunRecord).status });
    return;
  }
  if (event.type === 'health.checked') {
    const result = event.result as { status: 'RUNNING' | 'FAILED' | 'UNKNOWN'; message: string };
    env.launcher.setHealth(result);
    await env.advance(config.pollIntervalSeconds * 1000);
    env.launcher.setHealth('RUNNING');
    return;
  }
  throw new Error(`no executor for ${event.type}`);
}

/**
 * Whether the model rests where the real host does: not inside a store effect (which the host has
 * already finished as scripted) and with no timer whose real deadline has passed (which the host has
 * already fired). Only then can the two be compared; the following steps reach the next resting point.
 */
async function modelRests(env: Environment, config: ModelConfig, model: RunSnapshot): Promise<boolean> {
  const node = effectNode(model);
  const effect = node ? EFFECTS[node.id] : undefined;
  if (effect && isStoreEffect(effect)) return false;
  for (const active of model._nodes) {
    for (const type of active.transitions.keys()) {
      const delay = delayName({ type });
      if (delay && isDeadline(delay) && (await msUntil(env, config, model, delay)) === 0) return false;
    }
  }
  return true;
}

function realState(): unknown {
  return recorder.runStates.get(RUN_ID);
}

function modelState(model: RunSnapshot): unknown {
  return model.status === 'done' ? 'done' : model.value;
}

interface Expected {
  status: RunStatus;
  statusEvents: string[];
  engineEvents: number;
  failureReason?: string;
}

function expectAfter(expected: Expected, before: RunSnapshot, event: ModelEvent): void {
  const r = resolution(before, event);
  const moveTo = (to: RunStatus) => {
    expected.status = to;
    expected.statusEvents.push(STATUS_EVENT[to as Exclude<RunStatus, 'NOT_STARTED'>]);
  };
  if (event.type === 'run.updated') moveTo((event.run as RunRecord).status);
  if (!r || failed(event)) return;
  const output = event.output as { applied?: boolean; run?: RunRecord; status?: RunStatus } | undefined;
  if (r.effect.kind === 'append') expected.engineEvents += 1;
  if (r.effect.kind === 'startTimeout') {
    if (output?.applied) {
      moveTo('FAILURE');
      expected.failureReason = 'START_TIMEOUT';
    } else if (output?.run && output.run.status !== before.context.run.status) {
      moveTo(output.run.status);
    }
  }
  if (r.effect.kind === 'write') {
    if (output?.applied === false && output.run) {
      moveTo(output.run.status);
    } else {
      moveTo(r.effect.to);
      if (r.effect.to === 'FAILURE') expected.failureReason = (before.context as RunContext).failure?.reason;
    }
  }
  if (r.effect.kind === 'read' && output?.status && output.status !== before.context.run.status)
    moveTo(output.status);
}

async function replay(path: ModelPath): Promise<void> {
  const config = MODEL_CONFIGS[path.config];
  const age = RECORD_AGE_MS[path.config];
  const env = await environment(config, recorder, undefined, age);
  recorder.runStates.delete(RUN_ID);
  try {
    await env.store.createRun({ runId: RUN_ID, at: env.clock.now() - age });
    const initial = initialSnapshot(path.config);
    // An overdue run acts at once when the monitor starts: its first store effects are scripted now.
    if (!(await modelRests(env, config, initial))) await scriptStoreOutcomes(env, config, path, 0, initial);
    await env.monitor.start();
    await env.settle();
    if (await modelRests(env, config, initial)) {
      expect(realState(), 'initial state').toEqual(modelState(initial));
    }
    const expected: Expected = { status: 'NOT_STARTED', statusEvents: [], engineEvents: 0 };

    for (const [i, event] of path.events.entries()) {
      const before = i === 0 ? initial : (path.states[i - 1] as RunSnapshot);
      if (!resolution(before, event) || !isStoreEffect((resolution(before, event) as Resolution).effect)) {
        await scriptStoreOutcomes(env, config, path, i + 1, initial);
      }
      await execute(env, config, before, event);
      await env.settle();
      if ((event.error as { code?: string } | undefined)?.code === 'RUN_NOT_FOUND') {
        // The store cannot delete a run: the "gone" read was scripted, the run is still there and the next
        // sweep rightly watches it again. Nothing after this step is comparable; the edge is what counts.
        expect(
          recorder.taken.get('run')?.has(`${effectNode(before)?.id}|${event.type}|0`),
          'run-gone edge',
        ).toBe(true);
        break;
      }
      expectAfter(expected, before, event);

      const step = `step ${i + 1} of ${path.description}`;
      const model = path.states[i] as RunSnapshot;
      if (!(await modelRests(env, config, model))) continue;
      comparedSteps += 1;
      expect(realState(), step).toEqual(modelState(model));
      const run = (await env.store.getRunUnscripted(RUN_ID)) as RunRecord;
      expect(run.status, `stored status after ${step}`).toBe(expected.status);
      const events = await env.store.getEvents(RUN_ID);
      expect(
        events.filter((e) => e.type !== 'ENGINE_EVENT').map((e) => e.type),
        `status events after ${step}`,
      ).toEqual(expected.statusEvents);
      expect(
        events.filter((e) => e.type === 'ENGINE_EVENT'),
        `engine events after ${step}`,
      ).toHaveLength(expected.engineEvents);
      if (expected.status === 'FAILURE' && expected.failureReason) {
        expect(run.tags[TAGS.failureReason], `failure reason after ${step}`).toBe(expected.failureReason);
      }
    }
    expect(env.store.unusedScript(), `script left unused by ${path.description}`).toEqual([]);
  } finally {
    await env.monitor.stop();
  }
}

describe('run machine: generated paths replayed against the real host', () => {
  it('generates paths for every configuration', () => {
    expect(paths.filter((p) => p.config === 'allOn').length).toBeGreaterThan(20);
    expect(paths.filter((p) => p.config === 'overdue').length).toBeGreaterThan(0);
    expect(paths.filter((p) => p.config === 'allOff').length).toBeGreaterThan(0);
    expect(paths.filter((p) => p.config === 'dryRun').length).toBeGreaterThan(0);
  });

  for (const path of paths) {
    it(path.description, () => replay(path));
  }

  // Declared last: vitest runs a file's tests in order, so every replay has run by now.
  it('every edge of the run machine was taken by a real run actor', () => {
    const taken = recorder.taken.get('run') ?? new Set<EdgeKey>();
    const missing = [...allEdges(runMachine)].filter((edge) => !taken.has(edge));
    expect(missing).toEqual([]);
    expect(comparedSteps).toBeGreaterThan(paths.length);
  });
});
