// Whether a `runwarden monitor` watches a store, so `runwarden launch` can warn when nothing enforces the
// deadlines it creates. Every running monitor keeps a heartbeat file next to the SQLite database,
// `<db>.monitor.json`, rewritten every few seconds and removed when it stops cleanly. A file is not changed
// in place (written aside, then renamed), so a reader never sees half of one. Stores that record monitors
// (their leases) answer first, for monitors on any machine; the file covers the rest.
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** How often a monitor rewrites its heartbeat. */
const HEARTBEAT_INTERVAL_MS = 5_000;
/** A heartbeat older than this many intervals is stale: its monitor stopped without removing it. */
const STALE_AFTER_INTERVALS = 3;

interface Heartbeat {
  pid: number;
  host: string;
  /** When it was written, epoch ms. */
  at: number;
  /** How often its monitor rewrites it; readers judge staleness by it. */
  intervalMs: number;
}

/**
 * True when one of the monitors a store lists (they hold leases on it, from any machine) is alive: a
 * monitor on this host whose process is gone (kill -9) is listed until its lease runs out, and watches
 * nothing.
 */
export function isAnyMonitorAlive(monitors: readonly { host: string; pid: number }[]): boolean {
  const here = hostname();
  return monitors.some((m) => m.host !== here || isAlive(m.pid));
}

/** The heartbeat file of the SQLite database at `dbPath`. */
export function heartbeatPath(dbPath: string): string {
  return `${dbPath}.monitor.json`;
}

/**
 * True when a monitor has written a heartbeat for this store within the last 3 of its intervals and, when it
 * runs on this host, its process is still alive (a SIGKILLed monitor leaves its file behind).
 */
export async function isMonitorWatching(
  store: { readonly path: string },
  now: number = Date.now(),
): Promise<boolean> {
  const beat = readHeartbeat(heartbeatPath(store.path));
  if (!beat) return false;
  if (now - beat.at > STALE_AFTER_INTERVALS * beat.intervalMs) return false;
  return beat.host !== hostname() || isAlive(beat.pid);
}

function readHeartbeat(path: string): Heartbeat | undefined {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    // Missing or unreadable: no monitor has announced itself.
    return undefined;
  }
  const beat = value as Partial<Heartbeat> | null;
  if (
    typeof beat?.pid !== 'number' ||
    !Number.isSafeInteger(beat.pid) ||
    beat.pid <= 0 ||
    typeof beat.host !== 'string' ||
    typeof beat.at !== 'number' ||
    !Number.isFinite(beat.at) ||
    typeof beat.intervalMs !== 'number' ||
    !(beat.intervalMs > 0)
  ) {
    return undefined;
  }
  return beat as Heartbeat;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: alive, but another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed process stays a zombie until its parent reaps it; it watches nothing.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

export interface HeartbeatWriter {
  /** Stops rewriting and removes the file if it is still this process's. */
  stop(): void;
}

/**
 * Writes this process's heartbeat for the database at `dbPath` now and every `intervalMs`. A failed write is
 * reported to `onError` and retried on the next beat; it never stops the monitor.
 */
export function startHeartbeat(
  dbPath: string,
  options: { intervalMs?: number; onError?: (error: unknown) => void } = {},
): HeartbeatWriter {
  const path = heartbeatPath(dbPath);
  const intervalMs = options.intervalMs ?? HEARTBEAT_INTERVAL_MS;
  const host = hostname();
  const beat = () => {
    const text = JSON.stringify({ pid: process.pid, host, at: Date.now(), intervalMs } satisfies Heartbeat);
    const aside = `${path}.${process.pid}.tmp`;
    try {
      writeFileSync(aside, `${text}\n`);
      renameSync(aside, path);
    } catch (error) {
      options.onError?.(error);
    }
  };
  beat();
  const timer = setInterval(beat, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      // Another monitor on the same database may have written the file since: leave its heartbeat alone.
      const current = readHeartbeat(path);
      if (current?.pid !== process.pid || current.host !== host) return;
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}
