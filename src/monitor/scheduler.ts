// The monitor's replacement for XState's scheduler of delayed events (`after` timers), installed on the
// actor system before anything is scheduled. It keeps XState's contract, and adds two things:
//
// - Each delayed event is booked under the actor that scheduled it. XState's own cancelAll scans the delayed
//   events of the whole system, and every stopping actor calls it (a finished run, every effect's promise
//   actor, each run at monitor.stop()): with 100,000 runs armed that was 100,000 steps per stop, quadratic
//   overall (profile of a 20k-run start + stop: cancelAll 64% of CPU; stop of 10k runs 10.6 s).
// - A delayed event is never delivered before its due time on the system's clock. Node's timers count from
//   the event loop's cached time, so a timer can fire a millisecond (or a busy loop turn) before the deadline
//   the stored timestamps imply; such a timer is re-armed for the rest.
//
// Timers still go through the system's clock and events through the system's relay (inspection sees them as
// before). Not kept: the copy of pending events in system.getSnapshot(), which the monitor never persists
// (deadlines come from stored timestamps).
import type { AnyActorRef, EventObject } from 'xstate';
import type { Clock } from '../core/types.js';

/** A delayed event in the books of the actor that scheduled it. */
interface Delayed {
  id: string;
  dueAt: number;
  handle: unknown;
  next: Delayed | undefined;
}

type ActorSystem = AnyActorRef['system'];
type Relay = (source: AnyActorRef, target: AnyActorRef, event: EventObject) => void;

/** The XState internal this relies on (the system's relay of delayed events), or why it is unusable. */
function systemRelay(system: ActorSystem): Relay | string {
  const relay = (system as unknown as { _relay?: Relay })._relay;
  if (typeof relay !== 'function') return 'system._relay is not a function';
  const scheduler = system.scheduler as Partial<ActorSystem['scheduler']> | undefined;
  for (const method of ['schedule', 'cancel', 'cancelAll'] as const) {
    if (typeof scheduler?.[method] !== 'function') return `system.scheduler.${method} is missing`;
  }
  return relay;
}

/**
 * Installs the indexed scheduler on `system`, whose clock is `clock`. Returns undefined when installed, else
 * why not (XState's internals changed): the monitor then runs on XState's own scheduler, slower and without
 * the early-timer guard, and says so in its log; test/scheduler.test.ts fails in that case.
 */
export function installIndexedScheduler(system: ActorSystem, clock: Clock): string | undefined {
  const relay = systemRelay(system);
  if (typeof relay === 'string') return relay;
  const books = new Map<AnyActorRef, Delayed>();

  const unbook = (source: AnyActorRef, delayed: Delayed): void => {
    let previous: Delayed | undefined;
    for (let cur = books.get(source); cur; previous = cur, cur = cur.next) {
      if (cur !== delayed) continue;
      if (previous) previous.next = cur.next;
      else if (cur.next) books.set(source, cur.next);
      else books.delete(source);
      return;
    }
  };

  const arm = (
    source: AnyActorRef,
    target: AnyActorRef,
    event: EventObject,
    delayed: Delayed,
    ms: number,
  ) => {
    delayed.handle = clock.setTimeout(() => {
      const early = delayed.dueAt - clock.now();
      if (early > 0) return arm(source, target, event, delayed, early);
      unbook(source, delayed);
      relay.call(system, source, target, event);
    }, ms);
  };

  system.scheduler = {
    schedule(source, target, event, delay, id = Math.random().toString(36).slice(2)) {
      const delayed: Delayed = { id, dueAt: clock.now() + delay, handle: undefined, next: books.get(source) };
      books.set(source, delayed);
      arm(source, target, event, delayed, delay);
    },
    cancel(source, id) {
      for (let cur = books.get(source); cur; cur = cur.next) {
        if (cur.id !== id) continue;
        unbook(source, cur);
        clock.clearTimeout(cur.handle);
        return;
      }
    },
    cancelAll(source) {
      let cur = books.get(source);
      books.delete(source);
      for (; cur; cur = cur.next) clock.clearTimeout(cur.handle);
    },
  };
  return undefined;
}
