// Three `runwarden monitor` processes on one PostgreSQL store with real (wrapped) workers: one is SIGKILLed
// and one SIGSTOPped past its lease, then continued. The survivor takes every partition over; every run
// ends exactly once with the right outcome (the max-runtime decisions made by whichever monitor owns the
// run by then); the paused monitor hands over when it continues and rejoins the even spread.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isTerminal, type MonitorInfo, TAGS } from '../src/core/types.js';
import { PostgresRunStore } from '../src/stores/postgres/postgres-store.js';
import { built, killWorkers, NODE, runCli, tempDir, waitFor } from './processes.js';
import { dropSchemas, PG_URL, uniqueSchema } from './postgres.js';

const dir = tempDir('runwarden-pg-monitors-');
const schema = uniqueSchema();
const url = `${PG_URL}?schema=${schema}`;
const store = new PostgresRunStore({ connectionString: PG_URL }, { schema });
const monitors: ChildProcess[] = [];

afterAll(async () => {
  for (const m of monitors) {
    if (m.exitCode !== null || m.signalCode !== null) continue;
    m.kill('SIGCONT');
    m.kill('SIGKILL');
  }
  await killWorkers(store);
  await store.close();
  await dropSchemas(schema);
  dir.remove();
});

function startMonitor(): { child: ChildProcess; output: () => string } {
  const child = spawn(NODE, [built('src/cli/cli.js'), 'monitor', '--store', url], {
    cwd: dir.path,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  monitors.push(child);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  return { child, output: () => output };
}

async function live(): Promise<MonitorInfo[]> {
  return store.listMonitors!();
}

describe('three monitors on one PostgreSQL store', () => {
  it('SIGKILL one, SIGSTOP another past its lease: every run ends once, rightly; the paused one hands over', async () => {
    writeFileSync(
      join(dir.path, 'runwarden.yaml'),
      `run_monitoring:
  start_timeout_seconds: 60
  poll_interval_seconds: 0.5
  feed_poll_interval_seconds: 0.2
  lease_seconds: 2
launcher:
  process:
    terminate_grace_seconds: 1
    kill_wait_seconds: 1
`,
    );
    const [a, b, c] = [startMonitor(), startMonitor(), startMonitor()];
    await waitFor(
      'three monitors sharing the partitions',
      async () => {
        const m = await live();
        return m.length === 3 && m.every((x) => x.partitions.length >= 21) ? m : undefined;
      },
      20_000,
    );

    // Six runs that finish on their own, six that overrun their max runtime and must be failed by a monitor.
    const launch = (args: string[]) =>
      runCli(['launch', '--store', url, ...args], { cwd: dir.path, timeoutMs: 30_000 });
    const launched = await Promise.all([
      ...Array.from({ length: 6 }, () => launch(['--wrap', '--', 'sleep', '4'])),
      ...Array.from({ length: 6 }, () =>
        launch(['--wrap', '--tag', `${TAGS.maxRuntime}=3`, '--', 'sleep', '60']),
      ),
    ]);
    for (const l of launched) expect(l.code, l.stderr).toBe(0);
    const finishing = launched.slice(0, 6).map((l) => l.stdout.trim());
    const overrunning = launched.slice(6).map((l) => l.stdout.trim());

    a.child.kill('SIGKILL');
    b.child.kill('SIGSTOP');
    // The survivor owns everything once both leases ran out.
    await waitFor(
      'the survivor to hold every partition',
      async () => {
        const m = await live();
        return m.length === 1 && m[0]!.pid === c.child.pid && m[0]!.partitions.length === 64;
      },
      20_000,
    );
    b.child.kill('SIGCONT');

    const all = [...finishing, ...overrunning];
    await waitFor(
      'every run to end',
      async () => {
        const runs = await Promise.all(all.map((id) => store.getRun(id)));
        return runs.every((r) => r && isTerminal(r.status));
      },
      45_000,
    );
    for (const id of finishing) expect((await store.getRun(id))?.status, id).toBe('SUCCESS');
    for (const id of overrunning) {
      const run = (await store.getRun(id))!;
      expect([run.status, run.tags[TAGS.failureReason]], id).toEqual(['FAILURE', 'MAX_RUNTIME_EXCEEDED']);
    }
    for (const id of all) {
      const events = await store.getEvents(id);
      const terminal = events.filter((e) => ['RUN_SUCCESS', 'RUN_FAILURE', 'RUN_CANCELED'].includes(e.type));
      expect(terminal, id).toHaveLength(1);
      expect(events.filter((e) => e.type === 'RUN_CANCELING').length, id).toBeLessThanOrEqual(1);
      expect((await store.getRun(id))!.resumeAttempts, id).toBe(0);
    }

    // The paused monitor learned it lost its partitions and rejoined: two monitors, 32 partitions each.
    await waitFor(
      'the continued monitor to rejoin the spread',
      async () => {
        const m = await live();
        return m.length === 2 && m.every((x) => x.partitions.length === 32);
      },
      20_000,
    );
    expect(b.child.exitCode).toBeNull();
    for (const m of [b, c]) {
      m.child.kill('SIGTERM');
      expect(await new Promise((resolve) => m.child.once('exit', resolve)), m.output()).toBe(0);
    }
  }, 120_000);
});
