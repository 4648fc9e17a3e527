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

/** defineProperty, not assignment: a "__proto__" tag must stay an ordinary key, not replace the prototype. */
function setTag(target: Record<string, string>, key: string, value: string): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
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

// --- shared error text -----------------------------------------------------------------------------------

/** A call on a store after close(); `store` names it, e.g. "SQLite run store /var/lib/runwarden/runs.db". */
export function storeClosedError(store: string): RunwardenError {
  return new RunwardenError('STORE_CLOSED', `The ${store} has been closed.`);
}
