// Domain types shared by the machines, the host runtime, stores and launchers.
// The names here are the public contract (docs/api.md): extend, never rename.

export const RUN_STATUSES = [
  'NOT_STARTED',
  'QUEUED',
  'STARTING',
  'STARTED',
  'CANCELING',
  'SUCCESS',
  'FAILURE',
  'CANCELED',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const TERMINAL_STATUSES: readonly RunStatus[] = ['SUCCESS', 'FAILURE', 'CANCELED'];
/** Statuses the monitor watches: every non-terminal one. */
export const ACTIVE_STATUSES: readonly RunStatus[] = [
  'NOT_STARTED',
  'QUEUED',
  'STARTING',
  'STARTED',
  'CANCELING',
];

export function isTerminal(status: RunStatus): boolean {
  return status === 'SUCCESS' || status === 'FAILURE' || status === 'CANCELED';
}

/** The moves a store allows; anything else is refused (docs/api.md, "RunStatus and the allowed moves"). */
export const ALLOWED_MOVES: Readonly<Record<RunStatus, readonly RunStatus[]>> = {
  NOT_STARTED: ['QUEUED', 'STARTING', 'FAILURE', 'CANCELED'],
  QUEUED: ['STARTING', 'FAILURE', 'CANCELED'],
  STARTING: ['STARTED', 'CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED'],
  STARTED: ['CANCELING', 'SUCCESS', 'FAILURE'],
  CANCELING: ['CANCELED', 'FAILURE', 'SUCCESS'],
  SUCCESS: [],
  FAILURE: [],
  CANCELED: [],
};

export function isAllowedMove(from: RunStatus, to: RunStatus): boolean {
  return ALLOWED_MOVES[from].includes(to);
}

export const RUN_EVENT_TYPES = [
  'RUN_QUEUED',
  'RUN_STARTING',
  'RUN_START',
  'RUN_CANCELING',
  'RUN_SUCCESS',
  'RUN_FAILURE',
  'RUN_CANCELED',
  'ENGINE_EVENT',
] as const;
export type RunEventType = (typeof RUN_EVENT_TYPES)[number];

/** The event a move into a status appends. NOT_STARTED is only ever the initial status. */
export const STATUS_EVENT: Readonly<Record<Exclude<RunStatus, 'NOT_STARTED'>, RunEventType>> = {
  QUEUED: 'RUN_QUEUED',
  STARTING: 'RUN_STARTING',
  STARTED: 'RUN_START',
  CANCELING: 'RUN_CANCELING',
  SUCCESS: 'RUN_SUCCESS',
  FAILURE: 'RUN_FAILURE',
  CANCELED: 'RUN_CANCELED',
};

const EVENT_STATUS: Partial<Record<RunEventType, RunStatus>> = Object.fromEntries(
  Object.entries(STATUS_EVENT).map(([status, type]) => [type, status as RunStatus]),
);

/** The status a status event moved its run into; undefined for ENGINE_EVENT. */
export function statusOfEvent(type: RunEventType): RunStatus | undefined {
  return EVENT_STATUS[type];
}

/** The record timestamp a move into `status` sets. */
export const STATUS_TIMESTAMP: Partial<Record<RunStatus, keyof RunRecord>> = {
  QUEUED: 'queuedAt',
  STARTING: 'launchedAt',
  STARTED: 'startedAt',
  CANCELING: 'cancelingAt',
  SUCCESS: 'endedAt',
  FAILURE: 'endedAt',
  CANCELED: 'endedAt',
};

export interface RunRecord {
  runId: string;
  status: RunStatus;
  tags: Record<string, string>;
  createdAt: number;
  updatedAt: number;
  queuedAt?: number;
  launchedAt?: number;
  /** The first time the run reached STARTED; resumes do not move it, so max runtime spans them. */
  startedAt?: number;
  /** The latest move into CANCELING. */
  cancelingAt?: number;
  endedAt?: number;
  resumeAttempts: number;
  /** The worker's latest heartbeat (RunStore.heartbeat); absent until it sends one. */
  heartbeatAt?: number;
  /** The worker's latest sign of progress (a heartbeat with `progress`); absent until it reports one. */
  progressAt?: number;
}

export interface HeartbeatInput {
  /** Epoch ms; default: the store's clock. */
  at?: number;
  /** Also a sign of progress (a step started or finished, a line of output): sets `progressAt` too. */
  progress?: boolean;
  /** The writing worker's RUNWARDEN_RESUME_ATTEMPT ("worker fencing" below); absent for monitor writes. */
  attempt?: number;
}

export interface RunEvent {
  runId: string;
  /** Store-wide, strictly increasing. */
  seq: number;
  /** Epoch milliseconds. */
  at: number;
  type: RunEventType;
  message: string;
  data?: unknown;
}

export interface CreateRunInput {
  runId?: string;
  tags?: Record<string, string>;
  at?: number;
}

export interface TransitionChange {
  to: RunStatus;
  /** Applies only when the current status is one of these (default: any status allowed to move to `to`). */
  from?: RunStatus[];
  at?: number;
  message?: string;
  /** Merged into the run's tags in the same atomic step. */
  tags?: Record<string, string>;
  /** A monitor's decision: refused with LeaseLostError unless it still holds the run's partition lease. */
  lease?: LeaseToken;
  /** The writing worker's RUNWARDEN_RESUME_ATTEMPT ("worker fencing" below); absent for monitor writes. */
  attempt?: number;
}

export interface EngineEventInput {
  type: 'ENGINE_EVENT';
  message: string;
  at?: number;
  data?: unknown;
  /** A monitor's decision: refused with LeaseLostError unless it still holds the run's partition lease. */
  lease?: LeaseToken;
  /** The writing worker's RUNWARDEN_RESUME_ATTEMPT ("worker fencing" below); absent for monitor writes. */
  attempt?: number;
}

// --- worker fencing --------------------------------------------------------------------------------------
// A worker write carries `attempt`: the RUNWARDEN_RESUME_ATTEMPT it was launched with (0 for the first
// worker, n for the worker of the n-th resume). The monitor's own writes carry none and are never fenced.
// A store refuses, in the same atomic step as the write, a write whose attempt is older than the run's
// `resumeAttempts` (WorkerSupersededError): that worker was presumed dead and replaced.

export interface ListRunsFilter {
  statuses?: RunStatus[];
  limit?: number;
  /** Keyset pagination: only runs whose runId sorts after this one (runs are listed in runId order). */
  afterRunId?: string;
  /** Only runs carrying every one of these tags with exactly these values. */
  tags?: Record<string, string>;
}

export interface RunStore {
  createRun(run: CreateRunInput): Promise<RunRecord>;
  getRun(runId: string): Promise<RunRecord | undefined>;
  listRuns(filter?: ListRunsFilter): Promise<RunRecord[]>;
  /**
   * Compare-and-set: applies when the current status is in `from` (default: any non-terminal status allowed
   * to move to `to`); appends the status event in the same atomic step; resolves undefined when it did not
   * apply. Refuses (throws) a move ALLOWED_MOVES does not allow and an unknown run id.
   */
  transition(runId: string, change: TransitionChange): Promise<RunRecord | undefined>;
  appendEvent(runId: string, event: EngineEventInput): Promise<RunEvent>;
  getEvents(runId: string, filter?: { types?: RunEventType[] }): Promise<RunEvent[]>;
  /** Durably adds one to `resumeAttempts` and resolves the new count. */
  incrementResumeAttempts(runId: string, options?: FencedWrite): Promise<number>;
  /** Merges tags into the run without a status change (launchers record worker identity this way). */
  setTags(runId: string, tags: Record<string, string>, options?: FencedWrite): Promise<RunRecord>;
  /**
   * A worker's sign of life: sets `heartbeatAt` (and `progressAt` with `progress`) without appending an event
   * or moving `updatedAt`. A run that has ended is left as it is. Resolves the record.
   */
  heartbeat(runId: string, beat?: HeartbeatInput): Promise<RunRecord>;
  /** This process's writes, delivered at once. Returns the unsubscribe function. */
  subscribe(listener: (event: RunEvent) => void): () => void;
  /** Everyone's writes, oldest first: the tail other processes follow. */
  readEventsAfter(seq: number, limit: number): Promise<RunEvent[]>;
  /** The highest seq written so far (0 when there are no events): where a new follower starts its tail. */
  latestSeq(): Promise<number>;
  /**
   * Calls `wake` soon after another process may have written events (PostgreSQL: LISTEN/NOTIFY), so a
   * follower reads the tail at once instead of at its next poll. Only a hint: the tail stays the truth, and
   * stores without it are simply polled. Returns the unsubscribe function.
   */
  onRemoteWrite?(wake: () => void): () => void;
  /** Releases connections or file handles. Optional for stores that hold none. */
  close?(): Promise<void>;
  /**
   * Several monitors on one store (optional: a store without these runs one monitor, as before). In one
   * atomic step: records `monitor` as live until now + leaseMs (store clock), keeps the partitions it holds up
   * to its fair share, takes free or expired ones up to that share (each takeover adds one to the partition's
   * epoch), releases the rest, and resolves the leases it now holds.
   */
  renewLeases?(monitor: MonitorIdentity, leaseMs: number): Promise<Lease[]>;
  /** A clean stop: frees every partition `monitorId` holds (others take them at their next renewal). */
  releaseLeases?(monitorId: string): Promise<void>;
  /** The live monitors, by id, with the partitions they hold and how many active runs those contain. */
  listMonitors?(): Promise<MonitorInfo[]>;
}

// --- several monitors: partitions, leases, fencing --------------------------------------------------------

/** What a monitor's write carries: the lease it holds on the run's partition, at the epoch it got it. */
export interface LeaseToken {
  monitorId: string;
  epoch: number;
}

/** A write a monitor may fence with its lease (incrementResumeAttempts, setTags). */
export interface FencedWrite {
  lease?: LeaseToken;
}

/** Who renews: a unique id per monitor process (or embedded monitor), and where it runs. */
export interface MonitorIdentity {
  monitorId: string;
  host: string;
  pid: number;
}

/** One partition a monitor holds: valid until `expiresAt` (store clock) unless renewed. */
export interface Lease {
  partition: number;
  /** Grows by one every time the partition changes hands; writes carry it (LeaseToken). */
  epoch: number;
  expiresAt: number;
}

/** A live monitor as `runwarden monitors` shows it. */
export interface MonitorInfo extends MonitorIdentity {
  /** When this monitor first renewed (store clock, epoch ms). */
  startedAt: number;
  renewedAt: number;
  expiresAt: number;
  /** The partitions it holds, ascending. */
  partitions: number[];
  /** Active (non-terminal) runs in those partitions. */
  runsOwned: number;
}

export type WorkerStatus = 'RUNNING' | 'NOT_FOUND' | 'FAILED' | 'SUCCESS' | 'UNKNOWN';
export const WORKER_STATUSES: readonly WorkerStatus[] = [
  'RUNNING',
  'NOT_FOUND',
  'FAILED',
  'SUCCESS',
  'UNKNOWN',
];

export interface HealthResult {
  status: WorkerStatus;
  message?: string;
  /** The check itself could not tell (API hiccup): treated like UNKNOWN. */
  transient?: boolean;
}

export interface RunLauncher {
  readonly supportsHealthCheck: boolean;
  readonly supportsResume: boolean;
  launch(run: RunRecord): Promise<void>;
  /** Resolves whether the worker is gone. */
  terminate(run: RunRecord): Promise<boolean>;
  checkHealth?(run: RunRecord): Promise<HealthResult>;
  resume?(run: RunRecord, attempt: number): Promise<void>;
  debugInfo?(run: RunRecord): Promise<string | undefined>;
}

export const TAGS = {
  maxRuntime: 'runwarden/max_runtime',
  maxRuntimeAlias: 'runwarden/max_runtime_seconds',
  failureReason: 'runwarden/failure_reason',
  /** Why the monitor moved a run to CANCELING (MAX_RUNTIME_EXCEEDED), so a worker's SIGTERM handler leaves the outcome to the monitor. */
  cancelReason: 'runwarden/cancel_reason',
  /**
   * 'true' on a run the monitor failed while its worker still had to be terminated (start timeout): the
   * journal that lets a restarted monitor finish the termination. Set to 'false' once the worker is gone.
   */
  terminatePending: 'runwarden/terminate_pending',
  /** Per-run heartbeat timeout in seconds (0 = off for this run); overrides heartbeatTimeoutSeconds. */
  heartbeatTimeout: 'runwarden/heartbeat_timeout',
  /** Per-run progress timeout in seconds (0 = off for this run); overrides progressTimeoutSeconds. */
  progressTimeout: 'runwarden/progress_timeout',
  /** How often the run's worker should heartbeat, written by the monitor at launch (a third of the timeout). */
  heartbeatSeconds: 'runwarden/heartbeat_seconds',
} as const;

export type FailureReason =
  | 'START_TIMEOUT'
  | 'QUEUED_TIMEOUT'
  | 'MAX_RUNTIME_EXCEEDED'
  | 'RUN_WORKER_CRASHED'
  | 'LAUNCH_FAILED'
  | 'HEARTBEAT_TIMEOUT'
  | 'PROGRESS_TIMEOUT';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}
