// Prometheus metrics of a monitor (prom-client). With `createRunMonitor({ metrics: registry })` the monitor
// registers its metrics in that registry; without it every part calls NO_METRICS, whose methods do nothing,
// and no prom-client object exists. Label values come from small fixed sets (actions, reasons, health
// results, effect names): never run ids, tags or store URLs, so the number of series stays bounded.
import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';
import type { AnyActorRef } from 'xstate';
import type { DecisionInput } from '../../machines/run.machine.js';
import { ConfigError } from '../core/errors.js';
import { ACTIVE_STATUSES, type HealthResult, type RunStatus, WORKER_STATUSES } from '../core/types.js';

type DecisionAction = DecisionInput['action'];

/**
 * `result` label of runwarden_health_checks_total: the worker status (UNKNOWN for a transient one), ERROR
 * when the check threw or timed out, INVALID for a status that is not a WorkerStatus.
 */
export type HealthCheckLabel = HealthResult['status'] | 'ERROR' | 'INVALID';

/**
 * A prom-client Registry, as far as the monitor needs one: structural, so the published types do not
 * depend on prom-client and a host's own copy of prom-client fits.
 */
export interface MetricsRegistry {
  registerMetric(metric: unknown): void;
  getSingleMetric(name: string): unknown;
}

/** What the monitor's parts record. Times are epoch ms on the monitor's clock. */
export interface MonitorMetrics {
  /**
   * A decision written to the store at `at`; observes lateness (deadline) or detection time (badSince). A dry
   * run's decision is counted with the label dry_run="true".
   */
  decision(
    action: DecisionAction,
    reason: string,
    at: number,
    due?: Pick<DecisionInput, 'deadline' | 'badSince'>,
    options?: { dryRun?: boolean },
  ): void;
  /** A poll's crash brake verdict: how many runs it held (0 when it did not brake). */
  crashBrake(heldRuns: number): void;
  healthCheck(result: HealthCheckLabel): void;
  healthPoll(seconds: number): void;
  effectError(effect: string): void;
}

/** The recorder of a monitor without a registry: nothing to allocate, nothing to do. */
export const NO_METRICS: MonitorMetrics = {
  decision() {},
  crashBrake() {},
  healthCheck() {},
  healthPoll() {},
  effectError() {},
};

/** The metric names (docs/api.md); each is registered once per registry. */
const METRIC_NAMES = {
  runs: 'runwarden_runs',
  decisions: 'runwarden_decisions_total',
  deadlineLateness: 'runwarden_deadline_lateness_seconds',
  crashDetection: 'runwarden_crash_detection_seconds',
  healthChecks: 'runwarden_health_checks_total',
  healthPollDuration: 'runwarden_health_poll_duration_seconds',
  effectErrors: 'runwarden_effect_errors_total',
  crashBrakeHeld: 'runwarden_crash_brake_held_total',
  crashBrakeEngaged: 'runwarden_crash_brake_engaged',
} as const;

// Deadlines are enforced within milliseconds unless the event loop or the store is slow; the long tail is a
// monitor that was down when the deadline passed.
const LATENESS_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600];
// Detection takes from one store round trip (FAILED, NOT_FOUND) to unknownHealthTolerance poll intervals.
const DETECTION_BUCKETS = [0.01, 0.1, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600];
const POLL_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Reasons are the machine's constants; anything else (a future reason, a bug) is one `OTHER` series. */
const REASON = /^[A-Z][A-Z0-9_]{0,63}$/;
const EFFECT = /^[a-zA-Z][a-zA-Z0-9]{0,63}$/;
const CHECK_LABELS: ReadonlySet<string> = new Set<HealthCheckLabel>([...WORKER_STATUSES, 'ERROR', 'INVALID']);

/**
 * Registers the monitor's metrics in `registry`. `root` returns the supervisor while the monitor runs: the
 * runs gauge is counted from its run actors when scraped, so watching runs costs nothing between scrapes.
 */
export function createMonitorMetrics(
  registry: MetricsRegistry,
  root: () => AnyActorRef | undefined,
): MonitorMetrics {
  checkRegistry(registry);
  // Loaded here, not imported: prom-client takes ~100 ms to load and builds its global registry, which a
  // monitor without metrics must not pay for. It is CommonJS, so require() loads it synchronously.
  const { Counter, Gauge, Histogram } = createRequire(import.meta.url)(
    'prom-client',
  ) as typeof import('prom-client');
  const registers = [registry as Registry];
  new Gauge({
    name: METRIC_NAMES.runs,
    help: 'Runs this monitor watches, by stored status.',
    labelNames: ['status'],
    registers,
    collect() {
      const counts = countWatchedRuns(root());
      for (const status of ACTIVE_STATUSES) this.set({ status }, counts.get(status) ?? 0);
    },
  });
  const decisions = new Counter({
    name: METRIC_NAMES.decisions,
    help: 'Decisions the monitor wrote to the store, by action (fail, cancel, resume, terminate) and reason.',
    // dry_run only on a dry run's decisions, so a normal monitor's series keep their two labels.
    labelNames: ['action', 'reason', 'dry_run'],
    registers,
  });
  const lateness = new Histogram({
    name: METRIC_NAMES.deadlineLateness,
    help: 'Seconds from a run deadline to the decision that enforced it being written.',
    buckets: LATENESS_BUCKETS,
    registers,
  });
  const detection = new Histogram({
    name: METRIC_NAMES.crashDetection,
    help: 'Seconds from the first bad or unsure health result of a worker to the decision (resume or fail) being written.',
    buckets: DETECTION_BUCKETS,
    registers,
  });
  const healthChecks = new Counter({
    name: METRIC_NAMES.healthChecks,
    help: 'Health checks of run workers, by result (the worker status; ERROR: the check threw or timed out).',
    labelNames: ['result'],
    registers,
  });
  const pollDuration = new Histogram({
    name: METRIC_NAMES.healthPollDuration,
    help: 'Seconds one health poll took: the sweep of active runs, the health checks, pending terminations.',
    buckets: POLL_BUCKETS,
    registers,
  });
  const effectErrors = new Counter({
    name: METRIC_NAMES.effectErrors,
    help: 'Effects (store or launcher calls of a run actor) that failed, by effect; store effects are retried.',
    labelNames: ['effect'],
    registers,
  });

  const brakeHeld = new Counter({
    name: METRIC_NAMES.crashBrakeHeld,
    help: 'Crash actions the crash brake held: one per run per poll that found too many workers dead at once.',
    registers,
  });
  const brakeEngaged = new Gauge({
    name: METRIC_NAMES.crashBrakeEngaged,
    help: '1 while the last health poll held its crash actions (crash brake), else 0.',
    registers,
  });

  return {
    decision(action, reason, at, due, options) {
      const label = REASON.test(reason) ? reason : 'OTHER';
      if (options?.dryRun) {
        decisions.inc({ action, reason: label, dry_run: 'true' });
        return;
      }
      decisions.inc({ action, reason: label });
      if (due?.deadline !== undefined) lateness.observe(Math.max(0, at - due.deadline) / 1000);
      if (due?.badSince !== undefined) detection.observe(Math.max(0, at - due.badSince) / 1000);
    },
    healthCheck(result) {
      // A launcher may answer anything: only known statuses become label values.
      healthChecks.inc({ result: CHECK_LABELS.has(result) ? result : 'INVALID' });
    },
    crashBrake(heldRuns) {
      if (heldRuns > 0) brakeHeld.inc(heldRuns);
      brakeEngaged.set(heldRuns > 0 ? 1 : 0);
    },
    healthPoll(seconds) {
      pollDuration.observe(seconds);
    },
    effectError(effect) {
      effectErrors.inc({ effect: EFFECT.test(effect) ? effect : 'other' });
    },
  };
}

/** Refuses what is not a prom-client Registry, or one that already holds a monitor's metrics. */
function checkRegistry(registry: unknown): asserts registry is MetricsRegistry {
  const r = registry as Partial<MetricsRegistry> | null | undefined;
  if (
    !r ||
    typeof r !== 'object' ||
    typeof r.registerMetric !== 'function' ||
    typeof r.getSingleMetric !== 'function'
  ) {
    throw new ConfigError(
      `Invalid metrics option: expected a prom-client Registry (new Registry() from 'prom-client'), got ${describe(registry)}.`,
      [{ path: 'metrics', message: 'expected a prom-client Registry' }],
    );
  }
  const taken = Object.values(METRIC_NAMES).find((name) => r.getSingleMetric!(name) !== undefined);
  if (taken) {
    throw new ConfigError(
      `Invalid metrics option: the registry already holds ${taken} (another monitor's metrics). Give each monitor its own Registry (Registry.merge serves several together), or clear the old one first.`,
      [{ path: 'metrics', message: `the registry already holds ${taken}` }],
    );
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  return `an object without registerMetric() and getSingleMetric()`;
}

/** The stored status of every run actor under the supervisor (supervisor → shards → runs). */
function countWatchedRuns(root: AnyActorRef | undefined): Map<RunStatus, number> {
  const counts = new Map<RunStatus, number>();
  if (!root) return counts;
  for (const shard of Object.values(root.getSnapshot().children ?? {}) as (AnyActorRef | undefined)[]) {
    if (shard?.src !== 'shard') continue;
    for (const run of Object.values(shard.getSnapshot().children ?? {}) as (AnyActorRef | undefined)[]) {
      const snapshot = run?.getSnapshot() as { status?: string; context?: { run?: { status?: RunStatus } } };
      const status = snapshot?.context?.run?.status;
      if (snapshot?.status !== 'active' || !status) continue;
      counts.set(status, (counts.get(status) ?? 0) + 1);
    }
  }
  return counts;
}
