// The run actor's effects, provided to the pure run machine: each is one store or launcher call, whose
// launcher calls the run machine bounds with its own launcherTimeout transition (the diagrams show it),
// except a start timeout, whose steps always go together and which bounds its two launcher calls here.

import { fromPromise } from 'xstate';
import { errorText, messages } from '../../machines/messages.js';
import {
  type EngineEventInput,
  type LauncherCallInput,
  type ResumeAttemptInput,
  type RunInput,
  runMachine,
  runSettings,
  runTiming,
  type StartTimeoutInput,
  type StartTimeoutOutput,
  type WriteStatusInput,
  type WriteStatusOutput,
  type WouldHaveInput,
} from '../../machines/run.machine.js';
import { resolveLivenessSeconds, resolveMaxRuntimeSeconds } from '../core/config.js';
import { RunwardenError } from '../core/errors.js';
import { type RunRecord, TAGS } from '../core/types.js';
import {
  appendMonitorEvent,
  callLauncher,
  isLeaseLost,
  type MonitorHost,
  mustGetRun,
  runLogger,
  terminateOnce,
} from './host.js';
import { NO_METRICS } from './metrics.js';

export function providedRunMachine(host: MonitorHost) {
  const { store, launcher, clock, tracker, config, metrics, leases } = host;
  const countErrors = metrics !== NO_METRICS;
  const effect = <TIn extends { runId: string }, TOut>(
    kind: 'store' | 'launcher',
    run: (input: TIn, signal: AbortSignal) => Promise<TOut>,
  ) =>
    fromPromise<TOut, TIn>(({ input, self, signal }) => {
      const work = run(input, signal);
      // Registered before the actor hears of the failure: the run's actor is stopped (released) first, so
      // it never retries a write another monitor's lease now forbids.
      work.catch((error: unknown) => {
        if (isLeaseLost(error)) leases.lost(input.runId, error);
        // Counted here, not in reportEffectError: the machine handles failed launcher effects itself.
        else if (countErrors) metrics.effectError(String(self.src));
      });
      return kind === 'store' ? tracker.track(work) : tracker.trackLauncher(work);
    });

  /** An engine event on the run and a warning in the log, fire-and-forget from an action. */
  const reportInvalidTag = (runId: string, message: string) => {
    // Promise.resolve().then: a store that throws instead of rejecting must not fail the actor.
    tracker
      .track(
        Promise.resolve().then(() =>
          store.appendEvent(runId, { type: 'ENGINE_EVENT', message, at: clock.now() }),
        ),
      )
      .catch((err) => runLogger(host, runId).error({ err }, 'Could not report an invalid tag.'));
    runLogger(host, runId).warn(message);
  };

  return runMachine.provide({
    ...runTiming(() => clock.now()),
    actors: {
      writeStatus: effect<WriteStatusInput, WriteStatusOutput>('store', (input) =>
        writeDecision(host, input),
      ),
      failStartTimeout: effect<StartTimeoutInput, StartTimeoutOutput>('launcher', (input, signal) =>
        failStartTimeout(host, input, signal),
      ),
      appendEngineEvent: effect<EngineEventInput, void>('store', async ({ runId, message, data }) => {
        await appendMonitorEvent(host, runId, message, data);
        runLogger(host, runId).info({ data }, message);
      }),
      writeWouldHave: effect<WouldHaveInput, void>('store', async ({ runId, message, decision }) => {
        const { action, reason } = decision;
        await appendMonitorEvent(host, runId, message, { dryRun: true, action, reason });
        metrics.decision(action, reason, clock.now(), decision, { dryRun: true });
        runLogger(host, runId).info({ dryRun: true, action, reason }, message);
      }),
      readRun: effect<LauncherCallInput, RunRecord | undefined>('store', ({ runId }) =>
        mustGetRun(host, runId),
      ),
      recordResumeAttempt: effect<ResumeAttemptInput, number>('store', async ({ runId, decision }) => {
        const attempt = await store.incrementResumeAttempts(runId, leases.fence(runId));
        // The attempt, counted before the new worker launches, is the resume decision written down.
        if (decision) metrics.decision(decision.action, decision.reason, clock.now(), decision);
        return attempt;
      }),
      terminateWorker: effect<LauncherCallInput, boolean>('launcher', async ({ runId }) =>
        terminateLeased(host, await mustGetRun(host, runId)),
      ),
      resumeWorker: effect<LauncherCallInput & { attempt: number }, void>(
        'launcher',
        async ({ runId, attempt }) => {
          if (!launcher.resume)
            throw new RunwardenError('RESUME_UNSUPPORTED', 'The launcher cannot resume runs.');
          const run = await mustGetRun(host, runId);
          const leased = whileLeased(host, runId, 'resume');
          if (leased) await leased;
          runLogger(host, runId).debug(
            { launcher: 'resume', attempt },
            'Resuming the run with a new worker.',
          );
          await launcher.resume(run, attempt);
          // The new worker's liveness counts from now, not from the silence of the one it replaces. Best
          // effort: the worker is launched either way, and its own first heartbeat does the same.
          await store.heartbeat(runId, { at: clock.now(), progress: true }).catch((err: unknown) => {
            runLogger(host, runId).warn(
              { err },
              'Could not record the resumed worker’s start as a heartbeat.',
            );
          });
        },
      ),
    },
    actions: {
      reportEffectError: ({ context, event }) => {
        const error = (event as { error?: unknown }).error;
        // The actor is being released; nothing will be retried.
        if (isLeaseLost(error)) return;
        runLogger(host, context.run.runId).error(
          { err: error },
          `Monitor effect failed; retrying in ${config.storeRetrySeconds} seconds.`,
        );
      },
      reportInvalidTags: ({ context }) => {
        const invalid = context.invalidMaxRuntimeTag;
        if (invalid) {
          reportInvalidTag(
            context.run.runId,
            messages.invalidMaxRuntimeTag(invalid.tag, invalid.value, config.maxRuntimeSeconds),
          );
        }
        for (const { tag, value } of context.invalidLivenessTags ?? []) {
          const fallback =
            tag === TAGS.heartbeatTimeout ? config.heartbeatTimeoutSeconds : config.progressTimeoutSeconds;
          reportInvalidTag(context.run.runId, messages.invalidLivenessTag(tag, value, fallback));
        }
      },
    },
  });
}

/** The run actor input for a record: the monitor's shared settings, max runtime resolved from its tags. */
export function runInputFor(config: MonitorHost['config']): (run: RunRecord) => RunInput {
  const settings = runSettings(config);
  return (run) => {
    const maxRuntime = resolveMaxRuntimeSeconds(run.tags, config);
    const liveness = resolveLivenessSeconds(run.tags, config);
    return {
      run,
      settings,
      maxRuntimeSeconds: maxRuntime.seconds,
      invalidMaxRuntimeTag: maxRuntime.invalid,
      heartbeatTimeoutSeconds: liveness.heartbeat,
      progressTimeoutSeconds: liveness.progress,
      invalidLivenessTags: liveness.invalid.length > 0 ? liveness.invalid : undefined,
    };
  };
}

/**
 * A decision's status write, compare-and-set: `applied: false` with the stored record when the run had
 * moved on first (a worker's own report wins), and the actor follows that.
 */
async function writeDecision(host: MonitorHost, input: WriteStatusInput): Promise<WriteStatusOutput> {
  const { store, clock, metrics } = host;
  const { runId, to, from, message, tags, decision } = input;
  const fence = host.leases.fence(runId);
  // The actor learns the outcome from this effect's output, not from the feed (decisionWrites).
  host.decisionWrites.set(runId, to);
  let run: RunRecord | undefined;
  try {
    run = await store.transition(runId, { to, from, message, tags, at: clock.now(), ...fence });
  } finally {
    host.decisionWrites.delete(runId);
  }
  if (run) {
    if (decision) metrics.decision(decision.action, decision.reason, clock.now(), decision);
    runLogger(host, runId).info({ status: to }, message);
    return { applied: true, run };
  }
  const current = await store.getRun(runId);
  runLogger(host, runId).info(
    { status: current?.status, wanted: to },
    'Run status changed before the monitor wrote it; following the stored status.',
  );
  return { applied: false, run: current };
}

/**
 * A start timeout, end to end: debug info, FAILURE journaling the termination, then the termination. Each
 * launcher call is bounded by launcherTimeoutSeconds. Once the actor is stopped (the monitor stops, or
 * another monitor now owns the run) nothing further is done: the journal, or the new owner, takes it from
 * there, as it did when each step was an effect state of its own.
 */
async function failStartTimeout(
  host: MonitorHost,
  input: StartTimeoutInput,
  signal: AbortSignal,
): Promise<StartTimeoutOutput> {
  const { runId, startTimeoutSeconds, terminate, deadline } = input;
  const info = await startDebugInfo(host, runId);
  if (signal.aborted) return { applied: false, run: undefined };
  const tags: Record<string, string> = { [TAGS.failureReason]: 'START_TIMEOUT' };
  if (terminate) tags[TAGS.terminatePending] = 'true';
  // Store work: stop() and settle() wait for it.
  const written = await host.tracker.track(
    writeDecision(host, {
      runId,
      to: 'FAILURE',
      from: ['STARTING'],
      message: messages.startTimeout(startTimeoutSeconds, info),
      tags,
      decision: { action: 'fail', reason: 'START_TIMEOUT', deadline },
    }),
  );
  if (!written.applied || !terminate || !written.run) return written;
  // The FAILURE write journaled the termination: that is the decision to terminate.
  host.metrics.decision('terminate', 'START_TIMEOUT', host.clock.now());
  if (signal.aborted) return written;
  // Until the worker is confirmed gone, the journal stays and the next poll tries again.
  host.pendingTerminations = true;
  const stored = written.run;
  try {
    const gone = await callLauncher(host, 'terminate', () => terminateLeased(host, stored));
    if (!gone) return { ...written, terminateError: 'the launcher reported the worker is still there' };
    await clearTerminatePending(host, runId);
    return written;
  } catch (error) {
    // Another monitor owns the run now: the effect fails, so the actor is released (see `effect`).
    if (isLeaseLost(error)) throw error;
    host.metrics.effectError('failStartTimeout');
    return { ...written, terminateError: errorText(error) };
  }
}

/** The launcher's debug info for a run that did not start; undefined when there is none or it failed. */
async function startDebugInfo(host: MonitorHost, runId: string): Promise<string | undefined> {
  const { launcher } = host;
  const debugInfo = launcher.debugInfo;
  if (!debugInfo) return undefined;
  try {
    const run = await mustGetRun(host, runId);
    return await callLauncher(host, 'debugInfo', () => debugInfo.call(launcher, run));
  } catch (err) {
    host.metrics.effectError('failStartTimeout');
    runLogger(host, runId).warn({ err }, 'Could not collect the launcher’s debug info; failing without it.');
    return undefined;
  }
}

/** A launcher call for the run, only while this monitor's lease on it holds (by its own clock too). */
// The check is synchronous when no renewal is needed, so it adds no turn to the effect.
function whileLeased(host: MonitorHost, runId: string, call: string): Promise<void> | undefined {
  const { leases } = host;
  if (leases.mayActNow(runId)) return undefined;
  return leases.mayAct(runId).then((allowed) => {
    if (!allowed) throw leases.notHeld(runId, call);
  });
}

/** Terminates the run's worker while this monitor's lease on the run holds. */
async function terminateLeased(host: MonitorHost, run: RunRecord): Promise<boolean> {
  const leased = whileLeased(host, run.runId, 'terminate');
  if (leased) await leased;
  runLogger(host, run.runId).debug({ launcher: 'terminate' }, 'Terminating the run worker.');
  return terminateOnce(host, run);
}

/** The journaled termination is done: a restarted monitor must not repeat it. */
export async function clearTerminatePending(host: MonitorHost, runId: string): Promise<void> {
  const fence = host.leases.fence(runId);
  await host.tracker.track(host.store.setTags(runId, { [TAGS.terminatePending]: 'false' }, fence));
}
