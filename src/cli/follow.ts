// Following a run while it goes: its event log (`events --follow`) and its worker's log file
// (`logs --follow`). Both poll: other processes' writes reach this one only through the store's event tail
// (readEventsAfter) and the file itself, never through subscribe(), which sees only this process's writes.
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTerminal, type RunEvent, type RunStore, statusOfEvent } from '../core/types.js';

/** How often a follower looks for new events or output. */
const FOLLOW_INTERVAL_MS = 200;
const EVENT_PAGE = 500;
const READ_CHUNK = 64 * 1024;

/**
 * A signal that aborts on SIGINT or SIGTERM (a follower then stops and the command exits 0), or when
 * stdout fails, e.g. its reader has gone away (`runwarden logs --follow | head`): nobody is left to print for.
 */
export function stopOnSignals(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const stop = () => controller.abort();
  // Without a listener, a write to a closed pipe would crash the command with a stack trace.
  const onStdoutError = stop;
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.stdout.on('error', onStdoutError);
  return {
    signal: controller.signal,
    dispose() {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.stdout.off('error', onStdoutError);
    },
  };
}

/** Writes to stdout and waits until it is flushed (a fast follower must not buffer without bound). */
export function writeOut(chunk: string | Uint8Array): Promise<void> {
  // A failed write (EPIPE) is reported to stdout's 'error' listener, which stops the follower.
  return new Promise((resolve) => process.stdout.write(chunk, () => resolve()));
}

/** Waits `ms`, or less when `signal` aborts; never throws. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch(() => {});
}

function endsRun(event: RunEvent): boolean {
  const status = statusOfEvent(event.type);
  return status !== undefined && isTerminal(status);
}

/**
 * Hands every event of `runId` to `onEvent`, oldest first, each once: its history, then each new one as any
 * process writes it. Resolves 'ended' after the run's terminal event, or 'stopped' when `signal` aborts.
 * Throws RunNotFoundError for an unknown run.
 */
export async function followEvents(
  store: RunStore,
  runId: string,
  options: { signal: AbortSignal; onEvent: (event: RunEvent) => Promise<void>; intervalMs?: number },
): Promise<'ended' | 'stopped'> {
  const { signal, onEvent } = options;
  // The tail's position first, the history second: an event written in between is read twice (and skipped
  // by its seq the second time), never missed. Writes commit in seq order, so the tail sees them in order.
  let cursor = await store.latestSeq();
  let last = 0;
  for (const event of await store.getEvents(runId)) {
    if (signal.aborted) return 'stopped';
    await onEvent(event);
    last = event.seq;
    if (endsRun(event)) return 'ended';
  }
  while (!signal.aborted) {
    const page = await store.readEventsAfter(cursor, EVENT_PAGE);
    for (const event of page) {
      cursor = event.seq;
      if (event.runId !== runId || event.seq <= last) continue;
      if (signal.aborted) return 'stopped';
      await onEvent(event);
      last = event.seq;
      if (endsRun(event)) return 'ended';
    }
    if (page.length < EVENT_PAGE) await pause(options.intervalMs ?? FOLLOW_INTERVAL_MS, signal);
  }
  return 'stopped';
}

/**
 * Copies the file at `path` to `write` from its start, then what is appended to it, until `ended()` says so
 * (checked before each copy, so everything written before the end is copied) or `signal` aborts. A file that
 * shrinks (truncated or replaced) is copied again from its start.
 */
export async function followFile(
  path: string,
  options: {
    signal: AbortSignal;
    write: (chunk: Uint8Array) => Promise<void>;
    ended: () => Promise<boolean>;
    intervalMs?: number;
  },
): Promise<'ended' | 'stopped'> {
  let offset = 0;
  for (;;) {
    const done = await options.ended();
    offset = await copyFrom(path, offset, options);
    if (options.signal.aborted) return 'stopped';
    if (done) return 'ended';
    await pause(options.intervalMs ?? FOLLOW_INTERVAL_MS, options.signal);
  }
}

/** Copies `path` from `offset` to its current end; resolves the new offset. */
export async function copyFrom(
  path: string,
  offset: number,
  options: { signal?: AbortSignal; write: (chunk: Uint8Array) => Promise<void> },
): Promise<number> {
  let file;
  try {
    file = await open(path, 'r');
  } catch (error) {
    // Removed while followed: nothing new to copy (it may come back).
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return offset;
    throw error;
  }
  try {
    const { size } = await file.stat();
    if (size < offset) offset = 0;
    while (offset < size && !options.signal?.aborted) {
      const buffer = Buffer.alloc(Math.min(READ_CHUNK, size - offset));
      const { bytesRead } = await file.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
      await options.write(buffer.subarray(0, bytesRead));
    }
    return offset;
  } finally {
    await file.close();
  }
}
