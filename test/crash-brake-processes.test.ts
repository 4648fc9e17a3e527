// The crash brake with real processes: 30 run workers on the worker SDK, started by a ProcessRunLauncher and
// watched by a monitor in this process on real time, some of them SIGKILLed at once. Most of them dying in
// one poll is held (and acted on after maxHoldSeconds); a few dying is acted on at the first poll; health
// checks that all fail at once (the launcher cannot read /proc) are held too, and nothing happens once they
// recover.
import { renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, expect, it } from 'vitest';
import type { MonitorConfig } from '../src/core/config.js';
import type { RunEvent } from '../src/core/types.js';
import { PID_TAG } from '../src/launchers/process/process-launcher.js';
import type { MonitorLogger } from '../src/monitor/logger.js';
import { setupWorkers, type WorkerSetup } from './any-language.js';
import { isAlive, tempDir, waitFor, workerCommand } from './processes.js';
import { parsePrometheusText, sampleValue } from './prometheus.js';

const WORKERS = 30;
const MAX_HOLD_SECONDS = 3;

let s: WorkerSetup | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

/** A logger that keeps the monitor's warnings and errors. */
function logRecorder(): { logger: MonitorLogger; errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  const ignore = () => {};
  const into = (lines: string[]) => (bindings: object | string, message?: string) => {
    lines.push(typeof bindings === 'string' ? bindings : (message ?? ''));
  };
  const logger: MonitorLogger = {
    info: ignore,
    warn: into(warnings),
    debug: ignore,
    error: into(errors),
    child: () => logger,
  };
  return { logger, errors, warnings };
}

interface BrakeSetup {
  s: WorkerSetup;
  errors: string[];
  warnings: string[];
  metric(name: string): Promise<number>;
  runIds: string[];
}

/** WORKERS hanging workers, all STARTED, under a monitor polling every second with a 3 s maximum hold. */
async function startWorkers(
  config: Partial<MonitorConfig>,
  launcher?: { procRoot: string },
): Promise<BrakeSetup> {
  const { logger, errors, warnings } = logRecorder();
  const registry = new Registry();
  s = await setupWorkers({
    logger,
    metrics: registry,
    launcher,
    config: {
      pollIntervalSeconds: 1,
      unknownHealthTolerance: 0,
      crashBrake: { ratio: 0.5, minRuns: 20, maxHoldSeconds: MAX_HOLD_SECONDS },
      ...config,
    },
  });
  const runIds: string[] = [];
  for (let i = 0; i < WORKERS; i++) runIds.push(await s.launch(workerCommand('hang-resumed')));
  const store = s.store;
  await waitFor(
    `${WORKERS} workers to report STARTED`,
    async () => (await store.listRuns({ statuses: ['STARTED'] })).length === WORKERS,
    20_000,
  );
  const metric = async (name: string) =>
    sampleValue(parsePrometheusText(await registry.metrics()), name) ?? 0;
  return { s, errors, warnings, metric, runIds };
}

const pidsOf = (b: BrakeSetup, runIds: string[]) =>
  Promise.all(runIds.map(async (runId) => Number((await b.s.store.getRun(runId))?.tags[PID_TAG])));

/**
 * Runs `change` (synchronous) just after a health poll has finished, so the next poll sees all of it: made
 * during a poll, part of the runs would be checked before it and part after. Resolves when it ran.
 */
async function afterAPoll(b: BrakeSetup, change: () => void): Promise<number> {
  const polls = () => b.metric('runwarden_health_poll_duration_seconds_count');
  const before = await polls();
  return waitFor(
    'a health poll to finish',
    async () => {
      if ((await polls()) <= before) return false;
      change();
      return Date.now();
    },
    10_000,
    10,
  );
}

/** SIGKILLs the workers of `runIds`, each its whole process group, at once. */
async function killAfterAPoll(b: BrakeSetup, runIds: string[]): Promise<number> {
  const pids = await pidsOf(b, runIds);
  return afterAPoll(b, () => {
    for (const pid of pids) process.kill(-pid, 'SIGKILL');
  });
}

/** Points `link` at `target`, replacing what it pointed at in one step. */
function repoint(link: string, target: string): void {
  symlinkSync(target, `${link}.new`);
  renameSync(`${link}.new`, link);
}

async function runsOf(store: WorkerSetup['store'], runIds: string[]) {
  return Promise.all(runIds.map(async (id) => (await store.getRun(id))!));
}

const isHeld = (e: RunEvent) => e.type === 'ENGINE_EVENT' && e.message.startsWith('Held the crash action');

it(
  `${WORKERS} workers SIGKILLed at once are held by the crash brake, then failed after maxHoldSeconds`,
  { timeout: 60_000 },
  async () => {
    const b = await startWorkers({ maxResumeRunAttempts: 0 });
    const { store } = b.s;
    await killAfterAPoll(b, b.runIds);

    // The first poll that sees them dead holds every one: an event on each run, an error in the log.
    const firstHeld = await waitFor(
      'a held crash action on every run',
      async () => {
        const held = await Promise.all(b.runIds.map(async (id) => (await store.getEvents(id)).find(isHeld)));
        return held.every((e) => e !== undefined) && (held as RunEvent[]);
      },
      10_000,
    );
    const runs = await runsOf(store, b.runIds);
    expect(runs.map((r) => r.status)).toEqual(b.runIds.map(() => 'STARTED'));
    for (const event of firstHeld) {
      expect(event.message).toContain(`${WORKERS} of ${WORKERS} checked runs look dead`);
      expect(event.message).toMatch(/Detected run worker status (FAILED|NOT_FOUND)/);
    }
    expect(b.errors.filter((m) => m.startsWith('Crash brake: '))).not.toEqual([]);
    expect(await b.metric('runwarden_crash_brake_engaged')).toBe(1);
    expect(await b.metric('runwarden_crash_brake_held_total')).toBeGreaterThanOrEqual(WORKERS);

    // Held at each poll until the hold has lasted maxHoldSeconds, then acted on: no attempts left, FAILURE.
    const ended = await Promise.all(b.runIds.map((id) => b.s.ended(id, 20_000)));
    for (const [i, run] of ended.entries()) {
      expect(run.status).toBe('FAILURE');
      // Held at every poll in between: about one a second, fewer when polls run late on a loaded machine.
      const events = await store.getEvents(run.runId);
      expect(events.filter(isHeld).length).toBeGreaterThanOrEqual(1);
      expect(events.findLast((e) => e.type === 'RUN_FAILURE')?.message).toMatch(
        new RegExp(
          `^Detected run worker status (FAILED|NOT_FOUND): .*Marking run ${run.runId} as failed\\.$`,
        ),
      );
      // Not before the hold had lasted maxHoldSeconds (a little slack: the first event follows the verdict).
      expect((run.endedAt ?? 0) - firstHeld[i]!.at).toBeGreaterThan(MAX_HOLD_SECONDS * 1000 - 500);
    }
    expect(b.errors.some((m) => m.includes('the most crashBrake.maxHoldSeconds allows'))).toBe(true);
    expect(await b.metric('runwarden_crash_brake_engaged')).toBe(0);
  },
);

it(
  `2 of ${WORKERS} workers SIGKILLed are resumed at the first poll that sees them dead, nothing held`,
  { timeout: 60_000 },
  async () => {
    const b = await startWorkers({ maxResumeRunAttempts: 1 });
    const { store } = b.s;
    const killed = b.runIds.slice(0, 2);
    const killedAt = await killAfterAPoll(b, killed);
    const resumed = await Promise.all(
      killed.map((id) =>
        waitFor(`run ${id} to be resumed`, async () => {
          const events = await store.getEvents(id, { types: ['ENGINE_EVENT'] });
          return events.find((e) => e.message.includes(`Resuming run ${id} with a new worker`));
        }),
      ),
    );
    // At the first poll after the kill (one interval), with slack for a loaded machine.
    for (const event of resumed) expect(event.at - killedAt).toBeLessThan(1_000 + 2_000);
    for (const id of b.runIds) {
      expect((await store.getEvents(id)).filter(isHeld)).toEqual([]);
    }
    // The resumed workers report STARTED again; the others were never touched.
    await waitFor('the resumed workers to report STARTED', async () => {
      const runs = await runsOf(store, killed);
      return runs.every((r) => r.status === 'STARTED' && r.resumeAttempts === 1);
    });
    const untouched = await runsOf(store, b.runIds.slice(2));
    expect(untouched.every((r) => r.status === 'STARTED' && r.resumeAttempts === 0)).toBe(true);
    expect(b.errors.filter((m) => m.startsWith('Crash brake'))).toEqual([]);
    expect(await b.metric('runwarden_crash_brake_held_total')).toBe(0);
  },
);

it(
  `health checks that all fail at once (the launcher cannot read /proc) are held; when they recover, nothing was done`,
  { timeout: 60_000 },
  async () => {
    // The launcher reads each worker's /proc/<pid>/stat through procRoot, a link this test can break.
    const dir = tempDir('runwarden-brake-proc-');
    try {
      const procRoot = join(dir.path, 'proc');
      const notADirectory = join(dir.path, 'not-a-directory');
      writeFileSync(notADirectory, '');
      repoint(procRoot, '/proc');
      // No tolerance for unsure results and a long hold: without the brake, one failed poll would resume all.
      const b = await startWorkers(
        { maxResumeRunAttempts: 1, crashBrake: { ratio: 0.5, minRuns: 20, maxHoldSeconds: 600 } },
        { procRoot },
      );
      const { store } = b.s;
      const pids = await pidsOf(b, b.runIds);
      await afterAPoll(b, () => repoint(procRoot, notADirectory));
      await waitFor('a held crash action on every run', async () => {
        const held = await Promise.all(b.runIds.map(async (id) => (await store.getEvents(id)).find(isHeld)));
        return held.every((e) =>
          e?.message.includes(`0 of ${WORKERS} checked runs look dead and ${WORKERS} could not be checked`),
        );
      });
      expect(b.errors.filter((m) => m.startsWith('Crash brake: '))).not.toEqual([]);

      await afterAPoll(b, () => repoint(procRoot, '/proc'));
      await waitFor('the brake to let go', () =>
        b.warnings.some((m) => m.startsWith('Crash brake released')),
      );
      const runs = await runsOf(store, b.runIds);
      expect(runs.every((r) => r.status === 'STARTED' && r.resumeAttempts === 0)).toBe(true);
      expect(pids.every((pid) => isAlive(pid))).toBe(true);
      for (const id of b.runIds) {
        const events = await store.getEvents(id, { types: ['ENGINE_EVENT'] });
        expect(events.filter((e) => e.message.includes('Resuming run'))).toEqual([]);
      }
    } finally {
      // Stop the monitor first: a poll through a removed procRoot would find every worker gone.
      await s?.close();
      s = undefined;
      dir.remove();
    }
  },
);
