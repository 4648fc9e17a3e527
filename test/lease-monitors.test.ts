// Several monitors on one store, on simulated time: partitions spread over the live monitors, a clean stop
// hands them over at once, a dead monitor's runs are taken over within the lease with every deadline kept,
// and a monitor that lost its lease can neither write a decision nor call the launcher.
import { afterEach, describe, expect, it } from 'vitest';
import { type SimulatedClock } from 'xstate';
import { type MonitorConfigInput } from '../src/core/config.js';
import { type Lease, type MonitorIdentity, type RunRecord, TAGS } from '../src/core/types.js';
import { createRunMonitor, type RunMonitor } from '../src/monitor/monitor.js';
import { PARTITION_COUNT, partitionOf } from '../src/stores/contract.js';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import { FakeLauncher } from '../src/testing/index.js';
import { newClock, SECOND } from './harness.js';

const LEASE = 15;
const CONFIG: MonitorConfigInput = {
  leaseSeconds: LEASE,
  pollIntervalSeconds: 10,
  startTimeoutSeconds: 0,
  maxResumeRunAttempts: 3,
};

/** A memory store whose lease renewals can be made to fail, per monitor (a monitor cut off from it). */
class FlakyLeaseStore extends MemoryRunStore {
  readonly failing = new Set<string>();

  override async renewLeases(monitor: MonitorIdentity, leaseMs: number): Promise<Lease[]> {
    if (this.failing.has(monitor.monitorId)) throw new Error(`renewal of ${monitor.monitorId} cut off`);
    return super.renewLeases(monitor, leaseMs);
  }
}

interface Member {
  id: string;
  monitor: RunMonitor;
  launcher: FakeLauncher;
  errors: string[];
}

let clock: SimulatedClock;
let store: FlakyLeaseStore;
let members: Member[] = [];

afterEach(async () => {
  for (const m of members) await m.monitor.stop();
  members = [];
});

function setup(): void {
  clock = newClock();
  store = new FlakyLeaseStore({ clock });
}

async function join(id: string, config: MonitorConfigInput = {}): Promise<Member> {
  const launcher = new FakeLauncher();
  const errors: string[] = [];
  const log = (sink: string[]) => (a: unknown, b?: string) =>
    sink.push(typeof a === 'string' ? a : (b ?? ''));
  const logger = {
    info: () => {},
    debug: () => {},
    warn: log(errors),
    error: log(errors),
    child: () => logger,
  };
  const monitor = createRunMonitor({
    store,
    launcher,
    clock,
    logger,
    monitorId: id,
    config: { ...CONFIG, ...config },
  });
  await monitor.start();
  await monitor.settle();
  const member = { id, monitor, launcher, errors };
  members.push(member);
  return member;
}

async function settleAll(): Promise<void> {
  for (let round = 0; round < 20; round++) {
    const before = await store.latestSeq();
    for (const m of members) await m.monitor.settle();
    clock.increment(0);
    for (const m of members) await m.monitor.settle();
    if ((await store.latestSeq()) === before) return;
  }
}

/** Moves simulated time in steps of at most a second, so renewals and polls interleave as in real time. */
async function advance(ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= SECOND) {
    clock.increment(Math.min(SECOND, left));
    await settleAll();
  }
}

async function startedRun(tags: Record<string, string> = {}): Promise<RunRecord> {
  const run = await store.createRun({ tags });
  await store.transition(run.runId, { to: 'STARTING' });
  return (await store.transition(run.runId, { to: 'STARTED' }))!;
}

async function partitionsOf(id: string): Promise<number[]> {
  return (await store.listMonitors()).find((m) => m.monitorId === id)?.partitions ?? [];
}

describe('several monitors on one store', () => {
  it('refuses a monitorId that is not a non-empty string, naming the option', () => {
    setup();
    for (const monitorId of ['', '  ', 42]) {
      expect(() =>
        createRunMonitor({ store, launcher: new FakeLauncher(), clock, monitorId: monitorId as string }),
      ).toThrow(/^Invalid monitorId option: expected a non-empty string/);
    }
  });

  it('spreads the partitions evenly and checks each run from exactly one monitor', async () => {
    setup();
    const runs = await Promise.all(Array.from({ length: 40 }, () => startedRun()));
    const a = await join('a');
    const b = await join('b');
    expect(await partitionsOf('a')).toHaveLength(PARTITION_COUNT);
    expect(await partitionsOf('b')).toHaveLength(0);

    await advance((LEASE / 3) * SECOND); // a sheds half at its renewal, b takes it at its own
    const [ma, mb] = await store.listMonitors();
    expect([ma!.partitions.length, mb!.partitions.length]).toEqual([32, 32]);
    expect(ma!.runsOwned + mb!.runsOwned).toBe(runs.length);

    a.launcher.calls.health.length = 0;
    b.launcher.calls.health.length = 0;
    await advance(10 * SECOND); // one health poll each
    const byA = new Set(a.launcher.calls.health);
    const byB = new Set(b.launcher.calls.health);
    expect([...byA].filter((id) => byB.has(id))).toEqual([]);
    expect(new Set([...byA, ...byB])).toEqual(new Set(runs.map((r) => r.runId)));
    for (const id of byA) expect(ma!.partitions).toContain(partitionOf(id));
  });

  it('a monitor that stops cleanly hands its partitions over at the next renewal, not after the lease', async () => {
    setup();
    const a = await join('a');
    await join('b');
    await advance((LEASE / 3) * SECOND);
    const before = new Map((await store.listMonitors()).flatMap((m) => m.partitions.map((p) => [p, m])));
    expect(before.size).toBe(PARTITION_COUNT);

    await a.monitor.stop();
    members = members.filter((m) => m !== a);
    expect((await store.listMonitors()).map((m) => m.monitorId)).toEqual(['b']);
    await advance((LEASE / 3) * SECOND);
    expect(await partitionsOf('b')).toHaveLength(PARTITION_COUNT);
  });

  it('takes over a dead monitor within the lease and keeps every deadline', async () => {
    setup();
    // A monitor that renewed once and died: it holds every partition until its lease runs out.
    const ghost = await store.renewLeases!({ monitorId: 'ghost', host: 'gone', pid: 1 }, LEASE * SECOND);
    expect(ghost).toHaveLength(PARTITION_COUNT);
    const t0 = clock.now();
    // One deadline passes while nobody watches (at 12 s), one after the takeover (at 20 s).
    const overdue = await store.createRun({ tags: { [TAGS.maxRuntime]: '12' } });
    const later = await store.createRun({ tags: { [TAGS.maxRuntime]: '20' } });
    for (const run of [overdue, later]) {
      await store.transition(run.runId, { to: 'STARTING' });
      await store.transition(run.runId, { to: 'STARTED' });
    }
    const b = await join('b');
    expect(await partitionsOf('b')).toEqual([]);

    await advance(14 * SECOND);
    expect(b.launcher.calls.terminate).toEqual([]);
    expect((await store.getRun(overdue.runId))?.status).toBe('STARTED');

    await advance(1 * SECOND); // the ghost's lease runs out at 15 s; b renews at 15 s
    expect(await partitionsOf('b')).toHaveLength(PARTITION_COUNT);
    const taken = (await store.renewLeases!({ monitorId: 'b', host: 'h', pid: 2 }, LEASE * SECOND)).map(
      (l) => l.epoch,
    );
    expect(new Set(taken)).toEqual(new Set([2])); // every partition changed hands once more
    expect((await store.getRun(overdue.runId))?.status).toBe('FAILURE');
    expect((await store.getRun(overdue.runId))?.endedAt).toBe(t0 + 15 * SECOND);

    await advance(5 * SECOND);
    const run = (await store.getRun(later.runId))!;
    expect(run.status).toBe('FAILURE');
    expect(run.tags[TAGS.failureReason]).toBe('MAX_RUNTIME_EXCEEDED');
    // Acted on at its own deadline (20 s after it started), not 20 s after the takeover.
    const canceling = await store.getEvents(later.runId, { types: ['RUN_CANCELING'] });
    expect(canceling.map((e) => e.at)).toEqual([t0 + 20 * SECOND]);
    expect(b.launcher.calls.terminate.sort()).toEqual([overdue.runId, later.runId].sort());
  });

  it('refuses a decision written with a stale epoch: nothing is written and the run is dropped', async () => {
    setup();
    const run = await startedRun({ [TAGS.maxRuntime]: '3' });
    const a = await join('a');
    // Another monitor takes a's partitions while a does not know yet (a paused past its lease, say).
    await store.releaseLeases!('a');
    const stolen = await store.renewLeases!({ monitorId: 'b', host: 'h', pid: 2 }, LEASE * SECOND);
    const epoch = stolen.find((l) => l.partition === partitionOf(run.runId))!.epoch;
    expect(epoch).toBe(2);
    const events = await store.getEvents(run.runId);
    a.launcher.calls.health.length = 0;

    await advance(3 * SECOND); // a's max-runtime deadline: it tries to write CANCELING with epoch 1
    expect(await store.getRun(run.runId)).toMatchObject({ status: 'STARTED' });
    expect(await store.getEvents(run.runId)).toEqual(events);
    expect(a.launcher.calls.terminate).toEqual([]);
    expect(a.errors).toContainEqual(
      expect.stringContaining(`gave up partition ${partitionOf(run.runId)}: Run ${run.runId}`),
    );
    // Dropped: a's polls and renewals do nothing for it while b's lease lasts (b never renews: at 15 s a
    // would rightly take b's partitions over).
    await advance(10 * SECOND);
    expect(await partitionsOf('a')).toEqual([]);
    expect(a.launcher.calls.terminate).toEqual([]);
    expect(a.launcher.calls.health).not.toContain(run.runId);
  });

  it('a monitor whose renewals fail makes no launcher call once its lease is mostly used, and stops deciding when it runs out', async () => {
    setup();
    const run = await startedRun();
    const a = await join('a', { pollIntervalSeconds: 4 });
    store.failing.add('a');
    await advance(10 * SECOND + 1); // two thirds of the lease used since the last good renewal
    a.launcher.setHealth('NOT_FOUND');
    await advance(2 * SECOND); // a poll finds the worker gone: a resume would need the launcher
    expect(a.launcher.calls.resume).toEqual([]);
    expect(a.errors).toContainEqual(expect.stringContaining('no longer holds the lease on partition'));

    await advance(5 * SECOND); // the lease runs out by a's clock
    expect(a.errors).toContainEqual(expect.stringContaining('stopped deciding'));
    const checks = a.launcher.calls.health.length;
    await advance(8 * SECOND);
    expect(a.launcher.calls.health.length).toBe(checks);

    // Renewing works again: a holds its partitions again (nobody else took them) and watches the run.
    store.failing.delete('a');
    await advance(10 * SECOND);
    expect(await partitionsOf('a')).toHaveLength(PARTITION_COUNT);
    // The refused call used up its attempt, like a resume that failed: the worker comes with attempt 2.
    expect(a.launcher.calls.resume).toEqual([{ runId: run.runId, attempt: 2 }]);
    expect((await store.getRun(run.runId))?.resumeAttempts).toBe(2);
  });

  it('a start timeout whose lease runs short before the terminate leaves it journaled, reports no failed termination, and the journal pass finishes it', async () => {
    setup();
    const a = await join('a', { startTimeoutSeconds: 12 });
    const { runId } = await store.createRun({});
    await a.monitor.launch(runId);
    store.failing.add('a');
    // At 12 s, four fifths of the lease are used since the last good renewal: FAILURE is still written (the
    // lease holds), but the termination needs a renewal first, and that fails.
    await advance(12 * SECOND);
    const failed = (await store.getRun(runId)) as RunRecord;
    expect(failed.status).toBe('FAILURE');
    expect(failed.tags[TAGS.terminatePending]).toBe('true');
    expect(a.launcher.calls.terminate).toEqual([]);
    expect(a.errors).toContainEqual(expect.stringContaining('no longer holds the lease on partition'));
    const engineEvents = await store.getEvents(runId, { types: ['ENGINE_EVENT'] });
    expect(engineEvents.map((e) => e.message)).toEqual([]);

    store.failing.delete('a');
    await advance(20 * SECOND);
    expect(a.launcher.calls.terminate).toEqual([runId]);
    expect((await store.getRun(runId))?.tags[TAGS.terminatePending]).toBe('false');
  });

  it('the crash brake counts minRuns over the whole store: an outage split over two monitors is held by both', async () => {
    setup();
    // 40 runs with fixed ids, so the split between the two monitors is the same every time.
    const runs: RunRecord[] = [];
    for (let i = 0; i < 40; i++) {
      await store.createRun({ runId: `run-${i}` });
      await store.transition(`run-${i}`, { to: 'STARTING' });
      runs.push((await store.transition(`run-${i}`, { to: 'STARTED' }))!);
    }
    const config = {
      maxResumeRunAttempts: 1,
      unknownHealthTolerance: 0,
      crashBrake: { ratio: 0.5, minRuns: 30, maxHoldSeconds: 600 },
    };
    const a = await join('a', config);
    const b = await join('b', config);
    await advance((LEASE / 3) * SECOND);
    const owned = (await store.listMonitors()).map((m) => m.runsOwned);
    // Each watches fewer runs than minRuns, but at least its half of it.
    expect(owned.every((n) => n < 30 && n >= 15)).toBe(true);
    a.launcher.setHealth('FAILED');
    b.launcher.setHealth('FAILED');
    await advance(10 * SECOND); // one poll each
    expect([...a.launcher.calls.resume, ...b.launcher.calls.resume]).toEqual([]);
    for (const run of runs) {
      expect(await store.getEvents(run.runId, { types: ['ENGINE_EVENT'] })).toContainEqual(
        expect.objectContaining({ message: expect.stringMatching(/^Held the crash action/) }),
      );
    }
  });
});
