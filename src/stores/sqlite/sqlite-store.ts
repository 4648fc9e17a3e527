import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import {
  DuplicateRunError,
  InvalidTransitionError,
  RunNotFoundError,
  RunwardenError,
} from '../../core/errors.js';
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
  onListenerError?: (error: unknown, event: RunEvent) => void;
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

/** One step of the schema history. Steps are applied in order, each in its own transaction, and never edited once released. */
export interface SqliteMigration {
  version: number;
  description: string;
  up: string | ((db: Database.Database) => void);
}

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
]);

export const SQLITE_SCHEMA_VERSION: number = SQLITE_MIGRATIONS.at(-1)!.version;

/**
 * Brings `db` up to the last version in `migrations` and returns that version. Safe to call from several
 * processes at once: each step re-reads the version under the write lock. Refuses a file whose version is
 * newer than this code knows (an older build must not write into a schema it does not understand).
 */
export function migrateSqlite(
  db: Database.Database,
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

function readSchemaVersion(db: Database.Database): number {
  const table = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
    .get();
  if (!table) return 0;
  const row = db.prepare('SELECT MAX(version) AS version FROM schema_version').get() as {
    version: number | null;
  };
  return row.version ?? 0;
}

interface RunRow {
  run_id: string;
  status: RunStatus;
  tags: string;
  created_at: number;
  updated_at: number;
  queued_at: number | null;
  launched_at: number | null;
  started_at: number | null;
  canceling_at: number | null;
  ended_at: number | null;
  resume_attempts: number;
}

interface EventRow {
  seq: number;
  run_id: string;
  at: number;
  type: RunEventType;
  message: string;
  data: string | null;
}

type TimestampField = 'queuedAt' | 'launchedAt' | 'startedAt' | 'cancelingAt' | 'endedAt';

const EVENT_COLUMNS = 'seq, run_id, at, type, message, data';

/**
 * A RunStore in one SQLite file (better-sqlite3), shared by the monitor and any number of run-worker processes.
 * WAL mode lets readers run while one writer writes; every write is a short BEGIN IMMEDIATE transaction, so
 * writers from different processes queue on the busy timeout instead of failing halfway. See docs/storage.md.
 */
export class SqliteRunStore implements RunStore {
  readonly path: string;
  readonly busyTimeoutMs: number;
  private readonly db: Database.Database;
  private readonly clock: { now(): number };
  private readonly onListenerError: ((error: unknown, event: RunEvent) => void) | undefined;
  private readonly listeners = new Set<(event: RunEvent) => void>();
  private readonly sql: ReturnType<typeof prepareStatements>;

  static open(path: string, options: Omit<SqliteRunStoreOptions, 'path'> = {}): SqliteRunStore {
    return new SqliteRunStore({ ...options, path });
  }

  constructor(options: SqliteRunStoreOptions) {
    this.path = options.path;
    this.busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    this.clock = options.clock ?? Date;
    this.onListenerError = options.onListenerError;
    try {
      // `timeout` is SQLite's busy_timeout; it is in force before the first statement, including the pragmas.
      this.db = new Database(this.path, { timeout: this.busyTimeoutMs });
    } catch (error) {
      throw new RunwardenError(
        'STORE_OPEN_FAILED',
        `Could not open the SQLite run store ${this.path}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    try {
      const mode = this.db.pragma('journal_mode = WAL', { simple: true });
      // An in-memory database reports "memory"; anything else means readers would block writers.
      if (mode !== 'wal' && !this.db.memory) {
        throw new RunwardenError(
          'STORE_OPEN_FAILED',
          `Could not switch the SQLite run store ${this.path} to WAL mode (it is in ${String(mode)} mode).`,
        );
      }
      // NORMAL in WAL mode: a crash of the process loses nothing; a power loss may lose the last commits.
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('foreign_keys = ON');
      migrateSqlite(this.db, { path: this.path });
      this.sql = prepareStatements(this.db);
    } catch (error) {
      this.db.close();
      if (error instanceof RunwardenError) throw error;
      if (isBusy(error)) throw this.translate(error);
      // E.g. "file is not a database": say which file.
      throw new RunwardenError(
        'STORE_OPEN_FAILED',
        `Could not open the SQLite run store ${this.path}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  async createRun(run: CreateRunInput): Promise<RunRecord> {
    return this.guard(() => {
      // Only a missing id is generated: null or '' are caller bugs, not requests for a fresh id.
      const runId = run.runId === undefined ? randomUUID() : run.runId;
      validateRunId(runId);
      const tags = copyTags(run.tags === undefined ? {} : run.tags);
      const at = run.at ?? this.clock.now();
      return this.write(() => {
        const row = this.sql.insertRun.get(runId, JSON.stringify(tags), at, at) as RunRow | undefined;
        if (!row) throw new DuplicateRunError(runId);
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
      if (statuses?.length === 0) return [];
      if (limit !== undefined && !(limit > 0)) return [];
      // SQLite reads LIMIT -1 as "no limit"; a fractional limit rounds up like the memory store's count.
      const max = limit === undefined || limit === Number.POSITIVE_INFINITY ? -1 : Math.ceil(limit);
      // Every run id is non-empty, so '' lists from the start and keeps the query a plain range on the key.
      const after = afterRunId ?? '';
      const rows = (
        statuses
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
        const { to } = change;
        // Refusals are caller bugs and must surface whatever the run's current status is.
        if (change.from) {
          const bad = change.from.filter((s) => !isMove(s, to));
          if (bad.length > 0) throw new InvalidTransitionError(runId, bad, to);
        } else if (!RUN_STATUSES.some((s) => isMove(s, to))) {
          throw new InvalidTransitionError(runId, row.status, to);
        }
        const tags = change.tags === undefined ? undefined : copyTags(change.tags);
        const applies = change.from ? change.from.includes(row.status) : isMove(row.status, to);
        // isMove already refuses terminal statuses; the explicit check keeps that guarantee obvious.
        if (!applies || isTerminal(row.status)) return { result: undefined, events: [] };

        const at = change.at ?? this.clock.now();
        const record = toRecord(row);
        record.status = to;
        record.updatedAt = at;
        const field = STATUS_TIMESTAMP[to] as TimestampField | undefined;
        // Max runtime counts from the first start, across resumes.
        if (field && !(field === 'startedAt' && record.startedAt !== undefined)) record[field] = at;
        if (tags) mergeTags(record.tags, tags);
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
        const type = STATUS_EVENT[to as Exclude<RunStatus, 'NOT_STARTED'>];
        const event = this.sql.insertEvent.get(
          runId,
          at,
          type,
          change.message ?? `Run moved to ${to}.`,
          null,
        ) as EventRow;
        return { result: record, events: [event] };
      }),
    );
  }

  async appendEvent(runId: string, event: EngineEventInput): Promise<RunEvent> {
    return this.guard(() => {
      assertEngineEvent(event);
      const data = serializeData(event.data);
      const at = event.at ?? this.clock.now();
      return this.write(() => {
        if (!this.sql.runExists.get(runId)) throw new RunNotFoundError(runId);
        const row = this.sql.insertEvent.get(runId, at, 'ENGINE_EVENT', event.message, data) as EventRow;
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

  async incrementResumeAttempts(runId: string): Promise<number> {
    return this.guard(() =>
      this.write(() => {
        const row = this.sql.incrementResumeAttempts.get(this.clock.now(), runId) as
          { resume_attempts: number } | undefined;
        if (!row) throw new RunNotFoundError(runId);
        return { result: row.resume_attempts, events: [] };
      }),
    );
  }

  async setTags(runId: string, tags: Record<string, string>): Promise<RunRecord> {
    return this.guard(() =>
      this.write(() => {
        const row = this.sql.getRun.get(runId) as RunRow | undefined;
        if (!row) throw new RunNotFoundError(runId);
        const record = toRecord(row);
        mergeTags(record.tags, copyTags(tags));
        record.updatedAt = this.clock.now();
        this.sql.updateTags.run(JSON.stringify(record.tags), record.updatedAt, runId);
        return { result: record, events: [] };
      }),
    );
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
    return this.guard(() => {
      if (!(limit > 0)) return [];
      const max = limit === Number.POSITIVE_INFINITY ? -1 : Math.ceil(limit);
      return (this.sql.eventsAfter.all(seq, max) as EventRow[]).map(toEvent);
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

  /** Runs `fn` in a BEGIN IMMEDIATE transaction, then tells subscribers about the events it committed. */
  private write<T>(fn: () => { result: T; events: EventRow[] }): T {
    // IMMEDIATE takes the write lock up front, so the busy timeout covers the whole wait: a deferred
    // transaction that read first could fail with SQLITE_BUSY_SNAPSHOT when it tried to write.
    const { result, events } = this.db.transaction(fn).immediate();
    for (const row of events) this.notify(row);
    return result;
  }

  private notify(row: EventRow): void {
    // Iterate a snapshot: a listener may unsubscribe (itself or others) while we deliver.
    for (const listener of [...this.listeners]) {
      try {
        listener(toEvent(row));
      } catch (error) {
        try {
          this.onListenerError?.(error, toEvent(row));
        } catch {
          // The error hook failing is not the write's problem either.
        }
      }
    }
  }

  private guard<T>(fn: () => T): T {
    if (!this.db.open) {
      throw new RunwardenError('STORE_CLOSED', `The SQLite run store ${this.path} has been closed.`);
    }
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

function prepareStatements(db: Database.Database) {
  const runColumns =
    'run_id, status, tags, created_at, updated_at, queued_at, launched_at, started_at, canceling_at, ended_at, resume_attempts';
  return {
    // DO NOTHING + RETURNING: no row back means the id was taken.
    insertRun: db.prepare(
      `INSERT INTO runs (run_id, status, tags, created_at, updated_at) VALUES (?, 'NOT_STARTED', ?, ?, ?)
       ON CONFLICT (run_id) DO NOTHING RETURNING ${runColumns}`,
    ),
    getRun: db.prepare(`SELECT ${runColumns} FROM runs WHERE run_id = ?`),
    runExists: db.prepare('SELECT 1 FROM runs WHERE run_id = ?'),
    listRuns: db.prepare(`SELECT ${runColumns} FROM runs WHERE run_id > ? ORDER BY run_id LIMIT ?`),
    listRunsByStatus: db.prepare(
      `SELECT ${runColumns} FROM runs
       WHERE status IN (SELECT value FROM json_each(?)) AND run_id > ?
       ORDER BY run_id LIMIT ?`,
    ),
    updateRun: db.prepare(
      `UPDATE runs SET status = ?, tags = ?, updated_at = ?, queued_at = ?, launched_at = ?, started_at = ?,
       canceling_at = ?, ended_at = ? WHERE run_id = ?`,
    ),
    updateTags: db.prepare('UPDATE runs SET tags = ?, updated_at = ? WHERE run_id = ?'),
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
  };
}

function isBusy(error: unknown): boolean {
  // SQLITE_BUSY and its extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_RECOVERY, SQLITE_BUSY_TIMEOUT).
  return error instanceof Database.SqliteError && error.code.startsWith('SQLITE_BUSY');
}

function toRecord(row: RunRow): RunRecord {
  const record: RunRecord = {
    runId: row.run_id,
    status: row.status,
    tags: parseTags(row.tags),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    resumeAttempts: row.resume_attempts,
  };
  // Absent, not undefined-valued, like the memory store.
  if (row.queued_at !== null) record.queuedAt = row.queued_at;
  if (row.launched_at !== null) record.launchedAt = row.launched_at;
  if (row.started_at !== null) record.startedAt = row.started_at;
  if (row.canceling_at !== null) record.cancelingAt = row.canceling_at;
  if (row.ended_at !== null) record.endedAt = row.ended_at;
  return record;
}

function toEvent(row: EventRow): RunEvent {
  const event: RunEvent = {
    runId: row.run_id,
    seq: row.seq,
    at: row.at,
    type: row.type,
    message: row.message,
  };
  if (row.data !== null) event.data = JSON.parse(row.data);
  return event;
}

function serializeData(data: unknown): string | null {
  if (data === undefined) return null;
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch (error) {
    throw new RunwardenError(
      'INVALID_EVENT',
      `ENGINE_EVENT data must be JSON-serialisable: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  if (text === undefined) {
    throw new RunwardenError(
      'INVALID_EVENT',
      `ENGINE_EVENT data must be JSON-serialisable; got ${typeof data}.`,
    );
  }
  return text;
}

function parseTags(text: string): Record<string, string> {
  // JSON.parse defines keys as own data properties, so a "__proto__" tag stays an ordinary key.
  return JSON.parse(text) as Record<string, string>;
}

function isMove(from: RunStatus, to: RunStatus): boolean {
  // Guard against strings that are not statuses at all (JS callers, bad casts).
  return Object.hasOwn(ALLOWED_MOVES, from) && ALLOWED_MOVES[from].includes(to);
}
