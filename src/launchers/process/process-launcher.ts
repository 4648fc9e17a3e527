// ProcessRunLauncher: one run worker = one local child process in its own process group.
//
// Correctness never depends on in-memory state: the worker's identity (pid + kernel start time) lives in the
// run's tags, so a restarted monitor can still health-check and terminate workers it did not spawn. What this
// instance remembers (exit codes of the children it spawned) only sharpens the messages, with one exception:
// while a launch or resume is still recording its worker's pid, the tags are missing or name the previous
// worker, and only this instance knows the new one.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, type FileHandle, mkdir, open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ConfigError, InvalidTagsError, LaunchError, RunwardenError } from '../../core/errors.js';
import { STORE_ENV } from '../../stores/store-url.js';
import {
  type HealthResult,
  isTerminal,
  type RunLauncher,
  type RunRecord,
  type RunStore,
  TAGS,
} from '../../core/types.js';

/** Tags the process launcher reads and writes on a run. */
export const PROCESS_LAUNCHER_TAGS = {
  /** Pid of the run worker (also its process group id). */
  pid: 'runwarden/pid',
  /** Field 22 (`starttime`) of /proc/<pid>/stat, clock ticks since boot: tells a reused pid from the worker. */
  pidStart: 'runwarden/pid_start',
  /** 0 for the first launch, then the resume attempt that started the current worker. */
  attempt: 'runwarden/attempt',
  /** Optional per-run command override: a JSON array of strings (argv, never a shell line). */
  command: 'runwarden/command',
  /**
   * `true`: the run's command runs under the Runwarden wrapper, which reports on the run for it; `false`: it
   * does not, whatever the launcher's `wrap` option says. Written by the launcher whenever it wraps.
   */
  wrap: 'runwarden/wrap',
} as const;

export const PID_TAG = PROCESS_LAUNCHER_TAGS.pid;
export const PID_START_TAG = PROCESS_LAUNCHER_TAGS.pidStart;
export const ATTEMPT_TAG = PROCESS_LAUNCHER_TAGS.attempt;
export const COMMAND_TAG = PROCESS_LAUNCHER_TAGS.command;
export const WRAP_TAG = PROCESS_LAUNCHER_TAGS.wrap;

/** Environment variables every run worker receives (besides `options.env` and `options.storeEnv`). */
export const WORKER_ENV = {
  runId: 'RUNWARDEN_RUN_ID',
  resumeAttempt: 'RUNWARDEN_RESUME_ATTEMPT',
  /** Only for runs with a heartbeat timeout: the interval the monitor asked for (tag runwarden/heartbeat_seconds). */
  heartbeatSeconds: 'RUNWARDEN_HEARTBEAT_SECONDS',
} as const;

export interface ProcessRunLauncherOptions {
  store: RunStore;
  /** The worker's argv (no shell is involved), or a function of the run that returns it. */
  command: string[] | ((run: RunRecord) => string[]);
  cwd?: string;
  /** Added to the monitor's own environment. */
  env?: Record<string, string>;
  /** Each run's stdout and stderr are appended to `${logDir}/${runId}.log`. Created if missing. */
  logDir: string;
  /** How long terminate waits after SIGTERM before SIGKILL. Default 10000. */
  terminateGraceMs?: number;
  /** How long terminate waits after SIGKILL before reporting failure. Default 2000. */
  killWaitMs?: number;
  /** How often terminate checks whether the worker is gone. Default 50. */
  pollIntervalMs?: number;
  /** Tells workers how to open the same store, e.g. `{ RUNWARDEN_STORE: 'sqlite:/path/file.db' }`. */
  storeEnv?: Record<string, string>;
  /** Where the proc filesystem is mounted. Default `/proc`; tests point it elsewhere to simulate failures. */
  procRoot?: string;
  /**
   * Run each command under the Runwarden wrapper, which reports STARTED, SUCCESS, FAILURE and CANCELED for a
   * program that does not report itself (docs/launchers.md). A run's `runwarden/wrap` tag overrides it.
   * Default false.
   */
  wrap?: boolean;
  /**
   * The argv that starts the wrapper; the command follows it after `--`. Default: this Node
   * (`process.execPath`) running the package's `dist/src/cli/wrap.js`.
   */
  wrapperCommand?: string[];
}

interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child this instance spawned. Only an optimisation: the run's tags are the source of truth. */
interface SpawnedWorker {
  pid: number;
  pidStart: string;
  exit?: ExitInfo;
  exited: Promise<void>;
}

/** A launch or resume in progress: its child, once spawned, is the run's worker whatever the tags say. */
interface StartInFlight {
  attempt: number;
  worker?: SpawnedWorker;
}

interface ProcStat {
  state: string;
  pgrp: number;
  starttime: string;
}

/** `wrapped`: the worker is the wrapper, which forwards SIGTERM to its command itself. */
type Identity = { pid: number; pidStart: string; wrapped?: boolean };

/** What /proc says about a recorded worker. */
type Lookup =
  | { kind: 'alive'; stat: ProcStat }
  | { kind: 'zombie'; stat: ProcStat }
  | { kind: 'absent' }
  | { kind: 'reused'; stat: ProcStat };

const LOG_TAIL_LINES = 40;
const LOG_TAIL_BYTES = 4096;
// Exit records of our own children are kept for health messages; bound them so a long-lived monitor doesn't grow.
const MAX_REMEMBERED_WORKERS = 10_000;
// A child that just died is a zombie until libuv reaps it on the next loop turn; wait this long for its 'exit'.
const EXIT_EVENT_WAIT_MS = 500;

export class ProcessRunLauncher implements RunLauncher {
  readonly supportsHealthCheck = true;
  readonly supportsResume = true;

  private readonly store: RunStore;
  private readonly command: string[] | ((run: RunRecord) => string[]);
  private readonly logDir: string;
  private readonly graceMs: number;
  private readonly killWaitMs: number;
  private readonly pollMs: number;
  private readonly procRoot: string;
  private readonly workers = new Map<string, SpawnedWorker>();
  private readonly starting = new Map<string, StartInFlight>();

  constructor(private readonly options: ProcessRunLauncherOptions) {
    this.store = options.store;
    this.command = options.command;
    this.logDir = options.logDir;
    this.graceMs = nonNegative('terminateGraceMs', options.terminateGraceMs, 10_000);
    this.killWaitMs = nonNegative('killWaitMs', options.killWaitMs, 2_000);
    this.pollMs = Math.max(1, nonNegative('pollIntervalMs', options.pollIntervalMs, 50));
    this.procRoot = options.procRoot ?? '/proc';
    if (Array.isArray(options.command)) validateArgv(options.command, 'ProcessRunLauncher option "command"');
    if (options.wrapperCommand !== undefined) {
      validateArgv(options.wrapperCommand, 'ProcessRunLauncher option "wrapperCommand"');
    }
    if (!options.logDir) throw new ConfigError('ProcessRunLauncher option "logDir" is required.');
    // Identity checks read /proc/<pid>/stat; without it every worker would look dead.
    if (options.procRoot === undefined && !existsSync('/proc/self/stat')) {
      throw new RunwardenError(
        'UNSUPPORTED_PLATFORM',
        `ProcessRunLauncher needs a Linux /proc filesystem to identify run workers (platform: ${process.platform}).`,
      );
    }
  }

  /** The file a run's worker output is appended to. */
  logPath(runId: string): string {
    // encodeURIComponent keeps ordinary ids readable and turns '/' into %2F, so a run id can't escape logDir.
    return join(this.logDir, `${encodeURIComponent(runId)}.log`);
  }

  async launch(run: RunRecord): Promise<void> {
    await this.start(run, 0);
  }

  async resume(run: RunRecord, attempt: number): Promise<void> {
    // Two workers on one run would both write its status: make sure the previous one is really gone first.
    const gone = await this.terminate(run);
    if (!gone) {
      const pid = run.tags[PID_TAG];
      throw new LaunchError(
        run.runId,
        `Not resuming run ${run.runId}: its previous run worker (pid ${pid}) is still alive after SIGKILL.`,
      );
    }
    await this.start(run, attempt);
  }

  async checkHealth(run: RunRecord): Promise<HealthResult> {
    const inFlight = this.starting.get(run.runId);
    if (inFlight && !inFlight.worker) return notSpawnedYet(run, inFlight.attempt);
    // While a start records its worker (or the record predates that), only this instance knows the worker.
    const unrecorded = run.tags[PID_TAG] === undefined;
    const known = inFlight?.worker ?? (unrecorded ? this.workers.get(run.runId) : undefined);
    if (known) return this.workerHealth(run, identityOf(known));
    if (unrecorded) return pidNotRecordedYet(run);
    const identity = readIdentity(run);
    if (typeof identity === 'string') return { status: 'NOT_FOUND', message: identity };
    const result = await this.workerHealth(run, identity);
    if (result.status === 'RUNNING' || !this.startedOtherWorker(run.runId, identity)) return result;
    return this.recheckFromStore(run, identity, result);
  }

  async terminate(run: RunRecord): Promise<boolean> {
    const stopped = await Promise.all(this.workersToStop(run).map((identity) => this.stopGroup(identity)));
    return stopped.every(Boolean);
  }

  async debugInfo(run: RunRecord): Promise<string | undefined> {
    const path = this.logPath(run.runId);
    let text: string;
    try {
      text = await readTail(path, LOG_TAIL_BYTES);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      return `Could not read run worker log (${path}): ${errorText(err)}`;
    }
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    if (lines.length === 0) return undefined;
    return `Run worker log tail (${path}):\n${lines.slice(-LOG_TAIL_LINES).join('\n')}`;
  }

  // ---------------------------------------------------------------------------------------------------------

  private async start(run: RunRecord, attempt: number): Promise<void> {
    const inFlight: StartInFlight = { attempt };
    this.starting.set(run.runId, inFlight);
    try {
      const identity = await this.spawnWorker(run, attempt, inFlight);
      await this.recordWorker(run.runId, identity, attempt);
      await this.stopIfRunEnded(run.runId, identity);
    } finally {
      if (this.starting.get(run.runId) === inFlight) this.starting.delete(run.runId);
    }
  }

  private async spawnWorker(run: RunRecord, attempt: number, inFlight: StartInFlight): Promise<Identity> {
    const argv = this.argvFor(run);
    const wrapped = this.wraps(run);
    const env = {
      ...process.env,
      ...this.options.env,
      ...this.options.storeEnv,
      [WORKER_ENV.runId]: run.runId,
      [WORKER_ENV.resumeAttempt]: String(attempt),
      ...(run.tags[TAGS.heartbeatSeconds]
        ? { [WORKER_ENV.heartbeatSeconds]: run.tags[TAGS.heartbeatSeconds] }
        : {}),
    };
    const [file, ...args] = (wrapped ? [...this.wrapperArgv(run, env), '--', ...argv] : argv) as [
      string,
      ...string[],
    ];
    const path = this.logPath(run.runId);
    let log: FileHandle;
    try {
      await mkdir(this.logDir, { recursive: true });
      log = await open(path, 'a');
    } catch (err) {
      throw new LaunchError(run.runId, `Could not open run worker log ${path}: ${errorText(err)}`, {
        cause: err,
      });
    }
    let child: ChildProcess;
    let pidStart: string;
    try {
      // A header per worker makes attempts distinguishable in the (appended) log and in debugInfo.
      await log.write(
        `[runwarden] ${new Date().toISOString()} starting run worker for run ${run.runId} (attempt ${attempt}): ${JSON.stringify(argv)}${wrapped ? ' under the runwarden wrapper' : ''}\n`,
      );
      child = spawn(file, args, {
        cwd: this.options.cwd,
        env,
        // Own process group: terminate signals the worker and everything it started, nothing else.
        detached: true,
        stdio: ['ignore', log.fd, log.fd],
      });
      pidStart = await new Promise<string>((resolve, reject) => {
        child.once('error', reject);
        child.once('spawn', () => {
          // Read the start time inside the 'spawn' callback, before control returns to the event loop: the
          // child can't have been reaped yet, so its /proc entry exists even if it has already exited.
          try {
            const pidStart = this.readStartTimeSync(child.pid!);
            // Also before the loop turns: the 'exit' listener must be in place before the child can be reaped.
            inFlight.worker = this.remember(run.runId, child, { pid: child.pid!, pidStart, wrapped });
            resolve(pidStart);
          } catch (err) {
            signalQuietly(-child.pid!, 'SIGKILL');
            reject(err);
          }
        });
      });
    } catch (err) {
      throw new LaunchError(
        run.runId,
        // Node blames the command for a missing cwd too (both are ENOENT), so name the cwd as well.
        `Could not start run worker for run ${run.runId}: command ${JSON.stringify(argv)}${this.options.cwd ? ` (cwd ${this.options.cwd})` : ''} failed: ${errorText(err)}`,
        { cause: err },
      );
    } finally {
      // The child holds its own copy of the descriptor.
      await log.close();
    }
    // The monitor may exit while workers run on.
    child.unref();
    return { pid: child.pid!, pidStart, wrapped };
  }

  private async recordWorker(
    runId: string,
    { pid, pidStart, wrapped }: Identity,
    attempt: number,
  ): Promise<void> {
    try {
      await this.store.setTags(runId, {
        [PID_TAG]: String(pid),
        [PID_START_TAG]: pidStart,
        [ATTEMPT_TAG]: String(attempt),
        // Whoever terminates this worker later (another process, maybe configured otherwise) must know.
        ...(wrapped ? { [WRAP_TAG]: 'true' } : {}),
      });
    } catch (err) {
      // A worker nobody can find would be reported NOT_FOUND and resumed next to itself: stop it.
      signalQuietly(-pid, 'SIGKILL');
      throw new LaunchError(
        runId,
        `Started run worker pid ${pid} for run ${runId} but could not record it in the store, so it was killed: ${errorText(err)}`,
        { cause: err },
      );
    }
  }

  /**
   * A start slower than the run's start timeout spawns a worker for a run that is already over, whose
   * terminate found no pid, and nothing watches a terminal run. Read after the pid is recorded, the run shows
   * that ending if its terminator could not have seen the pid. SUCCESS: the worker itself finished the run.
   */
  private async stopIfRunEnded(runId: string, identity: Identity): Promise<void> {
    let run: RunRecord | undefined;
    try {
      run = await this.store.getRun(runId);
    } catch {
      // Can't tell; the recorded pid lets whoever ends the run stop the worker.
      return;
    }
    if (!run || !isTerminal(run.status) || run.status === 'SUCCESS') return;
    await this.appendToLog(
      runId,
      `run ${runId} is already ${run.status}: stopping its run worker pid ${identity.pid}, which started after the run ended`,
    );
    if (!(await this.stopGroup(identity))) {
      throw new LaunchError(
        runId,
        `Run ${runId} was already ${run.status} when its run worker pid ${identity.pid} started, and that worker is still alive after SIGKILL.`,
      );
    }
  }

  /** One launcher line in the run's worker log; best effort, the log only helps humans. */
  private async appendToLog(runId: string, line: string): Promise<void> {
    try {
      await appendFile(this.logPath(runId), `[runwarden] ${new Date().toISOString()} ${line}\n`);
    } catch {
      // Nothing depends on it.
    }
  }

  /** SIGTERM to the worker's group, SIGKILL after the grace period; true once nothing in it is running. */
  private async stopGroup(identity: Identity): Promise<boolean> {
    if (!(await this.signalGroup(identity, 'SIGTERM'))) return true;
    if (await this.waitGone(identity, this.graceMs)) return true;
    if (!(await this.signalGroup(identity, 'SIGKILL'))) return true;
    if (await this.waitGone(identity, this.killWaitMs)) return true;
    // Last look, tolerant of members stuck as zombies under a parent that doesn't reap.
    return (await this.liveGroupMembers(identity.pid)) === 0;
  }

  /** The recorded worker, and one a launch or resume of this instance is still recording (cancel racing it). */
  private workersToStop(run: RunRecord): Identity[] {
    const recorded = readIdentity(run);
    const targets = typeof recorded === 'string' ? [] : [recorded];
    // No tags yet: a launch may still be writing them.
    const newest =
      this.starting.get(run.runId)?.worker ??
      (targets.length === 0 ? this.workers.get(run.runId) : undefined);
    if (newest && !targets.some((t) => sameIdentity(t, newest))) targets.push(identityOf(newest));
    return targets;
  }

  // --- health ----------------------------------------------------------------------------------------------

  private async workerHealth(run: RunRecord, identity: Identity): Promise<HealthResult> {
    const { pid, pidStart } = identity;
    let found: Lookup;
    try {
      found = await this.lookup(identity);
    } catch (err) {
      return {
        status: 'UNKNOWN',
        transient: true,
        message: `Could not read ${this.statPath(pid)} to check run worker pid ${pid}: ${errorText(err)}`,
      };
    }
    if (found.kind === 'alive') return { status: 'RUNNING', message: `Run worker pid ${pid} is running.` };

    const mine = this.ownWorker(run.runId, identity);
    if (mine && !mine.exit && found.kind !== 'reused') {
      await Promise.race([mine.exited, sleep(EXIT_EVENT_WAIT_MS)]);
    }
    if (mine?.exit) return exitResult(mine.exit, run);

    switch (found.kind) {
      case 'zombie':
        return {
          status: 'NOT_FOUND',
          message: `Run worker pid ${pid} has exited (zombie in ${this.statPath(pid)}, not yet reaped); its exit status is unknown to this monitor.`,
        };
      case 'reused':
        return {
          status: 'NOT_FOUND',
          message: `No run worker with pid ${pid}: that pid now belongs to another process (start time ${found.stat.starttime} in ${this.statPath(pid)}, recorded ${pidStart}).`,
        };
      default:
        return {
          status: 'NOT_FOUND',
          message: `No process with pid ${pid} (checked ${this.statPath(pid)}); the run worker is gone and its exit status is unknown to this monitor.`,
        };
    }
  }

  /** This instance's newest worker for the run is not the recorded one: the record may predate a resume. */
  private startedOtherWorker(runId: string, identity: Identity): boolean {
    const mine = this.workers.get(runId);
    return mine !== undefined && !sameIdentity(mine, identity);
  }

  /** A dead worker named by a stale record says nothing about the current one: ask the store which it is. */
  private async recheckFromStore(
    run: RunRecord,
    recorded: Identity,
    result: HealthResult,
  ): Promise<HealthResult> {
    let fresh: RunRecord | undefined;
    try {
      fresh = await this.store.getRun(run.runId);
    } catch {
      return result;
    }
    const current = fresh && readIdentity(fresh);
    if (!fresh || !current || typeof current === 'string' || sameIdentity(current, recorded)) return result;
    return this.workerHealth(fresh, current);
  }

  /** Whether the run's command runs under the wrapper: its `runwarden/wrap` tag, else the `wrap` option. */
  private wraps(run: RunRecord): boolean {
    const tag = run.tags[WRAP_TAG];
    if (tag === undefined) return this.options.wrap === true;
    if (tag === 'true' || tag === 'false') return tag === 'true';
    throw new InvalidTagsError(
      `Run ${run.runId}: tag ${WRAP_TAG} must be true or false; got ${JSON.stringify(tag)}.`,
    );
  }

  /** The argv that starts the wrapper; refuses what could only fail in the wrapper, out of sight. */
  private wrapperArgv(run: RunRecord, env: Record<string, string | undefined>): string[] {
    if (!env[STORE_ENV]) {
      throw new LaunchError(
        run.runId,
        `Run ${run.runId} is wrapped, and the wrapper reports through the store named in ${STORE_ENV}, which its environment does not set: pass ProcessRunLauncher option storeEnv: { ${STORE_ENV}: 'sqlite:/path/to/runs.db' }.`,
      );
    }
    if (this.options.wrapperCommand) return this.options.wrapperCommand;
    const script = fileURLToPath(new URL('../../cli/wrap.js', import.meta.url));
    if (!existsSync(script)) {
      throw new LaunchError(
        run.runId,
        `Run ${run.runId} is wrapped, but the runwarden wrapper ${script} does not exist (running from sources that are not built?): build the package, or pass ProcessRunLauncher option wrapperCommand.`,
      );
    }
    return [process.execPath, script];
  }

  private argvFor(run: RunRecord): string[] {
    const override = run.tags[COMMAND_TAG];
    if (override !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(override);
      } catch {
        parsed = undefined;
      }
      if (!isArgv(parsed)) {
        throw new InvalidTagsError(
          `Run ${run.runId}: tag ${COMMAND_TAG} must be a JSON array of non-empty strings (argv, e.g. ["node","worker.js"]); got ${JSON.stringify(override)}.`,
        );
      }
      return parsed;
    }
    const argv = typeof this.command === 'function' ? this.command(run) : this.command;
    if (!isArgv(argv)) {
      throw new LaunchError(
        run.runId,
        `ProcessRunLauncher "command" for run ${run.runId} must give a non-empty array of non-empty strings; got ${JSON.stringify(argv)}.`,
      );
    }
    return argv;
  }

  private remember(runId: string, child: ChildProcess, identity: Identity): SpawnedWorker {
    let markExited!: () => void;
    const worker: SpawnedWorker = {
      ...identity,
      exited: new Promise<void>((resolve) => {
        markExited = resolve;
      }),
    };
    // Node (libuv) reaps the child whatever we do, so no zombies pile up while the monitor lives; this keeps
    // the exit status, which the kernel no longer has once the child is reaped.
    child.once('exit', (code, signal) => {
      worker.exit = { code, signal };
      markExited();
    });
    // Swallow late errors (e.g. a failed kill) so they can't crash the host; health checks report the outcome.
    child.on('error', () => {});
    this.workers.delete(runId);
    this.workers.set(runId, worker);
    if (this.workers.size > MAX_REMEMBERED_WORKERS) {
      for (const [id, w] of this.workers) {
        if (this.workers.size <= MAX_REMEMBERED_WORKERS) break;
        if (w.exit) this.workers.delete(id);
      }
    }
    return worker;
  }

  private ownWorker(runId: string, identity: Identity): SpawnedWorker | undefined {
    const w = this.workers.get(runId);
    return w && sameIdentity(w, identity) ? w : undefined;
  }

  private statPath(pid: number): string {
    return join(this.procRoot, String(pid), 'stat');
  }

  private async readStat(pid: number): Promise<ProcStat | undefined> {
    try {
      return parseStat(await readFile(this.statPath(pid), 'utf8'));
    } catch (err) {
      // ESRCH: the process vanished while the kernel was producing the file.
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) return undefined;
      throw err;
    }
  }

  private readStartTimeSync(pid: number): string {
    return parseStat(readFileSync(this.statPath(pid), 'utf8')).starttime;
  }

  private async lookup({ pid, pidStart }: Identity): Promise<Lookup> {
    const stat = await this.readStat(pid);
    if (!stat) return { kind: 'absent' };
    if (stat.starttime !== pidStart) return { kind: 'reused', stat };
    return stat.state === 'Z' || stat.state === 'X' ? { kind: 'zombie', stat } : { kind: 'alive', stat };
  }

  /**
   * Signals the worker's process group after checking it is still the worker's. Resolves false when there is
   * nothing left to signal. The kernel does not hand out a pid while a process group of that id has members,
   * so when the leader is gone, any process still in group `pid` was started by the worker.
   */
  private async signalGroup(identity: Identity, signal: NodeJS.Signals): Promise<boolean> {
    let found: Lookup;
    try {
      found = await this.lookup(identity);
    } catch {
      // Can't verify identity: never signal what might be someone else's process.
      return true;
    }
    if (found.kind === 'reused') return false;
    if (found.kind === 'alive') {
      // The wrapper forwards SIGTERM to its group itself: signalling the group too would give the command two.
      const target = identity.wrapped && signal === 'SIGTERM' ? identity.pid : -identity.pid;
      return signalQuietly(target, signal) !== 'ESRCH';
    }
    if ((await this.liveGroupMembers(identity.pid)) === 0) return false;
    return signalQuietly(-identity.pid, signal) !== 'ESRCH';
  }

  private async waitGone(identity: Identity, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (await this.isGone(identity)) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())));
    }
  }

  /** Gone = neither the leader nor any other member of its group is still running (zombies don't count). */
  private async isGone(identity: Identity): Promise<boolean> {
    let found: Lookup;
    try {
      found = await this.lookup(identity);
    } catch {
      return false;
    }
    if (found.kind === 'reused') return true;
    if (found.kind === 'alive') return false;
    return (await this.liveGroupMembers(identity.pid)) === 0;
  }

  private async liveGroupMembers(pgid: number): Promise<number> {
    // kill(-pgid, 0) is cheap and usually settles it; only when it says "someone is there" do we look at
    // /proc for members that are more than unreaped zombies.
    if (signalQuietly(-pgid, 0) === 'ESRCH') return 0;
    let entries: string[];
    try {
      entries = await readdir(this.procRoot);
    } catch {
      return 1;
    }
    let live = 0;
    for (const entry of entries) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = await this.readStat(Number(entry));
        if (stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X') live++;
      } catch {
        // Unreadable entry: not ours to judge.
      }
    }
    return live;
  }
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) {
    throw new ConfigError(`ProcessRunLauncher option "${name}" must be a finite number >= 0; got ${value}.`);
  }
  return value;
}

function isArgv(value: unknown): value is string[] {
  return (
    Array.isArray(value) && value.length > 0 && value.every((part) => typeof part === 'string' && part !== '')
  );
}

function validateArgv(argv: unknown, what: string): void {
  if (!isArgv(argv)) {
    throw new ConfigError(
      `${what} must be a non-empty array of non-empty strings; got ${JSON.stringify(argv)}.`,
    );
  }
}

/** The recorded worker identity, or why there is none. */
function readIdentity(run: RunRecord): Identity | string {
  const pidText = run.tags[PID_TAG];
  if (pidText === undefined) return `no worker pid recorded (tag ${PID_TAG} is missing on run ${run.runId})`;
  const pid = Number(pidText);
  if (!/^\d+$/.test(pidText) || !Number.isSafeInteger(pid) || pid <= 1) {
    return `tag ${PID_TAG} on run ${run.runId} is not a valid pid: ${JSON.stringify(pidText)}`;
  }
  const pidStart = run.tags[PID_START_TAG];
  // Without the start time a reused pid can't be told from the worker, so the pid is not trusted at all.
  if (pidStart === undefined || !/^\d+$/.test(pidStart)) {
    return `no valid worker start time recorded (tag ${PID_START_TAG} on run ${run.runId} is ${JSON.stringify(pidStart)}); pid ${pid} cannot be verified`;
  }
  return { pid, pidStart, wrapped: run.tags[WRAP_TAG] === 'true' };
}

/** Parses /proc/<pid>/stat. `comm` (field 2) may hold spaces and parentheses, so split after its last ')'. */
function parseStat(text: string): ProcStat {
  const close = text.lastIndexOf(')');
  const fields = close < 0 ? [] : text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state); field N is at index N - 3.
  const state = fields[0];
  const pgrp = Number(fields[2]);
  const starttime = fields[19];
  if (!state || !Number.isFinite(pgrp) || !starttime || !/^\d+$/.test(starttime)) {
    throw new Error(`unexpected /proc stat format: ${JSON.stringify(text.slice(0, 200))}`);
  }
  return { state, pgrp, starttime };
}

function sameIdentity(a: Identity, b: Identity): boolean {
  return a.pid === b.pid && a.pidStart === b.pidStart;
}

function identityOf({ pid, pidStart, wrapped }: Identity): Identity {
  return { pid, pidStart, wrapped };
}

/** A start in progress that has not spawned its worker yet: the tags name none, or the previous one. */
function notSpawnedYet(run: RunRecord, attempt: number): HealthResult {
  return {
    status: 'UNKNOWN',
    transient: true,
    message: `A run worker for run ${run.runId} is being started (attempt ${attempt}); its pid is not recorded yet.`,
  };
}

/** Not evidence of death: the worker may be up and its launcher (maybe another process) still recording it. */
function pidNotRecordedYet(run: RunRecord): HealthResult {
  return {
    status: 'UNKNOWN',
    transient: true,
    message: `No run worker pid recorded yet (tag ${PID_TAG} is missing on run ${run.runId}); its launch may still be recording it.`,
  };
}

function exitResult(exit: ExitInfo, run: RunRecord): HealthResult {
  if (exit.signal) return { status: 'FAILED', message: `Run worker was killed by signal ${exit.signal}` };
  if (exit.code === 0) {
    return isTerminal(run.status)
      ? { status: 'SUCCESS', message: 'Run worker exited with code 0' }
      : { status: 'FAILED', message: 'Run worker exited with code 0 without reporting a final status' };
  }
  return { status: 'FAILED', message: `Run worker exited with code ${exit.code}` };
}

/** process.kill without throwing; resolves the errno code on failure. */
function signalQuietly(pid: number, signal: NodeJS.Signals | 0): string | undefined {
  try {
    process.kill(pid, signal);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'UNKNOWN';
  }
}

async function readTail(path: string, maxBytes: number): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const start = Math.max(0, size - maxBytes);
    const buffer = Buffer.alloc(size - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    let text = buffer.subarray(0, bytesRead).toString('utf8');
    // Started mid-file: drop the partial first line.
    if (start > 0) text = text.slice(text.indexOf('\n') + 1);
    return text;
  } finally {
    await handle.close();
  }
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
