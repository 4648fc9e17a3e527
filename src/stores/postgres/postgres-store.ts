// A RunStore in PostgreSQL, shared by any number of monitors and run workers on any hosts. The rules are the
// shared ones in ../contract.ts; this class only stores. The `pg` driver is imported the first time a store
// built from a connection string is used, so programs that never use PostgreSQL never load it.
import { createHash, randomUUID } from 'node:crypto';
import { DuplicateRunError, RunNotFoundError, RunwardenError } from '../../core/errors.js';
import {
  checkLease,
  describeMonitors,
  fenceWriter,
  type LeaseRow,
  type ListenerErrorHandler,
  Listeners,
  type MonitorRow,
  partitionOf,
  planRelease,
  planRenewal,
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
  type HeartbeatInput,
  type Lease,
  type LeaseToken,
  type ListRunsFilter,
  type MonitorIdentity,
  type MonitorInfo,
  type RunEvent,
  type RunEventType,
  type RunRecord,
  type RunStatus,
  type RunStore,
  type TransitionChange,
} from '../../core/types.js';
import { redactCredentials } from '../redact.js';
import { connectionFailure } from './connection-error.js';
import { migratePostgres, quoteIdent, validateSchemaName } from './migrations.js';
import { type ListenConnection, NotifyListener } from './notify-listener.js';
import type { PostgresClient, PostgresPool } from './pg-types.js';

/** Where the store's database is: a connection string (the store makes its own pool) or a pool you own. */
export type PostgresConnection = { connectionString: string } | { pool: PostgresPool };

export interface PostgresRunStoreOptions {
  /** The schema holding the store's tables, created and migrated on first use. Default `runwarden`. */
  schema?: string;
  /** Source of the default `at`; tests pass a simulated clock. Default: real time. */
  clock?: { now(): number };
  /** Called when a subscriber throws; the write has already committed, so it is not failed. Default: drop. */
  onListenerError?: ListenerErrorHandler;
  /** Connections in the store's own pool (with a connection string). Default 10. */
  poolSize?: number;
  /** How long to wait for a new connection before giving up, in ms (with a connection string). Default 10000. */
  connectTimeoutMs?: number;
  /** `application_name` of the store's connections (with a connection string). Default `runwarden`. */
  applicationName?: string;
  /**
   * The server ends a write transaction of this store that waits longer than this for its next statement,
   * releasing its locks (idle_in_transaction_session_timeout, set per transaction). A process paused in the
   * middle of a write (SIGSTOP, a GC pause, a frozen VM) would otherwise hold the run's row, the event
   * counter or the lease lock, and stall every other writer and monitor until it continued. Default 5000.
   */
  idleInTransactionTimeoutMs?: number;
}

interface RunRow {
  run_id: string;
  status: RunStatus;
  tags: Record<string, string>;
  created_at: number;
  updated_at: number;
  queued_at: number | null;
  launched_at: number | null;
  started_at: number | null;
  canceling_at: number | null;
  ended_at: number | null;
  resume_attempts: number;
  heartbeat_at: number | null;
  progress_at: number | null;
}

interface EventRow {
  /** bigint: pg hands it over as a string. */
  seq: string;
  run_id: string;
  at: number;
  type: RunEventType;
  message: string;
  data: string | null;
}

const RUN_COLUMNS =
  'run_id, status, tags, created_at, updated_at, queued_at, launched_at, started_at, canceling_at, ended_at, resume_attempts, heartbeat_at, progress_at';
const EVENT_COLUMNS = 'seq, run_id, at, type, message, data';
const DEFAULT_SCHEMA = 'runwarden';

/**
 * A RunStore in a PostgreSQL schema. Every write is one transaction: the run's row is locked (FOR NO KEY
 * UPDATE), the shared plan decides, the record and its event are written together. An event takes its seq
 * from a one-row counter updated in the same transaction, so seqs have no gaps and commit in seq order: a
 * follower reading "seq > last seen" can never skip one. Commits NOTIFY the schema's channel, which wakes
 * other processes' feeds at once (onRemoteWrite). See docs/storage.md.
 */
export class PostgresRunStore implements RunStore {
  /** The schema the tables live in. */
  readonly schema: string;
  /** The store's location for messages: the URL with its password masked, or "(pool)". */
  readonly location: string;
  readonly #connection: PostgresConnection;
  readonly #options: PostgresRunStoreOptions;
  readonly #clock: { now(): number };
  readonly #listeners: Listeners;
  readonly #sql: ReturnType<typeof statements>;
  readonly #channel: string;
  readonly #idleLimitMs: number;
  /** Names this store's writes in their notifications, so its own feed is not woken for them. */
  readonly #origin = randomUUID();
  #pool: PostgresPool | undefined;
  #ready: Promise<PostgresPool> | undefined;
  #notify: NotifyListener | undefined;
  #closed = false;

  /** Connects and migrates now, so a wrong URL fails here rather than on the first call. */
  static async open(
    connection: PostgresConnection,
    options: PostgresRunStoreOptions = {},
  ): Promise<PostgresRunStore> {
    const store = new PostgresRunStore(connection, options);
    try {
      await store.latestSeq();
    } catch (error) {
      await store.close();
      throw error;
    }
    return store;
  }

  constructor(connection: PostgresConnection, options: PostgresRunStoreOptions = {}) {
    this.#connection = checkConnection(connection);
    this.#options = options;
    this.schema = validateSchemaName(options.schema ?? DEFAULT_SCHEMA);
    this.location =
      'connectionString' in connection ? redactCredentials(connection.connectionString) : '(pool)';
    this.#clock = options.clock ?? Date;
    this.#listeners = new Listeners(options.onListenerError);
    this.#sql = statements(quoteIdent(this.schema));
    this.#channel = channelOf(this.schema);
    this.#idleLimitMs = checkIdleLimit(options.idleInTransactionTimeoutMs ?? 5_000);
  }

  async createRun(run: CreateRunInput): Promise<RunRecord> {
    const record = planCreate(run, this.#clock.now());
    return this.#transaction(async (client) => {
      const { rows } = await client.query<RunRow>(this.#sql.insertRun, [
        record.runId,
        JSON.stringify(record.tags),
        record.createdAt,
        record.updatedAt,
      ]);
      if (rows.length === 0) throw new DuplicateRunError(record.runId);
      return { result: toRecord(rows[0]!) };
    });
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const { rows } = await this.#query<RunRow>(this.#sql.getRun, [runId]);
    return rows[0] && toRecord(rows[0]);
  }

  async listRuns(filter: ListRunsFilter = {}): Promise<RunRecord[]> {
    const { statuses, limit, afterRunId } = filter;
    const size = pageSize(limit);
    const wanted = wantedTags(filter.tags);
    if (statuses?.length === 0 || size === 0) return [];
    const { rows } = await this.#query<RunRow>(this.#sql.listRuns, [
      afterRunId ?? '',
      statuses ?? null,
      wanted ? JSON.stringify(wanted) : null,
      size === Number.POSITIVE_INFINITY ? null : size,
    ]);
    return rows.map(toRecord);
  }

  async transition(runId: string, change: TransitionChange): Promise<RunRecord | undefined> {
    return this.#transaction(async (client) => {
      const current = await this.#lockRun(client, runId);
      await this.#fence(client, runId, change.lease);
      const plan = planTransition(current, change, this.#clock.now());
      if (!plan) return { result: undefined };
      const { record } = plan;
      await client.query(this.#sql.updateRun, [
        runId,
        record.status,
        JSON.stringify(record.tags),
        record.updatedAt,
        record.queuedAt ?? null,
        record.launchedAt ?? null,
        record.startedAt ?? null,
        record.cancelingAt ?? null,
        record.endedAt ?? null,
      ]);
      const event = await this.#insertEvent(client, runId, plan.event);
      return { result: record, event };
    });
  }

  async appendEvent(runId: string, event: EngineEventInput): Promise<RunEvent> {
    const planned = planEngineEvent(event, this.#clock.now());
    return this.#transaction(async (client) => {
      if (event.attempt === undefined) {
        // KEY SHARE: the lock the event's foreign key check takes anyway; it never waits on a write to
        // the run's row.
        const { rowCount } = await client.query(this.#sql.shareRun, [runId]);
        if (!rowCount) throw new RunNotFoundError(runId);
      } else {
        // A worker's event: its attempt against resumeAttempts, locked as incrementResumeAttempts locks it.
        fenceWriter(await this.#lockRun(client, runId), event.attempt);
      }
      await this.#fence(client, runId, event.lease);
      const row = await this.#insertEvent(client, runId, planned);
      return { result: toEvent(row), event: row };
    });
  }

  async getEvents(runId: string, filter: { types?: RunEventType[] } = {}): Promise<RunEvent[]> {
    const { rows } = await this.#query<EventRow & { found: boolean }>(this.#sql.eventsOfRun, [
      runId,
      filter.types ?? null,
    ]);
    // One row with found = false: the run does not exist; a row with a null seq: it has no such event.
    if (rows.length === 0 || !rows[0]!.found) throw new RunNotFoundError(runId);
    return rows.filter((row) => row.seq !== null).map(toEvent);
  }

  async incrementResumeAttempts(runId: string, options: FencedWrite = {}): Promise<number> {
    if (options.lease !== undefined) {
      return this.#transaction(async (client) => {
        await this.#lockRun(client, runId);
        await this.#fence(client, runId, options.lease);
        const { rows } = await client.query<{ resume_attempts: number }>(this.#sql.incrementResumeAttempts, [
          runId,
          this.#clock.now(),
        ]);
        return { result: rows[0]!.resume_attempts };
      });
    }
    const { rows } = await this.#query<{ resume_attempts: number }>(this.#sql.incrementResumeAttempts, [
      runId,
      this.#clock.now(),
    ]);
    if (rows.length === 0) throw new RunNotFoundError(runId);
    return rows[0]!.resume_attempts;
  }

  async setTags(runId: string, tags: Record<string, string>, options: FencedWrite = {}): Promise<RunRecord> {
    return this.#transaction(async (client) => {
      const current = await this.#lockRun(client, runId);
      await this.#fence(client, runId, options.lease);
      const record = planSetTags(current, tags, this.#clock.now());
      await client.query(this.#sql.updateTags, [runId, JSON.stringify(record.tags), record.updatedAt]);
      return { result: record };
    });
  }

  async heartbeat(runId: string, beat: HeartbeatInput = {}): Promise<RunRecord> {
    return this.#transaction(async (client) => {
      const current = await this.#lockRun(client, runId);
      const record = planHeartbeat(current, beat, this.#clock.now());
      if (record) {
        await client.query(this.#sql.updateHeartbeat, [runId, record.heartbeatAt, record.progressAt ?? null]);
      }
      return { result: record ?? current };
    });
  }

  async renewLeases(monitor: MonitorIdentity, leaseMs: number): Promise<Lease[]> {
    return this.#transaction(async (client) => {
      const plan = planRenewal(await this.#leaseState(client), monitor, leaseMs, this.#clock.now());
      if (plan.deadMonitorIds.length > 0) await client.query(this.#sql.deleteMonitors, [plan.deadMonitorIds]);
      const m = plan.monitor;
      await client.query(this.#sql.upsertMonitor, [
        m.monitorId,
        m.host,
        m.pid,
        m.startedAt,
        m.renewedAt,
        m.expiresAt,
      ]);
      await this.#writeLeases(client, plan.leases);
      return { result: plan.held };
    });
  }

  async releaseLeases(monitorId: string): Promise<void> {
    return this.#transaction(async (client) => {
      await this.#writeLeases(client, planRelease((await this.#leaseState(client)).leases, monitorId));
      await client.query(this.#sql.deleteMonitors, [[monitorId]]);
      return { result: undefined };
    });
  }

  async listMonitors(): Promise<MonitorInfo[]> {
    return this.#transaction(async (client) => {
      // One snapshot for the monitors, their leases and the runs they own.
      await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const state = await this.#leaseState(client, false);
      const active = await client.query<{ run_id: string }>(this.#sql.activeRunIds, [ACTIVE_STATUSES]);
      return {
        result: describeMonitors(
          state,
          active.rows.map((r) => r.run_id),
          this.#clock.now(),
        ),
      };
    });
  }

  subscribe(listener: (event: RunEvent) => void): () => void {
    return this.#listeners.add(listener);
  }

  /**
   * Calls `wake` soon after another store (another process, or another store object in this one) commits an
   * event, through LISTEN/NOTIFY on a connection of its own. This store's own writes reach `subscribe` at
   * once and do not wake it. A hint to read the tail now; the tail stays the truth.
   */
  onRemoteWrite(wake: () => void): () => void {
    this.#checkOpen();
    this.#notify ??= new NotifyListener(
      this.#channel,
      this.#origin,
      () => this.#openListenConnection(),
      () => {
        // A lost LISTEN connection only delays wakes to the next poll; the feed reports store trouble.
      },
    );
    return this.#notify.add(wake);
  }

  async readEventsAfter(seq: number, limit: number): Promise<RunEvent[]> {
    const size = pageSize(limit);
    if (size === 0) return [];
    const { rows } = await this.#query<EventRow>(this.#sql.eventsAfter, [
      // seqs are whole numbers: "after 3.5" is "after 3", and the bigint index still serves it.
      Number.isFinite(seq) ? Math.floor(seq) : seq > 0 ? Number.MAX_SAFE_INTEGER : -1,
      size === Number.POSITIVE_INFINITY ? null : size,
    ]);
    return rows.map(toEvent);
  }

  async latestSeq(): Promise<number> {
    const { rows } = await this.#query<{ last_seq: string }>(this.#sql.latestSeq);
    return Number(rows[0]!.last_seq);
  }

  /** Closes the store's own pool (a pool you passed in stays open: it is yours). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    await this.#notify?.stop();
    const pool = this.#pool;
    this.#pool = undefined;
    if (pool && 'connectionString' in this.#connection) {
      // Connections still starting finish first; a pool that never connected has nothing to end.
      await this.#ready?.catch(() => {});
      await pool.end().catch(() => {});
    }
  }

  // --- plumbing ------------------------------------------------------------------------------------------

  async #lockRun(client: PostgresClient, runId: string): Promise<RunRecord> {
    const { rows } = await client.query<RunRow>(this.#sql.lockRun, [runId]);
    if (rows.length === 0) throw new RunNotFoundError(runId);
    return toRecord(rows[0]!);
  }

  /**
   * Every monitor and lease row. For a renewal or release (`lock`), first the schema's lease lock, so two
   * renewals never plan from the same snapshot; it is held until the transaction ends.
   */
  async #leaseState(
    client: PostgresClient,
    lock = true,
  ): Promise<{ monitors: MonitorRow[]; leases: LeaseRow[] }> {
    if (lock)
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`runwarden.leases.${this.schema}`]);
    const monitors = await client.query<MonitorDbRow>(this.#sql.allMonitors);
    const leases = await client.query<LeaseDbRow>(this.#sql.allLeases);
    return { monitors: monitors.rows.map(toMonitorRow), leases: leases.rows.map(toLeaseRow) };
  }

  async #writeLeases(client: PostgresClient, rows: LeaseRow[]): Promise<void> {
    if (rows.length === 0) return;
    await client.query(this.#sql.upsertLeases, [
      rows.map((r) => r.partition),
      rows.map((r) => r.monitorId),
      rows.map((r) => r.epoch),
      rows.map((r) => r.expiresAt),
    ]);
  }

  /**
   * The lease check of a monitor's write, in the write's transaction before anything is written. FOR SHARE:
   * a renewal that would move this partition waits until the write has committed, and vice versa.
   */
  async #fence(client: PostgresClient, runId: string, lease: LeaseToken | undefined): Promise<void> {
    if (lease === undefined) return;
    const { rows } = await client.query<LeaseDbRow>(this.#sql.shareLease, [partitionOf(runId)]);
    checkLease(runId, lease, rows[0] && toLeaseRow(rows[0]));
  }

  /** Takes the next seq (holding the counter's row lock until commit), inserts the event, notifies. */
  async #insertEvent(client: PostgresClient, runId: string, event: PlannedEvent): Promise<EventRow> {
    const { rows } = await client.query<EventRow>(this.#sql.insertEvent, [
      runId,
      event.at,
      event.type,
      event.message,
      event.dataJson ?? null,
      this.#channel,
      `${this.#origin} `,
    ]);
    return rows[0]!;
  }

  /** One statement on any pooled connection. */
  async #query<Row>(text: string, values?: unknown[]) {
    this.#checkOpen();
    try {
      const pool = await this.#connected();
      return await pool.query<Row>(text, values);
    } catch (error) {
      throw this.#translate(error);
    }
  }

  /** `fn` in one transaction; after the commit, this process's subscribers get the event it wrote. */
  async #transaction<T>(
    fn: (client: PostgresClient) => Promise<{ result: T; event?: EventRow }>,
  ): Promise<T> {
    this.#checkOpen();
    let out: { result: T; event?: EventRow };
    try {
      const pool = await this.#connected();
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        // One round trip: the transaction and its idle limit.
        await client.query(`BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${this.#idleLimitMs}`);
        try {
          out = await fn(client);
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch((rollbackError: Error) => {
            broken = rollbackError;
          });
          throw error;
        }
      } finally {
        client.release(broken);
      }
    } catch (error) {
      throw this.#translate(error);
    }
    const { event } = out;
    if (event) this.#listeners.deliver(() => toEvent(event));
    return out.result;
  }

  #checkOpen(): void {
    if (this.#closed) throw storeClosedError(`PostgreSQL run store ${this.location}`);
  }

  /** The pool, connected and migrated once; a failure is not cached, so the next call tries again. */
  #connected(): Promise<PostgresPool> {
    this.#ready ??= this.#connect().catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  async #connect(): Promise<PostgresPool> {
    this.#pool ??= await this.#makePool();
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await migratePostgres(client, this.schema, this.location);
    } catch (error) {
      broken = error as Error;
      throw error;
    } finally {
      client.release(broken);
    }
    return this.#pool;
  }

  async #makePool(): Promise<PostgresPool> {
    if ('pool' in this.#connection) return this.#connection.pool;
    const pg = (await import('pg')).default;
    const pool = new pg.Pool({
      connectionString: this.#connection.connectionString,
      max: this.#options.poolSize ?? 10,
      connectionTimeoutMillis: this.#options.connectTimeoutMs ?? 10_000,
      application_name: this.#options.applicationName ?? 'runwarden',
      keepAlive: true,
    });
    // An idle connection that dies (server restart) must not crash the process: the next query reconnects.
    pool.on('error', () => {});
    return pool;
  }

  async #openListenConnection(): Promise<ListenConnection> {
    if ('pool' in this.#connection) {
      const client = (await this.#connection.pool.connect()) as PostgresClient &
        Omit<ListenConnection, 'close'>;
      return Object.assign(client, {
        // Discarded, not reused: a pooled session must not keep LISTENing for someone else.
        close: async () => client.release(true),
      });
    }
    const pg = (await import('pg')).default;
    const client = new pg.Client({
      connectionString: this.#connection.connectionString,
      connectionTimeoutMillis: this.#options.connectTimeoutMs ?? 10_000,
      application_name: this.#options.applicationName ?? 'runwarden',
      keepAlive: true,
    });
    client.on('error', () => {});
    await client.connect();
    return Object.assign(client, { close: () => client.end() });
  }

  #translate(error: unknown): unknown {
    if (error instanceof RunwardenError) return error;
    return connectionFailure(this.location, error) ?? error;
  }
}

function checkIdleLimit(ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1) {
    throw new RunwardenError(
      'INVALID_STORE_OPTION',
      `idleInTransactionTimeoutMs must be a whole number of milliseconds >= 1; got ${String(ms)}.`,
    );
  }
  return ms;
}

function checkConnection(connection: unknown): PostgresConnection {
  const given = connection as Partial<{ connectionString: unknown; pool: unknown }> | null;
  if (given !== null && typeof given === 'object') {
    if (typeof given.connectionString === 'string' && given.connectionString.trim() !== '') {
      return connection as PostgresConnection;
    }
    const pool = given.pool as Partial<PostgresPool> | undefined;
    if (pool && typeof pool.connect === 'function' && typeof pool.query === 'function') {
      return connection as PostgresConnection;
    }
  }
  throw new RunwardenError(
    'INVALID_STORE_CONNECTION',
    'PostgresRunStore takes { connectionString: "postgres://user@host:5432/database" } or { pool } (a pg.Pool).',
  );
}

/** The NOTIFY channel of a schema: readable when it fits PostgreSQL's 63-byte names, else hashed. */
function channelOf(schema: string): string {
  const plain = `runwarden_events_${schema}`;
  if (plain.length <= 63) return plain;
  return `runwarden_events_${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`;
}

function statements(s: string) {
  return {
    insertRun: `INSERT INTO ${s}.runs (run_id, status, tags, created_at, updated_at)
      VALUES ($1, 'NOT_STARTED', $2::jsonb, $3, $4) ON CONFLICT (run_id) DO NOTHING RETURNING ${RUN_COLUMNS}`,
    getRun: `SELECT ${RUN_COLUMNS} FROM ${s}.runs WHERE run_id = $1`,
    // NO KEY UPDATE: the key never changes, and events' foreign keys (KEY SHARE) need not wait on it.
    lockRun: `SELECT ${RUN_COLUMNS} FROM ${s}.runs WHERE run_id = $1 FOR NO KEY UPDATE`,
    shareRun: `SELECT 1 FROM ${s}.runs WHERE run_id = $1 FOR KEY SHARE`,
    listRuns: `SELECT ${RUN_COLUMNS} FROM ${s}.runs
      WHERE run_id > $1
        AND ($2::text[] IS NULL OR status = ANY ($2::text[]))
        AND ($3::jsonb IS NULL OR tags @> $3::jsonb)
      ORDER BY run_id LIMIT $4`,
    updateRun: `UPDATE ${s}.runs SET status = $2, tags = $3::jsonb, updated_at = $4, queued_at = $5,
      launched_at = $6, started_at = $7, canceling_at = $8, ended_at = $9 WHERE run_id = $1`,
    updateTags: `UPDATE ${s}.runs SET tags = $2::jsonb, updated_at = $3 WHERE run_id = $1`,
    updateHeartbeat: `UPDATE ${s}.runs SET heartbeat_at = $2, progress_at = $3 WHERE run_id = $1`,
    incrementResumeAttempts: `UPDATE ${s}.runs SET resume_attempts = resume_attempts + 1, updated_at = $2
      WHERE run_id = $1 RETURNING resume_attempts`,
    // The counter's row stays locked until this transaction commits: the next writer's seq waits for our
    // commit, so no reader can see seq n+1 without seq n. NOTIFY is delivered at commit too.
    insertEvent: `WITH next AS (
        UPDATE ${s}.event_counter SET last_seq = last_seq + 1 RETURNING last_seq
      )
      INSERT INTO ${s}.events (seq, run_id, at, type, message, data)
      SELECT next.last_seq, $1, $2, $3, $4, $5 FROM next, LATERAL (SELECT pg_notify($6, $7 || next.last_seq)) n
      RETURNING ${EVENT_COLUMNS}`,
    // One query for existence and events: the run's row is always there, joined to its events (if any).
    eventsOfRun: `SELECT true AS found, e.seq, e.run_id, e.at, e.type, e.message, e.data
      FROM ${s}.runs r LEFT JOIN ${s}.events e ON e.run_id = r.run_id AND ($2::text[] IS NULL OR e.type = ANY ($2::text[]))
      WHERE r.run_id = $1 ORDER BY e.seq`,
    eventsAfter: `SELECT ${EVENT_COLUMNS} FROM ${s}.events WHERE seq > $1 ORDER BY seq LIMIT $2`,
    latestSeq: `SELECT last_seq FROM ${s}.event_counter`,
    // Several monitors (migration 2).
    allMonitors: `SELECT monitor_id, host, pid, started_at, renewed_at, expires_at FROM ${s}.monitors
      ORDER BY monitor_id`,
    upsertMonitor: `INSERT INTO ${s}.monitors (monitor_id, host, pid, started_at, renewed_at, expires_at)
      VALUES ($1, $2, $3, $4, $5, $6)
      ON CONFLICT (monitor_id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
        started_at = excluded.started_at, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at`,
    deleteMonitors: `DELETE FROM ${s}.monitors WHERE monitor_id = ANY ($1::text[])`,
    allLeases: `SELECT partition, monitor_id, epoch, expires_at FROM ${s}.leases ORDER BY partition`,
    shareLease: `SELECT partition, monitor_id, epoch, expires_at FROM ${s}.leases WHERE partition = $1 FOR SHARE`,
    upsertLeases: `INSERT INTO ${s}.leases (partition, monitor_id, epoch, expires_at)
      SELECT * FROM unnest($1::integer[], $2::text[], $3::bigint[], $4::float8[])
      ON CONFLICT (partition) DO UPDATE SET monitor_id = excluded.monitor_id, epoch = excluded.epoch,
        expires_at = excluded.expires_at`,
    activeRunIds: `SELECT run_id FROM ${s}.runs WHERE status = ANY ($1::text[])`,
  };
}

function toRecord(row: RunRow): RunRecord {
  const record: RunRecord = {
    runId: row.run_id,
    status: row.status,
    tags: row.tags,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    resumeAttempts: row.resume_attempts,
  };
  // Absent, not undefined-valued, like the other stores.
  if (row.queued_at !== null) record.queuedAt = row.queued_at;
  if (row.launched_at !== null) record.launchedAt = row.launched_at;
  if (row.started_at !== null) record.startedAt = row.started_at;
  if (row.canceling_at !== null) record.cancelingAt = row.canceling_at;
  if (row.ended_at !== null) record.endedAt = row.ended_at;
  if (row.heartbeat_at !== null) record.heartbeatAt = row.heartbeat_at;
  if (row.progress_at !== null) record.progressAt = row.progress_at;
  return record;
}

function toEvent(row: EventRow): RunEvent {
  const { run_id: runId, at, type, message, data } = row;
  return toRunEvent({ runId, seq: Number(row.seq), at, type, message, dataJson: data ?? undefined });
}
