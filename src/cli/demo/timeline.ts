// The demo's live log: stored events and the demo's own actions, printed in time order, coloured when the
// terminal allows it.
import { type Color, padEnd, type Paint } from '../output.js';

/** One line of the live log: a stored event, or something the demo itself did (kind `demo`). */
export interface TimelineEntry {
  at: number;
  /** The event's seq; for a demo action, the seq of the event that caused it. */
  seq: number;
  runId: string;
  kind: string;
  message: string;
}

/** Time order; the store's order among entries of the same millisecond. */
export function byTime(a: TimelineEntry, b: TimelineEntry): number {
  return a.at - b.at || a.seq - b.seq;
}

/**
 * Holds each entry until it is `holdMs` old, then prints it in (at, seq) order. Needed because the store's
 * tail is in commit order, and a worker's event can commit after a later one of the monitor (its `at` is
 * taken before it waits for the write lock). An entry that shows up after its hold is printed when it shows.
 */
export class Timeline {
  readonly #print: (entry: TimelineEntry) => void;
  readonly #holdMs: number;
  #pending: TimelineEntry[] = [];

  constructor(print: (entry: TimelineEntry) => void, holdMs: number) {
    this.#print = print;
    this.#holdMs = holdMs;
  }

  add(entry: TimelineEntry): void {
    this.#pending.push(entry);
  }

  /** Prints, oldest first, every entry at least holdMs old at `now`. */
  release(now: number): void {
    const cutoff = now - this.#holdMs;
    const due = this.#pending.filter((entry) => entry.at <= cutoff);
    if (due.length === 0) return;
    this.#pending = this.#pending.filter((entry) => entry.at > cutoff);
    for (const entry of due.sort(byTime)) this.#print(entry);
  }

  /** Prints everything still held. */
  flush(): void {
    this.release(Number.POSITIVE_INFINITY);
  }
}

const KIND_COLORS: Readonly<Record<string, Color>> = {
  RUN_STARTING: 'cyan',
  RUN_START: 'cyan',
  RUN_SUCCESS: 'green',
  RUN_FAILURE: 'red',
  RUN_CANCELING: 'yellow',
  RUN_CANCELED: 'yellow',
  demo: 'magenta',
};

const STATUS_COLORS: Readonly<Record<string, Color>> = {
  SUCCESS: 'green',
  FAILURE: 'red',
  CANCELED: 'yellow',
};

/** The lines of one entry: time since `t0`, run, kind, and the message (continuation lines indented). */
export function entryLines(entry: TimelineEntry, t0: number, paint: Paint): string[] {
  const stamp = `+${((entry.at - t0) / 1000).toFixed(2).padStart(5)}s`;
  const name = entry.runId.replace(/^demo-/, '');
  const color = KIND_COLORS[entry.kind];
  const kind = color ? paint(color, entry.kind) : entry.kind;
  const lead = `  ${stamp}  ${name.padEnd(15)}  ${padEnd(kind, 13)}  `;
  const indent = ' '.repeat(`  ${stamp}  ${name.padEnd(15)}  ${entry.kind.padEnd(13)}  `.length);
  const [first, ...more] = entry.message.split('\n');
  return [`${lead}${first}`, ...more.map((line) => `${indent}${line}`)];
}

/** A run status, coloured by outcome. */
export function paintStatus(status: string, paint: Paint): string {
  const color = STATUS_COLORS[status];
  return color ? paint(color, status) : status;
}
