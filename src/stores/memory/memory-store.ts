import { DuplicateRunError, RunNotFoundError } from '../../core/errors.js';
import {
  checkLease,
  copyRecord,
  describeMonitors,
  type LeaseRow,
  type MonitorRow,
  partitionOf,
  planRelease,
  planRenewal,
  fenceWriter,
  hasTags,
  type ListenerErrorHandler,
  Listeners,
  pageSize,
  planCreate,
  planEngineEvent,
  planHeartbeat,
  planSetTags,
  planTransition,
  type PlannedEvent,
  type StoredEvent,
  toRunEvent,
  wantedTags,
} from '../contract.js';
import { isTerminal } from '../../core/types.js';
import type {
  CreateRunInput,
  EngineEventInput,
  FencedWrite,
  Lease,
  LeaseToken,
  MonitorIdentity,
  MonitorInfo,
  ListRunsFilter,
  RunEvent,
  RunEventType,
  RunRecord,
  RunStore,
  TransitionChange,
  HeartbeatInput,
} from '../../core/types.js';

export interface MemoryRunStoreOptions {
  /** Source of the default `at`; tests pass a simulated clock. Default: real time. */
  clock?: { now(): number };
  /**
   * Called when a subscriber throws. The write has already happened, so a subscriber's bug must not make it
   * look failed (or starve the other subscribers); by default the error is dropped.
   */
  onListenerError?: ListenerErrorHandler;
}

/**
 * A RunStore kept in this process's memory: for tests, single-process hosts and as the reference the
 * durable stores are checked against (test/store-conformance.ts). Every method runs to completion
 * synchronously inside its promise, so each write is atomic with respect to every other. The rules are the
 * shared ones in ../contract.ts; this class only keeps the data.
 */
export class MemoryRunStore implements RunStore {
  private readonly clock: { now(): number };
  private readonly listeners: Listeners;
  private readonly runs = new Map<string, RunRecord>();
  /** Run ids in ascending order, for listRuns' keyset pagination without sorting on every call. */
  private readonly sortedIds: string[] = [];
  /** Every event in seq order; seq starts at 1 and has no gaps, but lookups binary-search anyway. */
  private readonly events: StoredEvent[] = [];
  private readonly eventsByRun = new Map<string, StoredEvent[]>();
  private lastSeq = 0;
  /** Several monitors: one row per monitor and per partition that was ever leased. */
  private readonly monitors = new Map<string, MonitorRow>();
  private readonly leases = new Map<number, LeaseRow>();

  constructor(options: MemoryRunStoreOptions = {}) {
    this.clock = options.clock ?? Date;
    this.listeners = new Listeners(options.onListenerError);
  }

  async createRun(run: CreateRunInput): Promise<RunRecord> {
    const record = planCreate(run, this.clock.now());
    if (this.runs.has(record.runId)) throw new DuplicateRunError(record.runId);
    this.runs.set(record.runId, record);
    this.sortedIds.splice(lowerBound(this.sortedIds, record.runId), 0, record.runId);
    this.eventsByRun.set(record.runId, []);
    return copyRecord(record);
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const record = this.runs.get(runId);
    return record && copyRecord(record);
  }

  async listRuns(filter: ListRunsFilter = {}): Promise<RunRecord[]> {
    const { statuses, limit, afterRunId } = filter;
    const wanted = statuses && new Set(statuses);
    const tags = wantedTags(filter.tags);
    const max = pageSize(limit);
    const out: RunRecord[] = [];
    // upperBound: runs strictly after afterRunId, whether or not that run exists.
    let i = afterRunId === undefined ? 0 : upperBound(this.sortedIds, afterRunId);
    for (; i < this.sortedIds.length && out.length < max; i++) {
      const record = this.runs.get(this.sortedIds[i]!)!;
      if ((!wanted || wanted.has(record.status)) && hasTags(record, tags)) out.push(copyRecord(record));
    }
    return out;
  }

  async transition(runId: string, change: TransitionChange): Promise<RunRecord | undefined> {
    const current = this.mustGet(runId);
    this.fence(runId, change.lease);
    const plan = planTransition(current, change, this.clock.now());
    if (!plan) return undefined;
    this.runs.set(runId, plan.record);
    this.append(runId, plan.event);
    return copyRecord(plan.record);
  }

  async appendEvent(runId: string, event: EngineEventInput): Promise<RunEvent> {
    const planned = planEngineEvent(event, this.clock.now());
    fenceWriter(this.mustGet(runId), event.attempt);
    this.fence(runId, event.lease);
    return toRunEvent(this.append(runId, planned));
  }

  async getEvents(runId: string, filter: { types?: RunEventType[] } = {}): Promise<RunEvent[]> {
    this.mustGet(runId);
    const events = this.eventsByRun.get(runId)!;
    const types = filter.types && new Set(filter.types);
    return (types ? events.filter((e) => types.has(e.type)) : events).map(toRunEvent);
  }

  async incrementResumeAttempts(runId: string, options: FencedWrite = {}): Promise<number> {
    const record = this.mustGet(runId);
    this.fence(runId, options.lease);
    record.resumeAttempts += 1;
    record.updatedAt = this.clock.now();
    return record.resumeAttempts;
  }

  async setTags(runId: string, tags: Record<string, string>, options: FencedWrite = {}): Promise<RunRecord> {
    const current = this.mustGet(runId);
    this.fence(runId, options.lease);
    const record = planSetTags(current, tags, this.clock.now());
    this.runs.set(runId, record);
    return copyRecord(record);
  }

  async heartbeat(runId: string, beat: HeartbeatInput = {}): Promise<RunRecord> {
    const current = this.mustGet(runId);
    const record = planHeartbeat(current, beat, this.clock.now()) ?? current;
    this.runs.set(runId, record);
    return copyRecord(record);
  }

  subscribe(listener: (event: RunEvent) => void): () => void {
    return this.listeners.add(listener);
  }

  async readEventsAfter(seq: number, limit: number): Promise<RunEvent[]> {
    const start = upperBoundSeq(this.events, seq);
    return this.events.slice(start, start + pageSize(limit)).map(toRunEvent);
  }

  async latestSeq(): Promise<number> {
    return this.lastSeq;
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  async renewLeases(monitor: MonitorIdentity, leaseMs: number): Promise<Lease[]> {
    const plan = planRenewal(
      { monitors: [...this.monitors.values()], leases: [...this.leases.values()] },
      monitor,
      leaseMs,
      this.clock.now(),
    );
    for (const id of plan.deadMonitorIds) this.monitors.delete(id);
    this.monitors.set(plan.monitor.monitorId, plan.monitor);
    for (const row of plan.leases) this.leases.set(row.partition, row);
    return plan.held;
  }

  async releaseLeases(monitorId: string): Promise<void> {
    for (const row of planRelease([...this.leases.values()], monitorId)) this.leases.set(row.partition, row);
    this.monitors.delete(monitorId);
  }

  async listMonitors(): Promise<MonitorInfo[]> {
    const active = [...this.runs.values()].filter((r) => !isTerminal(r.status)).map((r) => r.runId);
    return describeMonitors(
      { monitors: [...this.monitors.values()], leases: [...this.leases.values()] },
      active,
      this.clock.now(),
    );
  }

  /** The lease check of a monitor's write, before anything is written. */
  private fence(runId: string, lease: LeaseToken | undefined): void {
    if (lease !== undefined) checkLease(runId, lease, this.leases.get(partitionOf(runId)));
  }

  private mustGet(runId: string): RunRecord {
    const record = this.runs.get(runId);
    if (!record) throw new RunNotFoundError(runId);
    return record;
  }

  private append(runId: string, planned: PlannedEvent): StoredEvent {
    const { type, message, at, dataJson } = planned;
    const event: StoredEvent = { runId, seq: ++this.lastSeq, type, message, at, dataJson };
    this.events.push(event);
    this.eventsByRun.get(runId)!.push(event);
    this.listeners.deliver(() => toRunEvent(event));
    return event;
  }
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
function upperBoundSeq(events: StoredEvent[], seq: number): number {
  let lo = 0;
  let hi = events.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (events[mid]!.seq <= seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
