import type { HealthResult, RunLauncher, RunRecord, WorkerStatus } from '../core/types.js';

export type FakeHealth =
  WorkerStatus | HealthResult | ((run: RunRecord) => HealthResult | Promise<HealthResult>);
/** 'hang' never answers: for testing the monitor's launcher timeouts. */
export type FakeTerminate = boolean | 'throw' | 'hang';
export type FakeCall = 'ok' | 'throw' | 'hang';

export interface FakeLauncherOptions {
  health?: FakeHealth;
  terminate?: FakeTerminate;
  supportsResume?: boolean;
  supportsHealthCheck?: boolean;
  /** Extensions for failure tests: how launch / resume answer (default 'ok'). */
  launch?: FakeCall;
  resume?: FakeCall;
  /** What debugInfo resolves (default undefined); 'throw' / 'hang' behave as for the calls above. */
  debugInfo?: string | 'throw' | 'hang';
}

const never = () => new Promise<never>(() => {});

/**
 * A launcher with no workers behind it, for tests: it records every call and answers as configured.
 * It changes no run status itself — run statuses are the worker's and the monitor's business.
 */
export class FakeLauncher implements RunLauncher {
  readonly supportsHealthCheck: boolean;
  readonly supportsResume: boolean;
  readonly calls: {
    launch: string[];
    terminate: string[];
    resume: { runId: string; attempt: number }[];
    health: string[];
    debugInfo: string[];
  } = { launch: [], terminate: [], resume: [], health: [], debugInfo: [] };

  private health: FakeHealth;
  private terminateWith: FakeTerminate;
  private launchWith: FakeCall;
  private resumeWith: FakeCall;
  private debugInfoWith: string | undefined;

  constructor(options: FakeLauncherOptions = {}) {
    this.health = options.health ?? 'RUNNING';
    this.terminateWith = options.terminate ?? true;
    this.supportsResume = options.supportsResume ?? true;
    this.supportsHealthCheck = options.supportsHealthCheck ?? true;
    this.launchWith = options.launch ?? 'ok';
    this.resumeWith = options.resume ?? 'ok';
    this.debugInfoWith = options.debugInfo;
  }

  setHealth(health: FakeHealth): void {
    this.health = health;
  }

  setTerminate(terminate: FakeTerminate): void {
    this.terminateWith = terminate;
  }

  setLaunch(launch: FakeCall): void {
    this.launchWith = launch;
  }

  setResume(resume: FakeCall): void {
    this.resumeWith = resume;
  }

  setDebugInfo(debugInfo: string | 'throw' | 'hang' | undefined): void {
    this.debugInfoWith = debugInfo;
  }

  async launch(run: RunRecord): Promise<void> {
    this.calls.launch.push(run.runId);
    return answer(this.launchWith, 'launch', undefined);
  }

  async terminate(run: RunRecord): Promise<boolean> {
    this.calls.terminate.push(run.runId);
    if (this.terminateWith === 'throw') throw new Error('FakeLauncher: terminate failed');
    if (this.terminateWith === 'hang') return never();
    return this.terminateWith;
  }

  async checkHealth(run: RunRecord): Promise<HealthResult> {
    this.calls.health.push(run.runId);
    const health = this.health;
    if (typeof health === 'function') return health(run);
    return typeof health === 'string' ? { status: health } : { ...health };
  }

  async resume(run: RunRecord, attempt: number): Promise<void> {
    this.calls.resume.push({ runId: run.runId, attempt });
    return answer(this.resumeWith, 'resume', undefined);
  }

  async debugInfo(run: RunRecord): Promise<string | undefined> {
    this.calls.debugInfo.push(run.runId);
    if (this.debugInfoWith === 'throw') throw new Error('FakeLauncher: debugInfo failed');
    if (this.debugInfoWith === 'hang') return never();
    return this.debugInfoWith;
  }
}

function answer<T>(how: FakeCall, call: string, value: T): Promise<T> {
  if (how === 'throw') return Promise.reject(new Error(`FakeLauncher: ${call} failed`));
  if (how === 'hang') return never();
  return Promise.resolve(value);
}
