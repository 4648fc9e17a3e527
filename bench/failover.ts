// Failover time of several monitors on one SQLite store (docs/performance.md, "Failover"):
//   npx tsc -p bench/tsconfig.json && npm run build && node dist/bench/bench/failover.js [--runs 10000] [--lease 5] [--reps 3]
// Three `runwarden monitor` processes (the built CLI) watch N runs; one is killed with SIGKILL; the figure is
// the time from the kill until every partition it held is held by a live monitor again, which then reads
// those partitions' runs at once. The runs are NOT_STARTED with every timeout off, so no monitor acts on
// them and only the lease machinery is measured.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SqliteRunStore } from '../src/stores/sqlite/sqlite-store.js';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '10000' },
    lease: { type: 'string', default: '5' },
    reps: { type: 'string', default: '3' },
  },
});
const RUNS = Number(args.runs);
const LEASE = Number(args.lease);
const REPS = Number(args.reps);
const CLI = fileURLToPath(new URL('../../src/cli/cli.js', import.meta.url));

async function until<T>(what: string, check: () => Promise<T | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function startMonitor(configFile: string): ChildProcess {
  return spawn(process.execPath, [CLI, 'monitor', '--config', configFile, '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

async function measureOnce(): Promise<{ takeoverMs: number; partitions: number; runs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'runwarden-failover-'));
  const configFile = join(dir, 'runwarden.yaml');
  writeFileSync(
    configFile,
    `run_monitoring:
  start_timeout_seconds: 0
  poll_interval_seconds: 5
  lease_seconds: ${LEASE}
storage:
  sqlite:
    path: runs.db
`,
  );
  const store = new SqliteRunStore({ path: join(dir, 'runs.db') });
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < RUNS; i++) await store.createRun({ runId: `run-${String(i).padStart(6, '0')}` });
    for (let i = 0; i < 3; i++) children.push(startMonitor(configFile));
    const pids = new Set(children.map((c) => c.pid));
    await until(
      'three monitors sharing the partitions',
      async () => {
        const live = await store.listMonitors();
        const counts = live.map((m) => m.partitions.length);
        return live.length === 3 && Math.min(...counts) >= 21 && counts.reduce((a, b) => a + b) === 64;
      },
      60_000,
    );
    const victim = (await store.listMonitors()).find((m) => pids.has(m.pid))!;
    const child = children.find((c) => c.pid === victim.pid)!;
    child.kill('SIGKILL');
    const killedAt = performance.now();
    await until(
      'every partition of the killed monitor to be held again',
      async () => {
        const live = await store.listMonitors();
        const held = new Set(
          live.filter((m) => m.monitorId !== victim.monitorId).flatMap((m) => m.partitions),
        );
        return victim.partitions.every((p) => held.has(p));
      },
      10 * LEASE * 1000,
    );
    return {
      takeoverMs: performance.now() - killedAt,
      partitions: victim.partitions.length,
      runs: victim.runsOwned,
    };
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results = [];
for (let rep = 0; rep < REPS; rep++) {
  const r = await measureOnce();
  results.push(r);
  process.stderr.write(
    `rep ${rep + 1}: ${r.partitions} partitions, ${r.runs} runs owned again ${(r.takeoverMs / 1000).toFixed(2)} s after kill -9\n`,
  );
}
const sorted = results.map((r) => r.takeoverMs).sort((a, b) => a - b);
process.stdout.write(
  `${JSON.stringify({ runs: RUNS, leaseSeconds: LEASE, bound: LEASE + LEASE / 3, takeoverSeconds: sorted.map((ms) => +(ms / 1000).toFixed(2)) })}\n`,
);
