// The lease rules every store shares (several monitors on one store), run by describeRunStoreConformance for
// each store: fair shares, takeover epochs, the fence on monitor writes, clean release, listMonitors.
import { describe, expect, it } from 'vitest';
import type { Lease, LeaseToken, MonitorIdentity, RunStore } from '../src/core/types.js';
import { LeaseLostError, PARTITION_COUNT, partitionOf } from '../src/stores/contract.js';

interface LeaseContext {
  store: RunStore;
  clock: { now(): number; set(ms: number): void };
}

const LEASE_MS = 15_000;

function monitor(monitorId: string): MonitorIdentity {
  return { monitorId, host: `host-${monitorId}`, pid: 100 + monitorId.charCodeAt(0) };
}

/** A run id that falls in `partition`. */
function runIn(partition: number, prefix = 'run'): string {
  for (let i = 0; ; i++) if (partitionOf(`${prefix}-${i}`) === partition) return `${prefix}-${i}`;
}

export function describeLeaseConformance(context: () => LeaseContext): void {
  describe('leases (several monitors)', () => {
    function leaseStore() {
      const { store, clock } = context();
      const { renewLeases, releaseLeases, listMonitors } = store;
      if (!renewLeases || !releaseLeases || !listMonitors) {
        throw new Error('this store must implement renewLeases, releaseLeases and listMonitors');
      }
      return {
        store,
        clock,
        renew: (id: string) => renewLeases.call(store, monitor(id), LEASE_MS),
        release: (id: string) => releaseLeases.call(store, id),
        list: () => listMonitors.call(store),
      };
    }

    const partitions = (leases: Lease[]) => leases.map((l) => l.partition);
    const token = (leases: Lease[], id: string, partition: number): LeaseToken => ({
      monitorId: id,
      epoch: leases.find((l) => l.partition === partition)!.epoch,
    });

    it('a lone monitor takes every partition at epoch 1 and keeps the epochs when it renews', async () => {
      const { clock, renew } = leaseStore();
      const first = await renew('a');
      expect(partitions(first)).toEqual(Array.from({ length: PARTITION_COUNT }, (_, i) => i));
      expect(first.every((l) => l.epoch === 1 && l.expiresAt === clock.now() + LEASE_MS)).toBe(true);
      clock.set(clock.now() + 5_000);
      const again = await renew('a');
      expect(again.map((l) => l.epoch)).toEqual(first.map((l) => l.epoch));
      expect(again.every((l) => l.expiresAt === clock.now() + LEASE_MS)).toBe(true);
    });

    it('spreads partitions evenly: a joiner gets its share once the holder has renewed', async () => {
      const { renew } = leaseStore();
      await renew('a');
      expect(await renew('b')).toEqual([]);
      expect(await renew('c')).toEqual([]);
      const a = await renew('a');
      expect(a).toHaveLength(22);
      const b = await renew('b');
      const c = await renew('c');
      expect([b.length, c.length]).toEqual([21, 21]);
      const all = [...partitions(a), ...partitions(b), ...partitions(c)].sort((x, y) => x - y);
      expect(all).toEqual(Array.from({ length: PARTITION_COUNT }, (_, i) => i));
      // Every partition b and c took changed hands once more.
      expect([...b, ...c].every((l) => l.epoch === 2)).toBe(true);
      expect(a.every((l) => l.epoch === 1)).toBe(true);
    });

    it('takes over the partitions of a monitor whose lease expired, each epoch plus one', async () => {
      const { clock, renew, list } = leaseStore();
      await renew('a');
      await renew('b');
      clock.set(clock.now() + LEASE_MS);
      const b = await renew('b');
      expect(b).toHaveLength(PARTITION_COUNT);
      expect(b.every((l) => l.epoch === 2)).toBe(true);
      expect((await list()).map((m) => m.monitorId)).toEqual(['b']);
    });

    it('a clean release hands the partitions over at the next renewal, without waiting for expiry', async () => {
      const { renew, release, list } = leaseStore();
      await renew('a');
      await renew('b');
      await release('a');
      expect((await list()).map((m) => m.monitorId)).toEqual(['b']);
      const b = await renew('b');
      expect(b).toHaveLength(PARTITION_COUNT);
      expect(b.every((l) => l.epoch === 2)).toBe(true);
    });

    it('refuses a write carrying a stale epoch and writes nothing; the current holder writes', async () => {
      const { store, clock, renew } = leaseStore();
      const runId = runIn(5);
      await store.createRun({ runId });
      await store.transition(runId, { to: 'STARTING' });
      await store.transition(runId, { to: 'STARTED' });
      const a = await renew('a');
      const stale = token(a, 'a', 5);
      clock.set(clock.now() + LEASE_MS);
      const b = await renew('b');
      const current = token(b, 'b', 5);
      expect(current.epoch).toBe(stale.epoch + 1);

      const before = { run: await store.getRun(runId), events: await store.getEvents(runId) };
      const seq = await store.latestSeq();
      const refused = [
        store.transition(runId, { to: 'FAILURE', lease: stale }),
        store.appendEvent(runId, { type: 'ENGINE_EVENT', message: 'stale', lease: stale }),
        store.incrementResumeAttempts(runId, { lease: stale }),
        store.setTags(runId, { stale: 'yes' }, { lease: stale }),
        // Settled at once: a store that does I/O rejects the later ones before the loop reaches them.
      ].map((write) =>
        write.then(
          () => undefined,
          (e: unknown) => e,
        ),
      );
      for (const settled of refused) {
        const error = await settled;
        expect(error).toBeInstanceOf(LeaseLostError);
        expect(error).toMatchObject({ code: 'LEASE_LOST', runId, partition: 5 });
        const message = (error as Error).message;
        expect(message).toContain(runId);
        expect(message).toContain('partition 5');
        expect(message).toContain(`epoch ${stale.epoch}`);
        expect(message).toContain(`held by b at epoch ${current.epoch}`);
      }
      expect({ run: await store.getRun(runId), events: await store.getEvents(runId) }).toEqual(before);
      expect(await store.latestSeq()).toBe(seq);

      await store.appendEvent(runId, { type: 'ENGINE_EVENT', message: 'fresh', lease: current });
      expect(await store.incrementResumeAttempts(runId, { lease: current })).toBe(1);
      await store.setTags(runId, { fresh: 'yes' }, { lease: current });
      const failed = await store.transition(runId, { to: 'FAILURE', lease: current });
      expect(failed?.status).toBe('FAILURE');
      expect(failed?.tags.fresh).toBe('yes');
    });

    it('refuses a token for a partition nobody holds, and one from another monitor at the same epoch', async () => {
      const { store, renew } = leaseStore();
      const runId = runIn(9);
      await store.createRun({ runId });
      await expect(
        store.transition(runId, { to: 'QUEUED', lease: { monitorId: 'a', epoch: 0 } }),
      ).rejects.toThrow(LeaseLostError);
      const a = await renew('a');
      await expect(
        store.transition(runId, { to: 'QUEUED', lease: { monitorId: 'x', epoch: token(a, 'a', 9).epoch } }),
      ).rejects.toThrow(LeaseLostError);
      expect((await store.getRun(runId))?.status).toBe('NOT_STARTED');
    });

    it('lists live monitors with their partitions and active runs owned', async () => {
      const { store, clock, renew, list } = leaseStore();
      const ids = [runIn(0, 'x'), runIn(1, 'x'), runIn(40, 'x'), runIn(63, 'x')];
      for (const runId of ids) await store.createRun({ runId });
      await store.transition(ids[3]!, { to: 'CANCELED' });
      await renew('a');
      await renew('b');
      await renew('a');
      const b = await renew('b');
      const monitors = await list();
      expect(monitors.map((m) => m.monitorId)).toEqual(['a', 'b']);
      const [ma, mb] = monitors;
      expect(ma).toMatchObject({ host: 'host-a', pid: 197, renewedAt: clock.now() });
      expect(mb!.partitions).toEqual(partitions(b));
      expect(ma!.partitions).toEqual(Array.from({ length: 32 }, (_, i) => i));
      // Runs in partitions 0 and 1 are a's; 40 is b's; the one in 63 has ended.
      expect([ma!.runsOwned, mb!.runsOwned]).toEqual([2, 1]);
    });

    it('refuses bad input, naming what was wrong', async () => {
      const { store } = leaseStore();
      await store.createRun({ runId: 'r' });
      await expect(store.renewLeases!(monitor('a'), 0)).rejects.toThrow(/leaseMs/);
      await expect(store.renewLeases!({ monitorId: '', host: 'h', pid: 1 }, LEASE_MS)).rejects.toThrow(
        /monitorId/,
      );
      await expect(
        store.transition('r', { to: 'QUEUED', lease: { monitorId: 'a', epoch: -1 } }),
      ).rejects.toMatchObject({ code: 'INVALID_LEASE', message: expect.stringContaining('lease.epoch') });
    });
  });
}
