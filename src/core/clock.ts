import type { Clock } from './types.js';

// Node fires a setTimeout longer than 2^31-1 ms at once; maximum runtimes of weeks are real, so chain.
const MAX_TIMER_MS = 2 ** 31 - 1;

class LongTimer {
  handle: NodeJS.Timeout | undefined;
}

/** Real time, with delays of any length. The default clock of createRunMonitor. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout | LongTimer {
    // Almost every delay fits: those get Node's own timer, without a wrapper per armed deadline.
    if (ms <= MAX_TIMER_MS) return setTimeout(fn, Math.max(0, ms));
    const timer = new LongTimer();
    const dueAt = Date.now() + Math.max(0, ms);
    const arm = () => {
      const remaining = dueAt - Date.now();
      if (remaining > MAX_TIMER_MS) {
        timer.handle = setTimeout(arm, MAX_TIMER_MS);
      } else {
        timer.handle = setTimeout(fn, Math.max(0, remaining));
      }
    };
    arm();
    return timer;
  },
  clearTimeout(id: unknown): void {
    if (id instanceof LongTimer) clearTimeout(id.handle);
    else clearTimeout(id as NodeJS.Timeout | undefined);
  },
};

/** Resolves after `ms` on the given clock (simulated clocks resolve it when they are advanced). */
export function sleepOn(clock: Clock, ms: number): { promise: Promise<void>; cancel: () => void } {
  let id: unknown;
  const promise = new Promise<void>((resolve) => {
    id = clock.setTimeout(resolve, ms);
  });
  return { promise, cancel: () => clock.clearTimeout(id) };
}
