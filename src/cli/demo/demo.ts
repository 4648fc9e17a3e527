// `runwarden demo`: five real worker processes, one SQLite file in a temporary directory, short timeouts.
// The monitor runs in this process; the workers (worker.ts here) write to the same database file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { messages } from '../../../machines/messages.js';
import { colorEnabled, formatTable, painter } from '../output.js';
import { entryLines, paintStatus, Timeline } from './timeline.js';
import { createRunMonitor, type RunMonitor } from '../../monitor/monitor.js';
import { PID_TAG, ProcessRunLauncher } from '../../launchers/process/process-launcher.js';
import { SqliteRunStore } from '../../stores/sqlite/sqlite-store.js';
import { formatStoreUrl, STORE_ENV } from '../../stores/store-url.js';
import { isTerminal, type RunEvent, type RunRecord, TAGS } from '../../core/types.js';
import type { StepEventData } from '../../worker/worker.js';

const CONFIG = {
  startTimeoutSeconds: 3,
  cancelTimeoutSeconds: 2,
  pollIntervalSeconds: 0.25,
  feedPollIntervalSeconds: 0.1,
  maxResumeRunAttempts: 2,
  launcherTimeoutSeconds: 10,
} as const;
const MAX_RUNTIME_SECONDS = 2;
const TERMINATE_GRACE_MS = 1000;
/** The demo gives up (and fails) if the runs have not all ended by then. */
const DEADLINE_MS = 45_000;
/** How long the live log holds each line so that events committed late still print in time order. */
const HOLD_MS = 500;
/** How often the demo reads the store's event tail. */
const TAIL_POLL_MS = 100;

interface Scenario {
  name: string;
  plan: string;
  expected: string;
  tags?: Record<string, string>;
  /** Undefined when the outcome is the expected one, else what went wrong. */
  check(run: RunRecord, events: RunEvent[], facts: Facts): string | undefined;
}

interface Facts {
  /** Whether the run's (last) worker process still exists. */
  workerAlive: boolean;
}

const reasonOf = (run: RunRecord) => run.tags[TAGS.failureReason];

function expectStatus(run: RunRecord, status: string, reason?: string): string | undefined {
  if (run.status !== status) return `ended ${run.status}, expected ${status}`;
  if (reason !== undefined && reasonOf(run) !== reason)
    return `failure reason ${reasonOf(run) ?? 'none'}, expected ${reason}`;
  return undefined;
}

const steps = (events: RunEvent[], status: StepEventData['status']) =>
  events
    .map((e) => e.data as Partial<StepEventData> | undefined)
    .filter((d): d is StepEventData => d?.status === status && typeof d.step === 'string')
    .map((d) => d.step);

const SCENARIOS: Scenario[] = [
  {
    name: 'succeeds',
    plan: 'runs three steps, reports SUCCESS',
    expected: 'SUCCESS',
    check: (run) => expectStatus(run, 'SUCCESS'),
  },
  {
    name: 'never-starts',
    plan: 'never reports STARTED',
    expected: 'FAILURE: START_TIMEOUT, worker terminated',
    check: (run, _events, facts) =>
      expectStatus(run, 'FAILURE', 'START_TIMEOUT') ??
      (facts.workerAlive ? 'its worker process is still running' : undefined),
  },
  {
    name: 'crash-resume',
    plan: 'is SIGKILLed in its third step',
    expected: 'resumed, skips finished steps, SUCCESS',
    check: (run, events) => {
      const problem = expectStatus(run, 'SUCCESS');
      if (problem) return problem;
      if (run.resumeAttempts !== 1) return `resumed ${run.resumeAttempts} times, expected once`;
      const skipped = steps(events, 'skipped');
      if (!skipped.includes('extract') || !skipped.includes('transform'))
        return `the resumed worker skipped [${skipped.join(', ')}], expected extract and transform`;
      const completed = steps(events, 'completed');
      if (completed.filter((s) => s === 'extract').length !== 1) return 'step extract ran more than once';
      return undefined;
    },
  },
  {
    name: 'max-runtime',
    plan: `runs longer than its tag ${TAGS.maxRuntime}=${MAX_RUNTIME_SECONDS}`,
    expected: 'FAILURE: MAX_RUNTIME_EXCEEDED',
    tags: { [TAGS.maxRuntime]: String(MAX_RUNTIME_SECONDS) },
    check: (run) => expectStatus(run, 'FAILURE', 'MAX_RUNTIME_EXCEEDED'),
  },
  {
    name: 'ignores-sigterm',
    plan: 'is canceled, ignores SIGTERM',
    expected: 'CANCELED by the cancel timeout',
    check: (run, events) => {
      const problem = expectStatus(run, 'CANCELED');
      if (problem) return problem;
      const final = events.findLast((e) => e.type === 'RUN_CANCELED');
      const wanted = messages.cancelTimeout(CONFIG.cancelTimeoutSeconds);
      return final?.message === wanted
        ? undefined
        : `canceled with "${final?.message}", expected "${wanted}"`;
    },
  },
];

export interface DemoOptions {
  /** Keep the temporary directory (database and logs) and print where it is. */
  keep?: boolean;
  /** Where the demo writes. Default: process.stdout. */
  write?: (text: string) => void;
  /** Colour the status words and outcomes. Default: when stdout is a terminal (NO_COLOR, FORCE_COLOR honoured). */
  color?: boolean;
}

/** Runs the demo; resolves true when all five outcomes happened as expected. */
export async function runDemo(options: DemoOptions = {}): Promise<boolean> {
  const write = options.write ?? ((text: string) => process.stdout.write(text));
  const out = (line = '') => write(`${line}\n`);
  const paint = painter(options.color ?? colorEnabled(process.stdout));
  const dir = mkdtempSync(join(tmpdir(), 'runwarden-demo-'));
  const dbPath = join(dir, 'runs.db');
  const store = new SqliteRunStore({ path: dbPath });
  const launcher = new ProcessRunLauncher({
    store,
    command: (run) => [
      process.execPath,
      fileURLToPath(new URL('./worker.js', import.meta.url)),
      run.runId.replace(/^demo-/, ''),
    ],
    logDir: join(dir, 'logs'),
    storeEnv: { [STORE_ENV]: formatStoreUrl({ kind: 'sqlite', path: dbPath }) },
    terminateGraceMs: TERMINATE_GRACE_MS,
    killWaitMs: 1000,
  });
  const monitor = createRunMonitor({ store, launcher, config: CONFIG });
  let t0 = Date.now();
  const timeline = new Timeline(
    (entry) => entryLines(entry, t0, paint).forEach((line) => out(line)),
    HOLD_MS,
  );
  /** Something the demo itself does, in response to the event numbered `seq`. */
  const demoAction = (runId: string, seq: number, message: string) =>
    timeline.add({ at: Date.now(), seq, runId, kind: 'demo', message });

  const onInterrupt = () => {
    out('\nInterrupted: stopping the demo workers.');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onInterrupt);

  let cleaned = false;
  async function cleanup(): Promise<void> {
    if (cleaned) return;
    cleaned = true;
    await monitor.stop().catch(() => {});
    // Nothing of the demo may outlive it: stop any worker still running (only after a failed demo).
    for (const run of await store.listRuns().catch(() => [] as RunRecord[])) {
      const health = await launcher.checkHealth(run).catch(() => undefined);
      if (health?.status === 'RUNNING') {
        const pid = Number(run.tags[PID_TAG]);
        if (pid > 1) {
          try {
            process.kill(-pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
    }
    await store.close();
    if (!options.keep) rmSync(dir, { recursive: true, force: true });
  }

  try {
    out('Runwarden demo: five real worker processes, one SQLite file, short timeouts.');
    out(`  store    ${dbPath}`);
    out(
      `  config   start timeout ${CONFIG.startTimeoutSeconds} s, cancel timeout ${CONFIG.cancelTimeoutSeconds} s, health poll every ${CONFIG.pollIntervalSeconds} s, up to ${CONFIG.maxResumeRunAttempts} resumes, SIGKILL ${TERMINATE_GRACE_MS / 1000} s after SIGTERM`,
    );
    out();
    out(
      formatTable(
        ['RUN', 'WHAT IT DOES', 'EXPECTED'],
        SCENARIOS.map((s) => [s.name, s.plan, s.expected]),
      )
        .split('\n')
        .map((line) => `  ${line}`)
        .join('\n'),
    );
    out();

    t0 = Date.now();
    await monitor.start();
    let seq = await store.latestSeq();
    for (const scenario of SCENARIOS) {
      const run = await store.createRun({ runId: `demo-${scenario.name}`, tags: scenario.tags });
      await monitor.launch(run.runId);
    }

    const killed = new Set<string>();
    const canceled = new Set<string>();
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      for (const event of await store.readEventsAfter(seq, 1000)) {
        seq = event.seq;
        timeline.add({
          at: event.at,
          seq: event.seq,
          runId: event.runId,
          kind: event.type,
          message: event.message,
        });
        const data = event.data as Partial<StepEventData> | undefined;
        // The crash: SIGKILL the first worker of crash-resume in the middle of its third step.
        if (
          event.runId === 'demo-crash-resume' &&
          data?.step === 'load' &&
          data.status === 'started' &&
          data.attempt === 0 &&
          !killed.has(event.runId)
        ) {
          killed.add(event.runId);
          const pid = Number((await store.getRun(event.runId))?.tags[PID_TAG]);
          demoAction(
            event.runId,
            event.seq,
            `SIGKILL to worker pid ${pid} (mid-step, as an OOM killer would)`,
          );
          process.kill(pid, 'SIGKILL');
        }
        // The cancel: once ignores-sigterm is working, cancel it (it will ignore the SIGTERM).
        if (
          event.runId === 'demo-ignores-sigterm' &&
          data?.status === 'started' &&
          !canceled.has(event.runId)
        ) {
          canceled.add(event.runId);
          demoAction(event.runId, event.seq, 'cancel requested (runwarden cancel)');
          const { runId, seq: cause } = event;
          monitor.cancel(runId).catch((error) => demoAction(runId, cause, `cancel failed: ${error}`));
        }
      }
      timeline.release(Date.now());
      const runs = await store.listRuns();
      // Ended, and any worker the monitor still had to terminate confirmed gone (the journaled termination).
      const settled = (run: RunRecord) =>
        isTerminal(run.status) && run.tags[TAGS.terminatePending] !== 'true';
      if (runs.every(settled) || Date.now() > deadline) break;
      await sleep(TAIL_POLL_MS);
    }
    await settleQuietly(monitor);
    timeline.flush();

    const rows: string[][] = [];
    let failures = 0;
    for (const scenario of SCENARIOS) {
      const run = (await store.getRun(`demo-${scenario.name}`))!;
      const events = await store.getEvents(run.runId);
      const health = await launcher.checkHealth(run).catch(() => undefined);
      const problem = isTerminal(run.status)
        ? scenario.check(run, events, { workerAlive: health?.status === 'RUNNING' })
        : `still ${run.status} after ${DEADLINE_MS / 1000} s`;
      if (problem) failures += 1;
      rows.push([
        scenario.name,
        paintStatus(run.status, paint),
        reasonOf(run) ?? '-',
        String(run.resumeAttempts),
        problem ? paint('red', `NO: ${problem}`) : paint('green', `yes: ${scenario.expected}`),
      ]);
    }
    out();
    out(`Finished in ${((Date.now() - t0) / 1000).toFixed(1)} s.`);
    out();
    out(formatTable(['RUN', 'FINAL STATUS', 'FAILURE REASON', 'RESUMES', 'AS EXPECTED'], rows));
    out();
    if (failures === 0) {
      out(
        paint(
          'green',
          'All five outcomes happened as expected: SUCCESS; START_TIMEOUT (worker terminated); crashed, resumed and SUCCESS; MAX_RUNTIME_EXCEEDED; CANCELED after the cancel timeout.',
        ),
      );
    } else {
      out(paint('red', `${failures} of ${SCENARIOS.length} outcomes did not happen as expected.`));
    }
    if (options.keep) {
      out();
      out(
        `Kept ${dir}: try  runwarden runs --store sqlite:${dbPath}  and  runwarden events demo-crash-resume --store sqlite:${dbPath}`,
      );
    }
    return failures === 0;
  } finally {
    process.off('SIGINT', onInterrupt);
    await cleanup();
  }
}

async function settleQuietly(monitor: RunMonitor): Promise<void> {
  await Promise.race([monitor.settle(), sleep(2000, undefined, { ref: false })]).catch(() => {});
}
