import { setImmediate as nextMacrotask } from 'node:timers/promises';

/**
 * Counts the effects in flight, so `settle()` can wait until nothing can make progress by itself.
 * Launcher calls may hang forever (that is what the launcher timeouts are for), so they are waited for only
 * while they keep finishing: once a full turn of the event loop passes with store work done and no effect
 * completing, the monitor is settled and whatever is still pending waits on the clock or the launcher.
 */
export class EffectTracker {
  private readonly store = new Set<Promise<unknown>>();
  private readonly launcher = new Set<Promise<unknown>>();
  private completed = 0;

  /** Store reads/writes and other work that always finishes. */
  track<T>(work: Promise<T>): Promise<T> {
    return this.add(this.store, work);
  }

  /** Calls into the launcher, which may never answer. */
  trackLauncher<T>(work: Promise<T>): Promise<T> {
    return this.add(this.launcher, work);
  }

  get pending(): number {
    return this.store.size + this.launcher.size;
  }

  async settle(): Promise<void> {
    for (;;) {
      const before = this.completed;
      await Promise.allSettled([...this.store]);
      await nextMacrotask();
      if (this.store.size === 0 && this.completed === before) return;
    }
  }

  /** Waits for store work only: what stop() must not cut short. */
  async drainStoreWork(): Promise<void> {
    while (this.store.size > 0) await Promise.allSettled([...this.store]);
  }

  private add<T>(set: Set<Promise<unknown>>, work: Promise<T>): Promise<T> {
    set.add(work);
    const done = () => {
      set.delete(work);
      this.completed += 1;
    };
    work.then(done, done);
    return work;
  }
}
