// Several monitor processes on one PostgreSQL store (issue 9, bench item 7). Each monitor runs in its own
// process (bench/monitor-process.ts) with a launcher that only reports; this process populates the store,
// starts and kills the monitors and reads the outcome back from the store's tables.
//
//   multi-deadline  N STARTING runs whose start deadlines fall evenly over a short window, handled by 1 and
//                   then 2 monitor processes: lateness of each decision (its RUN_FAILURE event's time minus
//                   the deadline), CPU per deadline of the monitors and of PostgreSQL, commits per second.
//   failover        three monitors watching 10,000 runs whose deadlines fall over lease_seconds + 10 s;
//                   one is killed with SIGKILL: time until its partitions are held by the others and until
//                   every one of its runs that fell due meanwhile is decided; lost runs, double actions.
import { type ChildProcess, fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Client } from 'pg';
import { partitionOf } from '../../src/stores/contract.js';
import { openStore } from '../../src/stores/store-url.js';
import { type Distribution, distribution, runIdOf, SECOND, sleep, until } from '../lib.js';

export const MULTI_SCENARIOS = ['multi-deadline', 'failover'];

export interface MultiOptions {
  /** postgres://… of the database; each scenario works in a fresh schema of it, dropped after. */
  pgUrl: string;
  /** Deadlines per second to try in multi-deadline. */
  rates: number[];
  /** The window the deadlines fall in (multi-deadline). */
  windowMs: number;
  /** lease_seconds values for failover. */
  leaseSeconds: number[];
  failoverRuns: number;
}

const MONITOR_PROCESS = fileURLToPath(new URL('../monitor-process.js', import.meta.url));
/** Health polls and launcher timeouts out of the way: only the start deadlines (and the lease) act. */
const QUIET = { pollIntervalSeconds: 3600, launcherTimeoutSeconds: 3600 };

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

// ---------------------------------------------------------------------------------------------------------
// The database: a fresh schema per measurement, and the few reads the outcome needs.

async function connect(url: string): Promise<Client> {
  const pg = (await import('pg')).default;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

/** Runs `fn` with the URL of a fresh schema and a client on the database; drops the schema after. */
async function withSchema<T>(baseUrl: string, name: string, fn: (url: string, db: Client) => Promise<T>) {
  const db = await connect(baseUrl);
  const url = new URL(baseUrl);
  url.searchParams.set('schema', name);
  await db.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
  try {
    return await fn(url.toString(), db);
  } finally {
    await db.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
    await db.end();
  }
}

/** Creates runs 0..n-1 in STARTING, run i launched at launchedAt(i), 16 at a time. */
async function populate(url: string, n: number, launchedAt: (i: number) => number): Promise<void> {
  const store = openStore(url);
  let next = 0;
  const fill = async () => {
    while (next < n) {
      const i = next++;
      const runId = runIdOf(i);
      const at = launchedAt(i);
      await store.createRun({ runId, at });
      await store.transition(runId, { to: 'STARTING', at });
    }
  };
  await Promise.all(Array.from({ length: 16 }, fill));
  await store.close();
}

/** partition → holder (null: free). */
async function leaseHolders(db: Client, schema: string): Promise<Map<number, string | null>> {
  const { rows } = await db.query<{ partition: number; monitor_id: string | null }>(
    `SELECT partition, monitor_id FROM ${schema}.leases`,
  );
  return new Map(rows.map((r) => [r.partition, r.monitor_id]));
}

/** Every partition held, each monitor within one partition of its fair share. */
async function balanced(db: Client, schema: string, ids: string[]): Promise<boolean> {
  const holders = await leaseHolders(db, schema);
  const counts = ids.map((id) => [...holders.values()].filter((h) => h === id).length);
  return (
    holders.size === 64 &&
    counts.reduce((a, b) => a + b, 0) === 64 &&
    Math.max(...counts) - Math.min(...counts) <= 1
  );
}

/** run_id → the times of its RUN_FAILURE events (exactly one each when all is well). */
async function failures(db: Client, schema: string): Promise<Map<string, number[]>> {
  const { rows } = await db.query<{ run_id: string; at: number }>(
    `SELECT run_id, at FROM ${schema}.events WHERE type = 'RUN_FAILURE'`,
  );
  const out = new Map<string, number[]>();
  for (const r of rows) (out.get(r.run_id) ?? out.set(r.run_id, []).get(r.run_id)!).push(Number(r.at));
  return out;
}

async function commits(db: Client): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    'SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()',
  );
  return Number(rows[0]?.n);
}

/** CPU µs of every postgres process on this machine (the server serves other clients too). */
function postgresCpuMicros(): number {
  const tick = 1e6 / 100; // USER_HZ
  let total = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (!stat.slice(stat.indexOf('(') + 1, close).startsWith('postgres')) continue;
      const fields = stat.slice(close + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) * tick;
    } catch {
      // The process ended meanwhile.
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------------
// The monitor processes.

interface ChildMessage {
  type: 'ready' | 'terminated' | 'cpu' | 'stopped';
  monitorId?: string;
  runIds?: string[];
  micros?: number;
}

class MonitorGroup {
  readonly ids: string[] = [];
  /** run id → launcher terminate calls over all monitors. */
  readonly terminated = new Map<string, number>();
  private readonly children: ChildProcess[] = [];
  private readonly waiting = new Map<ChildProcess, (m: ChildMessage) => void>();

  constructor(url: string, count: number, config: Record<string, number>, label: string) {
    for (let k = 0; k < count; k++) {
      const monitorId = `${label}-${k}`;
      const child = fork(MONITOR_PROCESS, [JSON.stringify({ store: url, monitorId, config })], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      child.on('message', (m: ChildMessage) => this.receive(child, m));
      this.ids.push(monitorId);
      this.children.push(child);
    }
  }

  private receive(child: ChildProcess, m: ChildMessage): void {
    if (m.type === 'terminated') {
      for (const runId of m.runIds ?? []) this.terminated.set(runId, (this.terminated.get(runId) ?? 0) + 1);
      return;
    }
    const waiter = this.waiting.get(child);
    this.waiting.delete(child);
    waiter?.(m);
  }

  private ask(child: ChildProcess, message?: { type: string }): Promise<ChildMessage> {
    return new Promise((resolve, reject) => {
      this.waiting.set(child, resolve);
      child.once('exit', (code) => reject(new Error(`monitor process exited with ${code}`)));
      if (message) child.send(message);
    });
  }

  ready(): Promise<ChildMessage[]> {
    return Promise.all(this.children.map((c) => this.ask(c)));
  }

  private live(): ChildProcess[] {
    return this.children.filter((c) => c.exitCode === null && c.signalCode === null && c.connected);
  }

  /** CPU µs the live monitors have used so far, summed. */
  async cpuMicros(): Promise<number> {
    const replies = await Promise.all(this.live().map((c) => this.ask(c, { type: 'cpu' })));
    return replies.reduce((sum, m) => sum + (m.micros ?? 0), 0);
  }

  kill(k: number): void {
    this.children[k]?.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.live().map(
        (c) =>
          new Promise<void>((resolve) => {
            c.once('exit', () => resolve());
            c.send({ type: 'stop' });
          }),
      ),
    );
  }

  /** Ends every process still running (after a failure). */
  killAll(): void {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}

/**
 * The bench creates the runs first (no monitor is reading the feed yet, and writing them takes a while
 * under load), then starts the monitors with the start timeout that puts the first deadline at a time
 * known only then: run i was launched at `origin + i * windowMs / n`, and its deadline is that plus the
 * timeout. The monitors get the time to start, share the partitions (two renewals) and load the runs.
 */
async function runsThenMonitors(
  url: string,
  db: Client,
  schema: string,
  count: number,
  leaseSeconds: number,
  n: number,
  windowMs: number,
) {
  const origin = Date.now() - windowMs - SECOND;
  await populate(url, n, (i) => origin + (i * windowMs) / n);
  const firstDeadline = Date.now() + 3 * SECOND + (2 * leaseSeconds * SECOND) / 3 + n * 0.3;
  const startTimeoutSeconds = (firstDeadline - origin) / SECOND;
  const config = { ...QUIET, leaseSeconds, startTimeoutSeconds };
  const { group } = await startBalanced(url, db, schema, count, config);
  return {
    group,
    firstDeadline,
    deadlineOf: (i: number) => firstDeadline + (i * windowMs) / n,
    readyLateMs: Math.max(0, Date.now() - firstDeadline),
  };
}

async function startBalanced(
  url: string,
  db: Client,
  schema: string,
  count: number,
  config: Record<string, number>,
): Promise<{ group: MonitorGroup }> {
  const group = new MonitorGroup(url, count, config, schema);
  try {
    await group.ready();
    const give = Date.now() + 60 * SECOND;
    while (!(await balanced(db, schema, group.ids))) {
      if (Date.now() > give) throw new Error(`${count} monitors did not share the partitions within 60 s`);
      await sleep(20);
    }
    return { group };
  } catch (error) {
    group.killAll();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------
// multi-deadline

interface DeadlineResult {
  monitors: number;
  rate: number;
  runs: number;
  lateness: Distribution;
  /** Deadlines decided per second, from the first deadline to the last decision. */
  handledPerSecond: number;
  /** ms by which the monitors shared the partitions after the first deadline (0: in time). */
  readyLateMs: number;
  monitorCpuMicrosPerDeadline: number;
  postgresCpuMicrosPerDeadline: number;
  commitsPerSecond: number;
  commitsPerDeadline: number;
  lost: number;
  doubleDecisions: number;
  doubleTerminates: number;
}

async function deadlineRun(
  pgUrl: string,
  monitors: number,
  rate: number,
  windowMs: number,
): Promise<DeadlineResult> {
  const n = Math.round((rate * windowMs) / SECOND);
  const schema = `bench_multi_deadline_${process.pid}`;
  const leaseSeconds = 15; // the default; 3 s lost leases under this machine's load
  return withSchema(pgUrl, schema, async (url, db) => {
    const { group, firstDeadline, deadlineOf, readyLateMs } = await runsThenMonitors(
      url,
      db,
      schema,
      monitors,
      leaseSeconds,
      n,
      windowMs,
    );
    try {
      await sleep(firstDeadline - Date.now());
      const [cpu0, commits0, pg0] = [await group.cpuMicros(), await commits(db), postgresCpuMicros()];
      const t0 = Date.now();
      await until(() => group.terminated.size >= n, windowMs + 30 * SECOND, `${n} decisions`, 10).catch(
        (e: unknown) => log(`  ${(e as Error).message}: ${group.terminated.size} decided`),
      );
      const t1 = Date.now();
      const [cpu1, pg1] = [await group.cpuMicros(), postgresCpuMicros()];
      await group.stop();
      await sleep(1100); // pg_stat_database takes up to a second to count a backend's commits
      const commits1 = await commits(db);
      const decided = await failures(db, schema);
      const lateness: number[] = [];
      let last = firstDeadline;
      for (let i = 0; i < n; i++) {
        const at = decided.get(runIdOf(i))?.[0];
        if (at === undefined) continue;
        lateness.push(at - deadlineOf(i));
        last = Math.max(last, at);
      }
      return {
        monitors,
        rate,
        runs: n,
        lateness: distribution(lateness),
        handledPerSecond: n / ((last - firstDeadline) / SECOND),
        readyLateMs,
        monitorCpuMicrosPerDeadline: (cpu1 - cpu0) / n,
        postgresCpuMicrosPerDeadline: (pg1 - pg0) / n,
        commitsPerSecond: (commits1 - commits0) / ((t1 - t0) / SECOND),
        commitsPerDeadline: (commits1 - commits0) / n,
        lost: n - decided.size,
        doubleDecisions: [...decided.values()].filter((d) => d.length > 1).length,
        doubleTerminates: [...group.terminated.values()].filter((c) => c > 1).length,
      };
    } finally {
      group.killAll();
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// failover

interface FailoverResult {
  leaseSeconds: number;
  runs: number;
  victimPartitions: number;
  /** Runs of the killed monitor's partitions whose deadline fell between the kill and the takeover. */
  victimRunsDue: number;
  /** From SIGKILL until no partition is held by the killed monitor. */
  takeoverMs: number;
  /** From SIGKILL until every run of its partitions that fell due by the takeover is decided. */
  failoverMs: number;
  targetMs: number;
  victimLateness: Distribution;
  othersLateness: Distribution;
  lost: number;
  doubleDecisions: number;
  doubleTerminates: number;
  /**
   * Decided (RUN_FAILURE written, termination journaled) but not terminated within the scenario: the
   * deciding monitor lost the lease before the launcher call, or was the one killed. The next health poll
   * terminates them; the scenario's poll interval is an hour.
   */
  decidedNotTerminated: number;
}

async function failoverRun(pgUrl: string, n: number, leaseSeconds: number): Promise<FailoverResult> {
  const schema = `bench_failover_${process.pid}`;
  const leaseMs = leaseSeconds * SECOND;
  const windowMs = leaseMs + 10 * SECOND;
  return withSchema(pgUrl, schema, async (url, db) => {
    const { group, firstDeadline, deadlineOf, readyLateMs } = await runsThenMonitors(
      url,
      db,
      schema,
      3,
      leaseSeconds,
      n,
      windowMs,
    );
    try {
      if (readyLateMs > 0) log(`  failover: monitors balanced ${readyLateMs} ms after the first deadline`);
      await sleep(firstDeadline + 2 * SECOND - Date.now());
      const victim = group.ids[0]!;
      const victimPartitions = new Set(
        [...(await leaseHolders(db, schema))].filter(([, h]) => h === victim).map(([p]) => p),
      );
      const killAt = Date.now();
      group.kill(0);
      let holders = await leaseHolders(db, schema);
      while ([...holders.values()].some((h) => h === victim || h === null)) {
        if (Date.now() > killAt + 3 * leaseMs + 30 * SECOND) throw new Error('no takeover');
        await sleep(10);
        holders = await leaseHolders(db, schema);
      }
      const takeoverAt = Date.now();
      const give = firstDeadline + windowMs + 60 * SECOND;
      let decided = await failures(db, schema);
      while (decided.size < n && Date.now() < give) {
        await sleep(200);
        decided = await failures(db, schema);
      }
      await group.stop();
      decided = await failures(db, schema);
      const victimLateness: number[] = [];
      const othersLateness: number[] = [];
      let victimRunsDue = 0;
      let failoverAt = takeoverAt;
      for (let i = 0; i < n; i++) {
        const runId = runIdOf(i);
        const at = decided.get(runId)?.[0];
        if (at === undefined) continue;
        const late = at - deadlineOf(i);
        const ofVictim = victimPartitions.has(partitionOf(runId));
        (ofVictim ? victimLateness : othersLateness).push(late);
        if (ofVictim && deadlineOf(i) >= killAt && deadlineOf(i) <= takeoverAt) {
          victimRunsDue++;
          failoverAt = Math.max(failoverAt, at);
        }
      }
      return {
        leaseSeconds,
        runs: n,
        victimPartitions: victimPartitions.size,
        victimRunsDue,
        takeoverMs: takeoverAt - killAt,
        failoverMs: failoverAt - killAt,
        targetMs: leaseMs + leaseMs / 3,
        victimLateness: distribution(victimLateness),
        othersLateness: distribution(othersLateness),
        lost: n - decided.size,
        doubleDecisions: [...decided.values()].filter((d) => d.length > 1).length,
        doubleTerminates: [...group.terminated.values()].filter((c) => c > 1).length,
        decidedNotTerminated: [...decided.keys()].filter((runId) => !group.terminated.has(runId)).length,
      };
    } finally {
      group.killAll();
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Entry point and tables.

const ms = (v: number) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1));

/** Runs the chosen several-monitor scenarios and prints their tables (Markdown) on stdout. */
export async function multiMonitor(selected: string[], options: MultiOptions): Promise<unknown> {
  const report: { deadline: DeadlineResult[]; failover: FailoverResult[] } = { deadline: [], failover: [] };
  log(
    `several monitors: ${os.cpus().length} CPUs, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  if (selected.includes('multi-deadline')) {
    for (const rate of options.rates) {
      for (const monitors of [1, 2]) {
        const r = await deadlineRun(options.pgUrl, monitors, rate, options.windowMs);
        log(
          `  multi-deadline ${monitors} monitor(s) ${rate}/s: p99 ${ms(r.lateness.p99)} ms, max ${ms(r.lateness.max)} ms, handled ${ms(r.handledPerSecond)}/s, CPU/deadline monitors ${ms(r.monitorCpuMicrosPerDeadline)} µs postgres ${ms(r.postgresCpuMicrosPerDeadline)} µs`,
        );
        report.deadline.push(r);
      }
    }
    process.stdout.write(deadlineTable(report.deadline));
  }
  if (selected.includes('failover')) {
    for (const leaseSeconds of options.leaseSeconds) {
      const r = await failoverRun(options.pgUrl, options.failoverRuns, leaseSeconds);
      log(
        `  failover lease ${leaseSeconds} s: takeover ${ms(r.takeoverMs)} ms, all due decided ${ms(r.failoverMs)} ms, lost ${r.lost}, double ${r.doubleDecisions}/${r.doubleTerminates}`,
      );
      report.failover.push(r);
    }
    process.stdout.write(failoverTable(report.failover));
  }
  return report;
}

function deadlineTable(rows: DeadlineResult[]): string {
  const lines = [
    '| deadlines/s offered | monitors | runs | lateness p50 / p99 / max (ms) | p99 ≤ 25 ms | handled/s | monitor CPU µs/deadline | PostgreSQL CPU µs/deadline | commits/s | commits/deadline | lost / double |',
    '|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    const l = r.lateness;
    lines.push(
      `| ${r.rate} | ${r.monitors} | ${r.runs.toLocaleString('en-US')} | ${ms(l.p50)} / ${ms(l.p99)} / ${ms(l.max)} | ${l.p99 <= 25 ? '✓' : '✗'}${r.readyLateMs > 0 ? ` (monitors ready ${ms(r.readyLateMs)} ms late)` : ''} | ${ms(r.handledPerSecond)} | ${ms(r.monitorCpuMicrosPerDeadline)} | ${ms(r.postgresCpuMicrosPerDeadline)} | ${ms(r.commitsPerSecond)} | ${r.commitsPerDeadline.toFixed(1)} | ${r.lost} / ${r.doubleDecisions + r.doubleTerminates} |`,
    );
  }
  return `\n${lines.join('\n')}\n`;
}

function failoverTable(rows: FailoverResult[]): string {
  const lines = [
    '| lease_seconds | runs | partitions of the killed monitor | its runs due before takeover | takeover (ms) | all due decided (ms) | target (lease + one renewal) | its runs late p99 / max (ms) | others late p99 (ms) | lost | double decisions / terminates | decided, not terminated (journaled for the next poll) |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.leaseSeconds} | ${r.runs.toLocaleString('en-US')} | ${r.victimPartitions} | ${r.victimRunsDue} | ${ms(r.takeoverMs)} | ${ms(r.failoverMs)} | ≤ ${ms(r.targetMs)} ${r.failoverMs <= r.targetMs ? '✓' : '✗'} | ${ms(r.victimLateness.p99)} / ${ms(r.victimLateness.max)} | ${ms(r.othersLateness.p99)} | ${r.lost} | ${r.doubleDecisions} / ${r.doubleTerminates} | ${r.decidedNotTerminated} |`,
    );
  }
  return `\n${lines.join('\n')}\n`;
}
