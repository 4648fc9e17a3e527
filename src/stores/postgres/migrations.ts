// The PostgreSQL store's schema history. Every table lives in the store's own schema (default `runwarden`),
// and `schema_migrations` records which steps were applied. Steps run in order, each in its own transaction,
// under a transaction-level advisory lock, so monitors and workers that start together migrate once.
import { RunwardenError } from '../../core/errors.js';
import { RUN_STATUSES } from '../../core/types.js';
import type { PostgresClient } from './pg-types.js';

interface PostgresMigration {
  version: number;
  description: string;
  /** SQL run with the store's schema first on the search_path. */
  up: string;
}

export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = Object.freeze([
  {
    version: 1,
    description: 'runs, events, the event counter and their indexes',
    up: `
      CREATE TABLE runs (
        -- COLLATE "C": runs are listed in byte order, like the other stores, whatever the database's locale.
        run_id          text COLLATE "C" PRIMARY KEY,
        status          text NOT NULL CHECK (status IN (${RUN_STATUSES.map((s) => `'${s}'`).join(', ')})),
        tags            jsonb NOT NULL DEFAULT '{}',
        -- Epoch ms as float8, like a JS number: exact for every integer ms, and a fractional \`at\` survives.
        created_at      float8 NOT NULL,
        updated_at      float8 NOT NULL,
        queued_at       float8,
        launched_at     float8,
        started_at      float8,
        canceling_at    float8,
        ended_at        float8,
        resume_attempts integer NOT NULL DEFAULT 0,
        heartbeat_at    float8,
        progress_at     float8
      );
      -- The monitor's "runs in watched statuses", listed in run_id order.
      CREATE INDEX runs_status ON runs (status, run_id);

      CREATE TABLE events (
        seq     bigint PRIMARY KEY,
        run_id  text COLLATE "C" NOT NULL REFERENCES runs (run_id),
        at      float8 NOT NULL,
        type    text NOT NULL,
        message text NOT NULL,
        data    text          -- JSON text as written, NULL when the event has none
      );
      CREATE INDEX events_run ON events (run_id, seq);

      -- The one row every event-writing transaction updates to take its seq. The row lock is held until
      -- commit, so seqs are handed out and committed one after the other: no gap, and seq order is commit
      -- order (docs/storage.md, "The change feed").
      CREATE TABLE event_counter (
        id       boolean PRIMARY KEY DEFAULT true CHECK (id),
        last_seq bigint NOT NULL
      );
      INSERT INTO event_counter (id, last_seq) VALUES (true, 0);
    `,
  },
  {
    version: 2,
    description: 'monitors and partition leases (several monitors on one store)',
    up: `
      CREATE TABLE monitors (
        monitor_id text COLLATE "C" PRIMARY KEY,
        host       text NOT NULL,
        pid        integer NOT NULL,
        started_at float8 NOT NULL,
        renewed_at float8 NOT NULL,
        expires_at float8 NOT NULL       -- live until then unless renewed
      );
      -- One row per partition ever leased; a partition without a row is free at epoch 0.
      CREATE TABLE leases (
        partition  integer PRIMARY KEY CHECK (partition >= 0 AND partition < 64),
        monitor_id text COLLATE "C",     -- NULL: free
        epoch      bigint NOT NULL,      -- grows by one whenever the partition changes hands
        expires_at float8 NOT NULL
      );
    `,
  },
]);

const LATEST = POSTGRES_MIGRATIONS.length;

/** `schema` as a quoted identifier; the name was checked by validateSchemaName. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Lower-case letters, digits and underscores, starting with a letter or underscore, at most 63 bytes. */
export function validateSchemaName(schema: unknown): string {
  if (typeof schema !== 'string' || !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new RunwardenError(
      'INVALID_SCHEMA_NAME',
      `A PostgreSQL schema name for the run store must be lower-case letters, digits and underscores, starting with a letter or underscore (at most 63); got ${JSON.stringify(schema)}.`,
    );
  }
  return schema;
}

/**
 * Brings `schema` up to the latest version, creating it when absent, and returns that version. Refuses a
 * schema whose version is newer than this code knows: an older build must not write into tables it does not
 * understand. `where` names the store in errors (its URL, password masked).
 */
export async function migratePostgres(
  client: PostgresClient,
  schema: string,
  where: string,
): Promise<number> {
  const q = quoteIdent(schema);
  // Fast path without a lock: an up-to-date schema is the common case for every worker process.
  if (checkVersion(await readVersion(client, schema), where, schema) === LATEST) return LATEST;
  for (const migration of POSTGRES_MIGRATIONS) {
    await client.query('BEGIN');
    try {
      // One migrator per schema at a time; the lock ends with the transaction.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`runwarden.migrate.${schema}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${q}.schema_migrations (
        version     integer PRIMARY KEY,
        description text NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
      )`);
      // Another process may have applied this step while we waited for the lock.
      if (checkVersion(await readVersion(client, schema), where, schema) < migration.version) {
        await client.query(`SET LOCAL search_path TO ${q}`);
        await client.query(migration.up);
        await client.query(`INSERT INTO ${q}.schema_migrations (version, description) VALUES ($1, $2)`, [
          migration.version,
          migration.description,
        ]);
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }
  return LATEST;
}

function checkVersion(current: number, where: string, schema: string): number {
  if (current > LATEST) {
    throw new RunwardenError(
      'STORE_SCHEMA_TOO_NEW',
      `The PostgreSQL run store ${where} (schema ${schema}) has schema version ${current}, but this version of Runwarden only knows versions up to ${LATEST}. Upgrade Runwarden in every process that uses this store.`,
    );
  }
  return current;
}

async function readVersion(client: PostgresClient, schema: string): Promise<number> {
  const table = await client.query<{ found: string | null }>('SELECT to_regclass($1) AS found', [
    `${quoteIdent(schema)}.schema_migrations`,
  ]);
  if (table.rows[0]?.found == null) return 0;
  const row = await client.query<{ version: number | null }>(
    `SELECT max(version) AS version FROM ${quoteIdent(schema)}.schema_migrations`,
  );
  return row.rows[0]?.version ?? 0;
}
