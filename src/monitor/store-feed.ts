// The monitor's view of store changes: this process's writes through subscribe (at once), everyone's
// through readEventsAfter on an interval, and at once when the store says another process wrote
// (onRemoteWrite). Status events become fresh records delivered to the supervisor.
import type { MonitorLogger } from './logger.js';
import type { EffectTracker } from './effect-tracker.js';
import { type Clock, type RunEvent, type RunRecord, type RunStore, statusOfEvent } from '../core/types.js';

const TAIL_PAGE = 1000;

export interface StoreFeedOptions {
  store: RunStore;
  clock: Clock;
  tracker: EffectTracker;
  logger: MonitorLogger;
  deliver: (runs: RunRecord[]) => void;
  /**
   * Whether one of this process's status events is a run actor's own decision write, whose result the actor
   * already has: routing it back would cost a read and a supervisor step per decision for nothing.
   */
  isDecisionEcho: (event: RunEvent) => boolean;
  /** Told the highest seq the feed knows exists: on this process's writes at once, on every tail read. */
  learned: (seq: number) => void;
  pollIntervalMs: number;
}

export class StoreFeed {
  private lastSeq = 0;
  /** Seqs already seen through subscribe, skipped when the tail reaches them. */
  private readonly seenSeqs = new Set<number>();
  private readonly pendingRunIds = new Set<string>();
  private flushQueued = false;
  private stopped = false;
  private timer: unknown;
  private unsubscribe: (() => void) | undefined;
  private stopWakes: (() => void) | undefined;
  /** A tail read is running; a wake meanwhile asks for one more right after it. */
  private polling = false;
  private wakeAgain = false;
  /** The store failed the last read: said once in the log, and once more when it answers again. */
  private failing = false;

  constructor(private readonly options: StoreFeedOptions) {}

  async start(): Promise<void> {
    const { store } = this.options;
    this.lastSeq = await this.options.tracker.track(store.latestSeq());
    this.options.learned(this.lastSeq);
    this.unsubscribe = store.subscribe((event) => this.onOwnWrite(event));
    this.stopWakes = store.onRemoteWrite?.(() => this.wake());
    this.schedulePoll();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.stopWakes?.();
    if (this.timer !== undefined) this.options.clock.clearTimeout(this.timer);
  }

  private onOwnWrite(event: RunEvent): void {
    if (event.seq > this.lastSeq) this.seenSeqs.add(event.seq);
    this.options.learned(event.seq);
    if (statusOfEvent(event.type) && !this.options.isDecisionEcho(event)) this.enqueue(event.runId);
  }

  private enqueue(runId: string): void {
    this.pendingRunIds.add(runId);
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Writes made in one turn travel together as one batch.
    queueMicrotask(() => {
      this.flushQueued = false;
      this.options.tracker.track(this.flush());
    });
  }

  private async flush(): Promise<void> {
    const runIds = [...this.pendingRunIds];
    this.pendingRunIds.clear();
    if (this.stopped || runIds.length === 0) return;
    try {
      const runs = await Promise.all(runIds.map((runId) => this.options.store.getRun(runId)));
      if (!this.stopped) this.options.deliver(runs.filter((run): run is RunRecord => run !== undefined));
    } catch (err) {
      // Put them back: the next poll retries, so an update is delayed, never lost.
      for (const runId of runIds) this.pendingRunIds.add(runId);
      this.options.logger.error({ err }, 'Reading updated runs failed; retrying at the next feed poll.');
    }
  }

  /** Another process wrote: read the tail now rather than at the next interval. */
  private wake(): void {
    if (this.stopped) return;
    if (this.polling) {
      this.wakeAgain = true;
      return;
    }
    if (this.timer !== undefined) this.options.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.options.tracker.track(this.poll());
  }

  private schedulePoll(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimeout(() => {
      this.timer = undefined;
      this.options.tracker.track(this.poll());
    }, this.options.pollIntervalMs);
  }

  private async poll(): Promise<void> {
    this.polling = true;
    this.wakeAgain = false;
    try {
      for (;;) {
        const events = await this.options.store.readEventsAfter(this.lastSeq, TAIL_PAGE);
        for (const event of events) {
          this.lastSeq = event.seq;
          if (this.seenSeqs.delete(event.seq)) continue;
          if (statusOfEvent(event.type)) this.pendingRunIds.add(event.runId);
        }
        if (events.length < TAIL_PAGE || this.stopped) break;
      }
      this.options.learned(this.lastSeq);
      await this.flush();
      if (this.failing) {
        this.failing = false;
        this.options.logger.info('The store answers again; following its changes.');
      }
    } catch (err) {
      // Once, not every poll: a store that is down stays down for a while.
      if (!this.failing) {
        this.failing = true;
        this.options.logger.error(
          { err },
          'Reading the store feed failed; the monitor keeps its runs and retries at every feed poll.',
        );
      }
    } finally {
      this.polling = false;
      if (this.wakeAgain) this.wake();
      else this.schedulePoll();
    }
  }
}
