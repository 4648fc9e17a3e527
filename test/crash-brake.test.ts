// The crash brake: a poll that finds too many of the workers it checked dead (or cannot check them) holds
// its crash actions, records the hold on each run, and acts only once the hold has lasted maxHoldSeconds.
// Simulated time, FakeLauncher.
import { describe, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { ConfigError } from '../src/core/errors.js';
import { parseMonitorConfig } from '../src/core/config.js';
import type { HealthResult, RunRecord } from '../src/core/types.js';
import { type Harness, SECOND, stoppedAfterEach } from './harness.js';

const harness = stoppedAfterEach();

const POLL = 10;
const brakeConfig = (crashBrake: Record<string, number> = {}) => ({
  pollIntervalSeconds: POLL,
  maxResumeRunAttempts: 1,
  unknownHealthTolerance: 0,
  crashBrake: { ratio: 0.5, minRuns: 20, maxHoldSeconds: 60, ...crashBrake },
});

/** Health that answers `dead` for the runs in the set, RUNNING for the rest. */
function healthOf(dead: Set<string>, answer: HealthResult = { status: 'FAILED', message: 'killed' }) {
  return (run: RunRecord): HealthResult => (dead.has(run.runId) ? answer : { status: 'RUNNING' });
}

async function startedRuns(h: Harness, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(await h.startedRun());
  return ids;
}

const heldEvents = async (h: Harness, runId: string) =>
  (await h.messagesOf(runId, 'ENGINE_EVENT')).filter((m) => m.includes('(crash brake)'));

describe('crash brake', () => {
  it('30 of 30 dead in one poll: held with an event on each run, then acted on after maxHoldSeconds', async () => {
    const h = await harness({ config: brakeConfig() });
    const ids = await startedRuns(h, 30);
    await h.advance(POLL * SECOND); // a healthy poll
    h.launcher.setHealth(healthOf(new Set(ids)));
    await h.advance(POLL * SECOND);
    expect(h.launcher.calls.resume).toEqual([]);
    for (const id of ids) {
      expect(await h.status(id)).toBe('STARTED');
      const held = await heldEvents(h, id);
      expect(held).toHaveLength(1);
      expect(held[0]).toMatch(
        /^Held the crash action for this run \(crash brake\): Detected run worker status FAILED/,
      );
      expect(held[0]).toContain('30 of 30 checked runs look dead');
    }
    // Still held at every poll until the hold has lasted 60 s: polls at +10 … +50 s after the first hold.
    await h.step(5, POLL * SECOND);
    expect(h.launcher.calls.resume).toEqual([]);
    expect(await heldEvents(h, ids[0]!)).toHaveLength(6);
    await h.advance(POLL * SECOND);
    expect(h.launcher.calls.resume.map((r) => r.runId).sort()).toEqual([...ids].sort());
    for (const id of ids) {
      expect(await h.messagesOf(id, 'ENGINE_EVENT')).toContain(
        messages.resuming({ status: 'FAILED', message: 'killed' }, id),
      );
    }
  });

  it('2 of 30 dead: acted on at once', async () => {
    const h = await harness({ config: brakeConfig() });
    const ids = await startedRuns(h, 30);
    const dead = new Set(ids.slice(0, 2));
    h.launcher.setHealth(healthOf(dead));
    await h.advance(POLL * SECOND);
    expect(h.launcher.calls.resume.map((r) => r.runId).sort()).toEqual([...dead].sort());
    for (const id of ids) expect(await heldEvents(h, id)).toEqual([]);
  });

  it('a poll that finds the workers healthy again ends the hold: nothing is done to them', async () => {
    const h = await harness({ config: brakeConfig() });
    const ids = await startedRuns(h, 25);
    h.launcher.setHealth(healthOf(new Set(ids)));
    await h.step(3, POLL * SECOND);
    h.launcher.setHealth('RUNNING');
    await h.step(10, POLL * SECOND);
    expect(h.launcher.calls.resume).toEqual([]);
    for (const id of ids) expect(await h.status(id)).toBe('STARTED');
    // A fresh mass failure starts a fresh hold: the earlier one does not count towards maxHoldSeconds.
    h.launcher.setHealth(healthOf(new Set(ids)));
    await h.step(6, POLL * SECOND);
    expect(h.launcher.calls.resume).toEqual([]);
    await h.advance(POLL * SECOND);
    expect(h.launcher.calls.resume).toHaveLength(25);
  });

  it('checks that fail count too: a launcher API outage does not run down unknownHealthTolerance', async () => {
    const h = await harness({ config: { ...brakeConfig(), unknownHealthTolerance: 1 } });
    const ids = await startedRuns(h, 20);
    h.launcher.setHealth(() => {
      throw new Error('connection refused');
    });
    await h.step(5, POLL * SECOND);
    expect(h.launcher.calls.resume).toEqual([]);
    expect((await heldEvents(h, ids[0]!))[0]).toContain(
      "Detected run worker status UNKNOWN: 'Health check failed: connection refused'",
    );
    h.launcher.setHealth('RUNNING');
    await h.step(3, POLL * SECOND);
    expect(h.launcher.calls.resume).toEqual([]);
  });

  it('fewer checked runs than minRuns never brake; ratio 0 switches it off', async () => {
    const few = await harness({ config: brakeConfig() });
    const ids = await startedRuns(few, 19);
    few.launcher.setHealth('FAILED');
    await few.advance(POLL * SECOND);
    expect(few.launcher.calls.resume).toHaveLength(19);
    const off = await harness({ config: brakeConfig({ ratio: 0 }) });
    const many = await startedRuns(off, 30);
    off.launcher.setHealth('FAILED');
    await off.advance(POLL * SECOND);
    expect(off.launcher.calls.resume).toHaveLength(30);
    for (const id of ids) expect(await heldEvents(few, id)).toEqual([]);
    for (const id of many) expect(await heldEvents(off, id)).toEqual([]);
  });

  it('a dry run writes the hold as "Would have held"', async () => {
    const h = await harness({ config: { ...brakeConfig(), dryRun: true } });
    const ids = await startedRuns(h, 20);
    h.launcher.setHealth('NOT_FOUND');
    await h.advance(POLL * SECOND);
    for (const id of ids) {
      const events = await h.messagesOf(id, 'ENGINE_EVENT');
      expect(events).toHaveLength(1);
      expect(events[0]).toMatch(/^Would have held the crash action for this run \(crash brake\)/);
    }
  });
});

describe('crash brake configuration', () => {
  it('takes either spelling, keeps defaults for keys left out', () => {
    expect(parseMonitorConfig({ crashBrake: { ratio: 0.2 } }).crashBrake).toEqual({
      ratio: 0.2,
      minRuns: 20,
      maxHoldSeconds: 600,
    });
    expect(
      parseMonitorConfig({ run_monitoring: { crash_brake: { min_runs: 5, max_hold_seconds: 30 } } })
        .crashBrake,
    ).toEqual({ ratio: 0.5, minRuns: 5, maxHoldSeconds: 30 });
  });

  it('refuses invalid values naming the key', () => {
    const cases: [unknown, string][] = [
      [{ crashBrake: { ratio: 1.5 } }, 'crashBrake.ratio: expected a number from 0 to 1'],
      [{ crash_brake: { min_runs: 0 } }, 'crash_brake.min_runs: expected a whole number >= 1'],
      [
        { run_monitoring: { crash_brake: { max_hold_seconds: -1 } } },
        'run_monitoring.crash_brake.max_hold_seconds',
      ],
      [{ crash_brake: { ratoi: 0.5 } }, 'crash_brake.ratoi: unknown key'],
      [{ crash_brake: 0.5 }, 'crash_brake: expected an object with ratio, min_runs and max_hold_seconds'],
      [{ crashBrake: { ratio: 0.5, min_runs: 2, minRuns: 3 } }, 'given twice'],
      [{ dry_run: 'yes' }, 'dry_run: expected true or false'],
    ];
    for (const [input, text] of cases) {
      expect(() => parseMonitorConfig(input), JSON.stringify(input)).toThrow(ConfigError);
      expect(() => parseMonitorConfig(input), JSON.stringify(input)).toThrow(text);
    }
  });
});
