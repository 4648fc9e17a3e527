// createRunMonitor({ metrics }): each runwarden_* metric, read from the registry as Prometheus text (the
// real HTTP scrape is in test/http-server.test.ts). Time is simulated, so latencies are exact.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ConfigError, RunwardenError } from '../src/core/errors.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { createRunMonitor } from '../src/monitor/monitor.js';
import { FakeLauncher } from '../src/testing/index.js';
import { type HealthResult, TAGS, type WorkerStatus } from '../src/core/types.js';
import { type Harness, type HarnessOptions, newClock, SECOND, stoppedAfterEach, T0 } from './harness.js';
import { built, NODE } from './processes.js';
import { type Family, parsePrometheusText, sampleValue } from './prometheus.js';

const execFileAsync = promisify(execFile);

const metricsHarness = stoppedAfterEach();
async function harness(options: HarnessOptions = {}) {
  const registry = new Registry();
  const h = await metricsHarness({ ...options, metrics: registry });
  return { ...h, registry, scrape: () => scrape(registry, h) };
}

const LABEL_VALUES: Record<string, RegExp> = {
  status: /^(NOT_STARTED|QUEUED|STARTING|STARTED|CANCELING)$/,
  action: /^(fail|cancel|resume|terminate)$/,
  reason: /^[A-Z_]+$/,
  result: /^(RUNNING|NOT_FOUND|FAILED|SUCCESS|UNKNOWN|ERROR|INVALID)$/,
  effect: /^[a-zA-Z]+$/,
  le: /^([0-9.e+-]+|\+Inf)$/,
};

/** The registry as Prometheus text, parsed; every runwarden_* label is from its bounded set, never a run id. */
async function scrape(registry: Registry, h: Harness): Promise<Map<string, Family>> {
  const families = parsePrometheusText(await registry.metrics());
  const runIds = (await h.store.listRuns()).map((r) => r.runId);
  for (const family of families.values()) {
    for (const sample of family.samples) {
      for (const [label, value] of Object.entries(sample.labels)) {
        expect(value, `${sample.name} ${label}`).toMatch(LABEL_VALUES[label] ?? /^$/);
        for (const runId of runIds) expect(value).not.toContain(runId);
      }
    }
  }
  return families;
}

const decisions = (families: Map<string, Family>) =>
  Object.fromEntries(
    (families.get('runwarden_decisions_total')?.samples ?? []).map((s) => [
      `${s.labels.action} ${s.labels.reason}`,
      s.value,
    ]),
  );

const histogram = (families: Map<string, Family>, name: string) => ({
  count: sampleValue(families, `${name}_count`),
  sum: sampleValue(families, `${name}_sum`),
  le: (le: string) => sampleValue(families, `${name}_bucket`, { le }),
});

describe('the families', () => {
  it('are all registered, with HELP and TYPE, before anything happened', async () => {
    const h = await harness();
    const families = await h.scrape();
    const types = Object.fromEntries([...families.values()].map((f) => [f.name, f.type]));
    expect(types).toEqual({
      runwarden_runs: 'gauge',
      runwarden_decisions_total: 'counter',
      runwarden_deadline_lateness_seconds: 'histogram',
      runwarden_crash_detection_seconds: 'histogram',
      runwarden_health_checks_total: 'counter',
      runwarden_health_poll_duration_seconds: 'histogram',
      runwarden_effect_errors_total: 'counter',
      runwarden_crash_brake_held_total: 'counter',
      runwarden_crash_brake_engaged: 'gauge',
    });
    for (const family of families.values()) expect(family.help, family.name).not.toBe('');
    // No default process metrics: a host that wants them collects them into its registry itself.
    expect([...families.keys()].some((name) => name.startsWith('process_'))).toBe(false);
  });
});

describe('runwarden_runs', () => {
  it('counts the runs the monitor watches by status, when scraped; none after stop()', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const ids: Record<string, string[]> = {};
    const make = async (
      status: string,
      path: ('QUEUED' | 'STARTING' | 'STARTED' | 'CANCELING' | 'SUCCESS')[],
    ) => {
      const { runId } = await store.createRun({});
      for (const to of path) await store.transition(runId, { to });
      (ids[status] ??= []).push(runId);
    };
    await make('NOT_STARTED', []);
    await make('NOT_STARTED', []);
    await make('QUEUED', ['QUEUED']);
    await make('STARTING', ['STARTING']);
    for (let i = 0; i < 3; i++) await make('STARTED', ['STARTING', 'STARTED']);
    await make('CANCELING', ['STARTING', 'CANCELING']);
    await make('SUCCESS', ['STARTING', 'STARTED', 'SUCCESS']);
    const h = await harness({ clock, store });
    const runs = async () =>
      Object.fromEntries(
        (await h.scrape()).get('runwarden_runs')!.samples.map((s) => [s.labels.status, s.value]),
      );
    expect(await runs()).toEqual({ NOT_STARTED: 2, QUEUED: 1, STARTING: 1, STARTED: 3, CANCELING: 1 });

    // A worker's own report moves its run; the gauge follows what the monitor learned.
    await store.transition(ids.STARTED![0]!, { to: 'SUCCESS' });
    await store.transition(ids.NOT_STARTED![0]!, { to: 'QUEUED' });
    await h.monitor.settle();
    expect(await runs()).toEqual({ NOT_STARTED: 1, QUEUED: 2, STARTING: 1, STARTED: 2, CANCELING: 1 });

    await h.monitor.stop();
    expect(await runs()).toEqual({ NOT_STARTED: 0, QUEUED: 0, STARTING: 0, STARTED: 0, CANCELING: 0 });
  });
});

describe('runwarden_decisions_total and runwarden_deadline_lateness_seconds', () => {
  it('a start timeout: fail and terminate START_TIMEOUT; lateness from the deadline to the write', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    // Never launched, and its deadline (T0 + 60 s) passes while no monitor watches.
    const { runId: unwatched } = await store.createRun({});
    clock.set(T0 + 90 * SECOND);
    const h = await harness({ clock, store, config: { startTimeoutSeconds: 60 } });
    expect(await h.status(unwatched)).toBe('FAILURE');
    let families = await h.scrape();
    expect(decisions(families)).toEqual({ 'fail START_TIMEOUT': 1 });
    const lateness = () => histogram(families, 'runwarden_deadline_lateness_seconds');
    expect(lateness()).toMatchObject({ count: 1, sum: 30 });
    expect(lateness().le('10')).toBe(0);
    expect(lateness().le('30')).toBe(1);

    // Launched, never reports STARTED: fails on the timer, exactly at its deadline, and its worker is
    // terminated (terminateOnStartTimeout).
    const launched = await h.launchedRun();
    await h.advance(60 * SECOND);
    expect(await h.failureReason(launched)).toBe('START_TIMEOUT');
    families = await h.scrape();
    expect(decisions(families)).toEqual({ 'fail START_TIMEOUT': 2, 'terminate START_TIMEOUT': 1 });
    expect(lateness()).toMatchObject({ count: 2, sum: 30 });
    expect(lateness().le('0.001')).toBe(1);
  });

  it('max runtime: terminate (the CANCELING write, with its lateness) then fail MAX_RUNTIME_EXCEEDED', async () => {
    const h = await harness();
    const runId = await h.startedRun({ [TAGS.maxRuntime]: '10' });
    await h.advance(10 * SECOND);
    expect(await h.failureReason(runId)).toBe('MAX_RUNTIME_EXCEEDED');
    const families = await h.scrape();
    expect(decisions(families)).toEqual({
      'terminate MAX_RUNTIME_EXCEEDED': 1,
      'fail MAX_RUNTIME_EXCEEDED': 1,
    });
    // One deadline, one observation: the FAILURE after terminating enforces no deadline of its own.
    expect(histogram(families, 'runwarden_deadline_lateness_seconds')).toMatchObject({ count: 1, sum: 0 });
  });

  it('cancel timeout: cancel CANCEL_TIMEOUT', async () => {
    const h = await harness({ config: { cancelTimeoutSeconds: 60 } });
    const runId = await h.startedRun();
    await h.monitor.cancel(runId);
    await h.advance(60 * SECOND);
    expect(await h.status(runId)).toBe('CANCELED');
    const families = await h.scrape();
    expect(decisions(families)).toEqual({ 'cancel CANCEL_TIMEOUT': 1 });
    expect(histogram(families, 'runwarden_deadline_lateness_seconds')).toMatchObject({ count: 1, sum: 0 });
  });

  it("a decision the worker's own report beat is not counted", async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const transition = store.transition.bind(store);
    // The worker's STARTED lands just before the monitor's FAILURE: the compare-and-set does not apply.
    store.transition = async (runId, change) => {
      if (change.to === 'FAILURE') await transition(runId, { to: 'STARTED' });
      return transition(runId, change);
    };
    const h = await harness({ clock, store, config: { startTimeoutSeconds: 60 } });
    const runId = await h.launchedRun();
    await h.advance(60 * SECOND);
    expect(await h.status(runId)).toBe('STARTED');
    const families = await h.scrape();
    expect(decisions(families)).toEqual({});
    expect(histogram(families, 'runwarden_deadline_lateness_seconds').count).toBe(0);
  });
});

describe('runwarden_crash_detection_seconds', () => {
  it('runs from the first unsure or bad health result to the resume, and to the failure', async () => {
    const h = await harness({
      config: { pollIntervalSeconds: 10, unknownHealthTolerance: 2, maxResumeRunAttempts: 1 },
      launcher: { health: 'UNKNOWN' },
    });
    const runId = await h.startedRun();
    await h.step(2, 10 * SECOND); // two UNKNOWNs, at +10 s and +20 s: tolerated
    expect(h.launcher.calls.resume).toEqual([]);
    await h.advance(10 * SECOND); // the third, at +30 s: the worker is deemed gone, 20 s after the first
    expect(h.launcher.calls.resume).toEqual([{ runId, attempt: 1 }]);
    let families = await h.scrape();
    expect(decisions(families)).toEqual({ 'resume RUN_WORKER_CRASHED': 1 });
    const detection = () => histogram(families, 'runwarden_crash_detection_seconds');
    expect(detection()).toMatchObject({ count: 1, sum: 20 });

    // The resumed worker starts a new streak; FAILED acts at once, and no attempt is left.
    h.launcher.setHealth('FAILED');
    await h.advance(10 * SECOND);
    expect(await h.failureReason(runId)).toBe('RUN_WORKER_CRASHED');
    families = await h.scrape();
    expect(decisions(families)).toEqual({ 'resume RUN_WORKER_CRASHED': 1, 'fail RUN_WORKER_CRASHED': 1 });
    expect(detection()).toMatchObject({ count: 2, sum: 20 });
    expect(detection().le('0.01')).toBe(1);
    expect(detection().le('15')).toBe(1);
    expect(detection().le('30')).toBe(2);
    // Crashes are no deadlines.
    expect(histogram(families, 'runwarden_deadline_lateness_seconds').count).toBe(0);
  });

  it('a healthy result in between starts the streak again', async () => {
    const h = await harness({
      config: { pollIntervalSeconds: 10, unknownHealthTolerance: 1, maxResumeRunAttempts: 0 },
      launcher: { health: 'UNKNOWN' },
    });
    const runId = await h.startedRun();
    await h.advance(10 * SECOND); // unsure at +10 s
    h.launcher.setHealth('RUNNING');
    await h.advance(10 * SECOND); // healthy at +20 s
    h.launcher.setHealth({ status: 'RUNNING', transient: true });
    await h.step(2, 10 * SECOND); // unsure at +30 s and +40 s: acts, 10 s after +30 s
    expect(await h.failureReason(runId)).toBe('RUN_WORKER_CRASHED');
    const families = await h.scrape();
    expect(histogram(families, 'runwarden_crash_detection_seconds')).toMatchObject({ count: 1, sum: 10 });
  });
});

describe('liveness decisions', () => {
  it('a hung worker is counted as resumed, then failed HEARTBEAT_TIMEOUT, detected at its missed deadline', async () => {
    const h = await harness({ config: { heartbeatTimeoutSeconds: 30, maxResumeRunAttempts: 1 } });
    await h.startedRun();
    await h.advance(30 * SECOND); // missed: terminate, resume
    await h.advance(30 * SECOND); // the new worker is silent too: terminate, fail
    const families = await h.scrape();
    expect(decisions(families)).toMatchObject({ 'resume HEARTBEAT_TIMEOUT': 1, 'fail HEARTBEAT_TIMEOUT': 1 });
    // Each decision was written at its missed deadline on the simulated clock: no lateness, no detection delay.
    expect(histogram(families, 'runwarden_crash_detection_seconds')).toMatchObject({ count: 2, sum: 0 });
  });
});

describe('runwarden_health_checks_total and runwarden_health_poll_duration_seconds', () => {
  it('counts each check by result, and each poll', async () => {
    const answers = new Map<string, HealthResult | 'throw'>();
    const h = await harness({
      config: { pollIntervalSeconds: 10, unknownHealthTolerance: 100 },
      launcher: {
        health: async (run) => {
          const answer = answers.get(run.runId) ?? { status: 'RUNNING' };
          if (answer === 'throw') throw new Error('API down');
          return answer;
        },
      },
    });
    const [a, b, c, d] = [
      await h.startedRun(),
      await h.startedRun(),
      await h.startedRun(),
      await h.startedRun(),
    ];
    answers.set(b!, 'throw');
    answers.set(c!, { status: 'FAILED', transient: true });
    answers.set(d!, { status: 'BOGUS' as WorkerStatus });
    await h.step(3, 10 * SECOND);
    expect(await h.status(a!)).toBe('STARTED');
    const families = await h.scrape();
    const checks = Object.fromEntries(
      families.get('runwarden_health_checks_total')!.samples.map((s) => [s.labels.result, s.value]),
    );
    expect(checks).toEqual({ RUNNING: 3, ERROR: 3, UNKNOWN: 3, INVALID: 3 });
    // The poll at start (no runs yet) and three more.
    expect(histogram(families, 'runwarden_health_poll_duration_seconds').count).toBe(4);
  });
});

describe('runwarden_effect_errors_total', () => {
  it('counts failed effects by name, and failed polls', async () => {
    const clock = newClock();
    const store = new MemoryRunStore({ clock });
    const transition = store.transition.bind(store);
    let failWrites = 2;
    store.transition = async (runId, change) => {
      if (change.to === 'FAILURE' && failWrites-- > 0)
        throw new RunwardenError('STORE_BUSY', 'database is locked');
      return transition(runId, change);
    };
    const listRuns = store.listRuns.bind(store);
    let failLists = 0;
    store.listRuns = async (filter) => {
      if (failLists-- > 0) throw new RunwardenError('STORE_BUSY', 'database is locked');
      return listRuns(filter);
    };
    const h = await harness({
      clock,
      store,
      config: { startTimeoutSeconds: 60, storeRetrySeconds: 5, pollIntervalSeconds: 3600 },
    });
    const runId = await h.launchedRun();
    await h.step(12, 10 * SECOND); // fails at 60 s, retried at 65 s and 70 s
    expect(await h.status(runId)).toBe('FAILURE');
    failLists = 1;
    await h.advance(3600 * SECOND);
    const families = await h.scrape();
    expect(sampleValue(families, 'runwarden_effect_errors_total', { effect: 'failStartTimeout' })).toBe(2);
    expect(sampleValue(families, 'runwarden_effect_errors_total', { effect: 'pollHealth' })).toBe(1);
    expect(decisions(families)).toEqual({ 'fail START_TIMEOUT': 1, 'terminate START_TIMEOUT': 1 });
  });
});

describe('the metrics option', () => {
  const options = () => ({ store: new MemoryRunStore(), launcher: new FakeLauncher() });

  it('left out, prom-client is not even loaded', async () => {
    // A fresh process on the built package: this one has prom-client loaded already.
    const script = `
      import { createRequire } from 'node:module';
      const { createRunMonitor, MemoryRunStore } = await import(${JSON.stringify(built('src/index.js'))});
      const { FakeLauncher } = await import(${JSON.stringify(built('src/testing/index.js'))});
      const store = new MemoryRunStore();
      await store.createRun({});
      const monitor = createRunMonitor({ store, launcher: new FakeLauncher(), config: { startTimeoutSeconds: 0.01 } });
      await monitor.start();
      await new Promise((resolve) => setTimeout(resolve, 50));
      await monitor.settle();
      await monitor.stop();
      const failed = (await store.listRuns({ statuses: ['FAILURE'] })).length;
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('prom-client'));
      console.log(JSON.stringify({ failed, loaded: loaded.length }));`;
    const { stdout } = await execFileAsync(NODE, ['--input-type=module', '-e', script]);
    expect(JSON.parse(stdout)).toEqual({ failed: 1, loaded: 0 });
  });

  it('refuses what is not a prom-client Registry, naming the option', () => {
    for (const bad of [{}, 'registry', 42, new Map()]) {
      const create = () => createRunMonitor({ ...options(), metrics: bad as unknown as Registry });
      expect(create).toThrow(ConfigError);
      expect(create).toThrow(/^Invalid metrics option: expected a prom-client Registry/);
    }
  });

  it("refuses a registry that already holds another monitor's metrics, saying what to do", () => {
    const registry = new Registry();
    createRunMonitor({ ...options(), metrics: registry });
    expect(() => createRunMonitor({ ...options(), metrics: registry })).toThrow(
      /the registry already holds runwarden_runs .*Give each monitor its own Registry/,
    );
  });
});
