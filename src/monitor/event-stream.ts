// Every event of every run, in seq order, for the host's listeners (monitor.subscribe). The store feed says
// when there is something new (this process's writes at once, other processes' on the feed's interval); the
// stream then reads the store's tail from the last seq it delivered, so listeners see each event once and in
// the store's order, whoever wrote it. With no listener it reads nothing.
import type { RunEvent, RunStore } from '../core/types.js';
import type { EffectTracker } from './effect-tracker.js';
import type { MonitorLogger } from './logger.js';

const PAGE = 1000;

export type RunEventListener = (event: RunEvent) => void;

export class EventStream {
  private readonly listeners = new Set<RunEventListener>();
  /** The last seq delivered, or passed over while nobody listened. */
  private lastSeq = 0;
  /** Highest seq the feed has said exists. */
  private knownSeq = 0;
  private pumping = false;
  private started = false;
  /** The next seq learned is where delivery starts (the store's latest when the monitor started). */
  private baseline = false;

  constructor(
    private readonly store: RunStore,
    private readonly tracker: EffectTracker,
    private readonly logger: MonitorLogger,
  ) {}

  /** Delivers what comes after the first seq the feed learns (the store's latest as it starts). */
  start(): void {
    this.started = true;
    this.baseline = true;
  }

  stop(): void {
    this.started = false;
  }

  subscribe(listener: RunEventListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** The feed learned that events up to `seq` exist. */
  learned(seq: number): void {
    if (this.baseline) {
      this.baseline = false;
      this.lastSeq = this.knownSeq = seq;
      return;
    }
    this.knownSeq = Math.max(this.knownSeq, seq);
    if (!this.started || this.knownSeq <= this.lastSeq) return;
    if (this.listeners.size === 0) {
      this.lastSeq = this.knownSeq;
      return;
    }
    if (this.pumping) return;
    this.pumping = true;
    void this.tracker.track(this.pump()).then((ok) => {
      this.pumping = false;
      // Events that arrived while reading; after a failure, wait for the feed's next news instead.
      if (ok && this.knownSeq > this.lastSeq) this.learned(this.knownSeq);
    });
  }

  private async pump(): Promise<boolean> {
    try {
      for (;;) {
        const events = await this.store.readEventsAfter(this.lastSeq, PAGE);
        for (const event of events) {
          if (!this.started) return true;
          this.lastSeq = event.seq;
          this.deliver(event);
        }
        if (events.length < PAGE) return true;
      }
    } catch (err) {
      // The next thing the feed learns retries from the same seq: delayed, never lost.
      this.logger.error({ err }, 'Reading run events for subscribers failed; retrying with the next change.');
      return false;
    }
  }

  private deliver(event: RunEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.logger.error(
          { err, runId: event.runId },
          'A run event listener threw; the others still get the event.',
        );
      }
    }
  }
}
