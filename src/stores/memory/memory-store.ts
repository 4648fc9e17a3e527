import { randomUUID } from 'node:crypto';
import { DuplicateRunError, InvalidTransitionError, RunNotFoundError } from '../../core/errors.js';
import { assertEngineEvent, copyTags, mergeTags, validateRunId } from '../store-input.js';
import {
  ALLOWED_MOVES,
  type CreateRunInput,
  type EngineEventInput,
  isTerminal,
  type ListRunsFilter,
  RUN_STATUSES,
  type RunEvent,
  type RunEventType,
  type RunRecord,
  type RunStatus,
  type RunStore,
  STATUS_EVENT,
  STATUS_TIMESTAMP,
  type TransitionChange,
} from '../../core/types.js';

export interface MemoryRunStoreOptions {
  /** Source of the default `at`; tests pass a simulated clock. Default: real time. */
  clock?: { now(): number };
  /**
   * Called when a subscriber throws. The write has already happened, so a subscriber's bug must not make it
   * look failed (or starve the other subscribers); by default the error is dropped.
   */
  onListenerError?: (error: unknown, event: RunEvent) => void;
}

/**
 * A RunStore kept in this process's memory: for tests, single-process hosts and as the reference the
 * durable stores are checked against (test/store-conformance.ts). Every method runs to completion
 * synchronously inside its promise, so each write is atomic with respect to every other.
 */
export class MemoryRunStore implements RunStore {
  private readonly clock: { now(): number };
  private readonly onListenerError: ((error: unknown, event: RunEvent) => void) | undefined;
  private readonly runs = new Map<string, RunRecord>();
  /** Run ids in ascending order, for listRuns' keyset pagination without sorting on every call. */
  private readonly sortedIds: string[] = [];
  /** Every event in seq order; seq starts at 1 and has no gaps, but lookups binary-search anyway. */
  private readonly events: RunEvent[] = [];
  private readonly eventsByRun = new Map<string, RunEvent[]>();
  private readonly listeners = new Set<(event: RunEvent) => void>();
  private lastSeq = 0;

  constructor(options: MemoryRunStoreOptions = {}) {
    this.clock = options.clock ?? Date;
    this.onListenerError = options.onListenerError;
  }

  async createRun(run: CreateRunInput): Promise<RunRecord> {
    // Only an absent id is generated: null or '' is a caller bug, not a request for a fresh id.
    const runId = run.runId === undefined ? randomUUID() : run.runId;
    validateRunId(runId);
    const tags = copyTags(run.tags === undefined ? {} : run.tags);
    if (this.runs.has(runId)) throw new DuplicateRunError(runId);
    const at = run.at ?? this.clock.now();
    const record: RunRecord = {
      runId,
      status: 'NOT_STARTED',
      tags,
      createdAt: at,
      updatedAt: at,
      resumeAttempts: 0,
    };
    this.runs.set(runId, record);
    this.sortedIds.splice(lowerBound(this.sortedIds, runId), 0, runId);
    this.eventsByRun.set(runId, []);
    return copyRecord(record);
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const record = this.runs.get(runId);
    return record && copyRecord(record);
  }

  async listRuns(filter: ListRunsFilter = {}): Promise<RunRecord[]> {
    const { statuses, limit, afterRunId } = filter;
    const wanted = statuses && new Set(statuses);
    const max = limit ?? Number.POSITIVE_INFINITY;
    const out: RunRecord[] = [];
    // upperBound: runs strictly after afterRunId, whether or not that run exists.
    let i = afterRunId === undefined ? 0 : upperBound(this.sortedIds, afterRunId);
    for (; i < this.sortedIds.length && out.length < max; i++) {
      const record = this.runs.get(this.sortedIds[i]!)!;
      if (!wanted || wanted.has(record.status)) out.push(copyRecord(record));
    }
    return out;
  }

  async transition(runId: string, change: TransitionChange): Promise<RunRecord | undefined> {
    const record = this.mustGet(runId);
    const { to } = change;
    // Refusals are caller bugs and must surface whatever the run's current status is.
    if (change.from) {
      const bad = change.from.filter((s) => !isMove(s, to));
      if (bad.length > 0) throw new InvalidTransitionError(runId, bad, to);
    } else if (!RUN_STATUSES.some((s) => isMove(s, to))) {
      throw new InvalidTransitionError(runId, record.status, to);
    }
    const tags = change.tags === undefined ? undefined : copyTags(change.tags);
    const applies = change.from ? change.from.includes(record.status) : isMove(record.status, to);
    // isMove already refuses terminal statuses; the explicit check keeps that guarantee obvious.
    if (!applies || isTerminal(record.status)) return undefined;

    const at = change.at ?? this.clock.now();
    record.status = to;
    record.updatedAt = at;
    const field = STATUS_TIMESTAMP[to];
    // Max runtime counts from the first start, across resumes.
    if (field && !(field === 'startedAt' && record.startedAt !== undefined)) {
      (record as unknown as Record<string, number>)[field] = at;
    }
    if (tags) mergeTags(record.tags, tags);
    const type = STATUS_EVENT[to as Exclude<RunStatus, 'NOT_STARTED'>];
    this.append(runId, type, change.message ?? `Run moved to ${to}.`, at, undefined);
    return copyRecord(record);
  }

  async appendEvent(runId: string, event: EngineEventInput): Promise<RunEvent> {
    this.mustGet(runId);
    assertEngineEvent(event);
    const data = event.data === undefined ? undefined : structuredClone(event.data);
    return copyEvent(this.append(runId, 'ENGINE_EVENT', event.message, event.at ?? this.clock.now(), data));
  }

  async getEvents(runId: string, filter: { types?: RunEventType[] } = {}): Promise<RunEvent[]> {
    this.mustGet(runId);
    const events = this.eventsByRun.get(runId)!;
    const types = filter.types && new Set(filter.types);
    return (types ? events.filter((e) => types.has(e.type)) : events).map(copyEvent);
  }

  async incrementResumeAttempts(runId: string): Promise<number> {
    const record = this.mustGet(runId);
    record.resumeAttempts += 1;
    record.updatedAt = this.clock.now();
    return record.resumeAttempts;
  }

  async setTags(runId: string, tags: Record<string, string>): Promise<RunRecord> {
    const record = this.mustGet(runId);
    mergeTags(record.tags, copyTags(tags));
    record.updatedAt = this.clock.now();
    return copyRecord(record);
  }

  subscribe(listener: (event: RunEvent) => void): () => void {
    // Wrapped so the same function subscribed twice gets two independent subscriptions.
    const entry = (event: RunEvent) => listener(event);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  async readEventsAfter(seq: number, limit: number): Promise<RunEvent[]> {
    if (!(limit > 0)) return [];
    const start = upperBoundSeq(this.events, seq);
    return this.events.slice(start, start + limit).map(copyEvent);
  }

  async latestSeq(): Promise<number> {
    return this.lastSeq;
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private mustGet(runId: string): RunRecord {
    const record = this.runs.get(runId);
    if (!record) throw new RunNotFoundError(runId);
    return record;
  }

  private append(runId: string, type: RunEventType, message: string, at: number, data: unknown): RunEvent {
    const event: RunEvent = { runId, seq: ++this.lastSeq, at, type, message };
    if (data !== undefined) event.data = data;
    this.events.push(event);
    this.eventsByRun.get(runId)!.push(event);
    // Iterate a snapshot: a listener may unsubscribe (itself or others) while we deliver.
    for (const listener of [...this.listeners]) {
      try {
        listener(copyEvent(event));
      } catch (error) {
        try {
          this.onListenerError?.(error, copyEvent(event));
        } catch {
          // The error hook failing is not the write's problem either.
        }
      }
    }
    return event;
  }
}

function isMove(from: RunStatus, to: RunStatus): boolean {
  // Guard against strings that are not statuses at all (JS callers, bad casts).
  return Object.hasOwn(ALLOWED_MOVES, from) && ALLOWED_MOVES[from].includes(to);
}

function copyRecord(record: RunRecord): RunRecord {
  return { ...record, tags: mergeTags({}, record.tags) };
}

function copyEvent(event: RunEvent): RunEvent {
  const copy: RunEvent = { ...event };
  if (event.data !== undefined) copy.data = structuredClone(event.data);
  return copy;
}

/** First index whose id is >= runId. */
function lowerBound(ids: string[], runId: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid]! < runId) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose id is > runId. */
function upperBound(ids: string[], runId: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid]! <= runId) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose event has seq > seq. */
function upperBoundSeq(events: RunEvent[], seq: number): number {
  let lo = 0;
  let hi = events.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (events[mid]!.seq <= seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
