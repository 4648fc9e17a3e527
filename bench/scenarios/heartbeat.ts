// heartbeat: what heartbeating runs cost the monitor, and how many heartbeats the SQLite store takes beside
// it. Each arm runs in a fresh process over its own SQLite file of N STARTED runs, with the monitor's normal
// work going on: the feed tails the store every second and a health poll (answered at once by a
// FakeLauncher) runs every 20 s. The heartbeats come from a second process, as workers' would.
//   none:    the heartbeat timeout is off and nothing heartbeats. The same runs, the same monitor otherwise.
//   beating: every run heartbeating every 5 s, with a 600 s heartbeat timeout: each run's liveness timer
//            is armed, none falls due in the window. What heartbeats themselves cost the monitor.
//   paced:   the same heartbeats with a 15 s timeout (the SDK beats at a third of it). Heartbeats append
//            no event, so the monitor's extra cost is its liveness timers: each fires about twice per run
//            in the 40 s window, re-reads the run, finds the heartbeat moved and re-arms.
//   flood:   as paced, but the writer heartbeats as fast as the store takes it: the rate it sustains.
// The monitor's CPU (its own process only) over the window is the figure; no run may leave STARTED.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { realClock } from '../../src/core/clock.js';
import type { Clock } from '../../src/core/types.js';
import { createRunMonitor } from '../../src/monitor/monitor.js';
import { SqliteRunStore } from '../../src/stores/sqlite/sqlite-store.js';
import { FakeLauncher } from '../../src/testing/index.js';
import { pages, runIdOf, SECOND, sleep } from '../lib.js';
import { prepareSqlite } from './restore.js';

export type HeartbeatArm = 'none' | 'beating' | 'paced' | 'flood';

export interface HeartbeatOptions {
  windowMs?: number;
}

export interface HeartbeatResult {
  arm: HeartbeatArm;
  windowMs: number;
  /** CPU (user + system) of the monitor's process over the window. */
  cpuMs: number;
  cpuMsPerSecond: number;
  /** Heartbeats the writer process stored during the window. */
  heartbeats: number;
  heartbeatsPerSecond: number;
  /** Liveness timers armed during the window: each a fired deadline that re-read its run and re-armed. */
  livenessArms: number;
}

const POLL_INTERVAL_SECONDS = 20;
/** How often every run heartbeats (a third of the 15 s timeout of `paced`). */
const BEAT_INTERVAL_MS = 5 * SECOND;

export async function heartbeat(
  arm: HeartbeatArm,
  n: number,
  options: HeartbeatOptions,
): Promise<HeartbeatResult> {
  if (!['none', 'beating', 'paced', 'flood'].includes(arm)) throw new Error(`unknown heartbeat arm ${arm}`);
  const timeoutSeconds = arm === 'beating' ? 600 : 15;
  const intervalMs = BEAT_INTERVAL_MS;
  const windowMs = options.windowMs ?? (arm === 'flood' ? 10 * SECOND : 40 * SECOND);
  const dir = mkdtempSync(join(os.tmpdir(), 'runwarden-heartbeat-'));
  const path = join(dir, 'runs.db');
  try {
    // Started two intervals ago; each run's last heartbeat staggered over the last interval, so the
    // liveness deadlines spread over a period like those of runs that started at different times.
    await prepareSqlite(n, path, ['STARTED'], Date.now() - 2 * intervalMs);
    const store = SqliteRunStore.open(path);
    const t0 = Date.now();
    for (let j = 0; j < n; j++) {
      await store.heartbeat(runIdOf(j), { at: Math.round(t0 - intervalMs + (j / n) * intervalMs) });
    }
    // The writer beats from before the monitor starts, so a slow start (a loaded machine) cannot let a
    // deadline pass unbeaten.
    const writer = arm === 'none' ? undefined : startWriter(path, n, arm === 'flood' ? 0 : intervalMs);
    await writer?.ready;
    let armed = 0;
    // Liveness delays lie within three beats of the timeout; the feed (1 s), the poll (20 s) and launcher
    // timeouts (60 s) fall outside that range.
    const shortest = Math.max(1.5 * SECOND, timeoutSeconds * SECOND - 3 * intervalMs - SECOND);
    const isLiveness = (ms: number) => ms > shortest && ms <= timeoutSeconds * SECOND;
    const clock: Clock = {
      now: () => Date.now(),
      setTimeout: (fn, ms) => {
        if (isLiveness(ms)) armed++;
        return realClock.setTimeout(fn, ms);
      },
      clearTimeout: (id) => realClock.clearTimeout(id),
    };
    const monitor = createRunMonitor({
      store,
      launcher: new FakeLauncher(),
      clock,
      config: {
        heartbeatTimeoutSeconds: arm === 'none' ? 0 : timeoutSeconds,
        pollIntervalSeconds: POLL_INTERVAL_SECONDS,
      },
    });
    await monitor.start();
    await monitor.settle();

    const armedBefore = armed;
    writer?.mark();
    const cpu0 = process.cpuUsage();
    const w0 = performance.now();
    await sleep(windowMs);
    const cpu = process.cpuUsage(cpu0);
    const elapsed = performance.now() - w0;
    const livenessArms = armed - armedBefore;
    const written = writer ? await writer.stop() : { written: 0, ms: elapsed };

    let started = 0;
    for await (const page of pages(store, ['STARTED'])) started += page.length;
    await monitor.stop();
    await store.close();
    if (started !== n) {
      throw new Error(
        `heartbeat ${arm}: ${n - started} of ${n} runs left STARTED; the writer fell behind (${JSON.stringify(written)})`,
      );
    }
    const cpuMs = (cpu.user + cpu.system) / 1000;
    return {
      arm,
      windowMs: elapsed,
      cpuMs,
      cpuMsPerSecond: (cpuMs * SECOND) / elapsed,
      heartbeats: written.written,
      heartbeatsPerSecond: (written.written * SECOND) / written.ms,
      livenessArms,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The writer process: `ready` once its store is open; `mark()` starts its count, `stop()` ends it and
 * resolves with what it wrote since the mark.
 */
function startWriter(path: string, n: number, intervalMs: number) {
  const worker = fileURLToPath(new URL('../worker.js', import.meta.url));
  const child = spawn(
    process.execPath,
    [worker, 'heartbeat-writer', path, String(n), JSON.stringify({ intervalMs })],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  let out = '';
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    if (out.startsWith('ready\n')) markReady();
  });
  const done = new Promise<WriterResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || !line.startsWith('{')) reject(new Error(`heartbeat writer exited with ${code}`));
      else resolve(JSON.parse(line) as WriterResult);
    });
  });
  // A writer that dies before `ready` must not leave the scenario waiting for it.
  void done.catch(() => markReady());
  return {
    ready,
    mark: () => child.stdin.write('mark\n'),
    stop: () => {
      child.stdin.end('stop\n');
      return done;
    },
  };
}

interface WriterResult {
  written: number;
  ms: number;
}

/**
 * Heartbeats runs 0..n-1 in turn through its own SqliteRunStore until told `stop` on stdin: each run once
 * per `intervalMs` (spread evenly), or with `intervalMs` 0 as fast as the store takes them. Counts from
 * `mark`.
 */
export async function heartbeatWriter(
  path: string,
  n: number,
  options: { intervalMs: number },
): Promise<WriterResult> {
  const store = SqliteRunStore.open(path);
  let marked = { written: 0, at: performance.now() };
  let stopped = false;
  let written = 0;
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (text: string) => {
    if (text.includes('mark')) marked = { written, at: performance.now() };
    if (text.includes('stop')) stopped = true;
  });
  process.stdout.write('ready\n');
  const t0 = performance.now();
  while (!stopped) {
    const now = performance.now();
    const due = options.intervalMs > 0 ? Math.floor(((now - t0) * n) / options.intervalMs) : written + 256;
    for (; written < due; written++) await store.heartbeat(runIdOf(written % n));
    // Paced: wait for the next few due; flat out: let stdin be read between bursts.
    await (options.intervalMs > 0 ? sleep(5) : new Promise((resolve) => setImmediate(resolve)));
  }
  const ms = performance.now() - marked.at;
  await store.close();
  return { written: written - marked.written, ms };
}
