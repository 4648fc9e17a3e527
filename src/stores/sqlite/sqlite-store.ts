import Database from 'better-sqlite3';
import { DuplicateRunError, RunNotFoundError, RunwardenError } from '../../core/errors.js';
import {
  fenceWriter,
  checkLease,
  describeMonitors,
  type LeaseRow,
  type MonitorRow,
  partitionOf,
  planRelease,
  planRenewal,
  type ListenerErrorHandler,
  Listeners,
  pageSize,
  planCreate,
  planEngineEvent,
  planHeartbeat,
  planSetTags,
  planTransition,
  type PlannedEvent,
  storeClosedError,
  toRunEvent,
  wantedTags,
} from '../contract.js';
import { type LeaseDbRow, type MonitorDbRow, toLeaseRow, toMonitorRow } from '../sql-rows.js';
import {
  ACTIVE_STATUSES,
  type CreateRunInput,
  type EngineEventInput,
  type FencedWrite,
  type Lease,
  type LeaseToken,
  type MonitorIdentity,
  type MonitorInfo,
  type ListRunsFilter,
  RUN_STATUSES,
  type RunEvent,
  type RunEventType,
  type RunRecord,
  type RunStatus,
  type RunStore,
  type TransitionChange,
  type HeartbeatInput,
} from '../../core/types.js';
import { openFailure } from './open-error.js';

export interface SqliteRunStoreOptions {
  /** The database file. Every process that shares runs (monitor, run workers) opens the same path. */
  path: string;
  /** Source of the default `at`; tests pass a simulated clock. Default: real time. */
  clock?: { now(): number };
  /**
   * How long a write waits for another connection's write lock before failing with STORE_BUSY. Default 5000.
   * better-sqlite3 is synchronous, so this thread is blocked while it waits: keep write transactions short.
   */
  busyTimeoutMs?: number;
  /** Called when a subscriber throws; the write has already committed, so it is not failed. Default: drop. */
  onListenerError?: ListenerErrorHandler;
}

/** Thrown when another connection held the write lock for longer than the busy timeout. */
export class StoreBusyError extends RunwardenError {
  constructor(
    readonly path: string,
    readonly busyTimeoutMs: number,
    options?: { cause?: unknown },
  ) {
    super(
      'STORE_BUSY',
      `The SQLite run store ${path} is busy: another connection held its write lock for longer than the busy timeout (${busyTimeoutMs} ms). Retry, or raise busyTimeoutMs.`,
      options,
    );
  }
}

/**
 * The part of a better-sqlite3 `Database` that migrations use; a better-sqlite3 Database is one. Declared
 * here so that Runwarden's published types need no better-sqlite3 types (a consumer may not have them).
 */
export interface SqliteConnection {
  readonly name: string;
  exec(sql: string): unknown;
  prepare(sql: string): SqliteStatement;
  transaction<T>(fn: () => T): { immediate(): T };
}

interface SqliteStatement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/** One step of the schema history. Steps are applied in order, each in its own transaction, and never edited once released. */
export interface SqliteMigration {
  version: number;
  description: string;
  up: string | MigrationFunction;
}

// Method syntax makes the parameter bivariant, so a step written against better-sqlite3's own Database type
// (`(db: Database.Database) => …`) still fits.
type MigrationFunction = { step(db: SqliteConnection): void }['step'];

export const SQLITE_MIGRATIONS: readonly SqliteMigration[] = Object.freeze([
  {
    version: 1,
    description: 'runs, events and their indexes',
    up: `
      CREATE TABLE runs (
        run_id          TEXT PRIMARY KEY NOT NULL,
        status          TEXT NOT NULL CHECK (status IN (${RUN_STATUSES.map((s) => `'${s}'`).join(', ')})),
        tags            TEXT NOT NULL DEFAULT '{}',  -- JSON object of string values
        created_at      INTEGER NOT NULL,            -- epoch ms, like every *_at column
        updated_at      INTEGER NOT NULL,
        queued_at       INTEGER,
        launched_at     INTEGER,
        started_at      INTEGER,
        canceling_at    INTEGER,
        ended_at        INTEGER,
        resume_attempts INTEGER NOT NULL DEFAULT 0
      ) WITHOUT ROWID;
      -- The monitor's "runs in watched statuses", listed in run_id order.
      CREATE INDEX runs_status ON runs (status, run_id);

      -- AUTOINCREMENT: a seq is never reused, even after the newest events are deleted.
      CREATE TABLE events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id  TEXT NOT NULL REFERENCES runs (run_id),
        at      INTEGER NOT NULL,
        type    TEXT NOT NULL,
        message TEXT NOT NULL,
        data    TEXT                                 -- JSON, NULL when the event has none
      );
      CREATE INDEX events_run ON events (run_id, seq);
    `,
  },
  {
    version: 2,
    description: 'runs.heartbeat_at and runs.progress_at',
    up: `
      ALTER TABLE runs ADD COLUMN heartbeat_at INTEGER;  -- epoch ms of the latest heartbeat
      ALTER TABLE runs ADD COLUMN progress_at INTEGER;   -- epoch ms of the latest sign of progress
    `,
  },
  {
    version: 3,
    description: 'monitors and partition leases (several monitors on one store)',
    up: `
      CREATE TABLE monitors (
        monitor_id TEXT PRIMARY KEY NOT NULL,
        host       TEXT NOT NULL,
        pid        INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        renewed_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL      -- live until then unless renewed
      ) WITHOUT ROWID;
      -- One row per partition ever leased; a partition without a row is free at epoch 0.
      CREATE TABLE leases (
        partition  INTEGER PRIMARY KEY NOT NULL CHECK (partition >= 0 AND partition < 64),
        monitor_id TEXT,                 -- NULL: free
        epoch      INTEGER NOT NULL,     -- grows by one whenever the partition changes hands
        expires_at INTEGER NOT NULL
      );
    `,
  },
]);

export const SQLITE_SCHEMA_VERSION: number = SQLITE_MIGRATIONS.at(-1)!.version;

/**
 * Brings `db` up to the last version in `migrations` and returns that version. Safe to call from several
 * processes at once: each step re-reads the version under the write lock. Refuses a file whose version is
 * newer than this code knows (an older build must not write into a schema it does not understand).
 */
export function migrateSqlite(
  db: SqliteConnection,
  options: { path?: string; migrations?: readonly SqliteMigration[] } = {},
): number {
  const path = options.path ?? db.name;
  const migrations = options.migrations ?? SQLITE_MIGRATIONS;
  migrations.forEach((m, i) => {
    if (m.version !== i + 1)
      throw new Error(`SQLite migrations must be numbered 1, 2, 3…; step ${i} is ${m.version}.`);
  });
  const latest = migrations.length;
  const check = (current: number) => {
    if (current > latest) {
      throw new RunwardenError(
        'STORE_SCHEMA_TOO_NEW',
        `The SQLite run store ${path} has schema version ${current}, but this version of Runwarden only knows versions up to ${latest}. Upgrade Runwarden in every process that opens this file.`,
      );
    }
    return current;
  };
  // Fast path without the write lock: an up-to-date file is the common case for every worker process.
  if (check(readSchemaVersion(db)) === latest) return latest;

  for (const migration of migrations) {
    db.transaction(() => {
      db.exec(`CREATE TABLE IF NOT EXISTS schema_version (
        version     INTEGER PRIMARY KEY NOT NULL,
        description TEXT NOT NULL,
        applied_at  INTEGER NOT NULL
      )`);
      // Another process may have applied this step while we waited for the lock.
      if (check(readSchemaVersion(db)) >= migration.version) return;
      try {
        if (typeof migration.up === 'string') db.exec(migration.up);
        else migration.up(db);
      } catch (error) {
        if (isBusy(error)) throw error;
        throw new RunwardenError(
          'STORE_MIGRATION_FAILED',
          `Migrating the SQLite run store ${path} to schema version ${migration.version} (${migration.description}) failed: ${(error as Error).message}`,
          { cause: error },
        );
      }
      db.prepare('INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)').run(
        migration.version,
        migration.description,
        Date.now(),
      );
    }).immediate();
  }
  return latest;
}

function readSchemaVersion(db: SqliteConnection): number {
  const table = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
    .get();
  if (!table) return 0;
  const row = db.prepare('SELECT MAX(version) AS version FROM schema_version').get() as {
    version: number | null;
  };
  return row.version ?? 0;
}

/**
 * A runs row in raw mode: RUN_COLUMNS' values in order. Reading arrays instead of one object per row with a
 * property per column, then copying it into a RunRecord, makes a 100k-run restore's reads about a third
 * cheaper (docs/performance.md).
 */
type RunRow = [
  runId: string,
  status: RunStatus,
  tags: string,
  createdAt: number,
  updatedAt: number,
  queuedAt: number | null,
  launchedAt: number | null,
  startedAt: number | null,
  cancelingAt: number | null,
  endedAt: number | null,
  resumeAttempts: number,
  heartbeatAt: number | null,
  progressAt: number | null,
];

interface EventRow {
  seq: number;
  run_id: string;
  at: number;
  type: RunEventType;
  message: string;
  data: string | null;
}

const EVENT_COLUMNS = 'seq, run_id, at, type, message, data';

/**
 * A RunStore in one SQLite file (better-sqlite3), shared by the monitor and any number of run-worker processes.
 * WAL mode lets readers run while one writer writes; every write is a short BEGIN IMMEDIATE transaction, so
 * writers from different processes queue on the busy timeout instead of failing halfway. The rules are the
 * shared ones in ../contract.ts; this class only stores. See docs/storage.md.
 */
export class SqliteRunStore implements RunStore {
  readonly path: string;
  readonly busyTimeoutMs: number;
  // Private, so the published declarations do not mention better-sqlite3's types.
  private readonly db: Database.Database;
  private readonly clock: { now(): number };
  private readonly listeners: Listeners;
  private readonly sql: ReturnType<typeof prepareStatements>;

  static open(path: string, options: Omit<SqliteRunStoreOptions, 'path'> = {}): SqliteRunStore {
    return new SqliteRunStore({ ...options, path });
  }

  constructor(options: SqliteRunStoreOptions) {
    this.path = options.path;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    this.clock = options.clock ?? Date;
    this.listeners = new Listeners(options.onListenerError);
    try {
      // `timeout` is SQLite's busy_timeout; it is in force before the first statement, including the pragmas.
      this.db = new Database(this.path, { timeout: this.busyTimeoutMs });
    } catch (error) {
      throw openFailure(this.path, error);
    }
    try {
      configure(this.db);
      migrateSqlite(this.db, { path: this.path });
      this.sql = prepareStatements(this.db);
    } catch (error) {
      this.db.close();
      if (error instanceof RunwardenError) throw error;
      if (isBusy(error)) throw this.translate(error);
      throw openFailure(this.path, error);
    }
  }

  async createRun(run: CreateRunInput): Promise<RunRecord> {
    return this.guard(() => {
      const record = planCreate(run, this.clock.now());
      return this.write(() => {
        const row = this.sql.insertRun.get(
          record.runId,
          JSON.stringify(record.tags),
          record.createdAt,
          record.updatedAt,
        ) as RunRow | undefined;
        if (!row) throw new DuplicateRunError(record.runId);
        return { result: toRecord(row), events: [] };
      });
    });
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    return this.guard(() => {
      const row = this.sql.getRun.get(runId) as RunRow | undefined;
      return row && toRecord(row);
    });
  }

  async listRuns(filter: ListRunsFilter = {}): Promise<RunRecord[]> {
    return this.guard(() => {
      const { statuses, limit, afterRunId } = filter;
      const size = pageSize(limit);
      if (statuses?.length === 0 || size === 0) return [];
      // Every run id is non-empty, so '' lists from the start and keeps the query a plain range on the key.
      const after = afterRunId ?? '';
      const max = sqlLimit(size);
      const wanted = wantedTags(filter.tags);
      const tags = wanted && JSON.stringify(wanted);
      const rows = (
        tags
          ? this.sql.listRunsByStatusAndTags.all(JSON.stringify(statuses ?? RUN_STATUSES), tags, after, max)
          : statuses
            ? this.sql.listRunsByStatus.all(JSON.stringify(statuses), after, max)
            : this.sql.listRuns.all(after, max)
      ) as RunRow[];
      return rows.map(toRecord);
    });
  }

  async transition(runId: string, change: TransitionChange): Promise<RunRecord | undefined> {
    return this.guard(() =>
      this.write(() => {
        const row = this.sql.getRun.get(runId) as RunRow | undefined;
        if (!row) throw new RunNotFoundError(runId);
        this.fence(runId, change.lease);
        const plan = planTransition(toRecord(row), change, this.clock.now());
        if (!plan) return { result: undefined, events: [] };
        const { record } = plan;
        this.sql.updateRun.run(
          record.status,
          JSON.stringify(record.tags),
          record.updatedAt,
          record.queuedAt ?? null,
          record.launchedAt ?? null,
          record.startedAt ?? null,
          record.cancelingAt ?? null,
          record.endedAt ?? null,
          runId,
        );
        return { result: record, events: [this.insertEvent(runId, plan.event)] };
      }),
    );
  }

  async appendEvent(runId: string, event: EngineEventInput): Promise<RunEvent> {
    return this.guard(() => {
      const planned = planEngineEvent(event, this.clock.now());
      return this.write(() => {
        this.fenceEventWriter(runId, event.attempt);
        this.fence(runId, event.lease);
        const row = this.insertEvent(runId, planned);
        return { result: toEvent(row), events: [row] };
      });
    });
  }

  async getEvents(runId: string, filter: { types?: RunEventType[] } = {}): Promise<RunEvent[]> {
    return this.guard(() =>
      // One read transaction: the existence check and the list see the same snapshot.
      this.db.transaction(() => {
        if (!this.sql.runExists.get(runId)) throw new RunNotFoundError(runId);
        if (filter.types?.length === 0) return [];
        const rows = (
          filter.types
            ? this.sql.eventsOfRunByType.all(runId, JSON.stringify(filter.types))
            : this.sql.eventsOfRun.all(runId)
        ) as EventRow[];
        return rows.map(toEvent);
      })(),
    );
  }

  async incrementResumeAttempts(runId: string, options: FencedWrite = {}): Promise<number> {
    return this.guard(() =>
      this.write(() => {
        if (options.lease !== undefined && !this.sql.runExists.get(runId)) throw new RunNotFoundError(runId);
        this.fence(runId, options.lease);
        const row = this.sql.incrementResumeAttempts.get(this.clock.now(), runId) as
          { resume_attempts: number } | undefined;
        if (!row) throw new RunNotFoundError(runId);
        return { result: row.resume_attempts, events: [] };
      }),
    );
  }

  async setTags(runId: string, tags: Record<string, string>, options: FencedWrite = {}): Promise<RunRecord> {
    return this.guard(() =>
      this.write(() => {
        const row = this.sql.getRun.get(runId) as RunRow | undefined;
        if (!row) throw new RunNotFoundError(runId);
        this.fence(runId, options.lease);
        const record = planSetTags(toRecord(row), tags, this.clock.now());
        this.sql.updateTags.run(JSON.stringify(record.tags), record.updatedAt, runId);
        return { result: record, events: [] };
      }),
    );
  }

  async heartbeat(runId: string, beat: HeartbeatInput = {}): Promise<RunRecord> {
    return this.guard(() =>
      this.write(() => {
        const row = this.sql.getRun.get(runId) as RunRow | undefined;
        if (!row) throw new RunNotFoundError(runId);
        const current = toRecord(row);
        const record = planHeartbeat(current, beat, this.clock.now());
        if (record) this.sql.updateHeartbeat.run(record.heartbeatAt, record.progressAt ?? null, runId);
        return { result: record ?? current, events: [] };
      }),
    );
  }

  subscribe(listener: (event: RunEvent) => void): () => void {
    return this.listeners.add(listener);
  }

  async readEventsAfter(seq: number, limit: number): Promise<RunEvent[]> {
    return this.guard(() => {
      const size = pageSize(limit);
      if (size === 0) return [];
      return (this.sql.eventsAfter.all(seq, sqlLimit(size)) as EventRow[]).map(toEvent);
    });
  }

  /** The highest seq written so far by anyone (0 when there is none): where a new follower starts. */
  async latestSeq(): Promise<number> {
    return this.guard(() => (this.sql.latestSeq.get() as { seq: number | null }).seq ?? 0);
  }

  /**
   * Copies the database to `destination` with SQLite's online backup API: consistent, and safe while the
   * monitor and workers keep writing.
   */
  async backup(destination: string): Promise<void> {
    this.guard(() => undefined);
    try {
      await this.db.backup(destination);
    } catch (error) {
      throw this.translate(error);
    }
  }

  async close(): Promise<void> {
    this.listeners.clear();
    if (this.db.open) this.db.close();
  }

  /** Inside appendEvent's transaction: the run must exist and, for a worker's event, not have moved past its attempt. */
  private fenceEventWriter(runId: string, attempt: number | undefined): void {
    if (attempt === undefined) {
      // The monitor's events: only existence matters, and the cheaper check does for it.
      if (!this.sql.runExists.get(runId)) throw new RunNotFoundError(runId);
      return;
    }
    const row = this.sql.getRun.get(runId) as RunRow | undefined;
    if (!row) throw new RunNotFoundError(runId);
    fenceWriter(toRecord(row), attempt);
  }

  async renewLeases(monitor: MonitorIdentity, leaseMs: number): Promise<Lease[]> {
    return this.guard(() =>
      this.write(() => {
        const plan = planRenewal(this.readLeaseState(), monitor, leaseMs, this.clock.now());
        for (const id of plan.deadMonitorIds) this.sql.deleteMonitor.run(id);
        const m = plan.monitor;
        this.sql.upsertMonitor.run(m.monitorId, m.host, m.pid, m.startedAt, m.renewedAt, m.expiresAt);
        for (const r of plan.leases) this.sql.upsertLease.run(r.partition, r.monitorId, r.epoch, r.expiresAt);
        return { result: plan.held, events: [] };
      }),
    );
  }

  async releaseLeases(monitorId: string): Promise<void> {
    return this.guard(() =>
      this.write(() => {
        for (const r of planRelease(this.readLeaseState().leases, monitorId)) {
          this.sql.upsertLease.run(r.partition, r.monitorId, r.epoch, r.expiresAt);
        }
        this.sql.deleteMonitor.run(monitorId);
        return { result: undefined, events: [] };
      }),
    );
  }

  async listMonitors(): Promise<MonitorInfo[]> {
    return this.guard(() =>
      // One read transaction: the monitors, their leases and the runs they own are one snapshot.
      this.db.transaction(() => {
        const active = this.sql.activeRunIds.all(JSON.stringify(ACTIVE_STATUSES)) as { run_id: string }[];
        return describeMonitors(
          this.readLeaseState(),
          active.map((r) => r.run_id),
          this.clock.now(),
        );
      })(),
    );
  }

  private readLeaseState(): { monitors: MonitorRow[]; leases: LeaseRow[] } {
    const monitors = (this.sql.allMonitors.all() as MonitorDbRow[]).map(toMonitorRow);
    const leases = (this.sql.allLeases.all() as LeaseDbRow[]).map(toLeaseRow);
    return { monitors, leases };
  }

  /** The lease check of a monitor's write, inside the write's transaction, before anything is written. */
  private fence(runId: string, lease: LeaseToken | undefined): void {
    if (lease === undefined) return;
    const row = this.sql.getLease.get(partitionOf(runId)) as LeaseDbRow | undefined;
    checkLease(runId, lease, row && toLeaseRow(row));
  }

  private insertEvent(runId: string, event: PlannedEvent): EventRow {
    return this.sql.insertEvent.get(
      runId,
      event.at,
      event.type,
      event.message,
      event.dataJson ?? null,
    ) as EventRow;
  }

  /** Runs `fn` in a BEGIN IMMEDIATE transaction, then tells subscribers about the events it committed. */
  private write<T>(fn: () => { result: T; events: EventRow[] }): T {
    // IMMEDIATE takes the write lock up front, so the busy timeout covers the whole wait: a deferred
    // transaction that read first could fail with SQLITE_BUSY_SNAPSHOT when it tried to write.
    const { result, events } = this.db.transaction(fn).immediate();
    for (const row of events) this.listeners.deliver(() => toEvent(row));
    return result;
  }

  private guard<T>(fn: () => T): T {
    if (!this.db.open) throw storeClosedError(`SQLite run store ${this.path}`);
    try {
      return fn();
    } catch (error) {
      throw this.translate(error);
    }
  }

  private translate(error: unknown): unknown {
    return isBusy(error) ? new StoreBusyError(this.path, this.busyTimeoutMs, { cause: error }) : error;
  }
}

function configure(db: Database.Database): void {
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  // An in-memory database reports "memory"; anything else means readers would block writers.
  if (mode !== 'wal' && !db.memory) {
    throw new Error(`the file could not be switched to WAL mode (it is in ${String(mode)} mode)`);
  }
  // NORMAL in WAL mode: a crash of the process loses nothing; a power loss may lose the last commits.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
}

/** SQLite reads LIMIT -1 as "no limit". */
function sqlLimit(size: number): number {
  return size === Number.POSITIVE_INFINITY ? -1 : size;
}

// In RunRow's order.
const RUN_COLUMNS =
  'run_id, status, tags, created_at, updated_at, queued_at, launched_at, started_at, canceling_at, ended_at, resume_attempts, heartbeat_at, progress_at';

function prepareStatements(db: Database.Database) {
  // Statements that read runs hand back RunRow arrays.
  const runs = (sql: string) => db.prepare(sql).raw(true);
  return {
    // DO NOTHING + RETURNING: no row back means the id was taken.
    insertRun: runs(
      `INSERT INTO runs (run_id, status, tags, created_at, updated_at) VALUES (?, 'NOT_STARTED', ?, ?, ?)
       ON CONFLICT (run_id) DO NOTHING RETURNING ${RUN_COLUMNS}`,
    ),
    getRun: runs(`SELECT ${RUN_COLUMNS} FROM runs WHERE run_id = ?`),
    runExists: db.prepare('SELECT 1 FROM runs WHERE run_id = ?'),
    listRuns: runs(`SELECT ${RUN_COLUMNS} FROM runs WHERE run_id > ? ORDER BY run_id LIMIT ?`),
    listRunsByStatus: runs(
      `SELECT ${RUN_COLUMNS} FROM runs
       WHERE status IN (SELECT value FROM json_each(?)) AND run_id > ?
       ORDER BY run_id LIMIT ?`,
    ),
    // Every wanted tag present with exactly the wanted value.
    listRunsByStatusAndTags: runs(
      `SELECT ${RUN_COLUMNS} FROM runs
       WHERE status IN (SELECT value FROM json_each(?))
         AND NOT EXISTS (SELECT 1 FROM json_each(?) AS want
                         WHERE NOT EXISTS (SELECT 1 FROM json_each(runs.tags) AS have
                                           WHERE have.key = want.key AND have.value = want.value))
         AND run_id > ?
       ORDER BY run_id LIMIT ?`,
    ),
    updateRun: db.prepare(
      `UPDATE runs SET status = ?, tags = ?, updated_at = ?, queued_at = ?, launched_at = ?, started_at = ?,
       canceling_at = ?, ended_at = ? WHERE run_id = ?`,
    ),
    updateTags: db.prepare('UPDATE runs SET tags = ?, updated_at = ? WHERE run_id = ?'),
    updateHeartbeat: db.prepare('UPDATE runs SET heartbeat_at = ?, progress_at = ? WHERE run_id = ?'),
    incrementResumeAttempts: db.prepare(
      'UPDATE runs SET resume_attempts = resume_attempts + 1, updated_at = ? WHERE run_id = ? RETURNING resume_attempts',
    ),
    insertEvent: db.prepare(
      `INSERT INTO events (run_id, at, type, message, data) VALUES (?, ?, ?, ?, ?) RETURNING ${EVENT_COLUMNS}`,
    ),
    eventsOfRun: db.prepare(`SELECT ${EVENT_COLUMNS} FROM events WHERE run_id = ? ORDER BY seq`),
    eventsOfRunByType: db.prepare(
      `SELECT ${EVENT_COLUMNS} FROM events WHERE run_id = ? AND type IN (SELECT value FROM json_each(?)) ORDER BY seq`,
    ),
    // Commits are serialised by the write lock and a seq is taken inside it, so a reader never sees seq n+1
    // before seq n: following the tail by "seq > last seen" cannot skip an event.
    eventsAfter: db.prepare(`SELECT ${EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?`),
    latestSeq: db.prepare('SELECT MAX(seq) AS seq FROM events'),
    // Several monitors (migration 3).
    allMonitors: db.prepare(
      'SELECT monitor_id, host, pid, started_at, renewed_at, expires_at FROM monitors ORDER BY monitor_id',
    ),
    upsertMonitor: db.prepare(
      `INSERT INTO monitors (monitor_id, host, pid, started_at, renewed_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (monitor_id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
         started_at = excluded.started_at, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at`,
    ),
    deleteMonitor: db.prepare('DELETE FROM monitors WHERE monitor_id = ?'),
    allLeases: db.prepare('SELECT partition, monitor_id, epoch, expires_at FROM leases ORDER BY partition'),
    getLease: db.prepare('SELECT partition, monitor_id, epoch, expires_at FROM leases WHERE partition = ?'),
    upsertLease: db.prepare(
      `INSERT INTO leases (partition, monitor_id, epoch, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (partition) DO UPDATE SET monitor_id = excluded.monitor_id, epoch = excluded.epoch,
         expires_at = excluded.expires_at`,
    ),
    activeRunIds: db.prepare('SELECT run_id FROM runs WHERE status IN (SELECT value FROM json_each(?))'),
  };
}

function isBusy(error: unknown): boolean {
  // SQLITE_BUSY and its extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_RECOVERY, SQLITE_BUSY_TIMEOUT).
  return error instanceof Database.SqliteError && error.code.startsWith('SQLITE_BUSY');
}

function toRecord(row: RunRow): RunRecord {
  const record: RunRecord = {
    runId: row[0],
    status: row[1],
    tags: parseTags(row[2]),
    createdAt: row[3],
    updatedAt: row[4],
    resumeAttempts: row[10],
  };
  // Absent, not undefined-valued, like the memory store.
  if (row[5] !== null) record.queuedAt = row[5];
  if (row[6] !== null) record.launchedAt = row[6];
  if (row[7] !== null) record.startedAt = row[7];
  if (row[8] !== null) record.cancelingAt = row[8];
  if (row[9] !== null) record.endedAt = row[9];
  if (row[11] !== null) record.heartbeatAt = row[11];
  if (row[12] !== null) record.progressAt = row[12];
  return record;
}

function toEvent(row: EventRow): RunEvent {
  const { run_id: runId, seq, at, type, message, data } = row;
  return toRunEvent({ runId, seq, at, type, message, dataJson: data ?? undefined });
}

function parseTags(text: string): Record<string, string> {
  // Most runs have no tags: a literal is cheaper than parsing "{}".
  if (text === '{}') return {};
  // JSON.parse defines keys as own data properties, so a "__proto__" tag stays an ordinary key.
  return JSON.parse(text) as Record<string, string>;
}
