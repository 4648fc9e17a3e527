// The --wrap wrapper: `node wrap.js -- CMD [ARGS...]`. ProcessRunLauncher starts it in place of CMD for a
// wrapped run (`runwarden launch --wrap`, `launcher.process.wrap: true`, tag `runwarden/wrap=true`), so that a
// program that knows nothing of Runwarden is reported on like an SDK worker:
//
//   - STARTED once CMD is spawned (a resumed run logs `Run worker resumed (attempt N)`);
//   - SUCCESS when CMD exits 0, FAILURE with the exit code and the last lines of its output otherwise;
//   - on SIGTERM (the launcher's cancel) SIGTERM goes on to CMD's process group, and once CMD has exited the
//     run is reported CANCELED, or nothing at all when the monitor owns the outcome (maximum runtime);
//   - CMD killed by a signal the wrapper did not send (SIGKILL, the OOM killer) is reported by nobody: the
//     wrapper dies by the same signal and the monitor sees a crashed worker, which it resumes;
//   - CMD's output passes through to the wrapper's own stdout/stderr (the run's log file), and each line of
//     it is a sign of progress (`progressAt`), written at most once a second;
//   - with RUNWARDEN_HEARTBEAT_SECONDS set (the launcher sets it for a run with a heartbeat timeout), a
//     heartbeat that often while CMD lives;
//   - every write carries the wrapper's attempt (RUNWARDEN_RESUME_ATTEMPT). Once the store refuses one
//     because the run was resumed with a newer worker (WorkerSupersededError), the wrapper stops CMD (SIGTERM
//     to its group, SIGKILL after SUPERSEDED_GRACE_MS), reports nothing more and exits with
//     WORKER_SUPERSEDED_EXIT_CODE (3). A wrapper started for an attempt already superseded never starts CMD.
//
// A separate file rather than a `runwarden` subcommand: the launcher starts it with the running Node
// (process.execPath) and a path next to its own module, so a library host needs no `runwarden` on PATH, and
// the wrapper loads neither commander nor the monitor, only the store.
//
// CMD must not outlive the wrapper, even a SIGKILLed one, which can do nothing about it. CMD runs in the
// wrapper's process group (the launcher kills the whole group on terminate), and a guard (`sh`, spawned
// before CMD into the same group) holds the read end of a pipe that only the wrapper writes to. When the
// wrapper dies, however it dies, the pipe reaches end of file and the guard SIGKILLs the group. No prctl
// (Node has no PR_SET_PDEATHSIG), nothing for CMD to cooperate with.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { WORKER_SUPERSEDED_EXIT_CODE, WorkerSupersededError } from '../core/errors.js';
import { isMaxRuntimeStop } from '../stores/contract.js';
import type { RunRecord, RunStore } from '../core/types.js';
import { RUN_WORKER_ENV } from '../worker/env.js';
import {
  openExistingStore,
  ReportRefusedError,
  reportCanceled,
  reportFinal,
  reportStarted,
  type ReportTarget,
  reportTarget,
} from './report.js';

/** How many of CMD's last output lines a FAILURE message carries. */
const TAIL_LINES = 20;
/** Longer lines are cut in the failure message (the log keeps them whole). */
const TAIL_LINE_CHARS = 500;
/** After CMD has exited, how long its output may still drain (a background child can hold the pipe open). */
const DRAIN_MS = 1000;
/** At most one progress write per this long, however much CMD writes. */
const PROGRESS_INTERVAL_MS = 1000;
/** Exit code when the monitor answers for the run (128 + SIGTERM), as the worker SDK exits. */
const EXIT_TERMINATED = 143;
/** Once superseded, how long CMD has after SIGTERM before SIGKILL (the launcher's default terminate grace). */
const SUPERSEDED_GRACE_MS = 10_000;
/**
 * The guard ignores the SIGTERM forwarded to the group, waits for the end of its stdin (the wrapper holds
 * the only write end, and writes nothing), then SIGKILLs every process of its group, itself included.
 */
const GUARD_SCRIPT = "trap '' TERM INT HUP; read _; kill -9 0";

type Exit = { code: number | null; signal: NodeJS.Signals | null };

class Wrapper {
  private store!: RunStore & { close(): Promise<void> };
  private child: ChildProcess | undefined;
  private guard: ChildProcess | undefined;
  private started: Promise<void> = Promise.resolve();
  /** Set once a SIGTERM came (or the run turned out to be over): CMD was asked to stop by the wrapper. */
  private stopping: Promise<'report' | 'leave'> | undefined;
  private finishing = false;
  private readonly tail = new OutputTail(TAIL_LINES, TAIL_LINE_CHARS);
  private readonly counts = { lines: 0, progress: 0, heartbeats: 0 };
  private readonly progress = new Throttle(PROGRESS_INTERVAL_MS, () => this.beat(true));
  private heartbeats: NodeJS.Timeout | undefined;
  private beatFailed = false;
  /** Set once the store refused a write of this attempt: the run belongs to a newer worker. */
  private superseded: WorkerSupersededError | undefined;
  private killTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly command: string[],
    private readonly runId: string,
    private readonly storeUrl: string,
    private readonly attempt: number,
    private readonly heartbeatMs: number | undefined,
  ) {}

  async run(): Promise<never> {
    process.on('SIGTERM', this.onSigterm);
    try {
      this.store = openExistingStore(this.storeUrl, RUN_WORKER_ENV.store);
    } catch (error) {
      return fatal(1, errorText(error));
    }
    const run = await this.store.getRun(this.runId);
    if (!run) return this.exit(1, `Unknown run id ${JSON.stringify(this.runId)}: no such run in the store.`);
    if (run.resumeAttempts > this.attempt) {
      // Started late (a slow host, a retried launch) after the monitor had already resumed the run.
      return this.exit(
        WORKER_SUPERSEDED_EXIT_CODE,
        `run ${this.runId} was resumed with a newer worker (attempt ${run.resumeAttempts}); this wrapper is attempt ${this.attempt}: not starting ${this.name()}.`,
      );
    }
    if (run.status === 'CANCELING' && !isMaxRuntimeStop(run)) {
      // Canceled before its worker started: nothing to stop.
      await this.reportQuietly(() =>
        reportCanceled(
          this.store,
          this.runId,
          'Run canceled before its worker started its command.',
          this.attempt,
        ),
      );
      return this.exit(0, `run ${this.runId} was canceled before ${this.name()} started; not starting it.`);
    }
    if (run.status !== 'STARTING' && run.status !== 'STARTED') {
      const why = isMaxRuntimeStop(run) ? 'being stopped for exceeding its maximum runtime' : run.status;
      return this.exit(
        isMaxRuntimeStop(run) ? EXIT_TERMINATED : 1,
        `run ${this.runId} is ${why}; not starting ${this.name()}.`,
      );
    }

    this.guard = await startGuard().catch((error: unknown) =>
      fatal(
        1,
        `could not start the wrapper's guard (/bin/sh), so ${this.name()} could outlive the wrapper; not starting it: ${errorText(error)}`,
      ),
    );
    this.guard.once('exit', () => {
      if (!this.finishing)
        note(`the wrapper's guard exited: ${this.name()} is no longer killed if the wrapper dies.`);
    });

    const [file, ...args] = this.command as [string, ...string[]];
    const child = spawn(file, args, { stdio: ['inherit', 'pipe', 'pipe'] });
    this.child = child;
    const spawned = await new Promise<Error | undefined>((resolve) => {
      child.once('spawn', () => resolve(undefined));
      child.once('error', resolve);
    });
    if (spawned) {
      const message = `Run failed: could not start command ${this.name()}: ${spawned.message}`;
      await this.reportQuietly(() => reportFinal(this.store, this.runId, 'FAILURE', message, this.attempt));
      return this.exit((spawned as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126);
    }

    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const exited = new Promise<Exit>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    this.pass(child.stdout!, process.stdout, 'out');
    this.pass(child.stderr!, process.stderr, 'err');
    this.started = this.reportStarted(child.pid!);

    const exit = await exited;
    this.finishing = true;
    clearTimeout(this.killTimer);
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, DRAIN_MS))]);
    // The final report (or the monitor) follows: no more signs of life from a command that has exited.
    clearInterval(this.heartbeats);
    this.progress.stop();
    await this.started;
    const { lines, progress, heartbeats } = this.counts;
    note(
      `${this.name()} ${exit.signal ? `was killed by signal ${exit.signal}` : `exited with code ${exit.code}`} after ${plural(lines, 'line')} of output (${plural(progress, 'progress write')}, ${plural(heartbeats, 'heartbeat')}).`,
    );
    return this.finish(exit);
  }

  /** A heartbeat, with `progress` a sign of progress too. A failed write is noted once and not retried. */
  private beat(progress: boolean): void {
    if (this.finishing) return;
    this.counts[progress ? 'progress' : 'heartbeats']++;
    this.store.heartbeat(this.runId, { progress, attempt: this.attempt }).catch((error: unknown) => {
      if (error instanceof WorkerSupersededError) return this.supersede(error);
      if (this.beatFailed) return;
      this.beatFailed = true;
      note(`could not record a heartbeat (later failures are not logged): ${errorText(error)}`);
    });
  }

  /** STARTED, or the resume logged; a run that is over or being stopped gets its command stopped too. */
  private async reportStarted(pid: number): Promise<void> {
    try {
      await reportStarted(this.store, this.runId, {
        attempt: this.attempt,
        message: `Run worker started: ${this.name()} (pid ${pid}) under the runwarden wrapper (pid ${process.pid}).`,
        data: { pid: process.pid, commandPid: pid },
      });
      if (this.heartbeatMs !== undefined && !this.finishing) {
        this.beat(false);
        this.heartbeats = setInterval(() => this.beat(false), this.heartbeatMs);
      }
    } catch (error) {
      if (error instanceof WorkerSupersededError) return this.supersede(error);
      note(errorText(error));
      if (error instanceof ReportRefusedError) this.stop();
    }
  }

  /**
   * A write was refused because the run was resumed with a newer worker: stop writing, stop CMD (SIGTERM to
   * its group, SIGKILL after the grace period), and exit with WORKER_SUPERSEDED_EXIT_CODE once it is gone.
   */
  private supersede(error: WorkerSupersededError): void {
    if (this.superseded) return;
    this.superseded = error;
    clearInterval(this.heartbeats);
    this.progress.stop();
    note(`${error.message} Stopping ${this.name()}.`);
    if (this.finishing || !this.child) return;
    if (!this.stopping) forwardSigterm(this.child);
    this.killTimer = setTimeout(() => killCommand(this.child!), SUPERSEDED_GRACE_MS);
    this.killTimer.unref();
  }

  private readonly onSigterm = () => {
    if (!this.child) process.exit(EXIT_TERMINATED); // Nothing started yet: nothing to stop or report.
    if (!this.finishing && !this.superseded) this.stop();
  };

  /** SIGTERM to CMD's group (once); decides, from the run as it is now, whether to report CANCELED after. */
  private stop(): void {
    if (this.stopping) return;
    this.stopping = this.cancelMode();
    forwardSigterm(this.child!);
  }

  private async cancelMode(): Promise<'report' | 'leave'> {
    try {
      const run = await this.store.getRun(this.runId);
      return run?.status === 'CANCELING' && !isMaxRuntimeStop(run) ? 'report' : 'leave';
    } catch {
      return 'leave';
    }
  }

  private async finish({ code, signal }: Exit): Promise<never> {
    if (this.superseded) return this.exitSuperseded(code, signal);
    if (this.stopping) {
      if ((await this.stopping) === 'report') {
        const message = `Run canceled: ${this.name()} stopped after the cancel request (${signal ? `signal ${signal}` : `exit code ${code}`}).`;
        if (await this.reportQuietly(() => reportCanceled(this.store, this.runId, message, this.attempt)))
          return this.exit(0);
        return this.exit(EXIT_TERMINATED);
      }
      const run = await this.store.getRun(this.runId).catch(() => undefined);
      return this.exit(
        EXIT_TERMINATED,
        `${this.name()} stopped; ${leftReason(run)}: not reporting, the monitor decides.`,
      );
    }
    if (signal) {
      note(
        `${this.name()} was killed by signal ${signal}, which the wrapper did not send: not reporting, so the monitor sees a crashed run worker.`,
      );
      await this.store.close().catch(() => {});
      return dieBy(signal);
    }
    if (code === 0) {
      await this.reportQuietly(() =>
        reportFinal(
          this.store,
          this.runId,
          'SUCCESS',
          `Run succeeded: ${this.name()} exited with code 0.`,
          this.attempt,
        ),
      );
      return this.exit(0);
    }
    const lines = this.tail.lines();
    const output =
      lines.length === 0
        ? ' It wrote no output.'
        : ` Last ${lines.length === 1 ? 'line' : `${lines.length} lines`} of its output:\n${lines.join('\n')}`;
    await this.reportQuietly(() =>
      reportFinal(
        this.store,
        this.runId,
        'FAILURE',
        `Run failed: ${this.name()} exited with code ${code}.${output}`,
        this.attempt,
      ),
    );
    return this.exit(code ?? 1);
  }

  /**
   * Runs a report; a refusal or a store error becomes one line in the log. Resolves whether it was written.
   * A superseded attempt never resolves: the wrapper exits with WORKER_SUPERSEDED_EXIT_CODE.
   */
  private async reportQuietly(write: () => Promise<RunRecord>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (error) {
      if (error instanceof WorkerSupersededError) {
        this.supersede(error);
        return this.exitSuperseded();
      }
      note(errorText(error));
      return false;
    }
  }

  /** The end of a superseded wrapper: nothing reported, exit code 3. */
  private exitSuperseded(code?: number | null, signal?: NodeJS.Signals | null): Promise<never> {
    const how =
      code === undefined
        ? ''
        : ` ${this.name()} ${signal ? `stopped by signal ${signal}` : `exited with code ${code}`};`;
    return this.exit(
      WORKER_SUPERSEDED_EXIT_CODE,
      `superseded:${how} not reporting, the run belongs to a newer worker.`,
    );
  }

  private pass(from: NodeJS.ReadableStream, to: NodeJS.WritableStream, stream: 'out' | 'err'): void {
    from.on('data', (chunk: Buffer) => {
      to.write(chunk);
      const lines = this.tail.add(stream, chunk);
      this.counts.lines += lines;
      if (lines > 0) this.progress.poke();
    });
  }

  private name(): string {
    const text = JSON.stringify(this.command);
    return text.length > 200 ? `${text.slice(0, 197)}...` : text;
  }

  private async exit(code: number, line?: string): Promise<never> {
    if (line) note(line);
    await this.store?.close().catch(() => {});
    return process.exit(code);
  }
}

/** CMD's last complete lines (stdout and stderr, in arrival order), each cut to `maxChars`. */
class OutputTail {
  private readonly kept: string[] = [];
  private readonly partial = { out: '', err: '' };

  constructor(
    private readonly maxLines: number,
    private readonly maxChars: number,
  ) {}

  /** Adds a chunk; resolves how many lines it completed. */
  add(stream: 'out' | 'err', chunk: Buffer): number {
    const parts = (this.partial[stream] + chunk.toString('utf8')).split('\n');
    this.partial[stream] = parts.pop()!.slice(-this.maxChars * 4);
    for (const line of parts) this.keep(line);
    return parts.length;
  }

  /** The kept lines, with any unfinished last line of each stream. */
  lines(): string[] {
    const unfinished = [this.partial.out, this.partial.err].filter((line) => line !== '');
    return [...this.kept, ...unfinished].slice(-this.maxLines).map((line) => this.cut(line));
  }

  private keep(line: string): void {
    this.kept.push(line.replace(/\r$/, ''));
    if (this.kept.length > this.maxLines) this.kept.shift();
  }

  private cut(line: string): string {
    return line.length > this.maxChars ? `${line.slice(0, this.maxChars)}…` : line;
  }
}

/** Calls `fire` at once, then at most once per `intervalMs`: pokes in between make one call at its end. */
class Throttle {
  private last = -Infinity;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly fire: () => void,
  ) {}

  poke(): void {
    if (this.timer) return;
    const wait = this.last + this.intervalMs - Date.now();
    if (wait <= 0) this.run();
    else
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.run();
      }, wait);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private run(): void {
    this.last = Date.now();
    this.fire();
  }
}

/** Starts the guard (see GUARD_SCRIPT) and resolves once it runs. */
function startGuard(): Promise<ChildProcess> {
  const guard = spawn('/bin/sh', ['-c', GUARD_SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'] });
  return new Promise((resolve, reject) => {
    guard.once('spawn', () => resolve(guard));
    guard.once('error', reject);
  });
}

/**
 * SIGTERM to CMD and everything it started: the wrapper's whole process group when the wrapper leads it (as
 * under the launcher; the guard ignores it, the wrapper is already stopping), else CMD alone.
 */
function forwardSigterm(child: ChildProcess): void {
  try {
    if (leadsOwnGroup()) process.kill(-process.pid, 'SIGTERM');
    else child.kill('SIGTERM');
  } catch {
    // Already gone.
  }
}

/**
 * SIGKILL to CMD, for a command that outlived its grace period. What CMD started goes when the wrapper
 * exits: the guard then SIGKILLs the whole group.
 */
function killCommand(child: ChildProcess): void {
  try {
    child.kill('SIGKILL');
  } catch {
    // Already gone.
  }
}

function leadsOwnGroup(): boolean {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === process.pid;
  } catch {
    return false;
  }
}

/** Why a stopped command's outcome is the monitor's. */
function leftReason(run: RunRecord | undefined): string {
  if (!run) return 'the run could not be read';
  if (isMaxRuntimeStop(run)) return 'the run is being stopped for exceeding its maximum runtime';
  return `the run is ${run.status}, not canceled by a user`;
}

/** Dies by `signal`, as CMD did, so the launcher reports the same cause; exits 128 + n if it survives that. */
function dieBy(signal: NodeJS.Signals): never {
  process.removeAllListeners('SIGTERM');
  try {
    process.kill(process.pid, signal);
  } catch {
    // fall through
  }
  // A signal Node ignores (SIGPIPE) does not end it: exit as a shell would report the command.
  return process.exit(128 + (constants.signals[signal] ?? 0));
}

/** One line in the run's log, marked as the wrapper's. */
function note(line: string): void {
  process.stderr.write(`[runwarden] ${new Date().toISOString()} wrapper: ${line}\n`);
}

function fatal(code: number, line: string): never {
  note(line);
  return process.exit(code);
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const argv = process.argv.slice(2);
const command = argv[0] === '--' ? argv.slice(1) : argv;
if (command.length === 0 || command.some((part) => part === '')) {
  fatal(
    2,
    'usage: wrap.js -- CMD [ARGS...] (a non-empty command; ProcessRunLauncher starts this for wrapped runs).',
  );
}
let target: ReportTarget;
try {
  target = reportTarget({}, process.env);
} catch (error) {
  fatal(2, errorText(error));
}
const heartbeatMs = target.heartbeatSeconds === undefined ? undefined : target.heartbeatSeconds * 1000;
// A store that fails under the wrapper (busy, unreadable) ends it with one line in the log, not a stack
// trace; the guard then takes CMD down with it, and the monitor sees the worker gone.
await new Wrapper(command, target.runId, target.storeUrl, target.attempt ?? 0, heartbeatMs)
  .run()
  .catch((error: unknown) => fatal(1, errorText(error)));
