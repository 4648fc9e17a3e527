// The rules every RunStore shares, in one place, so that a backend writes only storage code: which status
// moves apply (compare-and-set, the maximum-runtime rule), what an applied move writes (timestamps, tags, the
// status event and its default message), what input is valid, how subscribers are called, and the error
// text. test/store-conformance.ts checks every store against these rules; docs/storage.md describes them.
//
// A store's transition() is: load the run (RunNotFoundError if absent), `planTransition(current, change,
// now)`, and if that returns a plan, write `plan.record` and append `plan.event` in one atomic step.
// Worker fencing rides on the same step: planTransition and planHeartbeat call fenceWriter on the record the
// store just read; appendEvent loads the run and calls `fenceWriter(current, event.attempt)` itself.
import { randomUUID } from 'node:crypto';
import {
  InvalidTagsError,
  InvalidTransitionError,
  RunwardenError,
  WorkerSupersededError,
} from '../core/errors.js';
import {
  ALLOWED_MOVES,
  type CreateRunInput,
  type EngineEventInput,
  type HeartbeatInput,
  isTerminal,
  type Lease,
  type LeaseToken,
  type MonitorIdentity,
  type MonitorInfo,
  RUN_STATUSES,
  type RunEvent,
  type RunEventType,
  type RunRecord,
  type RunStatus,
  STATUS_EVENT,
  STATUS_TIMESTAMP,
  TAGS,
  type TransitionChange,
} from '../core/types.js';

// --- transitions -----------------------------------------------------------------------------------------

/** The event a write appends, before the store gives it a seq. */
export interface PlannedEvent {
  type: RunEventType;
  message: string;
  at: number;
  /** JSON text of the event's data; undefined when it has none. */
  dataJson?: string;
}

/** What an applied transition writes: the run's whole new record and its status event. */
export interface PlannedTransition {
  record: RunRecord;
  event: PlannedEvent;
}

/**
 * Decides a transition against the run's current record, without writing anything.
 *
 * Throws InvalidTransitionError for a move the allowed moves never permit (a caller bug, reported whatever
 * the run's status), InvalidTagsError or INVALID_TIMESTAMP for bad input. Returns undefined when the
 * compare-and-set does not apply: the run is in another status than `from` (or one that cannot move to
 * `to`), or it is CANCELING for maximum runtime and `to` is not FAILURE.
 */
export function planTransition(
  current: RunRecord,
  change: TransitionChange,
  now: number,
): PlannedTransition | undefined {
  const { to } = change;
  assertMoveRequest(current, change);
  const tags = change.tags === undefined ? undefined : copyTags(change.tags);
  const at = change.at === undefined ? now : validateAt(change.at);
  // Before the compare-and-set: a superseded worker must learn it, even when its move would not apply.
  fenceWriter(current, change.attempt);
  if (!applies(current, change)) return undefined;

  const record = copyRecord(current);
  record.status = to;
  record.updatedAt = at;
  setStatusTimestamp(record, to, at);
  if (tags) mergeTags(record.tags, tags);
  const type = STATUS_EVENT[to as Exclude<RunStatus, 'NOT_STARTED'>];
  return { record, event: { type, message: change.message ?? defaultStatusMessage(to), at } };
}

/**
 * A maximum-runtime stop is final once written: a run the monitor moved to CANCELING with
 * `runwarden/cancel_reason=MAX_RUNTIME_EXCEEDED` can only end FAILURE, whoever writes. A user cancel (any
 * other reason, or none) may still end SUCCESS or CANCELED.
 */
export function isMaxRuntimeStop(run: Pick<RunRecord, 'status' | 'tags'>): boolean {
  return run.status === 'CANCELING' && run.tags[TAGS.cancelReason] === 'MAX_RUNTIME_EXCEEDED';
}

/** The message of a status event when the writer gave none. */
function defaultStatusMessage(to: RunStatus): string {
  return `Run moved to ${to}.`;
}

/** Refusals are caller bugs and must surface whatever the run's current status is. */
function assertMoveRequest(current: RunRecord, change: TransitionChange): void {
  const { to } = change;
  if (change.from) {
    const bad = change.from.filter((s) => !isMove(s, to));
    if (bad.length > 0) throw new InvalidTransitionError(current.runId, bad, to);
  } else if (!RUN_STATUSES.some((s) => isMove(s, to))) {
    throw new InvalidTransitionError(current.runId, current.status, to);
  }
}

function applies(current: RunRecord, change: TransitionChange): boolean {
  // isMove already refuses terminal statuses; the explicit check keeps that guarantee obvious.
  if (isTerminal(current.status)) return false;
  const inFrom = change.from ? change.from.includes(current.status) : isMove(current.status, change.to);
  return inFrom && !(isMaxRuntimeStop(current) && change.to !== 'FAILURE');
}

function setStatusTimestamp(record: RunRecord, to: RunStatus, at: number): void {
  const field = STATUS_TIMESTAMP[to] as TimestampField | undefined;
  // Max runtime counts from the first start, across resumes.
  if (field && !(field === 'startedAt' && record.startedAt !== undefined)) record[field] = at;
}

type TimestampField = 'queuedAt' | 'launchedAt' | 'startedAt' | 'cancelingAt' | 'endedAt';

function isMove(from: RunStatus, to: RunStatus): boolean {
  // Guard against strings that are not statuses at all (JS callers, bad casts).
  return Object.hasOwn(ALLOWED_MOVES, from) && ALLOWED_MOVES[from].includes(to);
}

// --- worker fencing --------------------------------------------------------------------------------------

/**
 * The worker fence, one rule for every store: a write carrying `attempt` (a worker's
 * RUNWARDEN_RESUME_ATTEMPT) is refused with WorkerSupersededError when the run has been resumed past it
 * (`attempt < current.resumeAttempts`). A write without one (the monitor's) is never fenced. Stores call it
 * inside their atomic write, after reading the run and before writing, so a resume that commits first is
 * always seen. Throws INVALID_ATTEMPT for an attempt that is not a whole number >= 0.
 */
export function fenceWriter(current: RunRecord, attempt: number | undefined): void {
  if (attempt === undefined) return;
  validateAttempt(attempt);
  if (attempt < current.resumeAttempts) {
    throw new WorkerSupersededError(current.runId, attempt, current.resumeAttempts);
  }
}

function validateAttempt(attempt: unknown): asserts attempt is number {
  if (typeof attempt !== 'number' || !Number.isSafeInteger(attempt) || attempt < 0) {
    throw new RunwardenError(
      'INVALID_ATTEMPT',
      `\`attempt\` must be a whole number >= 0 (the worker's RUNWARDEN_RESUME_ATTEMPT); got ${describe(attempt)}.`,
    );
  }
}

// --- creating runs, tags, engine events ------------------------------------------------------------------

/** The record a createRun writes: validated id (generated when absent), copied tags, `at` or now. */
export function planCreate(run: CreateRunInput, now: number): RunRecord {
  // Only an absent id is generated: null or '' is a caller bug, not a request for a fresh id.
  const runId = run.runId === undefined ? randomUUID() : run.runId;
  validateRunId(runId);
  const tags = copyTags(run.tags === undefined ? {} : run.tags);
  const at = run.at === undefined ? now : validateAt(run.at);
  return { runId, status: 'NOT_STARTED', tags, createdAt: at, updatedAt: at, resumeAttempts: 0 };
}

/** The record a setTags writes: the tags merged in, updatedAt moved to now. */
export function planSetTags(current: RunRecord, tags: Record<string, string>, now: number): RunRecord {
  const record = copyRecord(current);
  mergeTags(record.tags, copyTags(tags));
  record.updatedAt = now;
  return record;
}

/** The record after a heartbeat, or undefined when the run has ended (a late heartbeat changes nothing). */
export function planHeartbeat(current: RunRecord, beat: HeartbeatInput, now: number): RunRecord | undefined {
  if (beat === null || typeof beat !== 'object') {
    throw new RunwardenError('INVALID_HEARTBEAT', `A heartbeat must be an object; got ${describe(beat)}.`);
  }
  const at = beat.at === undefined ? now : validateAt(beat.at);
  fenceWriter(current, beat.attempt);
  if (isTerminal(current.status)) return undefined;
  const record = copyRecord(current);
  record.heartbeatAt = at;
  if (beat.progress === true) record.progressAt = at;
  return record;
}

/**
 * Checks an appendEvent input and returns the event to append. Status events only come from transition(),
 * in the same step as the status change they describe; data must be JSON-serialisable in every store, so
 * that what a caller reads back does not depend on the backend.
 */
export function planEngineEvent(event: EngineEventInput, now: number): PlannedEvent {
  if (typeof event !== 'object' || event === null) {
    throw invalidEvent(
      `appendEvent takes an object { type: 'ENGINE_EVENT', message }; got ${describe(event)}.`,
    );
  }
  if (event.type !== 'ENGINE_EVENT') {
    throw invalidEvent(
      `appendEvent only appends ENGINE_EVENT; got ${JSON.stringify(event.type)} (status events come from transition()).`,
    );
  }
  if (typeof event.message !== 'string') {
    throw invalidEvent(`An ENGINE_EVENT message must be a string; got ${describe(event.message)}.`);
  }
  const at = event.at === undefined ? now : validateAt(event.at);
  // Checked here, before the store reads the run, so bad input is refused whatever the run's state.
  if (event.attempt !== undefined) validateAttempt(event.attempt);
  const planned: PlannedEvent = { type: 'ENGINE_EVENT', message: event.message, at };
  const dataJson = serializeEventData(event.data);
  if (dataJson !== undefined) planned.dataJson = dataJson;
  return planned;
}

/** Validates tags (plain object, string values) and returns a copy the caller can no longer mutate. */
function copyTags(tags: unknown): Record<string, string> {
  if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) {
    throw new InvalidTagsError(
      `Tags must be an object of string keys to string values; got ${describe(tags)}.`,
    );
  }
  const proto = Object.getPrototypeOf(tags);
  if (proto !== Object.prototype && proto !== null) {
    throw new InvalidTagsError(
      `Tags must be a plain object of string keys to string values; got ${describe(tags)}.`,
    );
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(tags)) {
    if (typeof value !== 'string') {
      throw new InvalidTagsError(
        `Tag ${JSON.stringify(key)} must have a string value; got ${describe(value)}.`,
      );
    }
    setTag(out, key, value);
  }
  return out;
}

function mergeTags(target: Record<string, string>, tags: Record<string, string>): Record<string, string> {
  for (const [key, value] of Object.entries(tags)) setTag(target, key, value);
  return target;
}

/**
 * A "__proto__" tag must stay an ordinary key, not replace the prototype: that one key takes defineProperty.
 * Every other key is assigned, which is the same for them and much cheaper (every record read copies tags).
 */
function setTag(target: Record<string, string>, key: string, value: string): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

function validateRunId(runId: unknown): asserts runId is string {
  if (typeof runId !== 'string' || runId.length === 0) {
    throw new RunwardenError(
      'INVALID_RUN_ID',
      `A run id must be a non-empty string; got ${describe(runId)}.`,
    );
  }
}

/** Every `at` is epoch milliseconds: a string or NaN would turn deadlines computed from it into NaN. */
function validateAt(at: unknown): number {
  if (typeof at !== 'number' || !Number.isFinite(at)) {
    throw new RunwardenError(
      'INVALID_TIMESTAMP',
      `\`at\` must be a finite number of epoch milliseconds; got ${describe(at)}.`,
    );
  }
  return at;
}

function serializeEventData(data: unknown): string | undefined {
  if (data === undefined) return undefined;
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch (error) {
    throw invalidEvent(`ENGINE_EVENT data must be JSON-serialisable: ${(error as Error).message}`, error);
  }
  if (text === undefined)
    throw invalidEvent(`ENGINE_EVENT data must be JSON-serialisable; got ${describe(data)}.`);
  return text;
}

function invalidEvent(message: string, cause?: unknown): RunwardenError {
  return new RunwardenError('INVALID_EVENT', message, cause === undefined ? undefined : { cause });
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'undefined') return 'undefined';
  if (typeof value === 'function') return 'a function';
  return `${typeof value} ${String(value)}`;
}

// --- records and events handed out ----------------------------------------------------------------------

/** A copy the caller may mutate without touching the store (or another caller's copy). */
export function copyRecord(record: RunRecord): RunRecord {
  return { ...record, tags: mergeTags({}, record.tags) };
}

/** An event as a store keeps it: the planned event, its run and the seq the store gave it. */
export interface StoredEvent extends PlannedEvent {
  runId: string;
  seq: number;
}

/** The RunEvent a store hands out: a fresh object every call, data parsed from its JSON text. */
export function toRunEvent(event: StoredEvent): RunEvent {
  const { runId, seq, at, type, message } = event;
  const out: RunEvent = { runId, seq, at, type, message };
  if (event.dataJson !== undefined) out.data = JSON.parse(event.dataJson);
  return out;
}

/** The tags a listRuns filter asks for, checked like any tags; undefined when it asks for none. */
export function wantedTags(tags: unknown): Record<string, string> | undefined {
  if (tags === undefined) return undefined;
  const wanted = copyTags(tags);
  return Object.keys(wanted).length === 0 ? undefined : wanted;
}

/** Whether a run carries every wanted tag with exactly the wanted value. */
export function hasTags(record: RunRecord, wanted: Record<string, string> | undefined): boolean {
  if (!wanted) return true;
  for (const key in wanted) if (record.tags[key] !== wanted[key]) return false;
  return true;
}

/**
 * How many items a `limit` asks for: none for 0, a negative number or NaN; every one for undefined or
 * Infinity; a fraction rounds up.
 */
export function pageSize(limit: number | undefined): number {
  if (limit === undefined) return Number.POSITIVE_INFINITY;
  if (!(limit > 0)) return 0;
  return Math.ceil(limit);
}

// --- subscribers -----------------------------------------------------------------------------------------

export type ListenerErrorHandler = (error: unknown, event: RunEvent) => void;

/**
 * A store's subscribers. Each gets its own copy of every event; one that throws is reported to the error
 * handler and never fails the write (it already happened) or starves the others.
 */
export class Listeners {
  readonly #entries = new Set<(event: RunEvent) => void>();
  readonly #onError: ListenerErrorHandler | undefined;

  constructor(onError?: ListenerErrorHandler) {
    this.#onError = onError;
  }

  /** Returns the unsubscribe function (idempotent). */
  add(listener: (event: RunEvent) => void): () => void {
    if (typeof listener !== 'function') {
      throw new RunwardenError('INVALID_LISTENER', `subscribe takes a function; got ${describe(listener)}.`);
    }
    // Wrapped so the same function subscribed twice gets two independent subscriptions.
    const entry = (event: RunEvent) => listener(event);
    this.#entries.add(entry);
    return () => {
      this.#entries.delete(entry);
    };
  }

  /** Delivers one event; `copy` makes a fresh copy per call. */
  deliver(copy: () => RunEvent): void {
    // Iterate a snapshot: a listener may unsubscribe (itself or others) while we deliver.
    for (const listener of [...this.#entries]) {
      try {
        listener(copy());
      } catch (error) {
        try {
          this.#onError?.(error, copy());
        } catch {
          // The error hook failing is not the write's problem either.
        }
      }
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}

// --- several monitors: partitions, leases, fencing -------------------------------------------------------
//
// Runs fall into PARTITION_COUNT partitions by a hash of their id. Live monitors hold leases on partitions;
// a lease has an epoch that grows every time the partition changes hands. A monitor's decision writes carry
// its LeaseToken, and the store checks it (checkLease) in the same atomic step as the write: a monitor that
// lost a partition, however late it wakes up, can no longer write for that partition's runs. The check
// compares epochs, never clocks. A store keeps one LeaseRow per partition and one MonitorRow per monitor,
// and renews with planRenewal inside one transaction (docs/storage.md, docs/operations.md).

/** How many partitions runs are spread over: a fixed number, so that every store and monitor agrees. */
export const PARTITION_COUNT = 64;

/**
 * The partition of a run: FNV-1a (32 bit) over the UTF-8 bytes of its id, modulo PARTITION_COUNT. Stable
 * across processes, versions and languages, so a store written in SQL could compute it too.
 */
export function partitionOf(runId: string): number {
  let hash = 0x811c9dc5;
  const mix = (byte: number) => {
    hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  };
  for (let i = 0; i < runId.length; i++) {
    let code = runId.charCodeAt(i);
    if (code < 0x80) {
      mix(code);
      continue;
    }
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < runId.length) {
      const low = runId.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        i += 1;
      }
    }
    // A lone surrogate encodes as U+FFFD, as Buffer.from(text, 'utf8') does.
    if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
    if (code < 0x800) {
      mix(0xc0 | (code >> 6));
    } else if (code < 0x10000) {
      mix(0xe0 | (code >> 12));
      mix(0x80 | ((code >> 6) & 0x3f));
    } else {
      mix(0xf0 | (code >> 18));
      mix(0x80 | ((code >> 12) & 0x3f));
      mix(0x80 | ((code >> 6) & 0x3f));
    }
    mix(0x80 | (code & 0x3f));
  }
  return hash % PARTITION_COUNT;
}

/** A partition's lease as a store keeps it; a partition without a row is free at epoch 0. */
export interface LeaseRow {
  partition: number;
  /** The holder, or null when the partition is free. */
  monitorId: string | null;
  epoch: number;
  /** Store clock, epoch ms; the holder must renew before then. */
  expiresAt: number;
}

/** A monitor as a store keeps it. */
export interface MonitorRow extends MonitorIdentity {
  startedAt: number;
  renewedAt: number;
  expiresAt: number;
}

/** Thrown by a fenced write whose monitor no longer holds the run's partition at that epoch; nothing was written. */
export class LeaseLostError extends RunwardenError {
  constructor(
    readonly runId: string,
    readonly partition: number,
    readonly lease: LeaseToken,
    readonly heldBy: string | null,
    readonly heldEpoch: number,
  ) {
    const now = heldBy === null ? `free (epoch ${heldEpoch})` : `held by ${heldBy} at epoch ${heldEpoch}`;
    super(
      'LEASE_LOST',
      `Run ${runId}: monitor ${lease.monitorId} wrote with its lease on partition ${partition} at epoch ${lease.epoch}, but that partition is now ${now}. The write was refused: another monitor owns this run now.`,
    );
  }
}

/**
 * The fence: throws LeaseLostError unless `row` (the run's partition lease, read in the write's own
 * transaction) is held by the token's monitor at the token's epoch. A write without a token is not fenced.
 */
export function checkLease(runId: string, token: LeaseToken | undefined, row: LeaseRow | undefined): void {
  if (token === undefined) return;
  validateLeaseToken(token);
  if (row && row.monitorId === token.monitorId && row.epoch === token.epoch) return;
  throw new LeaseLostError(runId, partitionOf(runId), token, row?.monitorId ?? null, row?.epoch ?? 0);
}

function validateLeaseToken(token: unknown): asserts token is LeaseToken {
  if (typeof token !== 'object' || token === null) {
    throw invalidLease(`\`lease\` must be an object { monitorId, epoch }; got ${describe(token)}.`);
  }
  const { monitorId, epoch } = token as Record<string, unknown>;
  if (typeof monitorId !== 'string' || monitorId === '') {
    throw invalidLease(`\`lease.monitorId\` must be a non-empty string; got ${describe(monitorId)}.`);
  }
  if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 0) {
    throw invalidLease(`\`lease.epoch\` must be a whole number >= 0; got ${describe(epoch)}.`);
  }
}

function invalidLease(message: string): RunwardenError {
  return new RunwardenError('INVALID_LEASE', message);
}

/**
 * How many partitions a monitor should hold: PARTITION_COUNT spread evenly over the live monitors, the
 * remainder going to the first ones in id order (plain string order, the same in every store).
 */
function fairShare(liveMonitorIds: readonly string[], monitorId: string): number {
  const sorted = [...new Set(liveMonitorIds)].sort(compareIds);
  const index = sorted.indexOf(monitorId);
  if (index < 0) return 0;
  const base = Math.floor(PARTITION_COUNT / sorted.length);
  return base + (index < PARTITION_COUNT % sorted.length ? 1 : 0);
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** What one renewal writes: the monitor's row, the dead monitors' rows to delete, the changed lease rows. */
export interface PlannedRenewal {
  monitor: MonitorRow;
  deadMonitorIds: string[];
  /** Lease rows to write (insert or update), whole. */
  leases: LeaseRow[];
  /** What renewLeases resolves: every partition the monitor holds after the renewal, ascending. */
  held: Lease[];
}

/**
 * Decides one renewal against every stored monitor and lease row (read in the same transaction). The
 * monitor keeps what it holds up to its fair share (its lowest partitions), takes free or expired partitions
 * (or those of a monitor no longer live) up to that share, each with the epoch plus one, and frees the rest.
 * A partition it still holds keeps its epoch even if its lease ran out meanwhile: nobody else held it.
 */
export function planRenewal(
  stored: { monitors: readonly MonitorRow[]; leases: readonly LeaseRow[] },
  monitor: MonitorIdentity,
  leaseMs: number,
  now: number,
): PlannedRenewal {
  validateMonitor(monitor);
  if (typeof leaseMs !== 'number' || !Number.isFinite(leaseMs) || leaseMs <= 0) {
    throw invalidLease(`leaseMs must be a finite number of milliseconds > 0; got ${describe(leaseMs)}.`);
  }
  const expiresAt = now + leaseMs;
  const previous = stored.monitors.find((m) => m.monitorId === monitor.monitorId);
  const row: MonitorRow = {
    monitorId: monitor.monitorId,
    host: monitor.host,
    pid: monitor.pid,
    startedAt: previous && previous.expiresAt > now ? previous.startedAt : now,
    renewedAt: now,
    expiresAt,
  };
  const live = new Set([monitor.monitorId]);
  const deadMonitorIds: string[] = [];
  for (const m of stored.monitors) {
    if (m.monitorId === monitor.monitorId) continue;
    if (m.expiresAt > now) live.add(m.monitorId);
    else deadMonitorIds.push(m.monitorId);
  }
  const share = fairShare([...live], monitor.monitorId);
  const rows = allLeaseRows(stored.leases);
  const mine = rows.filter((r) => r.monitorId === monitor.monitorId);
  const takeable = rows.filter((r) => r.monitorId === null || r.expiresAt <= now || !live.has(r.monitorId));
  const changed: LeaseRow[] = [];
  const held: Lease[] = [];
  const hold = (r: LeaseRow, epoch: number) => {
    changed.push({ partition: r.partition, monitorId: monitor.monitorId, epoch, expiresAt });
    held.push({ partition: r.partition, epoch, expiresAt });
  };
  mine.slice(0, share).forEach((r) => hold(r, r.epoch));
  for (const r of mine.slice(share)) changed.push({ ...r, monitorId: null, expiresAt: 0 });
  for (const r of takeable) {
    if (held.length >= share) break;
    if (r.monitorId !== monitor.monitorId) hold(r, r.epoch + 1);
  }
  held.sort((a, b) => a.partition - b.partition);
  return { monitor: row, deadMonitorIds, leases: changed, held };
}

/** The lease rows that free every partition `monitorId` holds (a clean stop); epochs are kept. */
export function planRelease(leases: readonly LeaseRow[], monitorId: string): LeaseRow[] {
  return leases
    .filter((r) => r.monitorId === monitorId)
    .map((r) => ({ ...r, monitorId: null, expiresAt: 0 }));
}

/** The live monitors as listMonitors shows them, in id order; `activeRunIds` are every non-terminal run. */
export function describeMonitors(
  stored: { monitors: readonly MonitorRow[]; leases: readonly LeaseRow[] },
  activeRunIds: Iterable<string>,
  now: number,
): MonitorInfo[] {
  const live = stored.monitors
    .filter((m) => m.expiresAt > now)
    .sort((a, b) => compareIds(a.monitorId, b.monitorId));
  const holder = new Map<number, string>();
  for (const r of stored.leases)
    if (r.monitorId !== null && r.expiresAt > now) holder.set(r.partition, r.monitorId);
  const runsPerPartition = new Array<number>(PARTITION_COUNT).fill(0);
  for (const runId of activeRunIds) runsPerPartition[partitionOf(runId)]! += 1;
  return live.map((m) => {
    const partitions = [...holder]
      .filter(([, id]) => id === m.monitorId)
      .map(([p]) => p)
      .sort((a, b) => a - b);
    const runsOwned = partitions.reduce((sum, p) => sum + runsPerPartition[p]!, 0);
    return { ...m, partitions, runsOwned };
  });
}

/** Every partition's row, in partition order; a partition the store has no row for is free at epoch 0. */
function allLeaseRows(leases: readonly LeaseRow[]): LeaseRow[] {
  const rows: LeaseRow[] = Array.from({ length: PARTITION_COUNT }, (_, partition) => ({
    partition,
    monitorId: null,
    epoch: 0,
    expiresAt: 0,
  }));
  for (const r of leases) if (r.partition >= 0 && r.partition < PARTITION_COUNT) rows[r.partition] = { ...r };
  return rows;
}

function validateMonitor(monitor: unknown): asserts monitor is MonitorIdentity {
  if (typeof monitor !== 'object' || monitor === null) {
    throw invalidLease(`A monitor must be an object { monitorId, host, pid }; got ${describe(monitor)}.`);
  }
  const { monitorId, host, pid } = monitor as Record<string, unknown>;
  if (typeof monitorId !== 'string' || monitorId === '') {
    throw invalidLease(`\`monitorId\` must be a non-empty string; got ${describe(monitorId)}.`);
  }
  if (typeof host !== 'string') throw invalidLease(`\`host\` must be a string; got ${describe(host)}.`);
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid < 0) {
    throw invalidLease(`\`pid\` must be a whole number >= 0; got ${describe(pid)}.`);
  }
}

// --- shared error text -----------------------------------------------------------------------------------

/** A call on a store after close(); `store` names it, e.g. "SQLite run store /var/lib/runwarden/runs.db". */
export function storeClosedError(store: string): RunwardenError {
  return new RunwardenError('STORE_CLOSED', `The ${store} has been closed.`);
}
