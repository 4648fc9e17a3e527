// What a host asks of the monitor: launch a run, cancel a run. Each writes the status first (compare-and-set,
// so a concurrent change wins), then calls the launcher; the run actor takes it from there.
import { errorText, messages } from '../../machines/messages.js';
import { MAX_INTERVAL_SECONDS, resolveLivenessSeconds } from '../core/config.js';
import { LaunchError, RunwardenError } from '../core/errors.js';
import { isTerminal, type RunRecord, TAGS } from '../core/types.js';
import { callLauncher, type MonitorHost, mustGetRun, runLogger, terminateOnce } from './host.js';

/** NOT_STARTED/QUEUED → STARTING, then launcher.launch. */
export async function launchRun(host: MonitorHost, runId: string): Promise<RunRecord> {
  const { store, tracker, clock, launcher } = host;
  const run = await mustGetRun(host, runId);
  if (run.status !== 'NOT_STARTED' && run.status !== 'QUEUED') {
    throw new RunwardenError(
      'NOT_LAUNCHABLE',
      `Run ${runId} is ${run.status}; only NOT_STARTED or QUEUED runs can be launched.`,
    );
  }
  const starting = await tracker.track(
    store.transition(runId, {
      to: 'STARTING',
      from: ['NOT_STARTED', 'QUEUED'],
      at: clock.now(),
      message: 'Launching run.',
      tags: heartbeatTags(host, run),
    }),
  );
  if (!starting) {
    const now = await mustGetRun(host, runId);
    throw new RunwardenError(
      'NOT_LAUNCHABLE',
      `Run ${runId} moved to ${now.status} while it was being launched.`,
    );
  }
  try {
    await callLauncher(host, 'launch', () => launcher.launch(starting));
  } catch (error) {
    if (error instanceof RunwardenError && error.code === 'LAUNCHER_TIMEOUT') {
      // The run stays STARTING: its start timeout decides it, as for any worker that never reports.
      throw new LaunchError(
        runId,
        `Launching run ${runId}: ${error.message} The start timeout will decide the run.`,
        {
          cause: error,
        },
      );
    }
    await tracker.track(
      store.transition(runId, {
        to: 'FAILURE',
        from: ['STARTING'],
        at: clock.now(),
        message: `Run failed to launch: ${errorText(error)}`,
        tags: { [TAGS.failureReason]: 'LAUNCH_FAILED' },
      }),
    );
    throw new LaunchError(runId, `Launching run ${runId} failed: ${errorText(error)}`, { cause: error });
  }
  runLogger(host, runId).info('Run launched.');
  const launched = await mustGetRun(host, runId);
  if (endedWhileLaunching(launched)) await stopOrphanedWorker(host, launched);
  return launched;
}

/**
 * How often the worker should heartbeat: a third of its heartbeat timeout, for the launcher to pass on, and
 * never longer than a worker's timer can wait (the SDK refuses a longer interval; Node would fire at once).
 */
function heartbeatTags(host: MonitorHost, run: RunRecord): Record<string, string> | undefined {
  const { heartbeat } = resolveLivenessSeconds(run.tags, host.config);
  if (heartbeat === 0) return undefined;
  return { [TAGS.heartbeatSeconds]: String(Math.min(heartbeat / 3, MAX_INTERVAL_SECONDS)) };
}

/**
 * A launch slower than the start timeout (or a cancel during it) ends the run before its worker exists, and
 * the terminate then finds nothing to stop. The worker that appears afterwards has no run to report to.
 */
function endedWhileLaunching(run: RunRecord): boolean {
  return isTerminal(run.status) && run.status !== 'SUCCESS';
}

async function stopOrphanedWorker(host: MonitorHost, run: RunRecord): Promise<void> {
  const log = runLogger(host, run.runId);
  log.warn(`Run ended ${run.status} while its worker was being launched; terminating that worker.`);
  let problem: string;
  try {
    if (await callLauncher(host, 'terminate', () => terminateOnce(host, run))) return;
    problem = 'the launcher reported the worker is still there';
  } catch (error) {
    problem = errorText(error);
  }
  log.error({ problem }, `Could not terminate the worker launched for an ended run: ${problem}.`);
}

/** → CANCELING (or CANCELED before launch), then launcher.terminate. */
export async function cancelRun(host: MonitorHost, runId: string): Promise<RunRecord> {
  const { store, tracker, clock } = host;
  const run = await mustGetRun(host, runId);
  if (run.status === 'NOT_STARTED' || run.status === 'QUEUED') {
    await tracker.track(
      store.transition(runId, {
        to: 'CANCELED',
        from: [run.status],
        at: clock.now(),
        message: 'Run canceled before it was launched.',
      }),
    );
    return mustGetRun(host, runId);
  }
  if (run.status !== 'STARTING' && run.status !== 'STARTED') return run;
  const canceling = await tracker.track(
    store.transition(runId, {
      to: 'CANCELING',
      from: ['STARTING', 'STARTED'],
      at: clock.now(),
      message: 'Canceling run: termination requested.',
      tags: { [TAGS.cancelReason]: 'USER_REQUEST' },
    }),
  );
  if (!canceling) return mustGetRun(host, runId);
  let problem: string | undefined;
  try {
    if (!(await callLauncher(host, 'terminate', () => terminateOnce(host, canceling)))) {
      problem = 'the launcher reported the worker is still there';
    }
  } catch (error) {
    problem = errorText(error);
  }
  if (problem) {
    const message = messages.cancelTerminateFailed(problem);
    await tracker.track(store.appendEvent(runId, { type: 'ENGINE_EVENT', message, at: clock.now() }));
    runLogger(host, runId).warn(message);
  }
  return mustGetRun(host, runId);
}
