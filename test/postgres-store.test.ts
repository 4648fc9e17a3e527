import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { POSTGRES_MIGRATIONS } from '../src/stores/postgres/migrations.js';
import { PostgresRunStore } from '../src/stores/postgres/postgres-store.js';
import type { PostgresPool } from '../src/stores/postgres/pg-types.js';
import { describeRunStoreConformance, simulatedClock } from './store-conformance.js';
import { adminQuery, dropSchemas, PG_URL, uniqueSchema } from './postgres.js';

describeRunStoreConformance('PostgresRunStore conformance', async () => {
  const schema = uniqueSchema();
  const clock = simulatedClock();
  const store = new PostgresRunStore({ connectionString: PG_URL }, { schema, clock });
  return {
    store,
    clock,
    cleanup: async () => {
      await store.close();
      await dropSchemas(schema);
    },
  };
});

describe('PostgresRunStore', () => {
  const schemas: string[] = [];
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    await dropSchemas(...schemas.splice(0));
  });

  function newStore(schema = uniqueSchema()): PostgresRunStore {
    schemas.push(schema);
    const store = new PostgresRunStore({ connectionString: PG_URL }, { schema });
    closers.push(() => store.close());
    return store;
  }

  it('creates its schema and records the migration on first use', async () => {
    const store = newStore();
    expect(await store.latestSeq()).toBe(0);
    const rows = await adminQuery<{ version: number }>(
      `SELECT version FROM "${store.schema}".schema_migrations ORDER BY version`,
    );
    expect(rows.map((r) => r.version)).toEqual(POSTGRES_MIGRATIONS.map((m) => m.version));
  });

  it('works on a pool the caller owns, and leaves it open on close', async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    closers.push(() => pool.end());
    const typed: PostgresPool = pool;
    const store = new PostgresRunStore({ pool: typed }, { schema });
    const run = await store.createRun({ runId: 'a' });
    expect(await store.getRun('a')).toEqual(run);
    await store.close();
    expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('refuses a schema from a newer version, naming the store and what to do', async () => {
    const store = newStore();
    await store.latestSeq();
    await adminQuery(
      `INSERT INTO "${store.schema}".schema_migrations (version, description) VALUES (99, 'future')`,
    );
    const again = newStore(store.schema);
    await expect(again.latestSeq()).rejects.toThrow(
      `The PostgreSQL run store ${PG_URL} (schema ${store.schema}) has schema version 99, but this version of Runwarden only knows versions up to ${POSTGRES_MIGRATIONS.length}. Upgrade Runwarden`,
    );
  });

  it('migrates once when many stores open the same new schema at once', async () => {
    const schema = uniqueSchema();
    const stores = Array.from({ length: 5 }, () => newStore(schema));
    expect(await Promise.all(stores.map((s) => s.latestSeq()))).toEqual([0, 0, 0, 0, 0]);
    const rows = await adminQuery(`SELECT version FROM "${schema}".schema_migrations`);
    expect(rows).toHaveLength(POSTGRES_MIGRATIONS.length);
  });

  it('refuses a bad schema name and a bad connection argument', () => {
    expect(() => new PostgresRunStore({ connectionString: PG_URL }, { schema: 'Bad-Name' })).toThrow(
      /schema name .* got "Bad-Name"/,
    );
    expect(() => new PostgresRunStore({} as never)).toThrow(/takes \{ connectionString/);
  });

  it('throws STORE_CLOSED after close', async () => {
    const store = newStore();
    await store.close();
    await expect(store.getRun('x')).rejects.toThrow(/has been closed/);
  });
});
