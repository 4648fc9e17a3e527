// The health poll: one small function per job it does, in the order a poll does them. It is also a sweep:
// every active run is delivered to the supervisor, so a run the feed never mentioned (created after start:
// creation appends no event) or an update it dropped is found anyway.
import { fromCallback } from 'xstate';
import { errorText, messages } from '../../machines/messages.js';
import type { CheckedHealth } from '../../machines/run.machine.js';
import type { PollHealthInput, SupervisorEvent } from '../../machines/supervisor.machine.js';
import { ACTIVE_STATUSES, type HealthResult, type RunRecord, type RunStatus, TAGS } from '../core/types.js';
import { type BrakeVerdict, type CrashBrake, isBadResult, type PollTally, tallyOf } from './crash-brake.js';
import { clearTerminatePending } from './effects.js';
import {
  appendMonitorEvent,
  callLauncher,
  isLeaseLost,
  type MonitorHost,
  runLogger,
  terminateOnce,
} from './host.js';
import { type HealthCheckLabel, NO_METRICS } from './metrics.js';

const LIST_PAGE = 1000;

/** Active runs not covered by the health checks, which carry their own fresh record. */
const SWEPT_STATUSES: readonly RunStatus[] = ['NOT_STARTED', 'QUEUED', 'STARTING', 'CANCELING'];

export interface HealthPollOptions {
  /** Pending while start() reads every active run into the supervisor: that read is the first sweep. */
  initialLoad: () => Promise<void> | undefined;
  /** Judges each poll's bad results together; it outlives a single poll (it counts how long it held). */
  crashBrake: CrashBrake;
}

type Checked = { run: RunRecord; result: CheckedHealth };

export function healthPollActor(host: MonitorHost, options: HealthPollOptions) {
  const { launcher, logger, tracker, config, clock, metrics } = host;
  const healthChecks = launcher.supportsHealthCheck && typeof launcher.checkHealth === 'function';

  return fromCallback<{ type: 'stop' }, PollHealthInput>(({ sendBack }) => {
    let stopped = false;
    // Only runs this monitor owns reach the supervisor, judged when sent: a partition may be lost mid-poll.
    const send = (event: SupervisorEvent) => {
      if (stopped) return;
      if (event.type === 'runs.updated') {
        const runs = ownedRuns(host, event.runs);
        if (runs.length > 0) sendBack({ type: 'runs.updated', runs });
      } else if (event.type !== 'health.checked' || host.leases.owns(event.run.runId)) {
        sendBack(event);
      }
    };

    const sweep = async () => {
      const initialLoad = options.initialLoad();
      if (initialLoad) {
        // Sweeping as well delivered every run twice at start (29% of start()'s CPU at 100k runs).
        await initialLoad;
        return;
      }
      // Health results carry a fresh record of each STARTED run; without them, sweep STARTED runs too.
      for await (const page of pagesOf(host, healthChecks ? SWEPT_STATUSES : ACTIVE_STATUSES)) {
        if (stopped) return;
        send({ type: 'runs.updated', runs: page });
      }
    };

    const checkStartedRuns = async () => {
      if (!healthChecks) return;
      const { crashBrake } = options;
      // With the brake on, bad results wait for the poll's verdict; good ones are delivered at once.
      const bad: Checked[] = [];
      let checked = 0;
      for await (const page of pagesOf(host, ['STARTED'])) {
        if (stopped) return;
        await forEachConcurrently(ownedRuns(host, page), config.healthCheckConcurrency, async (run) => {
          if (stopped) return;
          const result = await checkHealth(host, run);
          checked += 1;
          if (crashBrake.enabled && isBadResult(result)) bad.push({ run, result });
          else send({ type: 'health.checked', run, result });
        });
      }
      if (stopped || !crashBrake.enabled) return;
      const wasHolding = crashBrake.holding;
      const tally = tallyOf(
        bad.map((b) => b.result),
        checked,
      );
      const verdict = crashBrake.judge(tally, host.leases.share);
      metrics.crashBrake(verdict.kind === 'hold' ? bad.length : 0);
      if (verdict.kind === 'hold') {
        await holdCrashActions(host, bad, tally, verdict, () => stopped);
        return;
      }
      if (verdict.kind === 'release') {
        logger.error(
          { ...tally, heldForSeconds: verdict.heldForSeconds },
          `Crash brake: held crash actions for ${Math.round(verdict.heldForSeconds)} seconds, the most crashBrake.maxHoldSeconds allows; acting on ${bad.length} runs whose workers look dead or cannot be checked.`,
        );
      } else if (wasHolding) {
        logger.warn(
          { ...tally },
          `Crash brake released: ${describeTally(tally)}; acting on what this poll found.`,
        );
      }
      for (const { run, result } of bad) send({ type: 'health.checked', run, result });
    };

    const poll = async () => {
      await sweep();
      if (stopped) return;
      await checkStartedRuns();
      if (stopped) return;
      await finishPendingTerminations(host, () => stopped);
    };

    const began = clock.now();
    // Launcher calls inside may wait on the clock (their timeout), so the poll as a whole is launcher work.
    tracker.trackLauncher(
      poll()
        .catch((err) => {
          metrics.effectError('pollHealth');
          logger.error({ err }, 'Health poll failed; retrying at the next interval.');
        })
        .finally(() => {
          if (!stopped) metrics.healthPoll((clock.now() - began) / 1000);
          send({ type: 'poll.done' });
        }),
    );
    return () => {
      stopped = true;
    };
  });
}

async function checkHealth(host: MonitorHost, run: RunRecord): Promise<CheckedHealth> {
  let result: HealthResult;
  let label: HealthCheckLabel;
  try {
    const check = host.launcher.checkHealth;
    if (check) {
      result = await callLauncher(host, 'checkHealth', () => check.call(host.launcher, run));
      label = result.transient === true ? 'UNKNOWN' : result.status;
    } else {
      result = { status: 'UNKNOWN', transient: true, message: 'The launcher cannot check health.' };
      label = 'ERROR';
    }
  } catch (error) {
    result = { status: 'UNKNOWN', transient: true, message: `Health check failed: ${errorText(error)}` };
    label = 'ERROR';
  }
  if (host.metrics === NO_METRICS) return result;
  host.metrics.healthCheck(label);
  // When it arrived: the first bad result of a streak starts the crash detection time.
  return { ...result, at: host.clock.now() };
}

/** "3 of 40 checked runs look dead and 1 could not be checked" */
function describeTally(tally: PollTally): string {
  return `${tally.dead} of ${tally.checked} checked runs look dead and ${tally.unsure} could not be checked`;
}

/**
 * One poll's crash actions held by the brake: an engine event on each run, one error in the log. The runs'
 * actors hear nothing, so no unsure streak grows either; the next poll checks them all again.
 */
async function holdCrashActions(
  host: MonitorHost,
  held: readonly Checked[],
  tally: PollTally,
  verdict: Extract<BrakeVerdict, { kind: 'hold' }>,
  stopped: () => boolean,
): Promise<void> {
  const { config, logger, tracker } = host;
  const { ratio, maxHoldSeconds } = config.crashBrake;
  const remaining = Math.max(0, Math.ceil(maxHoldSeconds - verdict.heldForSeconds));
  const why = `${describeTally(tally)} in one poll, more than crashBrake.ratio ${ratio} of them`;
  logger.error(
    { ...tally, heldRuns: held.length, heldForSeconds: verdict.heldForSeconds },
    `Crash brake: ${why}. This looks like a launcher, network or dependency problem rather than crashed workers: taking no crash action in this poll. Deciding again at the next poll; acting anyway in ${remaining} seconds if it persists.`,
  );
  let failures = 0;
  for (const { run, result } of held) {
    if (stopped()) return;
    const message = messages.crashBrakeHeld(messages.workerStatus(result), why, remaining, config.dryRun);
    try {
      const data = {
        crashBrake: { ...tally, ratio, heldForSeconds: verdict.heldForSeconds },
        dryRun: config.dryRun,
      };
      await tracker.track(appendMonitorEvent(host, run.runId, message, data));
    } catch (err) {
      // Another monitor owns the run now: it is not ours to hold or to report.
      if (isLeaseLost(err)) host.leases.lost(run.runId, err);
      // The hold itself does not depend on the event: log the first failure, count the rest.
      else if (failures++ === 0)
        runLogger(host, run.runId).error({ err }, 'Could not record a crash brake hold.');
    }
  }
}

/**
 * Terminations the monitor journaled with a FAILURE write (start timeout) but did not finish, because it
 * died or the launcher failed: nothing else watches a terminal run, so the worker would live forever.
 */
export async function finishPendingTerminations(
  host: MonitorHost,
  stopped: () => boolean = () => false,
): Promise<void> {
  // Listing every failed run is not free with many of them: look only when there may be something to do.
  if (!host.pendingTerminations) return;
  host.pendingTerminations = false;
  if (host.config.dryRun) {
    // A dry run calls no launcher; a monitor that acts will finish these.
    host.logger.info('Dry run: leaving journaled terminations (runwarden/terminate_pending) alone.');
    return;
  }
  let unfinished = false;
  for await (const page of pagesOf(host, ['FAILURE'], { [TAGS.terminatePending]: 'true' })) {
    for (const run of page) {
      if (stopped()) {
        host.pendingTerminations = true;
        return;
      }
      // A store written before the tags filter existed may ignore it: never terminate an unjournaled run.
      if (run.tags[TAGS.terminatePending] !== 'true') continue;
      // Another monitor finishes the journaled terminations of the runs it owns.
      if (!(await host.leases.mayAct(run.runId))) continue;
      if (!(await finishPendingTermination(host, run))) unfinished = true;
    }
  }
  if (unfinished) host.pendingTerminations = true;
}

/** Resolves whether the worker is confirmed gone. */
async function finishPendingTermination(host: MonitorHost, run: RunRecord): Promise<boolean> {
  const log = runLogger(host, run.runId);
  let problem: string;
  try {
    if (await callLauncher(host, 'terminate', () => terminateOnce(host, run))) {
      await clearTerminatePending(host, run.runId);
      log.info('Finished terminating the worker of a run that failed to start.');
      return true;
    }
    problem = 'the launcher reported the worker is still there';
  } catch (error) {
    problem = errorText(error);
  }
  log.warn(
    { problem },
    `Could not terminate the worker of a failed run (${problem}); retrying at the next poll.`,
  );
  return false;
}

/** The runs of a page that this monitor owns (all of them unless several monitors share the store). */
export function ownedRuns(host: MonitorHost, runs: RunRecord[]): RunRecord[] {
  return host.leases.enabled ? runs.filter((run) => host.leases.owns(run.runId)) : runs;
}

/** Every run in `statuses` (and with `tags`, when given), a page at a time, in runId order. */
export async function* pagesOf(
  host: MonitorHost,
  statuses: readonly RunStatus[],
  tags?: Record<string, string>,
) {
  let afterRunId: string | undefined;
  for (;;) {
    const page = await host.tracker.track(
      host.store.listRuns({ statuses: [...statuses], limit: LIST_PAGE, afterRunId, tags }),
    );
    if (page.length > 0) yield page;
    const last = page.at(-1);
    if (page.length < LIST_PAGE || !last) return;
    afterRunId = last.runId;
  }
}

/** Runs `work` over items with at most `limit` in flight, yielding to timers between items. */
async function forEachConcurrently<T>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
      // A launcher answering from memory resolves in a microtask; without a macrotask turn now and then
      // a large poll would starve the timers it shares the event loop with.
      if (next % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
