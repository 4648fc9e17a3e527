import { describe, expect, it } from 'vitest';
import { MemoryRunStore } from '../src/stores/memory/memory-store.js';
import type { RunEvent } from '../src/core/types.js';
import { describeRunStoreConformance, simulatedClock } from './store-conformance.js';

describeRunStoreConformance('MemoryRunStore conformance', async () => {
  const clock = simulatedClock();
  return { store: new MemoryRunStore({ clock }), clock };
});

describe('MemoryRunStore specifics', () => {
  it('numbers events 1, 2, 3, … with no gaps', async () => {
    const store = new MemoryRunStore({ clock: simulatedClock(10) });
    await store.createRun({ runId: 'a' });
    await store.createRun({ runId: 'b' });
    await store.transition('a', { to: 'QUEUED' });
    await store.appendEvent('b', { type: 'ENGINE_EVENT', message: 'x' });
    await store.transition('b', { to: 'STARTING' });
    expect((await store.readEventsAfter(0, 10)).map((e) => e.seq)).toEqual([1, 2, 3]);
  });

  it('uses real time when no clock is given', async () => {
    const store = new MemoryRunStore();
    const before = Date.now();
    const run = await store.createRun({});
    expect(run.createdAt).toBeGreaterThanOrEqual(before);
    expect(run.createdAt).toBeLessThanOrEqual(Date.now());
    expect(run.runId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('reports a throwing listener to onListenerError, and survives a throwing hook', async () => {
    const reported: [unknown, RunEvent][] = [];
    const store = new MemoryRunStore({
      clock: simulatedClock(),
      onListenerError: (error, event) => {
        reported.push([error, event]);
        throw new Error('hook bug too');
      },
    });
    const boom = new Error('listener bug');
    store.subscribe(() => {
      throw boom;
    });
    await store.createRun({ runId: 'a' });
    const run = await store.transition('a', { to: 'STARTING' });
    expect(run?.status).toBe('STARTING');
    expect(reported).toHaveLength(1);
    expect(reported[0]![0]).toBe(boom);
    expect(reported[0]![1]).toMatchObject({ runId: 'a', type: 'RUN_STARTING' });
  });

  it('a listener that unsubscribes another during delivery does not disturb the write', async () => {
    const store = new MemoryRunStore({ clock: simulatedClock() });
    const seen: string[] = [];
    let offB = () => {};
    store.subscribe((e) => {
      seen.push(`a:${e.message}`);
      offB();
    });
    offB = store.subscribe((e) => seen.push(`b:${e.message}`));
    await store.createRun({ runId: 'r' });
    await store.appendEvent('r', { type: 'ENGINE_EVENT', message: '1' });
    await store.appendEvent('r', { type: 'ENGINE_EVENT', message: '2' });
    // b was already in this write's snapshot of listeners, so it still gets event 1.
    expect(seen).toEqual(['a:1', 'b:1', 'a:2']);
  });

  it('the same function subscribed twice is two subscriptions', async () => {
    const store = new MemoryRunStore({ clock: simulatedClock() });
    const seen: string[] = [];
    const listener = (e: RunEvent) => seen.push(e.message);
    const off1 = store.subscribe(listener);
    store.subscribe(listener);
    await store.createRun({ runId: 'r' });
    await store.appendEvent('r', { type: 'ENGINE_EVENT', message: 'x' });
    off1();
    await store.appendEvent('r', { type: 'ENGINE_EVENT', message: 'y' });
    expect(seen).toEqual(['x', 'x', 'y']);
  });

  it('keeps a "__proto__" tag as an ordinary tag', async () => {
    const store = new MemoryRunStore({ clock: simulatedClock() });
    const tags = JSON.parse('{"__proto__": "x", "a": "b"}') as Record<string, string>;
    await store.createRun({ runId: 'r', tags });
    await store.setTags('r', JSON.parse('{"__proto__": "y"}'));
    const run = (await store.getRun('r'))!;
    expect(Object.getPrototypeOf(run.tags)).toBe(Object.prototype);
    expect(Object.entries(run.tags)).toEqual([
      ['__proto__', 'y'],
      ['a', 'b'],
    ]);
  });

  it('refuses tags that are not a plain object', async () => {
    const store = new MemoryRunStore({ clock: simulatedClock() });
    await expect(store.createRun({ tags: new Map() as never })).rejects.toThrow(/plain object/);
  });

  it('reads the tail of a large feed quickly (binary search, not a scan)', async () => {
    const store = new MemoryRunStore({ clock: simulatedClock() });
    await store.createRun({ runId: 'r' });
    for (let i = 0; i < 50_000; i++) await store.appendEvent('r', { type: 'ENGINE_EVENT', message: 'm' });
    const started = performance.now();
    for (let i = 0; i < 10_000; i++) await store.readEventsAfter(49_990, 5);
    // A linear scan would take ~50,000 × 10,000 steps; the binary search is well under this bound.
    expect(performance.now() - started).toBeLessThan(2_000);
    expect((await store.readEventsAfter(49_990, 5)).map((e) => e.seq)).toEqual([
      49_991, 49_992, 49_993, 49_994, 49_995,
    ]);
  });

  it('close() drops the subscribers', async () => {
    const store = new MemoryRunStore({ clock: simulatedClock() });
    const seen: string[] = [];
    store.subscribe((e) => seen.push(e.message));
    await store.close();
    await store.createRun({ runId: 'r' });
    await store.appendEvent('r', { type: 'ENGINE_EVENT', message: 'x' });
    expect(seen).toEqual([]);
  });
});
