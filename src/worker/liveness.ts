// Heartbeats and progress for the run-worker SDK (src/worker/worker.ts).
//
// Both are written from timers on the worker's own event loop, on purpose: a worker whose loop is blocked
// (a busy loop, a synchronous deadlock) writes neither, so the monitor sees it hung, as it is. A thread or a
// helper process beating for it would keep hung code looking healthy.
//
// Timers are unref'd: a worker whose code is done never stays alive just to heartbeat. A failed write (the
// store busy) never throws into the worker: it is said once in the log and tried again at the next tick.
import { errorText } from '../../machines/messages.js';
import { RunwardenError, WorkerSupersededError } from '../core/errors.js';
import type { RunStore } from '../core/types.js';
import { isHeartbeatInterval, MAX_HEARTBEAT_SECONDS } from './env.js';

/** Progress writes are coalesced to at most one per this long. */
export const PROGRESS_INTERVAL_MS = 1000;

/**
 * Seconds between heartbeats: the `heartbeatSeconds` option, else `RUNWARDEN_HEARTBEAT_SECONDS` as
 * parseWorkerEnv read it (set by the launcher for runs with a heartbeat timeout), else undefined (none).
 */
export function heartbeatSecondsOf(option: unknown, fromEnv: number | undefined): number | undefined {
  if (option === undefined) return fromEnv;
  if (!isHeartbeatInterval(option)) {
    throw new RunwardenError(
      'INVALID_OPTION',
      `heartbeatSeconds must be a number of seconds > 0 and <= ${MAX_HEARTBEAT_SECONDS}; got ${show(option)}.`,
    );
  }
  return option;
}

function show(value: unknown): string {
  return typeof value === 'number' ? String(value) : (JSON.stringify(value) ?? String(value));
}

type WriteKind = 'heartbeat' | 'progress';
const WRITE_NAMES: Record<WriteKind, { one: string; all: string }> = {
  heartbeat: { one: 'a heartbeat', all: 'heartbeats' },
  progress: { one: 'progress', all: 'progress' },
};

/**
 * One line when a kind of write starts failing and one when it works again, rather than a line per tick of a
 * store that stays busy. A write refused because the worker was superseded is no failure to retry: it goes
 * to `superseded`, which stops the worker.
 */
export class WriteFailures {
  private readonly failing = new Map<WriteKind, number>();

  constructor(
    private readonly runId: string,
    private readonly notice: (message: string) => void,
    private readonly superseded: (error: WorkerSupersededError) => void,
  ) {}

  failed(kind: WriteKind, error: unknown): void {
    if (error instanceof WorkerSupersededError) {
      this.superseded(error);
      return;
    }
    const count = (this.failing.get(kind) ?? 0) + 1;
    this.failing.set(kind, count);
    if (count === 1) {
      this.notice(
        `Run ${this.runId}: could not record ${WRITE_NAMES[kind].one}, trying again at the next one (further failures are not logged until one succeeds): ${errorText(error)}`,
      );
    }
  }

  succeeded(kind: WriteKind): void {
    const count = this.failing.get(kind);
    if (count === undefined) return;
    this.failing.delete(kind);
    this.notice(
      `Run ${this.runId}: ${WRITE_NAMES[kind].all} recorded again after ${count} failed ${count === 1 ? 'write' : 'writes'}.`,
    );
  }
}

interface BeatContext {
  runId: string;
  store: RunStore;
  attempt: number;
}

/** The SDK's heartbeat: one now, then one every `intervalMs`, until stopped. */
export class TimerHeartbeat {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private stopped = false;

  constructor(
    readonly intervalMs: number,
    private readonly failures: WriteFailures,
  ) {}

  /** Resolves once the first heartbeat is written (or has failed, which is only logged). */
  start(context: BeatContext): Promise<void> {
    if (this.stopped || this.timer) return Promise.resolve();
    this.timer = setInterval(() => void this.beat(context), this.intervalMs);
    this.timer.unref();
    return this.beat(context);
  }

  /** Stops the timer and waits for a write in flight (the store may be closed next). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.writing;
  }

  private beat({ runId, store, attempt }: BeatContext): Promise<void> {
    // A write still in flight (a slow store): this tick is skipped rather than piled up behind it.
    if (this.stopped || this.writing) return this.writing ?? Promise.resolve();
    const write = (async () => {
      try {
        // The attempt fences the beat: a superseded worker's heartbeat is refused and stops it.
        await store.heartbeat(runId, { attempt });
        this.failures.succeeded('heartbeat');
      } catch (error) {
        this.failures.failed('heartbeat', error);
      } finally {
        this.writing = undefined;
      }
    })();
    this.writing = write;
    return write;
  }
}

/**
 * Signs of progress, coalesced: the first is written at once, any that follow within PROGRESS_INTERVAL_MS
 * become one write at the end of that interval, carrying the latest message.
 */
export class ProgressWriter {
  private cooling: NodeJS.Timeout | undefined;
  private pending = false;
  private message: string | undefined;
  private stopped = false;
  private readonly writes = new Set<Promise<void>>();

  constructor(
    private readonly store: RunStore,
    private readonly runId: string,
    private readonly attempt: number,
    private readonly failures: WriteFailures,
  ) {}

  mark(message?: string): void {
    if (this.stopped) return;
    if (message !== undefined) this.message = message;
    this.pending = true;
    if (!this.cooling) this.writePending();
  }

  /** Writes a pending sign of progress at once (the final report comes next), then takes no more. */
  async flush(): Promise<void> {
    if (this.stopped) return this.settled();
    const pending = this.pending;
    this.stop();
    if (pending) this.track(this.write(this.message));
    this.message = undefined;
    await this.settled();
  }

  /** Drops anything pending and waits for writes in flight. */
  async close(): Promise<void> {
    this.stop();
    await this.settled();
  }

  private stop(): void {
    this.stopped = true;
    this.pending = false;
    clearTimeout(this.cooling);
    this.cooling = undefined;
  }

  private settled(): Promise<void> {
    return Promise.allSettled([...this.writes]).then(() => undefined);
  }

  private writePending(): void {
    if (!this.pending || this.stopped) return;
    const message = this.message;
    this.pending = false;
    this.message = undefined;
    this.startCooling();
    this.track(
      this.write(message).catch(() => {
        // Tried again once the interval is over, unless a newer sign of progress has replaced it.
        if (this.stopped) return;
        this.pending = true;
        this.message ??= message;
        if (!this.cooling) this.startCooling();
      }),
    );
  }

  private startCooling(): void {
    this.cooling = setTimeout(() => {
      this.cooling = undefined;
      this.writePending();
    }, PROGRESS_INTERVAL_MS);
    this.cooling.unref();
  }

  private async write(message: string | undefined): Promise<void> {
    try {
      await this.store.heartbeat(this.runId, { progress: true, attempt: this.attempt });
      if (message !== undefined) {
        await this.store.appendEvent(this.runId, {
          type: 'ENGINE_EVENT',
          message,
          data: { progress: true, attempt: this.attempt },
          attempt: this.attempt,
        });
      }
      this.failures.succeeded('progress');
    } catch (error) {
      this.failures.failed('progress', error);
      throw error;
    }
  }

  private track(write: Promise<void>): void {
    const tracked = write.catch(() => {});
    this.writes.add(tracked);
    void tracked.finally(() => this.writes.delete(tracked));
  }
}
