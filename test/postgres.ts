// PostgreSQL for the tests: the server the developer guide names (127.0.0.1:5432, user postgres, database
// test, trust auth). Every test gets a schema of its own and drops it after. A missing server fails the
// tests that need it: they never skip.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_URL = process.env.RUNWARDEN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A schema name no other test (or other session on the server) uses. */
export function uniqueSchema(prefix = 'rw_test'): string {
  return `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** Drops the schemas with a connection of its own (the store under test may be closed or broken). */
export async function dropSchemas(...schemas: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** Runs one statement with a connection of its own. */
export async function adminQuery<Row extends pg.QueryResultRow>(
  text: string,
  values?: unknown[],
): Promise<Row[]> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return (await client.query<Row>(text, values)).rows;
  } finally {
    await client.end();
  }
}
