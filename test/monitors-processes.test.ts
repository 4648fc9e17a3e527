// Three real `runwarden monitor` processes (the built CLI) on one SQLite file with real workers. One is
// killed with SIGKILL, one is paused with SIGSTOP past its lease and then continued: the third takes every
// run over within the lease, each run ends exactly once with the right outcome, nothing is resumed twice,
// and the paused monitor, once it continues, neither writes a decision nor calls the launcher until it has
// renewed (and learned what it lost). Its own log is the witness: each process logs its decisions and, at
// debug level, every launcher call.
import type { ChildProcess } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { messages } from '../machines/messages.js';
import { isTerminal, type MonitorInfo, type RunRecord, TAGS } from '../src/core/types.js';
import { PID_TAG } from '../src/launchers/process/process-launcher.js';
import { PARTITION_COUNT } from '../src/stores/contract.js';
import { cliMonitorSetup, killWorkers, runCli, waitFor } from './processes.js';

const LEASE_SECONDS = 2;
const MAX_RUNTIME = 6;
const START_TIMEOUT = 6;

// This process launches runs the way `runwarden launch` does.
const {
  dir,
  configFile,
  store,
  monitors: children,
  startMonitor: startCliMonitor,
  launch,
} = cliMonitorSetup(
  'runwarden-monitors-',
  `  start_timeout_seconds: ${START_TIMEOUT}
  poll_interval_seconds: 0.3
  feed_poll_interval_seconds: 0.1
  max_resume_run_attempts: 3
  lease_seconds: ${LEASE_SECONDS}
`,
  START_TIMEOUT,
);

afterAll(async () => {
  for (const child of children) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
  await killWorkers(store);
  await store.close();
  dir.remove();
});

interface MonitorProcess {
  child: ChildProcess;
  id: string;
  output: () => string;
}

async function startMonitor(): Promise<MonitorProcess> {
  const { child, output, running } = await startCliMonitor(['--log-level', 'debug']);
  return { child, id: running.monitorId, output };
}

async function monitors(): Promise<MonitorInfo[]> {
  const result = await runCli(['monitors', '--json', '--config', configFile]);
  expect(result.stderr).toBe('');
  return JSON.parse(result.stdout) as MonitorInfo[];
}

const getRun = async (runId: string) => (await store.getRun(runId))!;

/** Log lines (pino JSON) of one monitor. */
function logLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A decision the monitor wrote (its writeStatus / engine-event effects) or a launcher call it made. */
function isAction(line: Record<string, unknown>): boolean {
  if (typeof line.runId !== 'string') return false;
  if ('launcher' in line) return true;
  // The daemon also logs every status change it learns (with its seq): those are not its own writes.
  return ('status' in line && !('seq' in line)) || 'data' in line;
}

it('three monitors on one store: one SIGKILLed, one paused past its lease; every run ends once, right', async () => {
  const [m1, m2, m3] = [await startMonitor(), await startMonitor(), await startMonitor()];
  const balanced = await waitFor(
    'the partitions to spread over the three monitors',
    async () => {
      const live = await monitors();
      const counts = live.map((m) => m.partitions.length);
      return live.length === 3 && Math.min(...counts) >= 21 && counts.reduce((a, b) => a + b) === 64 && live;
    },
    15_000,
    200,
  );
  expect(balanced.map((m) => m.monitorId).sort()).toEqual([m1.id, m2.id, m3.id].sort());

  const crashing = await Promise.all(Array.from({ length: 6 }, () => launch('steps')));
  const tooLong = await Promise.all(
    Array.from({ length: 4 }, () => launch('long', { [TAGS.maxRuntime]: String(MAX_RUNTIME) })),
  );
  const neverStart = await Promise.all(Array.from({ length: 2 }, () => launch('never-starts')));
  for (const runId of [...crashing, ...tooLong]) {
    await waitFor(`run ${runId} to start`, async () => (await getRun(runId)).status === 'STARTED', 15_000);
  }

  m1.child.kill('SIGKILL');
  m2.child.kill('SIGSTOP');
  const pausedAt = Date.now();
  // The first workers of the crashing runs die while two of the three monitors are gone.
  for (const runId of crashing) process.kill(Number((await getRun(runId)).tags[PID_TAG]), 'SIGKILL');

  // The third monitor takes every partition over once the other two leases have run out.
  const takeover = await waitFor(
    'the third monitor to hold every partition',
    async () => {
      // In this process, not through the CLI: a process start per look would blur the time measured.
      const live = await store.listMonitors();
      return live.length === 1 && live[0]!.partitions.length === PARTITION_COUNT && Date.now();
    },
    15_000,
    100,
  );
  expect((await monitors())[0]!.monitorId).toBe(m3.id);
  const takeoverSeconds = (takeover - pausedAt) / 1000;
  // The lease plus one renewal interval, with room for a loaded machine (2 cores shared by other tests).
  expect(takeoverSeconds).toBeLessThan(2 * LEASE_SECONDS + 2);

  // Keep the second monitor paused until the max-runtime deadlines it had armed have passed, so its timers
  // fire the moment it continues.
  const latestStart = Math.max(
    ...(await Promise.all(tooLong.map(async (id) => (await getRun(id)).startedAt!))),
  );
  await waitFor(
    'the max-runtime deadlines to pass',
    () => Date.now() > latestStart + MAX_RUNTIME * 1000 + 500,
    15_000,
  );
  const continuedAt = m2.output().length;
  m2.child.kill('SIGCONT');

  const ended = await waitFor(
    'every run to end',
    async () => {
      const runs = await Promise.all([...crashing, ...tooLong, ...neverStart].map(getRun));
      return runs.every((r) => isTerminal(r.status)) && runs;
    },
    30_000,
    100,
  );
  const byId = new Map<string, RunRecord>(ended.map((r) => [r.runId, r]));
  for (const runId of crashing) {
    const run = byId.get(runId)!;
    expect(run.status, runId).toBe('SUCCESS');
    expect(run.resumeAttempts, runId).toBe(1);
    const launches = (await store.getEvents(runId)).filter(
      (e) => e.message === messages.launchingResumeWorker,
    );
    expect(launches, runId).toHaveLength(1);
  }
  for (const runId of tooLong) {
    expect(byId.get(runId)!.status, runId).toBe('FAILURE');
    expect(byId.get(runId)!.tags[TAGS.failureReason], runId).toBe('MAX_RUNTIME_EXCEEDED');
  }
  for (const runId of neverStart) {
    expect(byId.get(runId)!.tags[TAGS.failureReason], runId).toBe('START_TIMEOUT');
  }
  // Exactly one terminal event per run: no run ended twice.
  for (const runId of byId.keys()) {
    const terminal = (await store.getEvents(runId)).filter((e) =>
      ['RUN_SUCCESS', 'RUN_FAILURE', 'RUN_CANCELED'].includes(e.type),
    );
    expect(terminal, runId).toHaveLength(1);
  }

  // The paused monitor continued and renewed: it learned it had lost every partition. Until then it wrote
  // no decision and called no launcher.
  const after = await waitFor(
    'the paused monitor to renew after it continued',
    () => {
      const lines = logLines(m2.output().slice(continuedAt));
      const renewed = lines.findIndex((l) => String(l.msg).includes('handed over'));
      return renewed >= 0 && lines.slice(0, renewed);
    },
    10_000,
  );
  expect(after.filter(isAction)).toEqual([]);

  // Both surviving monitors are listed again once the paused one has rejoined.
  const live = await waitFor(
    'the paused monitor to be listed again',
    async () => {
      const list = await monitors();
      return list.length === 2 && list;
    },
    10_000,
    200,
  );
  expect(live.map((m) => m.monitorId).sort()).toEqual([m2.id, m3.id].sort());
  for (const m of live) expect(m).toMatchObject({ host: expect.any(String), pid: expect.any(Number) });

  for (const m of [m2, m3]) {
    const exit = new Promise<number | null>((resolve) => m.child.once('exit', (code) => resolve(code)));
    m.child.kill('SIGTERM');
    expect(await exit).toBe(0);
  }
  expect(await monitors()).toEqual([]);
  console.log(
    `monitors: takeover after SIGKILL + SIGSTOP in ${takeoverSeconds.toFixed(2)} s (lease ${LEASE_SECONDS} s)`,
  );
}, 90_000);
