// Heartbeats from a real run-worker process (test/fixtures/run-worker.mjs on the built worker SDK) into a
// real SQLite file: they come from the worker's own event loop, so a worker that blocks it stops them. No
// monitor here: the test reads heartbeatAt and progressAt as the monitor would.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';
import type { RunEvent } from '../src/core/types.js';
import { isAlive, tempDir, waitFor, workerCommand } from './processes.js';

const BLOCK_MS = 3000;

let cleanup: (() => Promise<void>) | undefined;

afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

/** A STARTING run and its worker process in `mode`, heartbeating every 0.2 s. */
async function startWorker(mode: string, ...args: string[]) {
  const dir = tempDir('runwarden-heartbeat-');
  const dbPath = join(dir.path, 'runs.db');
  const store = new SqliteRunStore({ path: dbPath });
  const { runId } = await store.createRun({});
  await store.transition(runId, { to: 'STARTING' });
  const [command, ...argv] = workerCommand(mode, ...args);
  const child: ChildProcess = spawn(command!, argv, {
    env: {
      ...process.env,
      RUNWARDEN_RUN_ID: runId,
      RUNWARDEN_STORE: `sqlite:${dbPath}`,
      RUNWARDEN_RESUME_ATTEMPT: '0',
      RUNWARDEN_HEARTBEAT_SECONDS: '0.2',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  let exit: { code: number | null } | undefined;
  child.on('exit', (code) => (exit = { code }));
  const exited = async () => (await waitFor(`the worker to exit (stderr: ${stderr})`, () => exit)).code;
  cleanup = async () => {
    if (child.pid !== undefined && isAlive(child.pid)) child.kill('SIGKILL');
    await store.close();
    dir.remove();
  };
  const run = async () => (await store.getRun(runId))!;
  const event = (message: string) =>
    waitFor(`the worker's event ${JSON.stringify(message)} (stderr: ${stderr})`, async () =>
      (await store.getEvents(runId)).find((e) => e.message === message),
    );
  return { store, runId, child, exited, run, event, stderr: () => stderr };
}

describe('a real worker with RUNWARDEN_HEARTBEAT_SECONDS', () => {
  it('heartbeats from its event loop: none while a busy loop blocks it, again after; steps move progressAt', async () => {
    const w = await startWorker('heartbeat-block', String(BLOCK_MS));
    const waitStarted = await w.event('Step wait started.');

    // Heartbeats advance heartbeatAt; they are not progress, so progressAt stays at the step's start.
    const seen = new Set<number>();
    await waitFor('three distinct heartbeats', async () => {
      const { heartbeatAt } = await w.run();
      if (heartbeatAt !== undefined) seen.add(heartbeatAt);
      return seen.size >= 3;
    });
    const before = await w.run();
    expect(before.status).toBe('STARTED');
    expect(before.progressAt).toBeGreaterThanOrEqual(waitStarted.at);
    expect(before.heartbeatAt).toBeGreaterThan(before.progressAt!);

    await w.store.appendEvent(w.runId, { type: 'ENGINE_EVENT', message: 'go', data: { go: 'block' } });
    const blocking = await w.event('blocking');
    // Nothing runs in the worker between this event and its busy loop, so this is its last heartbeat.
    const last = (await w.run()).heartbeatAt!;
    expect(last).toBeLessThanOrEqual(blocking.at);
    const samples: { heartbeatAt: number; readAt: number }[] = [];
    let unblocked: RunEvent | undefined;
    while (!unblocked) {
      const { heartbeatAt } = await w.run();
      const readAt = Date.now();
      unblocked = (await w.store.getEvents(w.runId)).find((e) => e.message === 'unblocked');
      // Read before the worker logged "unblocked": its event loop was still blocked.
      if (!unblocked) samples.push({ heartbeatAt: heartbeatAt!, readAt });
      else break;
      await sleep(50);
      expect(Date.now() - blocking.at).toBeLessThan(BLOCK_MS + 15_000);
    }
    expect(unblocked.at - blocking.at).toBeGreaterThanOrEqual(BLOCK_MS);
    // Samples taken well into the block (5 heartbeat intervals and more) show the same heartbeat.
    expect(samples.filter((s) => s.readAt >= blocking.at + 1000).length).toBeGreaterThan(0);
    expect(new Set(samples.map((s) => s.heartbeatAt))).toEqual(new Set([last]));

    // The timer runs again once the loop is free (more than one interval on: not the step's progress write).
    await waitFor(
      'heartbeats after the block',
      async () => (await w.run()).heartbeatAt! >= unblocked.at + 600,
    );

    await w.store.appendEvent(w.runId, { type: 'ENGINE_EVENT', message: 'go', data: { go: 'finish' } });
    expect(await w.exited()).toBe(0);
    const after = await w.event('Step after started.');
    const end = await w.run();
    expect(end.status).toBe('SUCCESS');
    expect(end.progressAt).toBeGreaterThanOrEqual(after.at);
  }, 30_000);

  it('exits by itself when its code ends without a final report: the timers are unref', async () => {
    const w = await startWorker('forgets');
    expect(await w.exited()).toBe(0);
    const run = await w.run();
    expect(run.status).toBe('STARTED');
    expect(run.heartbeatAt).toBeGreaterThanOrEqual(run.startedAt!);
    expect(run.progressAt).toBeGreaterThanOrEqual(run.startedAt!);
    const messages = (await w.store.getEvents(w.runId)).map((e) => e.message);
    expect(messages).toContain('returning without a final report');
  });
});
