// Heartbeat and progress timeouts with real processes: commands under the --wrap wrapper, whose output lines
// are their progress, watched by a monitor in this process on real time.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { TAGS } from '../src/core/types.js';
import { setupWorkers, type WorkerSetup } from './any-language.js';
import { isAlive, waitFor } from './processes.js';

let s: WorkerSetup | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

it(
  'a wrapped command that prints once and then hangs ends FAILURE / PROGRESS_TIMEOUT, its sleep gone',
  { timeout: 60_000 },
  async () => {
    s = await setupWorkers({ wrap: true, config: { maxResumeRunAttempts: 0 } });
    const pidFile = join(s.dir.path, 'sleep.pid');
    const runId = await s.launch(['sh', '-c', `echo start; sleep 600 & echo $! > ${pidFile}; wait`], {
      [TAGS.progressTimeout]: '3',
    });
    const sleepPid = Number(
      await waitFor('the sleep to start', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim()),
    );
    const run = await s.ended(runId, 30_000);
    expect(run.status).toBe('FAILURE');
    expect(run.tags[TAGS.failureReason]).toBe('PROGRESS_TIMEOUT');
    expect((await s.store.getEvents(runId, { types: ['RUN_FAILURE'] })).map((e) => e.message)).toEqual([
      messages.stalledFailed(messages.stalled('PROGRESS_TIMEOUT', 3), runId),
    ]);
    // Detection within the timeout plus about a second (the liveness timer, then a re-read and terminate).
    const started = run.startedAt ?? 0;
    const lastProgress = Math.max(run.progressAt ?? started, started);
    expect((run.endedAt ?? 0) - lastProgress).toBeLessThan(3_000 + 5_000);
    await waitFor('the sleep to be gone', () => !isAlive(sleepPid), 10_000);
  },
);

it(
  'a wrapped command that prints every half second runs well past the progress timeout to SUCCESS',
  { timeout: 60_000 },
  async () => {
    s = await setupWorkers({ wrap: true, config: { maxResumeRunAttempts: 0 } });
    const runId = await s.launch(
      ['sh', '-c', 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "tick $i"; sleep 0.5; done'],
      {
        [TAGS.progressTimeout]: '3',
      },
    );
    const run = await s.ended(runId, 30_000);
    expect(run.status).toBe('SUCCESS');
    expect((run.endedAt ?? 0) - (run.startedAt ?? 0)).toBeGreaterThan(5_000);
  },
);
